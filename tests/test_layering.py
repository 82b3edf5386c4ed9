"""The layering of DESIGN.md, checked on the source: which of our packages each package imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.req("SRS-ARCH-001")

ROOT = Path(__file__).resolve().parents[1]
OURS = ("ledger", "prognosis", "consent", "federated", "device", "validation", "traceability", "dossier",
        "fedprog")
#: package → the other packages of ours it may import
ALLOWED: dict[str, set[str]] = {
    "ledger": set(),
    "traceability": set(),
    "prognosis": {"ledger"},  # the released model: pure, sealed with ledger.canonical
    "consent": {"ledger", "prognosis"},
    "federated": {"ledger", "prognosis"},
    "device": {"ledger", "prognosis"},
    "validation": {"federated", "device", "ledger", "traceability", "prognosis"},
    "dossier": {"ledger", "consent", "federated", "device", "validation", "traceability", "prognosis"},
    "fedprog": set(OURS) - {"fedprog"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level packages of ours that a module imports (absolute imports; relative ones stay inside)."""
    return _top_imports(path) & set(OURS)


@pytest.mark.parametrize("package", OURS)
def test_a_package_imports_only_what_the_design_allows(package: str) -> None:
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"no modules found under {package}/"
    wrong = {f"{m.relative_to(ROOT)} imports {dep}" for m in modules
             for dep in imported_packages(m) - ALLOWED[package] - {package}}
    assert not wrong, "; ".join(sorted(wrong))


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import os\nfrom fedprog.workspace import Workspace\nfrom .x import y\n")
    assert imported_packages(module) == {"fedprog"}


#: federated/ split by where code runs (issue 14): subpackage → federated subpackages it may not import
FEDERATED_FORBIDDEN: dict[str, set[str]] = {
    "protocol": {"federated.site", "federated.analyses"},           # the wire knows no site's code
    "site": {"federated.analyses", "federated.protocol.coordinator", "federated.protocol.transport",
             "federated.protocol.flower_transport"},                # a hospital runs no coordinator
    "disclosure": {"federated.site", "federated.analyses", "federated.protocol.coordinator"},
}


def _federated_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("federated")}


@pytest.mark.parametrize("sub", sorted(FEDERATED_FORBIDDEN))
def test_federated_is_split_by_where_code_runs(sub: str) -> None:
    modules = sorted((ROOT / "federated" / sub).rglob("*.py"))
    assert modules, f"no modules under federated/{sub}/"
    wrong = {f"{m.relative_to(ROOT)} imports {imp}" for m in modules for imp in _federated_imports(m)
             if any(imp == bad or imp.startswith(bad + ".") for bad in FEDERATED_FORBIDDEN[sub])}
    assert not wrong, "; ".join(sorted(wrong))


# --- tools apart from the device (issue 19): SRS-SOUP-005 ----------------------------------------------

#: what runs at the bedside and at the hospitals: the device's packages and the commands that start them
RUNTIME_PACKAGES = ("ledger", "prognosis", "consent", "federated", "device")
RUNTIME_COMMANDS = ("serve_cmd", "site_cmd", "site_setup", "train_cmd", "token_cmd", "init_cmd",
                    "fhir_consent", "workspace", "_common")
#: our quality-management packages and the third-party modules only they (the `qms` extra) need; pyyaml
#: is in the qms extra too but also in the runtime lock (uvicorn[standard] and flwr require it)
QMS_OURS = {"traceability", "dossier", "validation"}
QMS_MODULES = {"cyclonedx", "packageurl", "matplotlib", "reportlab", "pypdf"}
#: packages of the qms and dev extras the device's runtime set must not hold (directly or not)
TOOLS_ONLY = ("reportlab", "cyclonedx-python-lib", "matplotlib", "pypdf", "packageurl-python", "pillow",
              "fonttools", "contourpy", "kiwisolver", "pytest", "hypothesis", "lifelines", "ruff", "mypy",
              "schemathesis", "selenium")


def _top_imports(path: Path) -> set[str]:
    """Every top-level module a file imports (absolute imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _runtime_modules() -> list[Path]:
    return sorted([m for p in RUNTIME_PACKAGES for m in (ROOT / p).rglob("*.py")]
                  + [ROOT / "fedprog" / f"{name}.py" for name in RUNTIME_COMMANDS])


@pytest.mark.req("SRS-SOUP-005")
def test_the_device_runtime_imports_no_qms_tool() -> None:
    modules = _runtime_modules()
    assert len(modules) > 50 and all(m.is_file() for m in modules)
    wrong = {f"{m.relative_to(ROOT)} imports {dep}" for m in modules
             for dep in _top_imports(m) & (QMS_OURS | QMS_MODULES)}
    assert not wrong, "; ".join(sorted(wrong))


@pytest.mark.req("SRS-SOUP-005")
def test_the_runtime_lock_holds_no_tool() -> None:
    from traceability.installed import RUNTIME_LOCK, declared, read_lock

    runtime = read_lock(RUNTIME_LOCK)
    assert not set(TOOLS_ONLY) & set(runtime), sorted(set(TOOLS_ONLY) & set(runtime))
    tools = {n for n, (use, _) in declared().items() if use != "runtime"}
    # a tool may be in the runtime set only because a runtime package requires it (pyyaml: uvicorn[standard])
    direct = {n for n in tools & set(runtime) if runtime[n].direct or not runtime[n].required_by}
    assert not direct, sorted(direct)


def _run_without_qms(code: str, blocked: set[str] = QMS_MODULES) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter where the ``blocked`` modules cannot be imported."""
    block = f"import sys\nfor m in {sorted(blocked)!r}: sys.modules[m] = None\n"
    return subprocess.run([sys.executable, "-c", block + code], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


@pytest.mark.req("SRS-SOUP-005")
def test_the_device_runs_without_the_qms_extra() -> None:
    modules = [".".join(m.relative_to(ROOT).with_suffix("").parts) for m in _runtime_modules()]
    modules = [m.removesuffix(".__init__") for m in modules]
    code = (f"import importlib\nfor m in {modules!r}: importlib.import_module(m)\n"
            "from fedprog.cli import app\nfrom typer.testing import CliRunner\n"
            "for cmd in ('serve', 'train', 'site', 'token'):\n"
            "    r = CliRunner().invoke(app, [cmd, '--help'])\n"
            "    assert r.exit_code == 0, (cmd, r.output)\n"
            "print('ok')\n")
    result = _run_without_qms(code)
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr[-2000:]


@pytest.mark.req("SRS-SOUP-005")
@pytest.mark.parametrize("argv", [["dossier", "verify", "x"], ["trace", "check"], ["validate", "m@1"],
                                  ["demo"]])
def test_a_qms_command_without_the_extra_fails_with_one_line(argv: list[str]) -> None:
    result = _run_without_qms(f"import sys\nsys.argv = ['fedprog', *{argv!r}]\n"
                              "from fedprog.cli import main\nmain()\n", QMS_MODULES | {"yaml"})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"fedprog: error: `fedprog {argv[0]}`")
    assert result.stderr.rstrip().endswith("install fedprog[qms]")

"""The layering of DESIGN.md, checked on the source: which of our packages each package imports."""

from __future__ import annotations

import ast
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
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(OURS)


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

"""docs/architecture.md kept current: its checked tables and lists against the code they describe.

Each check is a pure function from the document's text to a list of problems, so that the tests at
the bottom can show every check failing on a document edited to be wrong.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.test_layering import ALLOWED, FEDERATED_FORBIDDEN, OURS

pytestmark = pytest.mark.req("SRS-ARCH-002")

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
MARKER = "<!-- checked by tests/test_architecture_doc.py: {} -->"


def _after_marker(text: str, name: str) -> list[str]:
    """The lines after the block's marker (the marker must occur exactly once)."""
    marker = MARKER.format(name)
    count = text.count(marker)
    if count != 1:
        raise AssertionError(f"docs/architecture.md: marker {marker!r} found {count} times, want 1")
    return text.split(marker, 1)[1].splitlines()[1:]


def _table(text: str, name: str) -> dict[str, set[str]]:
    """The checked table ``name``: first cell's `name` → the `names` in its second cell."""
    lines = _after_marker(text, name)
    while lines and not lines[0].strip():
        lines.pop(0)
    rows: dict[str, set[str]] = {}
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
        key = re.fullmatch(r"`([\w.-]+)`", cells[0])
        if key is None:  # the header and its separator
            continue
        if key.group(1) in rows:
            raise AssertionError(f"docs/architecture.md: table {name!r} lists {key.group(1)!r} twice")
        rows[key.group(1)] = set(re.findall(r"`([\w.-]+)`", cells[1])) if len(cells) > 1 else set()
    return rows


def _section(text: str, name: str) -> str:
    """The text after the marker up to the next heading."""
    out = []
    for line in _after_marker(text, name):
        if line.startswith("#"):
            break
        out.append(line)
    return "\n".join(out)


def _our_imports(package: Path, ours: set[str]) -> set[str]:
    found: set[str] = set()
    for module in package.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return (found & ours) - {package.name}


def layering_problems(text: str) -> list[str]:
    """Every package of tests/test_layering.py with exactly its ALLOWED imports; any other row names
    a package of this repository that imports no more than its row says."""
    rows = _table(text, "layering")
    problems = [f"{p}: not in the layering table" for p in OURS if p not in rows]
    problems += [f"{p}: table says it may import {sorted(rows[p])}, tests/test_layering.py says "
                 f"{sorted(ALLOWED[p])}" for p in OURS if p in rows and rows[p] != ALLOWED[p]]
    ours = set(OURS) | set(rows)
    for extra in sorted(set(rows) - set(OURS)):
        if not (ROOT / extra / "__init__.py").is_file():
            problems.append(f"{extra}: listed, but there is no package {extra}/")
            continue
        more = _our_imports(ROOT / extra, ours) - rows[extra]
        if more:
            problems.append(f"{extra}: imports {sorted(more)}, which its row does not list")
    return problems


def federated_problems(text: str) -> list[str]:
    """Every subpackage of federated/ listed, with exactly the imports FEDERATED_FORBIDDEN forbids it."""
    rows = _table(text, "federated")
    subs = {p.parent.name for p in (ROOT / "federated").glob("*/__init__.py")}
    problems = [f"federated/{s}: not in the table" for s in sorted(subs - set(rows))]
    problems += [f"federated/{s}: listed, but there is no such subpackage" for s in sorted(set(rows) - subs)]
    problems += [f"federated/{s}: table forbids {sorted(rows.get(s, set()))}, tests/test_layering.py "
                 f"{sorted(bad)}" for s, bad in FEDERATED_FORBIDDEN.items() if rows.get(s, set()) != bad]
    problems += [f"federated/{s}: table forbids imports that tests/test_layering.py does not check"
                 for s in sorted(set(rows) - set(FEDERATED_FORBIDDEN)) if rows[s]]
    return problems


def registered_commands() -> dict[str, set[str]]:
    """Every command path of the ``fedprog`` app → its subcommands (empty for a plain command)."""
    import typer

    from fedprog.cli import app

    def walk(group: typer.Typer, prefix: str, out: dict[str, set[str]]) -> set[str]:
        names: set[str] = set()
        for info in group.registered_commands:
            name = info.name or (info.callback.__name__.replace("_", "-") if info.callback else "")
            out[f"{prefix}{name}"] = set()
            names.add(name)
        for sub in group.registered_groups:
            assert sub.name and sub.typer_instance is not None
            out[f"{prefix}{sub.name}"] = walk(sub.typer_instance, f"{prefix}{sub.name} ", out)
            names.add(sub.name)
        return names

    paths: dict[str, set[str]] = {}
    walk(app, "", paths)
    return paths


def command_problems(text: str, paths: dict[str, set[str]]) -> list[str]:
    """Every registered command and group named in the command-line section as `fedprog PATH…`,
    and every `fedprog …` in the document naming a registered command."""
    section = _section(text, "commands")
    problems = [f"`fedprog {p}` is registered but not in the command-line section" for p in sorted(paths)
                if not re.search(rf"`fedprog {re.escape(p)}(?=[\s`\]])", section)]
    for first, second in re.findall(r"`fedprog ([a-z][\w-]*)(?: ([a-z][\w-]*))?", text):
        if first not in paths:
            problems.append(f"`fedprog {first}` is in the document but not a registered command")
        elif second and paths[first] and second not in paths[first]:
            problems.append(f"`fedprog {first} {second}` is in the document but not a registered command")
    return sorted(set(problems))


def artifact_problems(text: str) -> list[str]:
    """The artifact table lists exactly the top-level fields of the schema the device reads."""
    from device.model import Artifact

    fields = {f.alias or name for name, f in Artifact.model_fields.items()}
    rows = set(_table(text, "artifact"))
    return ([f"artifact field {f!r} is in the schema but not in the table" for f in sorted(fields - rows)]
            + [f"artifact field {f!r} is in the table but not in the schema" for f in sorted(rows - fields)])


def entry_kind_problems(text: str) -> list[str]:
    """The ledger's entry kinds, as ``ledger.log.ENTRY_KINDS`` has them."""
    from ledger.log import ENTRY_KINDS

    paragraph = _section(text, "entry kinds").split("\n\n")[0]
    listed = re.findall(r"`([\w-]+)`", paragraph)
    if sorted(listed) != sorted(ENTRY_KINDS):
        return [f"entry kinds: the document lists {listed}, ledger.log.ENTRY_KINDS is {list(ENTRY_KINDS)}"]
    return []


@pytest.fixture(scope="module")
def doc() -> str:
    assert DOC.is_file(), "docs/architecture.md is missing"
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def paths() -> dict[str, set[str]]:
    return registered_commands()


def test_the_layering_table_is_the_checked_layering(doc: str) -> None:
    assert layering_problems(doc) == []


def test_the_federated_split_is_the_checked_split(doc: str) -> None:
    assert federated_problems(doc) == []


def test_every_command_is_documented_and_every_documented_command_exists(
        doc: str, paths: dict[str, set[str]]) -> None:
    assert {"train", "km", "model", "model list", "trace sbom"} <= set(paths)  # the walk sees the app
    assert command_problems(doc, paths) == []


def test_the_artifact_fields_are_the_schema_fields(doc: str) -> None:
    assert artifact_problems(doc) == []


def test_the_ledger_entry_kinds_are_the_logs(doc: str) -> None:
    assert entry_kind_problems(doc) == []


# --------------------------------------------------------------- each check fails on a wrong document
def test_a_wrong_layering_row_is_caught(doc: str) -> None:
    row = "| `validation` | `federated`, `device`, `ledger`, `traceability`, `prognosis` |"
    assert row in doc
    wrong = "| `validation` | `federated`, `device`, `ledger`, `prognosis` |"
    problems = layering_problems(doc.replace(row, wrong))
    assert problems == ["validation: table says it may import ['device', 'federated', 'ledger', "
                        "'prognosis'], tests/test_layering.py says ['device', 'federated', 'ledger', "
                        "'prognosis', 'traceability']"]
    gone = "\n".join(line for line in doc.splitlines() if not line.startswith("| `ledger` |"))
    assert layering_problems(gone) == ["ledger: not in the layering table"]
    ghost = doc.replace("| `fedprog` |", "| `ghost` | — | no such package |\n| `fedprog` |")
    assert layering_problems(ghost) == ["ghost: listed, but there is no package ghost/"]


def test_a_wrong_federated_row_is_caught(doc: str) -> None:
    wrong = doc.replace("| `site` | `federated.analyses`, ", "| `site` | ")
    assert federated_problems(wrong) and "federated/site" in federated_problems(wrong)[0]


def test_a_missing_or_invented_command_is_caught(doc: str, paths: dict[str, set[str]]) -> None:
    missing = doc.replace("`fedprog km ", "`fedprog kaplan-meier ")
    assert command_problems(missing, paths) == [
        "`fedprog kaplan-meier` is in the document but not a registered command",
        "`fedprog km` is registered but not in the command-line section"]
    invented = doc.replace("`fedprog model due`", "`fedprog model due`, `fedprog model purge`")
    assert command_problems(invented, paths) == [
        "`fedprog model purge` is in the document but not a registered command"]


def test_an_extra_or_missing_artifact_field_is_caught(doc: str) -> None:
    extra = doc.replace("| `ties` |", "| `strata` | … |\n| `ties` |")
    assert artifact_problems(extra) == ["artifact field 'strata' is in the table but not in the schema"]
    gone = "\n".join(line for line in doc.splitlines() if not line.startswith("| `p_values` |"))
    assert artifact_problems(gone) == ["artifact field 'p_values' is in the schema but not in the table"]


def test_a_wrong_entry_kind_list_is_caught(doc: str) -> None:
    assert "`training`, " in doc
    assert entry_kind_problems(doc.replace("`training`, ", "")) != []

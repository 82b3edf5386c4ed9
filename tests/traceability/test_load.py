"""Loading and validating requirement folders (traceability.load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.traceability import baseline, item, write_folder
from traceability.load import DEFAULT_FOLDER, RequirementsError, load_requirements

pytestmark = pytest.mark.req("SRS-TRACE-001")


def broken(tmp_path: Path, extra: dict[str, Any]) -> str:
    """The one-line error of loading the baseline plus ``extra`` files."""
    write_folder(tmp_path, {**baseline(), **extra})
    with pytest.raises(RequirementsError) as info:
        load_requirements(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_valid_folder_loads_with_links(tmp_path: Path) -> None:
    reqs = load_requirements(write_folder(tmp_path, baseline()))
    assert len(reqs) == 6 and "SRS-DEMO-001" in reqs
    assert reqs.source["RC-DEMO-001"] == tmp_path / "risk.yaml"
    assert [c.id for c in reqs.children("SYS-DEMO-001")] == ["SRS-DEMO-001", "SRS-DEMO-002"]
    assert [c.id for c in reqs.children("SRS-DEMO-001")] == ["HAZ-DEMO-001", "RC-DEMO-001"]
    assert [d.id for d in reqs.descendants("UN-DEMO-001")] == [
        "HAZ-DEMO-001", "RC-DEMO-001", "SRS-DEMO-001", "SRS-DEMO-002", "SYS-DEMO-001"]
    assert [d.id for d in reqs.descendants("HAZ-DEMO-001")] == ["RC-DEMO-001"]
    assert reqs.descendants("RC-DEMO-001") == []
    assert [i.id for i in reqs.of_type("software")] == ["SRS-DEMO-001", "SRS-DEMO-002"]
    with pytest.raises(RequirementsError, match="unknown requirement id 'SRS-NOPE-001'"):
        reqs.children("SRS-NOPE-001")


def test_duplicate_id_across_files_names_both(tmp_path: Path) -> None:
    message = broken(tmp_path, {"zz.yaml": [item("SRS-DEMO-001", "software", ["SYS-DEMO-001"])]})
    assert "zz.yaml: item SRS-DEMO-001: id: duplicate" in message and "software.yaml" in message


def test_missing_parent(tmp_path: Path) -> None:
    message = broken(tmp_path, {"zz.yaml": [item("SRS-DEMO-009", "software", ["SYS-GONE-001"])]})
    assert message.endswith("zz.yaml: item SRS-DEMO-009: parents: SYS-GONE-001 does not exist")


def test_wrong_parent_type(tmp_path: Path) -> None:
    message = broken(tmp_path, {"zz.yaml": [item("SRS-DEMO-009", "software", ["UN-DEMO-001"])]})
    assert "item SRS-DEMO-009: parents: UN-DEMO-001 is a user-need; a software may have parents of " \
           "type system" in message


@pytest.mark.parametrize("links", [
    {"SYS-LOOP-001": ["SYS-LOOP-002"], "SYS-LOOP-002": ["SYS-LOOP-001"]},
    {"SYS-LOOP-001": ["SYS-LOOP-001"]},
])
def test_cycle_is_named(tmp_path: Path, links: dict[str, list[str]]) -> None:
    loop = [item(i, "system", parents) for i, parents in links.items()]
    message = broken(tmp_path, {"zz.yaml": loop})
    expected = " -> ".join([*links, next(iter(links))])
    assert f"item SYS-LOOP-001: parents: cycle {expected}" in message


@pytest.mark.parametrize(("raw", "expected"), [
    (item("SRS-DEMO-009", "software", ["SYS-DEMO-001"], verification="guess"),
     "item SRS-DEMO-009: verification: Input should be 'test', 'inspection' or 'analysis'"),
    (item("SRS-DEMO-009", "software", ["SYS-DEMO-001"], colour="red"),
     "item SRS-DEMO-009: colour: Extra inputs are not permitted"),
    (item("SRS-DEMO-009", "software", title="x"), "item SRS-DEMO-009: title: String should have at least"),
    (item("SRS-bad", "software"), "item SRS-bad: id: String should match pattern"),
    (item("SYS-DEMO-009", "software"),
     "item SYS-DEMO-009: rule: SYS-DEMO-009: a software id starts with SRS-"),
    ({"type": "software"}, "item #0: id: Field required"),
])
def test_bad_field_names_file_item_and_field(tmp_path: Path, raw: dict[str, Any], expected: str) -> None:
    message = broken(tmp_path, {"zz.yaml": [raw]})
    assert message.startswith(f"{tmp_path / 'zz.yaml'}: ") and expected in message


@pytest.mark.parametrize(("text", "expected"), [
    ("- id: [unclosed\n", "zz.yaml: line 2 not valid YAML"),
    ("id: SRS-DEMO-001\n", "zz.yaml: expected a YAML list of items, got dict"),
    ("", "zz.yaml: empty file, expected a YAML list of items"),
    ("- just a string\n", "zz.yaml: item #0: expected a mapping, got str"),
    ("- id: SRS-DEMO-009\n  id: SRS-DEMO-010\n", "key 'id' given twice (line 2)"),
])
def test_bad_yaml_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in broken(tmp_path, {"zz.yaml": text})


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(RequirementsError, match="requirements folder not found"):
        load_requirements(tmp_path / "nope")


def test_default_folder_is_the_package_one() -> None:
    assert DEFAULT_FOLDER == Path(__file__).parents[2] / "traceability" / "requirements"

"""The shipped requirements, hazards and risk controls form a sound design-control tree, and the
software safety classification is class B with the clause set IEC 62304 Table A.1 gives class B.

The YAML is read here with ``yaml.safe_load`` and :class:`traceability.schema.Item` directly, on
purpose independent of :mod:`traceability.load`, and then compared with what that loader reads.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

import traceability
from traceability.load import load_requirements
from traceability.safety import SafetyClassification, load_safety
from traceability.schema import PARENT_TYPES, Item

pytestmark = pytest.mark.req("SRS-TRACE-001")

FOLDER = Path(traceability.__file__).parent / "requirements"
#: each file and the one item type it holds
FILES = {"user_needs.yaml": "user-need", "system.yaml": "system", "software.yaml": "software",
         "hazards.yaml": "hazard", "risk_controls.yaml": "risk-control"}


def _read(name: str) -> list[Any]:
    data = yaml.safe_load((FOLDER / name).read_text(encoding="utf-8"))
    assert isinstance(data, list), f"{name}: want a YAML list of items"
    return data


@pytest.fixture(scope="module")
def items() -> dict[str, Item]:
    """Every item by id (a duplicate id fails here, naming both files)."""
    out: dict[str, Item] = {}
    where: dict[str, str] = {}
    for name in FILES:
        for raw in _read(name):
            item = Item.model_validate(raw)
            assert item.id not in out, f"{item.id} in {name} is already defined in {where[item.id]}"
            out[item.id], where[item.id] = item, name
    return out


def _children(items: dict[str, Item]) -> dict[str, list[Item]]:
    kids: dict[str, list[Item]] = defaultdict(list)
    for item in items.values():
        for parent in item.parents:
            kids[parent].append(item)
    return kids


# ------------------------------------------------------------------ the files and their items
@pytest.mark.parametrize("name", list(FILES))
def test_each_file_is_a_list_of_valid_items_of_its_type(name: str) -> None:
    raw = _read(name)
    assert raw, f"{name} is empty"
    for entry in raw:
        item = Item.model_validate(entry)
        assert item.type == FILES[name], f"{item.id} is a {item.type} in {name}"


def test_at_least_30_items_and_all_five_types(items: dict[str, Item]) -> None:
    assert len(items) >= 30
    assert {i.type for i in items.values()} == set(PARENT_TYPES)


def test_ids_are_unique_across_files() -> None:
    ids = [entry["id"] for name in FILES for entry in _read(name)]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def test_parents_exist_and_have_allowed_types(items: dict[str, Item]) -> None:
    for item in items.values():
        for parent in item.parents:
            assert parent in items, f"{item.id}: parent {parent} does not exist"
            allowed = PARENT_TYPES[item.type]
            assert items[parent].type in allowed, (f"{item.id} ({item.type}) may not have the "
                                                   f"{items[parent].type} {parent} as parent")


def test_parent_links_have_no_cycle(items: dict[str, Item]) -> None:
    done: set[str] = set()

    def visit(item_id: str, path: tuple[str, ...]) -> None:
        assert item_id not in path, "cycle: " + " -> ".join((*path, item_id))
        if item_id in done:
            return
        for parent in items[item_id].parents:
            visit(parent, (*path, item_id))
        done.add(item_id)

    for item_id in items:
        visit(item_id, ())


# ------------------------------------------------------------------ the design-control chain
def test_every_user_need_is_refined_by_a_system_requirement(items: dict[str, Item]) -> None:
    kids = _children(items)
    for need in (i for i in items.values() if i.type == "user-need"):
        assert any(k.type == "system" for k in kids[need.id]), f"{need.id} has no system requirement"


def test_every_system_requirement_is_refined_by_a_software_requirement(items: dict[str, Item]) -> None:
    kids = _children(items)
    for req in (i for i in items.values() if i.type == "system"):
        assert any(k.type == "software" for k in kids[req.id]), f"{req.id} has no software requirement"


def test_every_hazard_is_rated_and_has_a_risk_control(items: dict[str, Item]) -> None:
    kids = _children(items)
    for hazard in (i for i in items.values() if i.type == "hazard"):
        assert any(k.type == "risk-control" for k in kids[hazard.id]), f"{hazard.id} has no risk control"
        assert hazard.residual_probability is not None, f"{hazard.id} states no residual probability"
        assert hazard.probability is not None and hazard.residual_probability <= hazard.probability


def test_every_risk_control_names_a_hazard_and_a_verification(items: dict[str, Item]) -> None:
    for control in (i for i in items.values() if i.type == "risk-control"):
        assert any(items[p].type == "hazard" for p in control.parents), f"{control.id} names no hazard"
        if control.verification != "test":
            assert control.rationale, f"{control.id} is not verified by test and says not why"


def test_acceptance_criteria_sit_on_validation_requirements(items: dict[str, Item]) -> None:
    stating = {i.id for i in items.values() if i.acceptance}
    assert stating and all(i.startswith("SRS-VAL-") for i in stating), sorted(stating)
    criteria = [(a.metric, a.horizon, a.scope) for i in stating for a in items[i].acceptance]
    # every horizon the model reports is calibrated (for the demo model 3 and 5 Julian years), pooled and
    # at each site: the criteria say "each", which the validation expands to the model's horizons
    assert ("calibration_slope", "each", "pooled") in criteria
    assert ("e_o_ratio", "each", "pooled") in criteria
    assert ("e_o_ratio", "each", "each-site") in criteria
    assert ("calibration_slope", "each", "each-site") in criteria  # a site's spread of risks is judged too
    assert all(items[i].rationale for i in stating)


def test_the_loader_reads_the_same_items(items: dict[str, Item]) -> None:
    assert load_requirements().items == items


# ------------------------------------------------------------------ software safety class
def _sub(clause: str, first: int, last: int) -> set[str]:
    return {f"{clause}.{k}" for k in range(first, last + 1)}


#: IEC 62304:2006+A1:2015 Table A.1, class B (clause 4 applies to every class)
CLASS_B = ({"4.1", "4.2", "4.3", "4.4"}
           | _sub("5.1", 1, 12) - {"5.1.4"}
           | _sub("5.2", 1, 6)
           | _sub("5.3", 1, 6) - {"5.3.5"}
           | {"5.4.1"}
           | _sub("5.5", 1, 5) - {"5.5.4"}
           | _sub("5.6", 1, 8) | _sub("5.7", 1, 5) | _sub("5.8", 1, 8)
           | {"6.1"} | _sub("6.2", 1, 5) | _sub("6.3", 1, 2)
           | _sub("7.1", 1, 4) | _sub("7.2", 1, 2) | {"7.3.1", "7.3.3"} | _sub("7.4", 1, 3)
           | _sub("8.1", 1, 3) | _sub("8.2", 1, 4) | {"8.3"} | _sub("9", 1, 8))
#: what only class C adds
ONLY_C = {"5.1.4", "5.3.5", "5.4.2", "5.4.3", "5.4.4", "5.5.4"}
#: what class B adds to class A (A1:2015 made 5.7, 5.8.1, 5.8.2, 5.8.7, 5.8.8 and 6.2.3 apply to A)
B_NOT_A = ({"5.1.5", "5.1.10", "5.1.11", "5.1.12", "5.2.3", "5.4.1", "5.5.2", "5.5.3", "5.5.5",
            "5.8.3", "5.8.5", "5.8.6", "7.3.1", "7.3.3", "7.4.2", "7.4.3"}
           | _sub("5.3", 1, 6) - {"5.3.5"} | _sub("5.6", 1, 8) | _sub("7.1", 1, 4) | _sub("7.2", 1, 2))


@pytest.fixture(scope="module")
def safety() -> SafetyClassification:
    return load_safety()


def test_the_software_system_is_class_b_for_stated_reasons(safety: SafetyClassification,
                                                           items: dict[str, Item]) -> None:
    assert safety.safety_class == "B" and safety.standard == "IEC 62304:2006+A1:2015"
    assert "§4.3" in safety.rationale and "non-serious injury" in safety.rationale
    assert safety.external_risk_controls
    for hazard in safety.hazards:
        assert hazard in items and items[hazard].type == "hazard", hazard


def test_class_b_clauses_are_those_of_table_a1(safety: SafetyClassification) -> None:
    assert set(safety.clauses_for("B")) == CLASS_B
    assert set(safety.clauses_for()) == CLASS_B  # the system's own class
    assert set(safety.clauses_for("C")) == CLASS_B | ONLY_C
    assert set(safety.clauses_for("A")) == CLASS_B - B_NOT_A

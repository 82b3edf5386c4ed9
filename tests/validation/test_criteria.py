"""Acceptance criteria: read from the requirements, each judged pass or fail with its value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from traceability.schema import Acceptance
from validation.criteria import Criterion, Table, judge, load_criteria
from validation.exceptions import CriteriaError

pytestmark = pytest.mark.req("SRS-VAL-005")

HORIZONS = [1095.0, 1826.0]
POOLED: Table = {("harrell_c", None): {"estimate": 0.69, "ci_lower": 0.66, "ci_upper": 0.72},
          ("e_o_ratio", 1095.0): {"estimate": 0.98, "ci_lower": 0.9, "ci_upper": 1.08},
          ("e_o_ratio", 1826.0): {"estimate": 1.30, "ci_lower": 1.1, "ci_upper": 1.5},
          ("calibration_slope", None): {"estimate": 1.1, "ci_lower": 0.9, "ci_upper": 1.3}}
SITES: dict[str, Table | str] = {"a": {("harrell_c", None): {"estimate": 0.70}},
                                  "b": {("harrell_c", None): {"estimate": 0.52}}}


def criterion(**kw: object) -> Criterion:
    return Criterion("SRS-X-001#1", "SRS-X-001", "test", Acceptance.model_validate(kw))


def verdict(**kw: object) -> dict[str, Any]:
    return judge([criterion(**kw)], POOLED, SITES, HORIZONS)[0]


@pytest.mark.parametrize(("kw", "passed"), [
    ({"metric": "harrell_c", "statistic": "ci_lower", "op": ">=", "threshold": 0.6}, True),
    ({"metric": "harrell_c", "statistic": "ci_lower", "op": ">=", "threshold": 0.67}, False),
    ({"metric": "harrell_c", "op": "<=", "threshold": 0.7}, True),
    ({"metric": "calibration_slope", "op": "between", "threshold": [0.7, 1.3]}, True),
    ({"metric": "calibration_slope", "op": "between", "threshold": [0.7, 1.05]}, False),
    ({"metric": "e_o_ratio", "op": "between", "threshold": [0.8, 1.25], "horizon": 1095.0}, True),
])
def test_pooled_thresholds_pass_and_fail(kw: dict[str, Any], passed: bool) -> None:
    v = verdict(**kw)
    assert v["passed"] is passed and len(v["checks"]) == 1 and v["checks"][0]["where"] == "pooled"


def test_a_per_horizon_metric_without_a_horizon_must_hold_at_every_horizon() -> None:
    v = verdict(metric="e_o_ratio", op="between", threshold=[0.8, 1.25])
    assert [c["horizon"] for c in v["checks"]] == HORIZONS
    assert [c["passed"] for c in v["checks"]] == [True, False] and v["passed"] is False
    assert v["checks"][1]["value"] == 1.30


def test_horizon_each_judges_every_horizon_of_the_model_even_the_calibration_slope() -> None:
    pooled: Table = {**POOLED, ("calibration_slope", 1095.0): {"estimate": 1.0},
                     ("calibration_slope", 1826.0): {"estimate": 1.4}}
    v = judge([criterion(metric="calibration_slope", op="between", threshold=[0.7, 1.3], horizon="each")],
              pooled, SITES, HORIZONS)[0]
    assert [(c["horizon"], c["value"], c["passed"]) for c in v["checks"]] == [(1095.0, 1.0, True),
                                                                            (1826.0, 1.4, False)]
    assert v["passed"] is False and v["horizon"] == "each"
    # another model's horizons: the same criterion judges those, and a horizon without a value fails
    v = judge([criterion(metric="e_o_ratio", op="between", threshold=[0.8, 1.25], horizon="each")],
              POOLED, SITES, [1095.0, 3652.5])[0]
    assert [c["horizon"] for c in v["checks"]] == [1095.0, 3652.5]
    assert [c["passed"] for c in v["checks"]] == [True, False] and "not available" in v["checks"][1]["reason"]


def test_each_site_scope_fails_on_one_site_and_on_a_missing_value() -> None:
    v = verdict(metric="harrell_c", op=">=", threshold=0.55, scope="each-site")
    assert [(c["where"], c["passed"]) for c in v["checks"]] == [("a", True), ("b", False)]
    sites: dict[str, Table | str] = {**SITES, "b": "suppressed: refused by rule min_patients_per_site"}
    v = judge([criterion(metric="harrell_c", op=">=", threshold=0.5, scope="each-site")], POOLED, sites,
              HORIZONS)[0]
    assert v["passed"] is False and "min_patients_per_site" in v["checks"][1]["reason"]
    v = verdict(metric="uno_c", op=">=", threshold=0.5)
    assert v["passed"] is False and v["checks"][0]["value"] is None
    assert "not available" in v["checks"][0]["reason"]


def write_requirements(folder: Path, acceptance: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    items = [
        {"id": "UN-X-001", "type": "user-need", "title": "A need", "text": "Clinicians need risks.",
         "verification": "inspection"},
        {"id": "SYS-X-001", "type": "system", "title": "A system", "text": "The system predicts risk.",
         "parents": ["UN-X-001"], "verification": "test"},
        {"id": "SRS-X-001", "type": "software", "title": "Acceptance", "text": "Discrimination is enough.",
         "parents": ["SYS-X-001"], "verification": "analysis", "acceptance": acceptance},
    ]
    (folder / "software.yaml").write_text(yaml.safe_dump(items, allow_unicode=True))
    return folder


def test_criteria_load_from_the_requirement_files(tmp_path: Path) -> None:
    folder = write_requirements(tmp_path / "req", [
        {"metric": "harrell_c", "statistic": "ci_lower", "op": ">=", "threshold": 0.99}])
    [c] = load_criteria(folder)
    assert c.id == "SRS-X-001#1" and c.acceptance.threshold == 0.99
    empty = write_requirements(tmp_path / "empty", [])
    with pytest.raises(CriteriaError, match="no requirement states an acceptance criterion"):
        load_criteria(empty)
    with pytest.raises(CriteriaError, match="not found"):
        load_criteria(tmp_path / "missing")


def test_the_project_requirements_state_the_validation_criteria() -> None:
    ids = {c.requirement for c in load_criteria()}
    assert {"SRS-VAL-001", "SRS-VAL-002", "SRS-VAL-003", "SRS-VAL-004"} <= ids


@pytest.mark.req("SRS-VAL-008")
@pytest.mark.parametrize(("n_boot", "passed"), [(50, False), (999, False), (1000, True), (2000, True)])
def test_a_ci_bound_decides_acceptance_only_on_enough_resamples(n_boot: int, passed: bool) -> None:
    """At one site: the same CI bound (0.66 ≥ 0.6) passes on ≥ 1000 valid resamples only."""
    sites: dict[str, Table | str] = {"a": {("harrell_c", None): {"estimate": 0.69, "ci_lower": 0.66,
                                                                 "ci_upper": 0.72, "n_boot": n_boot}}}
    c = criterion(metric="harrell_c", statistic="ci_lower", op=">=", threshold=0.6, scope="each-site")
    v = judge([c], POOLED, sites, HORIZONS)[0]
    [check] = v["checks"]
    assert v["passed"] is passed and check["passed"] is passed and check["value"] == 0.66
    if passed:
        assert "reason" not in check
    else:
        assert check["reason"] == f"95% CI from {n_boot} resamples; acceptance needs ≥ 1000"
    # the estimate is no CI bound: judged whatever the resamples
    v = judge([criterion(metric="harrell_c", op=">=", threshold=0.6, scope="each-site")], POOLED, sites,
              HORIZONS)[0]
    assert v["passed"] is True


@pytest.mark.req("SRS-VAL-008")
def test_a_pooled_ci_bound_rests_on_the_fewest_resamples_of_its_sites() -> None:
    entry = {"estimate": 0.69, "ci_lower": 0.66, "ci_upper": 0.72}
    pooled: Table = {("harrell_c", None): {**entry, "sites": ["a", "b"]}}

    def sites(b: int) -> dict[str, Table | str]:
        return {"a": {("harrell_c", None): {**entry, "n_boot": 1000}},
                "b": {("harrell_c", None): {**entry, "n_boot": b}}}

    c = criterion(metric="harrell_c", statistic="ci_upper", op="<=", threshold=0.8)
    [check] = judge([c], pooled, sites(50), HORIZONS)[0]["checks"]
    assert check["passed"] is False and check["where"] == "pooled"
    assert check["reason"] == ("95% CI from 50 resamples (pooled over sites; fewest at b); "
                               "acceptance needs ≥ 1000")
    assert judge([c], pooled, sites(1000), HORIZONS)[0]["passed"] is True
    # a pooled site without that metric (or without n_boot) counts as no resamples
    missing: dict[str, Table | str] = {"a": sites(1000)["a"], "b": {}}
    [check] = judge([c], pooled, missing, HORIZONS)[0]["checks"]
    assert check["passed"] is False and "from 0 resamples" in check["reason"]

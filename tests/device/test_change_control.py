"""The predetermined change control plan and the assessment of a retrained successor against it.

Adversary: an operator who retrains with changed inputs or a degraded model and hopes it ships as a
routine update. The successor within the plan is a genuine retrain of the demo study with six
patients' consent revoked; every breach is that successor (or its report) changed in one place, and
must be outside the plan naming the clause it breaks.
"""

from __future__ import annotations

import copy
import functools
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from device import change_control
from device.change_control import (
    CLAUSES,
    ChangeControlError,
    ChangeControlPlan,
    assess_change,
    load_plan,
)

from .test_model import demo_artifact, reseal

PLAN = Path(__file__).resolve().parents[2] / "regulatory" / "change_control_plan.yaml"
#: the demo model's pooled validation results (its released report): C, slope (all follow-up, 3 y, 5 y),
#: E/O (3 y, 5 y)
HORIZONS = (1095.75, 1826.25)
RELEASED_C, RELEASED_SLOPE, RELEASED_EO = 0.6748, (1.118, 1.247, 1.118), (0.9015, 0.9149)
CRITERIA = [("SRS-VAL-001#1", "harrell_c", "ci_lower", ">=", 0.6, None, "pooled"),
            ("SRS-VAL-002#1", "calibration_slope", "estimate", "between", [0.7, 1.3], "each", "pooled"),
            ("SRS-VAL-002#2", "e_o_ratio", "estimate", "between", [0.8, 1.25], "each", "pooled"),
            ("SRS-VAL-003#1", "e_o_ratio", "estimate", "between", [0.5, 2.0], "each", "each-site")]
SITES = ["hospital-a", "hospital-b", "hospital-c", "hospital-d"]


def report(art: dict[str, Any], c: float, slope: tuple[float, float, float], eo: tuple[float, float],
           passed: bool = True) -> dict[str, Any]:
    """A validation report as the registry keeps it (``fedprog.validation/v1``, the fields the plan reads)."""
    metrics = [{"metric": "harrell_c", "horizon": None, "estimate": c},
               *[{"metric": "calibration_slope", "horizon": h, "estimate": s}
                 for h, s in zip((None, *HORIZONS), slope, strict=True)],
               *[{"metric": "e_o_ratio", "horizon": h, "estimate": e}
                 for h, e in zip(HORIZONS, eo, strict=True)]]
    criteria = [{"id": i, "requirement": i.split("#")[0], "metric": m, "statistic": s, "op": op,
                 "threshold": t, "horizon": h, "scope": scope, "passed": passed}
                for i, m, s, op, t, h, scope in CRITERIA]
    return {"schema": "fedprog.validation/v1", "setting": "internal",
            "model": f"{art['model_id']}@{art['version']}", "model_sha256": art["sha256"],
            "sha256": art["sha256"], "passed": passed, "criteria": criteria,
            "pooled": {"sites": SITES, "metrics": metrics}}


@functools.cache
def _retrained() -> str:
    """The demo study trained again with six of hospital A's patients left out (their consent revoked)."""
    from federated.analyses.runner import train
    from federated.demo_study import write_demo_study

    with tempfile.TemporaryDirectory() as folder:
        study = write_demo_study(Path(folder))
        path = Path(folder) / "sites" / "hospital-a" / "data.csv"
        table = pd.read_csv(path)
        table.iloc[6:].to_csv(path, index=False)
        return json.dumps(train(study.model_copy(update={"version": "2"}))[1])


@pytest.fixture(scope="module")
def plan() -> ChangeControlPlan:
    return load_plan(PLAN)


@pytest.fixture(scope="module")
def released() -> tuple[dict[str, Any], dict[str, Any]]:
    art = demo_artifact()
    return art, report(art, RELEASED_C, RELEASED_SLOPE, RELEASED_EO)


@pytest.fixture
def successor() -> tuple[dict[str, Any], dict[str, Any]]:
    """The genuine retrain and its report: performance within a hair of the released one."""
    art = json.loads(_retrained())
    return art, report(art, 0.6741, (1.121, 1.252, 1.121), (0.9032, 0.9160))


def assess(plan: ChangeControlPlan, released: tuple[dict[str, Any], dict[str, Any]],
           successor: tuple[dict[str, Any], dict[str, Any]]) -> change_control.ChangeAssessment:
    return assess_change(plan, released[0], released[1], successor[0], successor[1])


@pytest.mark.req("SRS-REG-006", "RC-REG-002")
def test_a_genuine_retrain_after_revocations_is_within_the_plan(plan: ChangeControlPlan, released: Any,
                                                                 successor: Any) -> None:
    art = successor[0]
    assert art["training"]["n"] < released[0]["training"]["n"]  # the six patients are really gone
    assert art["coefficients"] != released[0]["coefficients"]
    result = assess(plan, released, successor)
    assert [c.id for c in result.checks] == list(CLAUSES)
    assert result.within_plan, [c for c in result.checks if not c.passed]
    ledger = result.to_ledger()
    assert ledger["within_plan"] is True and ledger["failed"] == [] and ledger["passed"] == list(CLAUSES)
    assert ledger["plan"] == "FP-PCCP-001" and ledger["plan_sha256"] == plan.sha256
    assert ledger["predecessor"]["sha256"] == released[0]["sha256"]
    assert len(json.dumps(ledger)) < 2000  # a small ledger body


Mutation = Callable[[dict[str, Any], dict[str, Any]], None]


def _input(art: dict[str, Any], name: str) -> dict[str, Any]:
    return next(i for i in art["inputs"] if i["name"] == name)


def _move(name: str, n_se: float) -> Mutation:
    def change(art: dict[str, Any], _: dict[str, Any]) -> None:
        art["coefficients"][name] += n_se * art["standard_errors"][name]
    return change


def _metric(metric: str, horizon: float | None, value: float) -> Mutation:
    def change(_: dict[str, Any], rep: dict[str, Any]) -> None:
        for e in rep["pooled"]["metrics"]:
            if e["metric"] == metric and e["horizon"] == horizon:
                e["estimate"] = value
    return change


def _set(path: str, value: Any) -> Mutation:
    """Set ``a.b.c`` of the artifact."""
    def change(art: dict[str, Any], _: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = art
        for p in parents:
            node = node[p]
        node[last] = value
    return change


def _fail_validation(_: dict[str, Any], rep: dict[str, Any]) -> None:
    rep["passed"] = False
    rep["criteria"][3]["passed"] = False


def _loosen(_: dict[str, Any], rep: dict[str, Any]) -> None:
    rep["criteria"][0]["threshold"] = 0.5


def _drop_site_from_validation(_: dict[str, Any], rep: dict[str, Any]) -> None:
    rep["pooled"]["sites"] = SITES[:3]


BREACHES: dict[str, tuple[Mutation, str, str]] = {
    # what the operator changed: (the change, the clause it breaks, a word the detail names)
    "input range widened": (lambda a, r: _input(a, "pnodes").update(max=21.0), "PCCP-SPEC-INPUTS", "max"),
    "input unit changed": (lambda a, r: _input(a, "age").update(unit="mo"), "PCCP-SPEC-INPUTS", "unit"),
    "band cut moved": (lambda a, r: _input(a, "tsize")["bands"].update(cuts=[20.0, 40.0]), "PCCP-SPEC-INPUTS",
                       "bands"),
    "intended population widened": (_set("intended_use.population", "adult women with breast cancer"),
                                    "PCCP-SPEC-USE", "population"),
    "sex restriction dropped": (_set("intended_use.sex", None), "PCCP-SPEC-USE", "sex"),
    "horizon added": (_set("outcome.horizons", [365.25, 1095.75, 1826.25]), "PCCP-SPEC-OUTCOME", "horizons"),
    "ties changed": (_set("ties", "breslow"), "PCCP-SPEC-MODEL", "ties"),
    "penalised": (_set("penalty", 0.1), "PCCP-SPEC-MODEL", "penalty"),
    "reference patient moved": (_set("baseline_survival.center", [50.0, 1.0, 0.0, 3.0, 30.0, 40.0, 0.0, 1.0]),
                                "PCCP-SPEC-BASELINE", "center"),
    "another site": (_set("training.sites", ["hospital-a", "hospital-b", "hospital-e"]), "PCCP-DATA-SITES",
                     "sites"),
    "coarser grid": (_set("training.time_grid", "quarter"), "PCCP-DATA-SITES", "time_grid"),
    "smaller cohort": (_set("training.n", 500), "PCCP-DATA-COHORT", "n 500 <"),
    "fewer events": (_set("training.events", 200), "PCCP-DATA-COHORT", "events 200 <"),
    "coefficient jump": (_move("pnodes", 2.0), "PCCP-COEF-SE", "pnodes"),
    "another model": (_set("model_id", "gbsg2-recurrence-recalibrated-rotterdam"), "PCCP-LINEAGE",
                      "model_id"),
    "C dropped": (_metric("harrell_c", None, 0.64), "PCCP-PERF-C", "0.6400 <"),
    "slope out of range": (_metric("calibration_slope", 1826.25, 1.35), "PCCP-PERF-SLOPE", "OUT"),
    "slope moved within range": (_metric("calibration_slope", None, 0.98), "PCCP-PERF-SLOPE", "OUT"),
    "E/O out of range": (_metric("e_o_ratio", 1095.75, 0.78), "PCCP-PERF-EO", "OUT"),
    "E/O moved within range": (_metric("e_o_ratio", 1826.25, 1.02), "PCCP-PERF-EO", "OUT"),
    "validation failed": (_fail_validation, "PCCP-VAL-PASSED", "SRS-VAL-003#1"),
    "criterion loosened": (_loosen, "PCCP-VAL-CRITERIA", "SRS-VAL-001#1 changed"),
    "a validation site left out": (_drop_site_from_validation, "PCCP-VAL-CRITERIA", "pooled over"),
}
#: artifact fields the checks compare; the report's seal is recomputed like the artifact's
_REPORT_ONLY = {"C dropped", "slope out of range", "slope moved within range", "E/O out of range",
                "E/O moved within range", "validation failed", "criterion loosened",
                "a validation site left out"}


@pytest.mark.req("SRS-REG-006", "RC-REG-002")
@pytest.mark.parametrize("breach", sorted(BREACHES))
def test_each_breach_is_outside_the_plan_naming_its_clause(plan: ChangeControlPlan, released: Any,
                                                           successor: Any, breach: str) -> None:
    change, clause, word = BREACHES[breach]
    art, rep = copy.deepcopy(successor)
    change(art, rep)
    if breach not in _REPORT_ONLY:
        art = reseal(art)
        rep = {**rep, "model_sha256": art["sha256"], "sha256": art["sha256"]}
    result = assess(plan, released, (art, rep))
    assert result.within_plan is False
    failed = {c.id: c.detail for c in result.failed()}
    assert clause in failed, failed
    assert word in failed[clause]
    assert {"id": clause, "detail": failed[clause]} in result.to_ledger()["failed"]


@pytest.mark.req("SRS-REG-006")
def test_the_range_bound_catches_what_the_standard_error_bound_lets_through(
        plan: ChangeControlPlan, released: Any, successor: Any) -> None:
    art, rep = copy.deepcopy(successor)
    old = released[0]
    art["coefficients"]["age"] = old["coefficients"]["age"] + 0.5 * old["standard_errors"]["age"]
    art = reseal(art)
    rep = {**rep, "model_sha256": art["sha256"], "sha256": art["sha256"]}
    assert assess(plan, released, (art, rep)).within_plan  # half an SE over 27-79 years: 0.27 log-HR
    bounds = plan.bounds.model_copy(update={"coefficient_range_log_hr": 0.2})
    tight = plan.model_copy(update={"bounds": bounds})
    failed = {c.id: c.detail for c in assess(tight, released, (art, rep)).failed()}
    assert list(failed) == ["PCCP-COEF-RANGE"] and "age" in failed["PCCP-COEF-RANGE"]
    assert tight.sha256 != plan.sha256  # an assessment names the plan it was judged under


@pytest.mark.req("SRS-REG-006")
def test_missing_evidence_fails_its_clause_never_raises(plan: ChangeControlPlan, released: Any,
                                                       successor: Any) -> None:
    art, rep = copy.deepcopy(successor)
    rep["pooled"]["metrics"] = [e for e in rep["pooled"]["metrics"] if e["metric"] != "harrell_c"]
    del art["training"]
    result = assess(plan, released, (art, rep))
    failed = {c.id: c.detail for c in result.failed()}
    assert "not reported by the candidate" in failed["PCCP-PERF-C"]
    assert failed["PCCP-DATA-COHORT"].startswith("cannot be judged")
    assert "PCCP-DATA-SITES" in failed and not result.within_plan


@pytest.mark.req("SRS-REG-006")
def test_the_plan_states_exactly_the_clauses_the_device_checks(plan: ChangeControlPlan) -> None:
    assert [c.id for c in plan.clauses] == list(CLAUSES) == list(change_control._CHECKS)
    assert plan.bounds.coefficient_z == 1.0 and plan.bounds.min_cohort_fraction == 0.9
    assert plan.acceptance.accepted_by is None  # not accepted by a notified body: the document says so


def _written(tmp_path: Path, edit: Callable[[str], str]) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(edit(PLAN.read_text(encoding="utf-8")), encoding="utf-8")
    return path


BAD_PLANS: dict[str, tuple[Callable[[str], str], str]] = {
    "unknown field": (lambda t: t.replace("coefficient_z: 1.0", "coefficient_z: 1.0\n  coefficient_w: 2"),
                      "bounds.coefficient_w: Extra inputs are not permitted"),
    "clause left out": (lambda t: t.replace("  - id: PCCP-PERF-C\n", "  - id: PCCP-PERF-X\n"),
                        "clauses: PCCP-PERF-C is not stated"),
    "slope range without 1": (lambda t: t.replace("    min: 0.7\n", "    min: 1.05\n"),
                              "bounds.calibration_slope: [min, max] must contain 1"),
    "negative margin": (lambda t: t.replace("harrell_c_margin: 0.02", "harrell_c_margin: -0.02"),
                        "bounds.harrell_c_margin: Input should be greater than or equal to 0"),
    "wrong schema": (lambda t: t.replace("fedprog.pccp/v1", "fedprog.pccp/v0"), "schema: Input should be"),
    "not YAML": (lambda t: t + "\n  : [unclosed", "not a readable YAML file"),
}


@pytest.mark.req("SRS-REG-006")
@pytest.mark.parametrize("case", sorted(BAD_PLANS))
def test_a_bad_plan_is_refused_in_one_line(tmp_path: Path, case: str) -> None:
    edit, message = BAD_PLANS[case]
    path = _written(tmp_path, edit)
    with pytest.raises(ChangeControlError) as err:
        load_plan(path)
    text = str(err.value)
    assert "\n" not in text and text.startswith(str(path)) and message in text, text


@pytest.mark.req("SRS-REG-006")
def test_a_missing_plan_is_named(tmp_path: Path) -> None:
    with pytest.raises(ChangeControlError, match="change control plan is missing"):
        load_plan(tmp_path / "nowhere.yaml")


@pytest.mark.req("SRS-REG-006")
def test_the_plan_hash_ignores_comments_and_follows_the_bounds(tmp_path: Path,
                                                               plan: ChangeControlPlan) -> None:
    commented = load_plan(_written(tmp_path, lambda t: "# reviewed\n" + t))
    assert commented.sha256 == plan.sha256
    moved = load_plan(_written(tmp_path, lambda t: t.replace("c_margin: 0.02", "c_margin: 0.03")))
    assert moved.sha256 != plan.sha256

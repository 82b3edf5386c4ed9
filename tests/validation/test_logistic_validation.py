"""The validation of a logistic model, as a Cox model's: per site, leave-one-site-out (retrained with
train_logistic), pooled on each binary metric's scale, judged by the criteria that apply to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from federated.analyses.runner import train_logistic
from federated.demo_study import DEMO_INPUTS
from federated.disclosure.policy import DisclosurePolicy, round_to_k
from federated.site.binary_performance import metrics
from federated.site.handler import Site
from federated.study import StudySpec
from prognosis.logistic import LogisticModel
from tests.conftest import split_frame
from tests.federated.site.test_binary_evaluation import FLOORS, HORIZON
from tests.validation.test_criteria import write_requirements
from traceability.schema import Acceptance
from validation.criteria import Criterion, Table, applicable, judge
from validation.exceptions import CriteriaError
from validation.pooling import inverse_variance
from validation.run import Options, run_external_validation, run_validation

#: grade 3 from the receptors and nodes: no age band or yes/no input, so no subgroups — the 1000
#: resamples the CI criteria need stay fast (subgroups: tests/federated/site/test_binary_evaluation.py)
COV = ["pnodes", "progrec", "estrec"]
LOGISTIC = StudySpec(model_id="grade3", model="logistic", event="tgrade", covariates=COV, horizons=[HORIZON],
                     inputs={n: DEMO_INPUTS[n] for n in COV}, policy=DisclosurePolicy(min_sites=2))
BINARY = {("c_statistic", None)} | {(m, HORIZON) for m in ("brier", "e_o_ratio", "calibration_intercept",
                                                             "calibration_slope")}
#: the criteria proposed for logistic models (SRS-VAL-001, SRS-VAL-004), two that a logistic model
#: reports no value for, and a pooled calibration slope stated for any model (wider than SRS-VAL-002's
#: 0.7–1.3: on the intended-use population, without the receptor values beyond the declared ranges that
#: training saw clipped, this model's slope is about 1.4)
CRITERIA: list[dict[str, Any]] = [
    {"metric": "c_statistic", "model": "logistic", "statistic": "ci_lower", "op": ">=", "threshold": 0.6},
    {"metric": "c_statistic", "model": "logistic", "op": ">=", "threshold": 0.55, "scope": "each-site"},
    {"metric": "brier", "model": "logistic", "op": "<=", "threshold": 0.25, "horizon": "each"},
    {"metric": "harrell_c", "statistic": "ci_lower", "op": ">=", "threshold": 0.6},
    {"metric": "brier", "model": "cox-ph", "op": "<=", "threshold": 0.25, "horizon": "each"},
    {"metric": "calibration_slope", "op": "between", "threshold": [0.5, 2.5], "horizon": "each"},
]

Validated = tuple[dict[str, Any], Path, list[pd.DataFrame], list[Site]]


@pytest.fixture(scope="module")
def validated(gbsg2: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Validated:
    """A logistic model of grade 3 over three uneven hospitals, validated with 1000 resamples (the
    criteria on CI bounds need them)."""
    parts = split_frame(gbsg2, 3, seed=4)
    sites = [Site(f"s{i}", p, floors=FLOORS) for i, p in enumerate(parts)]
    _, artifact = train_logistic(LOGISTIC, sites=sites)
    root = tmp_path_factory.mktemp("ws")
    options = Options(n_boot=1000, skip_verification=True,
                      requirements=write_requirements(root / "req", CRITERIA))
    report = run_validation(artifact, LOGISTIC, sites, None, root / "validation", options)
    return report, root / "validation" / report["folder"].split("/")[-1], parts, sites


def envelope(part: pd.DataFrame) -> pd.DataFrame:
    """The rows a site evaluates: every input inside its declared range."""
    inside = np.all([(part[n] >= DEMO_INPUTS[n].min) & (part[n] <= DEMO_INPUTS[n].max) for n in COV], axis=0)
    return part[inside]


def on_scale(theta: np.ndarray, scale: str) -> np.ndarray:
    if scale == "logit":
        return np.log(theta / (1 - theta))
    return np.log(theta) if scale == "log" else theta


def keys(entries: list[dict[str, Any]]) -> set[tuple[str, float | None]]:
    return {(e["metric"], e["horizon"]) for e in entries if e["ci_lower"] is not None}


@pytest.mark.req("SRS-VAL-015")
def test_the_report_states_a_logistic_models_metrics_per_site_and_pooled(validated: Validated) -> None:
    report, folder, parts, _ = validated
    assert report["schema"] == "fedprog.validation/v1" and report["setting"] == "internal"
    settings = report["settings"]
    assert settings["kind"] == "logistic"
    assert settings["horizons"] == [HORIZON] and settings["time_unit"] == "day"
    assert set(report["definitions"]) == {m for m, _ in BINARY}
    assert "Steyerberg 2019" in report["definitions"]["c_statistic"]
    assert "Van Calster et al. 2016" in report["definitions"]["calibration_slope"]
    assert set(report["sites"]) == {"s0", "s1", "s2"}
    for site in report["sites"].values():
        assert keys(site["metrics"]) == BINARY and all(e["n_boot"] >= 900 for e in site["metrics"])
        assert set(site) >= {"n", "events", "suppressed", "metrics", "unavailable", "subgroups",
                             "risk_groups"}
    pooled = {e["metric"]: e for e in report["pooled"]["metrics"]}
    assert keys(report["pooled"]["metrics"]) == BINARY and report["pooled"]["sites"] == ["s0", "s1", "s2"]
    for metric, scale in (("c_statistic", "logit"), ("e_o_ratio", "log"), ("brier", "identity")):
        per_site = [next(e for e in s["metrics"] if e["metric"] == metric) for s in report["sites"].values()]
        assert {e["scale"] for e in per_site} == {scale} and pooled[metric]["scale"] == scale
        theta = np.array([e["estimate"] for e in per_site])
        w = 1.0 / np.array([e["se"] for e in per_site]) ** 2
        fixed = float(np.sum(w * on_scale(theta, scale)) / np.sum(w))
        back = 1 / (1 + np.exp(-fixed)) if scale == "logit" else np.exp(fixed) if scale == "log" else fixed
        assert pooled[metric]["estimate"] == pytest.approx(back, abs=1e-12)
        assert pooled[metric] == {**inverse_variance(theta.tolist(), [e["se"] for e in per_site], scale),
                                  "metric": metric, "horizon": pooled[metric]["horizon"],
                                  "sites": ["s0", "s1", "s2"]}
    assert (folder / "report.json").is_file()
    assert [p["file"] for p in report["plots"]] == ["calibration.png", "c_statistic.png"]
    assert all((folder / p["file"]).stat().st_size > 10_000 for p in report["plots"])


@pytest.mark.req("SRS-VAL-015")
def test_each_held_out_model_is_train_logistic_on_the_other_sites(validated: Validated) -> None:
    report, _, parts, sites = validated
    loso = report["leave_one_site_out"]
    assert set(loso["sites"]) == {"s0", "s1", "s2"}
    for i, held in enumerate(("s0", "s1", "s2")):
        entry = loso["sites"][held]
        others = [s for s in sites if s.name != held]
        study = LOGISTIC.model_copy(update={"model_id": f"{LOGISTIC.model_id}-without-{held}"})
        _, again = train_logistic(study, sites=[Site(s.name, parts[int(s.name[1:])], floors=FLOORS)
                                                for s in others])
        assert entry["possible"] is True and entry["model_sha256"] == again["sha256"]
        assert entry["training"]["sites"] == [s.name for s in others]
        rows = envelope(parts[i])
        y = rows["tgrade"].to_numpy(float)
        lp = LogisticModel.from_artifact(again).lp(rows[COV].to_numpy(float))
        expected, _ = metrics(y, lp=lp)
        got = {e["metric"]: e["estimate"] for e in entry["metrics"]}
        assert got == pytest.approx(expected, abs=1e-10)
        assert entry["n"] == round_to_k(y.size, 5) == report["sites"][held]["n"]
    assert keys(loso["pooled"]) == BINARY
    assert {(o["metric"], o["horizon"]) for o in loso["optimism"]} == BINARY


@pytest.mark.req("SRS-VAL-016")
def test_only_the_criteria_for_a_logistic_model_are_judged(validated: Validated) -> None:
    report = validated[0]
    judged = {c["id"]: c for c in report["criteria"]}
    assert set(judged) == {"SRS-X-001#1", "SRS-X-001#2", "SRS-X-001#3", "SRS-X-001#6"}
    assert [ch["where"] for ch in judged["SRS-X-001#2"]["checks"]] == ["s0", "s1", "s2"]
    assert [(ch["where"], ch["horizon"]) for ch in judged["SRS-X-001#3"]["checks"]] == [("pooled", HORIZON)]
    assert [ch["horizon"] for ch in judged["SRS-X-001#6"]["checks"]] == [HORIZON]
    c_pooled = next(e for e in report["pooled"]["metrics"] if e["metric"] == "c_statistic")
    assert judged["SRS-X-001#1"]["checks"][0]["value"] == c_pooled["ci_lower"]
    assert all(c["passed"] is True for c in judged.values()) and report["passed"] is True
    skipped = report["criteria_not_applicable"]
    why = "not applicable to a logistic model"
    assert [(s["id"], s["reason"]) for s in skipped] == [("SRS-X-001#4", why), ("SRS-X-001#5", why)]
    assert all("passed" not in s for s in skipped)


@pytest.mark.req("SRS-VAL-015")
def test_the_binary_calibration_plot_shows_each_sites_risk_groups(validated: Validated) -> None:
    report, _, _, _ = validated
    calibration = report["plots"][0]
    assert calibration["title"].startswith("Calibration: observed proportion vs mean predicted probability")
    assert calibration["caption"] == ""  # every site has risk groups
    for site in report["sites"].values():
        assert len(site["risk_groups"]) >= 2
        assert all(g["n"] % 5 == 0 and g["events"] % 5 == 0 for g in site["risk_groups"])


def criterion(**kw: Any) -> Criterion:
    return Criterion("R#1", "R", "t", Acceptance(**kw))


@pytest.mark.req("SRS-VAL-016")
def test_criteria_apply_by_the_metrics_and_model_a_kind_reports() -> None:
    cs = [criterion(metric="harrell_c", op=">=", threshold=0.5),
          criterion(metric="c_statistic", op=">=", threshold=0.5),
          criterion(metric="brier", op="<=", threshold=0.25),
          criterion(metric="brier", op="<=", threshold=0.2, model="cox-ph")]
    cox, cox_skipped = applicable(cs, "cox-ph")
    logistic, logistic_skipped = applicable(cs, "logistic")
    assert [c.acceptance.metric for c in cox] == ["harrell_c", "brier", "brier"]
    assert [s["metric"] for s in cox_skipped] == ["c_statistic"]
    assert [c.acceptance.metric for c in logistic] == ["c_statistic", "brier"]
    assert [s["reason"] for s in logistic_skipped] == ["not applicable to a logistic model"] * 2
    # a logistic model's slope is at its one horizon: a criterion without a horizon means that one
    slope = criterion(metric="calibration_slope", op="between", threshold=(0.7, 1.3))
    table: Table = {("calibration_slope", 365.25): {"estimate": 1.0}}
    [verdict] = judge([slope], table, {}, [365.25], "logistic")
    assert verdict["passed"] is True and verdict["checks"][0]["horizon"] == 365.25
    [verdict] = judge([slope], table, {}, [365.25], "cox-ph")
    assert verdict["passed"] is False  # a Cox model's slope without a horizon is on all follow-up


@pytest.mark.req("SRS-VAL-016")
def test_a_run_with_no_criterion_for_a_logistic_model_writes_nothing(validated: Validated, tmp_path: Path,
                                                                     gbsg2: pd.DataFrame) -> None:
    _, _, parts, sites = validated
    folder = write_requirements(tmp_path / "req", [CRITERIA[3], CRITERIA[4]])
    artifact = {"kind": "logistic", "inputs": [], "sha256": "0" * 64}
    with pytest.raises(CriteriaError, match="applies to a logistic model"):
        run_validation(artifact, LOGISTIC, sites, None, tmp_path / "validation",
                       Options(requirements=folder, skip_verification=True))
    assert not (tmp_path / "validation").exists()


@pytest.mark.req("SRS-VAL-015")
def test_an_external_validation_of_a_logistic_model(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    """Trained at two hospitals, judged at two others that did not train it."""
    parts = split_frame(gbsg2, 4, seed=8)
    train_at = [Site(f"t{i}", p, floors=FLOORS) for i, p in enumerate(parts[:2])]
    _, artifact = train_logistic(LOGISTIC, sites=train_at)
    external = [Site(f"e{i}", p, floors=FLOORS) for i, p in enumerate(parts[2:])]
    folder = write_requirements(tmp_path / "req", [
        {"metric": "c_statistic", "op": ">=", "threshold": 0.55, "scope": "external"},
        {"metric": "uno_c", "op": ">=", "threshold": 0.55, "scope": "external"}])
    report = run_external_validation(artifact, LOGISTIC, external, None, tmp_path / "validation",
                                     Options(n_boot=20, requirements=folder))
    assert report["setting"] == "external" and report["settings"]["kind"] == "logistic"
    assert set(report["sites"]) == {"e0", "e1"} and report["leave_one_site_out"]["sites"] == {}
    [verdict] = report["criteria"]
    assert verdict["metric"] == "c_statistic" and [c["where"] for c in verdict["checks"]] == ["e0", "e1"]
    assert [s["metric"] for s in report["criteria_not_applicable"]] == ["uno_c"]

"""The validation run: at every site, leave-one-site-out, pooled, judged, written, recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from federated import Site
from federated.analyses.runner import train
from federated.demo_study import DEMO_INPUTS, HOSPITALS, split
from federated.disclosure.policy import round_to_k
from federated.study import StudySpec
from ledger.canonical import sealed_sha256
from tests.conftest import copy_workspace, release_args
from tests.fedprog.test_cli import demo_training, run
from tests.validation.test_criteria import write_requirements
from validation.exceptions import CriteriaError
from validation.run import Options, leave_one_site_out, run_validation

pytestmark = pytest.mark.req("SRS-VAL-005")

METRICS = {("harrell_c", None), ("uno_c", None), ("integrated_brier", None), ("calibration_slope", None)} | {
    (m, h) for h in (1095.75, 1826.25)
    for m in ("td_auc", "brier", "e_o_ratio", "calibration_intercept", "calibration_slope")}


def study() -> StudySpec:
    """The demo's settings: 3 and 5 Julian years, follow-up administratively censored at 5 years."""
    return StudySpec(model_id="t", time="time", event="event", covariates=list(DEMO_INPUTS),
                     horizons=[1095.75, 1826.25], max_time=1826.25, inputs=DEMO_INPUTS)


Validated = tuple[dict[str, Any], Path]


@pytest.fixture(scope="module")
def validated(gbsg2: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Validated:
    """The run on the four demo hospitals (no consent registry), with the project's criteria."""
    sites = [Site(f"h{i}", p) for i, p in enumerate(split(gbsg2))]
    _, artifact = train(study(), sites=sites)
    root = tmp_path_factory.mktemp("ws") / "validation"
    options = Options(n_boot=1000, skip_verification=True)
    report = run_validation(artifact, study(), sites, None, root, options)
    return report, root.parent


def metric_keys(entries: list[dict[str, Any]], with_ci: bool = True) -> set[tuple[str, float | None]]:
    return {(e["metric"], e["horizon"]) for e in entries if not with_ci or e["ci_lower"] is not None}


def test_the_report_has_every_metric_with_its_ci_per_site_and_pooled(validated: Validated) -> None:
    report, ws = validated
    assert report["schema"] == "fedprog.validation/v1" and report["passed"] is True
    assert set(report["sites"]) == {"h0", "h1", "h2", "h3"}
    for site in report["sites"].values():
        assert metric_keys(site["metrics"]) == METRICS
        assert all(e["ci_lower"] <= e["estimate"] <= e["ci_upper"] for e in site["metrics"])
    pooled = report["pooled"]["metrics"]
    assert metric_keys(pooled) == METRICS and all(e["k"] == 4 and 0 <= e["i2"] <= 1 for e in pooled)
    assert set(report["subgroups"]) >= {"age < 50", "Hormone therapy: yes", "Postmenopausal state: no"}
    assert metric_keys(report["subgroups"]["age < 50"]["metrics"]) == METRICS
    assert report["verification"]["status"] == "skipped"
    assert len(report["software"]["environment_sha256"]) == 64
    ids = [c["id"] for c in report["criteria"]]
    assert "SRS-VAL-001#1" in ids and all(c["passed"] for c in report["criteria"])
    folder = ws / report["folder"]
    assert json.loads((folder / "report.json").read_text()) == report
    for plot in report["plots"]:
        assert (folder / plot["file"]).read_bytes()[:4] == b"\x89PNG"
    assert not list((ws / "validation").glob(".*partial"))


def test_leave_one_site_out_models_never_see_the_held_out_site(validated: Validated,
                                                               gbsg2: pd.DataFrame) -> None:
    """On the demo hospitals h3 (hospital-d) has a cell of 1..k-1 women on every time grid up to the
    year, so it never trains: holding out h0, h1 or h2 leaves 2 sites that can (below min_sites 3)."""
    report, _ = validated
    rows = {f"h{i}": len(p) for i, p in enumerate(split(gbsg2))}
    kept, dropped = demo_training(consent=False)
    assert dropped == ["hospital-d"]
    (cannot,) = [f"h{HOSPITALS.index(name)}" for name in dropped]
    loso = report["leave_one_site_out"]
    assert set(loso["sites"]) == set(report["sites"])
    for held, entry in loso["sites"].items():
        trainable = sorted(set(report["sites"]) - {cannot, held})
        if len(trainable) < 3:
            assert entry == {"possible": False, "reason": (
                "refused by rule min_sites: 2 site(s) taking part, at least 3 required (with 2, each site "
                f"could subtract its own share of a secure sum); dropped site '{cannot}': fewer than k "
                "patients in a cell of every time grid up to 'year' (k-cells at the source; a few patients "
                "lost to follow-up early? the study may set shift_sparse_censoring = true)")}
            continue
        assert entry["possible"] is True
        assert held not in entry["training"]["sites"] and entry["training"]["sites"] == trainable
        assert sum(rows[s] for s in trainable) == sum(kept.values())
        assert entry["training"]["n"] == round_to_k(sum(kept.values()), 5)  # released rounded
        assert entry["n"] == report["sites"][held]["n"]
        assert metric_keys(entry["metrics"]) == METRICS
    assert [h for h, e in loso["sites"].items() if e["possible"]] == [cannot]
    assert loso["pooled"] == [] and loso["optimism"] == []  # one held-out site: nothing to pool


def test_leave_one_site_out_pools_every_held_out_site(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    """With the loud opt-in to small time cells (and no administrative censoring, on the day grid) every
    hospital trains: each model is trained on the other three and the held-out results pool."""
    opt_in = StudySpec(model_id="t", time="time", event="event", covariates=list(DEMO_INPUTS),
                       horizons=[1095.75, 1826.25], inputs=DEMO_INPUTS, allow_small_time_cells=True)
    parts = split(gbsg2)
    sites = [Site(f"h{i}", p) for i, p in enumerate(parts)]
    _, artifact = train(opt_in, sites=sites)
    assert artifact["training"]["sites"] == ["h0", "h1", "h2", "h3"]
    assert artifact["training"]["n"] == round_to_k(len(gbsg2), 5)
    report = run_validation(artifact, opt_in, sites, None, tmp_path / "validation",
                            Options(n_boot=20, skip_verification=True))
    loso = report["leave_one_site_out"]
    assert set(loso["sites"]) == {"h0", "h1", "h2", "h3"}
    for held, entry in loso["sites"].items():
        assert entry["possible"] is True
        assert held not in entry["training"]["sites"] and len(entry["training"]["sites"]) == 3
        assert entry["training"]["n"] == round_to_k(len(gbsg2) - len(parts[int(held[1:])]), 5)
        assert entry["n"] == report["sites"][held]["n"]
        assert metric_keys(entry["metrics"]) == METRICS
    assert metric_keys(loso["pooled"]) == METRICS
    assert {(o["metric"], o["horizon"]) for o in loso["optimism"]} == METRICS


def test_leave_one_site_out_needs_enough_other_sites(gbsg2: pd.DataFrame) -> None:
    sites = [Site(f"h{i}", p) for i, p in enumerate(split(gbsg2, (0.4, 0.3, 0.3)))]
    _, artifact = train(study(), sites=sites)
    out = leave_one_site_out(sites, artifact, study(), None, Options(n_boot=0))
    assert all(e == {"possible": False, "reason": "2 other site(s), the policy's min_sites is 3"}
               for e in out.values())


def test_a_run_without_criteria_writes_nothing(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    folder = write_requirements(tmp_path / "req", [])
    with pytest.raises(CriteriaError):
        run_validation({}, study(), [], None, tmp_path / "validation", Options(requirements=folder))
    assert not (tmp_path / "validation").exists()


# ------------------------------------------------------------------ fedprog validate, as QA runs it
def cli_json(*args: str | Path, code: int = 0) -> dict[str, Any]:
    res = run(*args, "--json")
    assert res.returncode == code, res.stderr
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def statuses(ws: Path) -> dict[str, str]:
    return {f"{m['model_id']}@{m['version']}": m["status"]
            for m in cli_json("model", "list", "--workspace", ws)["models"]}


@pytest.fixture
def ws(demo_workspace: Path, tmp_path: Path) -> Path:
    """A copy of the demo workspace with a candidate successor ``gbsg2-recurrence@2``."""
    ws = copy_workspace(demo_workspace, tmp_path / "ws")
    cli_json("model", "retrain", "gbsg2-recurrence@1", "--workspace", ws)
    return ws


@pytest.mark.req("SYS-VAL-001")
@pytest.mark.req("RC-VAL-001")
def test_validate_writes_the_report_and_the_model_becomes_validated(ws: Path) -> None:
    report = cli_json("validate", "gbsg2-recurrence@2", "--workspace", ws, "--skip-verification",
                      "--bootstrap", "1000")
    assert report["passed"] is True and report["registry"]["recorded"] is True
    stored = json.loads((ws / report["folder"] / "report.json").read_text())
    assert {k: v for k, v in report.items() if k != "registry"} == stored
    assert set(stored["sites"]) == {"hospital-a", "hospital-b", "hospital-c", "hospital-d"}
    for site in stored["sites"].values():
        assert metric_keys(site["metrics"]) == METRICS
    assert metric_keys(stored["pooled"]["metrics"]) == METRICS and stored["settings"]["n_boot"] == 1000
    assert statuses(ws)["gbsg2-recurrence@2"] == "validated"
    ledger = cli_json("ledger", "show", "--workspace", ws)
    assert ledger["entries"]["validation"] == 2
    assert sealed_sha256(stored) == report["registry"]["report_sha256"]
    assert json.loads((ws / "validation" / f"{sealed_sha256(stored)}.json").read_text()) == stored


def write_impossible(folder: Path) -> Path:
    return write_requirements(folder, [{"metric": "harrell_c", "statistic": "ci_lower", "op": ">=",
                                        "threshold": 0.99, "scope": "pooled"}])


@pytest.mark.req("SYS-VAL-001")
@pytest.mark.req("RC-VAL-001")
def test_a_failing_criterion_exits_1_and_the_model_is_not_validated(ws: Path, tmp_path: Path) -> None:
    res = run("validate", "gbsg2-recurrence@2", "--workspace", ws, "--skip-verification", "--bootstrap", "20",
              "--requirements", write_impossible(tmp_path / "req"))
    assert res.returncode == 1, res.stderr
    assert "SRS-X-001#1: harrell_c ci_lower >= 0.99" in res.stdout and "FAIL" in res.stdout
    assert statuses(ws)["gbsg2-recurrence@2"] == "candidate"
    refused = run("model", "release", "gbsg2-recurrence@2", "--workspace", ws, *release_args(ws))
    assert refused.returncode == 2 and "only a validated model" in refused.stderr


@pytest.mark.req("RC-VAL-001")
def test_a_model_with_zeroed_coefficients_fails(ws: Path) -> None:
    from federated.analyses.artifact import seal
    from fedprog.workspace import Workspace

    models = Workspace(ws).models
    entry = models.get("gbsg2-recurrence@2")
    art = models.artifact(entry.ref)
    zero = seal({**art, "version": "3", "coefficients": dict.fromkeys(art["coefficients"], 0.0)})
    models.register(zero, "gbsg2-recurrence@3", study=models.study_of(entry))
    report = cli_json("validate", "gbsg2-recurrence@3", "--workspace", ws, "--skip-verification",
                      "--bootstrap", "20", code=1)
    failed = {c["id"] for c in report["criteria"] if not c["passed"]}
    assert {"SRS-VAL-001#1", "SRS-VAL-001#2"} <= failed
    for site in report["sites"].values():  # every pair tied: C is 0.5, no slope to refit
        c = next(e for e in site["metrics"] if e["metric"] == "harrell_c")
        assert c["estimate"] == c["ci_lower"] == c["ci_upper"] == 0.5
        assert ("calibration_slope", None) not in metric_keys(site["metrics"], with_ci=False)
    assert statuses(ws)["gbsg2-recurrence@3"] == "candidate"


def test_validate_runs_the_verification_and_keeps_the_junit_evidence(demo_workspace: Path,
                                                                     tmp_path: Path) -> None:
    ws = copy_workspace(demo_workspace, tmp_path / "ws")
    # the demo's own bootstrap count: the pooled 3-year calibration slope (inverse-variance weights from
    # the bootstrap SEs) lies near the criterion's 1.3, so fewer resamples can tip it over
    report = cli_json("validate", "gbsg2-recurrence@1", "--workspace", ws, "--bootstrap", "1000",
                      "--verification-args", "tests/validation/test_pooling.py -q")
    ver = report["verification"]
    assert ver["status"] == "passed" and ver["tests"] == 4 and ver["failures"] == 0
    junit = ws / report["folder"] / "junit.xml"
    assert junit.is_file() and "<testsuite" in junit.read_text()
    assert [c for c in report["criteria"] if c["id"] == "software-verification"][0]["passed"] is True
    # a released model is validated all the same, but its state cannot change: nothing is recorded
    assert report["registry"]["recorded"] is False and "released" in report["registry"]["reason"]


@pytest.mark.parametrize(("args", "message"), [
    (("--bootstrap", "5"), "--bootstrap"),
    (("--verification-args", "'unclosed"), "--verification-args"),
    (("--requirements", "/nonexistent/req"), "requirements folder not found"),
])
def test_bad_input_exits_2_with_one_line(demo_workspace: Path, args: tuple[str, ...], message: str) -> None:
    res = run("validate", "gbsg2-recurrence@1", "--workspace", demo_workspace, "--skip-verification", *args)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_an_unknown_model_exits_2(demo_workspace: Path) -> None:
    res = run("validate", "no-such-model", "--workspace", demo_workspace, "--skip-verification")
    assert res.returncode == 2 and res.stderr.startswith("fedprog: error: no model 'no-such-model'")


@pytest.mark.req("SYS-REG-001")
@pytest.mark.req("RC-VAL-001")
def test_the_demo_validates_before_it_releases(demo_workspace: Path) -> None:
    from fedprog.workspace import Workspace

    models = Workspace(demo_workspace).models
    entry = models.get("gbsg2-recurrence@1")
    assert [s for _, s in entry.history] == ["candidate", "validated", "released"]
    report = models.report(entry)
    folder = demo_workspace / report["folder"]
    assert entry.validation is not None
    stored = json.loads((folder / "report.json").read_text())
    assert sealed_sha256(stored) == entry.validation["report_sha256"]
    assert report["passed"] is True and report["verification"]["status"] == "skipped"
    assert {p["file"] for p in report["plots"]} <= {p.name for p in folder.iterdir()}

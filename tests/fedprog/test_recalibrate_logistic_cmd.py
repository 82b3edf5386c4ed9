"""``fedprog model recalibrate REF --site NAME`` for a logistic model: the demo's logistic model (grade 3
at surgery) trained over the four hospitals, updated at the Rotterdam tumour bank — added as an external
hospital that never trained, its table :func:`federated.demo_study.rotterdam_table` (which records the
grade) — and registered as a candidate that ``fedprog validate`` validates like any other."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from federated.demo_study import EXTERNAL_SITE, LOGISTIC_COVARIATES, LOGISTIC_MODEL, rotterdam_table
from fedprog.workspace import Workspace
from prognosis.logistic import LogisticModel, expit
from tests.conftest import copy_workspace, release_args
from tests.fedprog.test_cli import run
from tests.fedprog.test_logistic_workspace import _logistic_study_file

MODEL = f"{LOGISTIC_MODEL}@1"
NEW = f"{LOGISTIC_MODEL}-recalibrated-{EXTERNAL_SITE}"


@pytest.fixture(scope="module")
def ws(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo workspace with the logistic study approved at every hospital and trained, and the
    Rotterdam tumour bank added as an external hospital that approved the study for the model."""
    ws = copy_workspace(demo_workspace, tmp_path_factory.mktemp("recal-logistic") / "ws")
    study = _logistic_study_file(ws)
    for site in ("hospital-a", "hospital-b", "hospital-c", "hospital-d"):
        assert run("site", "approve", "--site", site, study, "--workspace", ws).returncode == 0
    trained = run("train", "--workspace", ws, "--study", study)
    assert trained.returncode == 0, trained.stderr
    path = ws.parent / "rotterdam.csv"
    rotterdam_table().to_csv(path, index=False)
    added = run("site", "add", EXTERNAL_SITE, "--data", path, "--external", "--legal-basis",
                "GDPR Art. 9(2)(j), retrospective research", "--workspace", ws)
    assert added.returncode == 0, added.stderr
    approved = run("site", "approve", "--site", EXTERNAL_SITE, "--model", MODEL, "--workspace", ws)
    assert approved.returncode == 0, approved.stderr
    return ws


@pytest.fixture(scope="module")
def recalibrated(ws: Path) -> subprocess.CompletedProcess[str]:
    return run("model", "recalibrate", MODEL, "--site", EXTERNAL_SITE, "--workspace", ws)


@pytest.mark.req("SRS-VAL-017")
def test_a_logistic_model_recalibrated_at_a_new_hospital_is_a_candidate(
        ws: Path, recalibrated: subprocess.CompletedProcess[str]) -> None:
    assert recalibrated.returncode == 0, recalibrated.stderr
    registry = Workspace(ws).models
    entry = registry.get(f"{NEW}@1")
    artifact = registry.artifact(entry.ref)
    assert entry.status == "candidate" and entry.predecessor == MODEL and artifact["kind"] == "logistic"
    assert entry.consent_checkpoint == artifact["training"]["consent_checkpoint"] is not None
    rec = artifact["training"]["recalibration"]
    assert rec["site"] == EXTERNAL_SITE and artifact["training"]["sites"] == [EXTERNAL_SITE]
    out = recalibrated.stdout
    lo, hi = rec["slope_ci"]
    assert f"{NEW}@1 recalibrated from {MODEL} at {EXTERNAL_SITE}" in out
    assert f"calibration slope {rec['slope']:.3f} (95% CI {lo:.3f}–{hi:.3f})" in out
    assert f"calibration intercept {rec['intercept']:.3f}" in out and f"{rec['n']} patients" in out
    assert f"sha256 {artifact['sha256']}" in out and f"fedprog validate {NEW}@1" in out
    old, new = LogisticModel.from_artifact(registry.artifact(MODEL)), LogisticModel.from_artifact(artifact)
    x = rotterdam_table()[list(LOGISTIC_COVARIATES)].to_numpy(float)
    np.testing.assert_allclose(new.probability(x), expit(rec["intercept"] + rec["slope"] * old.lp(x)),
                               rtol=0, atol=1e-12)
    assert new.inputs == old.inputs and registry.study_of(entry) == registry.study_of(registry.get(MODEL))


@pytest.mark.req("SRS-VAL-017")
def test_fedprog_validate_validates_the_recalibrated_logistic_model(
        ws: Path, recalibrated: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    """Validated at the study's hospitals like any candidate (binary metrics, leave-one-site-out), the
    release gate then judging its report; before, the gate refuses it."""
    assert recalibrated.returncode == 0, recalibrated.stderr
    copy = copy_workspace(ws, tmp_path / "ws")
    gate = run("model", "release", f"{NEW}@1", "--workspace", copy, *release_args(copy))
    assert gate.returncode == 2 and "only a validated model" in gate.stderr
    val = run("validate", f"{NEW}@1", "--workspace", copy, "--skip-verification", "--bootstrap", "20",
              "--json")
    report = json.loads(val.stdout)
    assert val.returncode == (0 if report["passed"] else 1), val.stderr
    assert report["settings"]["kind"] == "logistic"
    assert {e["metric"] for e in report["pooled"]["metrics"]} >= {"c_statistic", "calibration_slope"}
    registry = Workspace(copy).models
    assert registry.report(registry.get(f"{NEW}@1"))["sha256"] == report["sha256"]  # anchored for the gate

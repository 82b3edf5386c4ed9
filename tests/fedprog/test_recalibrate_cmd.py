"""``fedprog model recalibrate REF --site NAME``: a model updated at one site, registered as a new model
that goes through the release gate like any other."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fedprog.workspace import Workspace
from prognosis import CoxModel
from tests.conftest import copy_workspace, release_args

MODEL = "gbsg2-recurrence@1"
NEW = "gbsg2-recurrence-recalibrated-hospital-a"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedprog", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def ws(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workspace(demo_workspace, tmp_path_factory.mktemp("recal") / "ws")


@pytest.fixture(scope="module")
def recalibrated(ws: Path) -> subprocess.CompletedProcess[str]:
    return run("model", "recalibrate", MODEL, "--site", "hospital-a", "--workspace", ws)


@pytest.mark.req("SRS-VAL-010")
def test_recalibrate_registers_a_candidate_linked_to_its_predecessor(
        ws: Path, recalibrated: subprocess.CompletedProcess[str]) -> None:
    assert recalibrated.returncode == 0, recalibrated.stderr
    out = recalibrated.stdout
    registry = Workspace(ws).models
    entry = registry.get(f"{NEW}@1")
    artifact = registry.artifact(entry.ref)
    rec = artifact["training"]["recalibration"]
    assert entry.status == "candidate" and entry.predecessor == MODEL and entry.job == f"{NEW}@1"
    assert entry.consent_checkpoint == artifact["training"]["consent_checkpoint"] is not None
    assert rec["site"] == "hospital-a" and artifact["training"]["sites"] == ["hospital-a"]
    lo, hi = rec["slope_ci"]
    assert f"calibration slope {rec['slope']:.3f} (95% CI {lo:.3f}–{hi:.3f})" in out
    assert f"{rec['n']} patients, {rec['events']} events" in out
    assert f"{NEW}@1 recalibrated from {MODEL} at hospital-a" in out
    assert f"sha256 {artifact['sha256']}" in out
    assert f"fedprog validate {NEW}@1 --workspace {ws}" in out and f"fedprog model release {NEW}@1" in out
    old = CoxModel.from_artifact(registry.artifact(MODEL))
    new = CoxModel.from_artifact(artifact)
    assert new.beta.tolist() == (rec["slope"] * old.beta).tolist() and new.inputs == old.inputs
    # kept with the predecessor's study, so that validation runs under the sites' approval
    assert registry.study_of(entry) == registry.study_of(registry.get(MODEL))


@pytest.mark.req("SRS-VAL-010")
def test_the_release_gate_refuses_it_before_validation(
        ws: Path, recalibrated: subprocess.CompletedProcess[str]) -> None:
    assert recalibrated.returncode == 0, recalibrated.stderr
    res = run("model", "release", f"{NEW}@1", "--workspace", ws, *release_args(ws))
    assert res.returncode == 2
    assert res.stderr.startswith("fedprog: error: ") and "only a validated model" in res.stderr
    assert res.stderr.count("\n") == 1


@pytest.mark.req("SRS-VAL-010")
def test_a_second_recalibration_is_the_next_version_and_json_is_the_artifact(
        ws: Path, recalibrated: subprocess.CompletedProcess[str]) -> None:
    assert recalibrated.returncode == 0, recalibrated.stderr
    res = run("model", "recalibrate", MODEL, "--site", "hospital-a", "--workspace", ws, "--json")
    assert res.returncode == 0, res.stderr
    artifact = json.loads(res.stdout)
    assert (artifact["model_id"], artifact["version"]) == (NEW, "2")
    assert Workspace(ws).models.get(f"{NEW}@2").sha256 == artifact["sha256"]


@pytest.mark.req("SRS-PRIV-030")
@pytest.mark.parametrize("args, message", [
    (("nope@1", "--site", "hospital-a"), "no model 'nope@1'"),
    ((MODEL, "--site", "nowhere"), "unknown site 'nowhere'"),
    # the smallest hospital: a yearly cell of its patients inside the envelope holds fewer than k
    ((MODEL, "--site", "hospital-d"), "site 'hospital-d': a cell of the year grid holds fewer than 5"),
])
def test_bad_input_is_one_line_and_exit_2(ws: Path, args: tuple[str, ...], message: str) -> None:
    res = run("model", "recalibrate", *args, "--workspace", ws)
    assert res.returncode == 2, res.stdout
    assert re.fullmatch(r"fedprog: error: [^\n]+\n", res.stderr), res.stderr
    assert message in res.stderr

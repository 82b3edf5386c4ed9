"""``fedprog site approve|show``: the operator's decisions, and a site that answers nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import copy_workspace
from tests.fedprog.test_cli import run


@pytest.mark.req("SRS-PRIV-010")
def test_approve_pins_the_study_and_an_unapproved_site_refuses_training(demo_workspace: Path,
                                                                          tmp_path: Path) -> None:
    ws = copy_workspace(demo_workspace, tmp_path / "ws")
    shown = json.loads(run("site", "show", "--site", "hospital-a", "--workspace", ws, "--json").stdout)
    assert len(shown["approved"]) == 1 and shown["approved"][0]["peers"][0] == "hospital-a"
    digest = shown["approved"][0]["sha256"]
    # hospital-c's operator withdraws the approval: the same study is refused there
    (ws / "sites" / "hospital-c" / "approved" / f"{digest}.json").unlink()
    res = run("model", "retrain", "gbsg2-recurrence@1", "--workspace", ws)
    assert res.returncode == 2 and "hospital-c" in res.stderr and "not approved" in res.stderr
    study = next((ws / "models").glob("*.study.json"))
    approved = run("site", "approve", study, "--site", "hospital-c", "--workspace", ws, "--json")
    out = json.loads(approved.stdout)
    assert out["study"] == digest and out["peers"] == ["hospital-a", "hospital-b", "hospital-c", "hospital-d"]
    bad = run("site", "show", "--site", "nowhere", "--workspace", ws)
    assert bad.returncode == 2 and "unknown site 'nowhere'" in bad.stderr

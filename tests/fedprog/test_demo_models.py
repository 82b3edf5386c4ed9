"""The demo's second model, as a user meets it: released on the same hospitals, served by its id and
scored over FHIR with the example request the demo wrote for it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest

from federated.demo_study import AGE_KNOTS, INTERACTION, SPLINE_MODEL
from tests.conftest import copy_workspace
from tests.fedprog.serving import serving, token
from tests.fedprog.test_cli import run


@pytest.mark.req("SYS-MOD-001")
@pytest.mark.req("SRS-MOD-007", "SRS-MOD-004")
def test_the_demo_releases_a_spline_model_and_it_is_scored_over_fhir(second_model_workspace: Path,
                                                                     tmp_path: Path) -> None:
    ws = copy_workspace(second_model_workspace, tmp_path / "ws")
    printed = (ws / "demo-output.txt").read_text(encoding="utf-8")
    assert "model 1 of 2, gbsg2-recurrence-spline" in printed
    assert "serve --workspace" in printed and "--model gbsg2-recurrence-spline --port 8081" in printed
    listed = json.loads(run("model", "list", "--workspace", ws, "--json").stdout)
    states = {m["job"]: m["status"] for m in listed["models"]}
    assert states[f"{SPLINE_MODEL}@1"] == "released" and states["gbsg2-recurrence@1"] == "released"
    art = json.loads(run("model", "show", SPLINE_MODEL, "--workspace", ws, "--json").stdout)
    age = next(i for i in art["inputs"] if i["name"] == "age")
    assert age["spline"]["knots"] == list(AGE_KNOTS) and art["interactions"] == [list(INTERACTION)]
    assert {"age", "age'", "age''", ":".join(INTERACTION)} <= set(art["coefficients"])
    with serving(ws, tmp_path / "serve.log", "--model", SPLINE_MODEL) as base:
        bearer = token(ws, base, "user/RiskAssessment.c")
        body = (ws / "examples" / f"predict-risk-{SPLINE_MODEL}.json").read_bytes()  # what the demo wrote
        resp = httpx.post(f"{base}/Patient/$predict-risk", content=body, timeout=30,
                          headers={"Authorization": f"Bearer {bearer}",
                                   "Content-Type": "application/fhir+json"})
    assert resp.status_code == 200, resp.text
    ra = resp.json()
    assert {"system": "urn:fedprog:model-sha256", "code": art["sha256"]} in ra["method"]["coding"]
    parts = [e["valueDecimal"] for b in ra["basis"] for e in b["extension"]]
    parts += [x["valueDecimal"] for e in ra.get("extension",
                                                []) for x in e["extension"] if x["url"] == "contribution"]
    assert len(parts) == len(art["inputs"]) + 1
    assert sum(parts) == pytest.approx(math.log(ra["prediction"][0]["relativeRisk"]), abs=1e-12)


@pytest.mark.req("SRS-MOD-019")
def test_the_spline_model_recalibrated_at_a_hospital_keeps_its_design(second_model_workspace: Path,
                                                                        tmp_path: Path) -> None:
    ws = copy_workspace(second_model_workspace, tmp_path / "ws")
    res = run("model", "recalibrate", f"{SPLINE_MODEL}@1", "--site", "hospital-a", "--workspace", ws)
    assert res.returncode == 0, res.stderr
    old = json.loads(run("model", "show", f"{SPLINE_MODEL}@1", "--workspace", ws, "--json").stdout)
    new = json.loads(run("model", "show", f"{SPLINE_MODEL}-recalibrated-hospital-a@1", "--workspace", ws,
                         "--json").stdout)
    slope = new["training"]["recalibration"]["slope"]
    assert [i.get("spline") for i in new["inputs"]] == [i.get("spline") for i in old["inputs"]]
    assert new["interactions"] == old["interactions"] and set(new["coefficients"]) == set(old["coefficients"])
    for column, beta in old["coefficients"].items():  # every column scaled by the site's calibration slope
        assert new["coefficients"][column] == pytest.approx(slope * beta, rel=1e-12, abs=1e-15)
    assert new["baseline_survival"]["center"] == old["baseline_survival"]["center"]

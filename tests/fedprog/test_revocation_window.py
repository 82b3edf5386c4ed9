"""Issue 15 end to end on a demo workspace: a consent withdrawal flags the released model ``retrain
due``; a real ``fedprog serve`` on loopback keeps serving it and says so (CapabilityStatement,
risk page), ``fedprog model list|due`` show it; past its deadline the real server answers 503."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.riskassessment import RiskAssessment

from device.fhir.resources import RETRAIN_DUE_URL
from device.registry import ModelRegistry
from device.revocation import RevocationTerms, terms_of
from federated.study import RevocationPolicy, StudySpec
from fedprog.workspace import Workspace
from tests.conftest import copy_workspace
from tests.fedprog.serving import serving, token
from tests.fedprog.test_cli import run

MODEL = "gbsg2-recurrence@1"
REVOKE = ("consent", "revoke", "--site", "hospital-a", "--patient", "A-0002")  # a patient the model used


@pytest.fixture
def ws(demo_workspace: Path, tmp_path: Path) -> Path:
    return copy_workspace(demo_workspace, tmp_path / "ws")


def cli_json(*args: str | Path) -> Any:
    res = run(*args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def needed(ws: Path) -> int:
    """The study's min_cell_count: the demo declares no min_revocations."""
    [study] = (ws / "models").glob("*.study.json")
    spec = json.loads(study.read_text())
    assert spec["revocation"] == {"policy": "window", "window_days": 30.0, "min_revocations": None}
    return int(spec["policy"]["min_cell_count"])


def predict(ws: Path, base: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token(ws, base, 'user/RiskAssessment.c')}",
               "Content-Type": "application/fhir+json"}
    body = (ws / "examples" / "predict-risk.json").read_bytes()  # what fedprog demo wrote for curl
    return httpx.post(f"{base}/Patient/$predict-risk", content=body, headers=headers, timeout=30)


def retrain_extension(cap: dict[str, Any]) -> dict[str, Any]:
    """The CapabilityStatement's retrain-due extension as {sub-extension url: value}."""
    [ext] = [e for e in cap.get("extension", []) if e["url"] == RETRAIN_DUE_URL]
    return {sub["url"]: next(v for k, v in sub.items() if k.startswith("value")) for sub in ext["extension"]}


@pytest.mark.req("SRS-CONS-007", "SRS-DEV-007", "RC-CONS-003")
def test_a_withdrawal_flags_the_model_which_stays_served_and_says_so(ws: Path, tmp_path: Path) -> None:
    k = needed(ws)
    with serving(ws, tmp_path / "serve.log") as base:
        origin = base.removesuffix("/fhir")
        assert predict(ws, base).status_code == 200
        before = httpx.get(f"{base}/metadata", timeout=30).json()
        assert "extension" not in before and MODEL in before["implementation"]["description"]
        assert cli_json(*REVOKE, "--workspace", ws)["affected_models"] == [MODEL]
        revoked_at = datetime.now(UTC)
        resp = predict(ws, base)
        assert resp.status_code == 200, resp.text  # still in service: no 503
        RiskAssessment.model_validate(resp.json())
        cap = httpx.get(f"{base}/metadata", timeout=30).json()
        CapabilityStatement.model_validate(cap)  # still valid R4
        flag = retrain_extension(cap)
        assert (flag["model"], flag["revocations"], flag["needed"], flag["due"]) == (MODEL, 1, k, False)
        deadline = datetime.fromisoformat(flag["deadline"])
        assert abs(deadline - revoked_at - timedelta(days=30)) < timedelta(minutes=2)
        assert f"RETRAIN DUE: 1 of {k} revocations" in cap["implementation"]["description"]
        facts = httpx.get(f"{origin}/app/model.json", timeout=30).json()
        assert facts["ref"] == MODEL and facts["retrain_due"]["deadline"] == flag["deadline"]
        notice = facts["retrain_due"]["notice"]
        assert "since withdrawn consent" in notice and flag["deadline"][:10] in notice
        page = httpx.get(f"{origin}/app/", timeout=30).text
        script = httpx.get(f"{origin}/app/app.js", timeout=30).text
        assert 'id="retrain-notice"' in page and 'id="retrain-text"' in page
        assert "m.retrain_due.notice" in script and 'show("retrain-notice"' in script
    listed = run("model", "list", "--workspace", ws)
    day = flag["deadline"][:10]
    assert f"{MODEL}  released" in listed.stdout
    assert f"RETRAIN DUE: 1 of {k} revocations, deadline {day}" in listed.stdout
    assert "successor due at" in listed.stdout
    [due] = cli_json("model", "due", "--workspace", ws)["due"]
    assert (due["model_id"], due["version"]) == ("gbsg2-recurrence", "1")
    assert due["status"] == "released" and due["retrain_due"]["revocations"] == 1
    assert cli_json("ledger", "show", "--workspace", ws)["entries"]["retrain-due"] == 1  # opened once
    assert cli_json("ledger", "verify", "--workspace", ws)["ok"] is True


@pytest.mark.req("SYS-REG-001")
@pytest.mark.req("SRS-CONS-009", "SRS-DEV-007", "RC-CONS-003")
def test_past_its_deadline_the_flagged_model_is_out_of_service(ws: Path, tmp_path: Path) -> None:
    workspace = Workspace(ws)
    site = workspace.registry("hospital-a")
    site.revoke("A-0002", date=datetime.now(UTC).date().isoformat())  # a site's own path: no window yet
    site.close()
    assert cli_json("model", "list", "--workspace", ws)["models"][0]["retrain_due"]["since"] is None
    month_ago = datetime.now(UTC) - timedelta(days=31)
    registry = ModelRegistry(ws / "models", workspace.ledger, clock=lambda: month_ago,
                             people=workspace.people(), demonstration=workspace.demonstration)
    opened = registry.note_revocations()
    assert len(opened) == 1  # the window opened 31 days ago (simulated clock)
    workspace.ledger.close()
    listed = run("model", "list", "--workspace", ws).stdout
    assert f"{MODEL}  affected" in listed and "deadline passed" in listed
    [due] = cli_json("model", "due", "--workspace", ws)["due"]
    assert due["status"] == "affected" and due["retrain_due"]["expired"] is True
    with serving(ws, tmp_path / "serve.log") as base:
        resp = predict(ws, base)
        assert resp.status_code == 503 and resp.json()["resourceType"] == "OperationOutcome"
        assert "no released model" in resp.json()["issue"][0]["diagnostics"]
        cap = httpx.get(f"{base}/metadata", timeout=30).json()
        assert "no model in service" in cap["implementation"]["description"] and "extension" not in cap


@pytest.mark.req("SRS-CONS-008")
def test_the_device_reads_the_revocation_policy_the_study_declares() -> None:
    assert set(RevocationTerms.model_fields) == set(RevocationPolicy.model_fields)
    default = StudySpec(time="t", event="e")
    terms = terms_of(json.loads(default.model_dump_json(exclude={"sites"})))
    assert (terms.policy, terms.window_days) == (default.revocation.policy, default.revocation.window_days)
    assert terms.min_revocations == default.policy.min_cell_count  # default: the study's k
    assert terms_of(None) == terms  # a model registered without its settings gets the defaults
    declared = RevocationPolicy(policy="immediate", window_days=7, min_revocations=2)
    custom = StudySpec(time="t", event="e", revocation=declared)
    expected = RevocationTerms.model_validate(declared.model_dump())
    assert terms_of(json.loads(custom.model_dump_json())) == expected

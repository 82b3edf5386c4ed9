"""The FHIR server through its real ASGI app: every status in the contract, the stored
RiskAssessment, batches, the audit trail, and scores equal to the artifact's formula."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationdefinition import OperationDefinition
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.riskassessment import RiskAssessment

from device.fhir.app import create_app
from device.fhir.auth import TokenVerifier, issue_token, load_or_create_key
from device.fhir.examples import parameters
from device.fhir.http import ServerState
from device.fhir.resources import INTERVAL_URL, SHA256_SYSTEM
from device.fhir.service import FixedModel
from device.fhir.store import FhirStore
from device.model import PrognosticModel

from .conftest import DEMO_VALUES, covariates, patient_bundle

AUD = "http://testserver/fhir"
PREDICT = "/fhir/Patient/$predict-risk"
FHIR_JSON = "application/fhir+json"


@pytest.fixture
def server(tmp_path: Path, demo_model: PrognosticModel) -> tuple[TestClient, Any, ServerState]:
    key = load_or_create_key(tmp_path / "token.pem")
    st = ServerState(base_url=AUD, verifier=TokenVerifier(key.public_key(), AUD),
                     store=FhirStore(tmp_path / "fhir.sqlite"), models=FixedModel(demo_model),
                     software_version="test", started="2026-11-29T00:00:00Z")
    return TestClient(create_app(st)), key, st


RW = "user/RiskAssessment.c user/RiskAssessment.rs"


def bearer(key: Any, scopes: str = RW, **kw: Any) -> dict[str, str]:
    return {"Authorization": "Bearer " + issue_token(key, scopes=scopes, subject=kw.pop("subject", "dr-who"),
                                                     audience=kw.pop("audience", AUD), **kw),
            "Content-Type": FHIR_JSON}


def outcome(resp: Any, status: int) -> dict[str, Any]:
    """The response is an OperationOutcome (valid R4) with ``status``."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = resp.json()
    OperationOutcome.model_validate(body)
    assert body["issue"][0]["severity"] == "error" and body["issue"][0]["diagnostics"]
    return body


def expected_risk(art: dict[str, Any], x: dict[str, float], horizon: float) -> float:
    """1 − S0(h)^exp(β·(x − c)), computed from the artifact JSON alone (the contract's formula)."""
    names = [i["name"] for i in art["inputs"]]
    base = art["baseline_survival"]
    lp = sum(art["coefficients"][n] * (x[n] - c) for n, c in zip(names, base["center"], strict=True))
    k = max(i for i, t in enumerate(base["times"]) if t <= horizon)
    return 1.0 - base["survival"][k] ** math.exp(lp)


# ---------------------------------------------------------------- metadata
@pytest.mark.req("SRS-FHIR-001")
def test_metadata_is_an_r4_capability_statement_listing_predict_risk(server: Any) -> None:
    client, _, _ = server
    resp = client.get("/fhir/metadata")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith(FHIR_JSON)
    cs = resp.json()
    CapabilityStatement.model_validate(cs)
    assert cs["fhirVersion"] == "4.0.1"
    ops = cs["rest"][0]["operation"]
    assert [o["name"] for o in ops] == ["predict-risk"]
    opdef = client.get("/fhir/OperationDefinition/predict-risk").json()
    OperationDefinition.model_validate(opdef)
    assert opdef["url"] == ops[0]["definition"] and opdef["code"] == "predict-risk"


# ---------------------------------------------------------------- predict
@pytest.mark.req("SYS-DEV-001")
@pytest.mark.req("SRS-FHIR-002")
def test_predict_returns_a_stored_risk_assessment_equal_to_the_formula(server: Any,
                                                                       demo_model: PrognosticModel) -> None:
    client, key, _ = server
    bundle = patient_bundle(DEMO_VALUES, patient_id="p7")
    resp = client.post(PREDICT, json=parameters(bundle), headers=bearer(key))
    assert resp.status_code == 200, resp.text
    ra = resp.json()
    RiskAssessment.model_validate(ra)
    art = demo_model.artifact.model_dump(by_alias=True)
    x = dict(zip(demo_model.names, covariates(demo_model, DEMO_VALUES), strict=True))
    assert ra["status"] == "final" and ra["subject"] == {"reference": "Patient/p7"}
    assert len(ra["prediction"]) == len(demo_model.horizons)
    for pred, h in zip(ra["prediction"], demo_model.horizons, strict=True):
        p = pred["probabilityDecimal"]
        assert p == pytest.approx(expected_risk(art, x, h), abs=1e-9)
        assert pred["whenRange"]["high"]["value"] == h and pred["whenRange"]["low"]["value"] == 0
        (interval,) = [e["valueRange"] for e in pred["extension"] if e["url"] == INTERVAL_URL]
        assert 0 <= interval["low"]["value"] <= p <= interval["high"]["value"] <= 1
    contributions = [e["valueDecimal"] for b in ra["basis"] for e in b["extension"]]
    assert len(contributions) == len(demo_model.inputs)
    for pred in ra["prediction"]:
        assert sum(contributions) == pytest.approx(math.log(pred["relativeRisk"]), abs=1e-12)
    codes = {c["system"]: c for c in ra["method"]["coding"]}
    assert codes[SHA256_SYSTEM]["code"] == demo_model.sha256
    assert {b["reference"] for b in ra["basis"]} >= {"Observation/p7-tsize", "Observation/p7-age"}
    assert "Intended use" in ra["note"][0]["text"]
    assert resp.headers["location"] == f"{AUD}/RiskAssessment/{ra['id']}"
    stored = client.get(f"/fhir/RiskAssessment/{ra['id']}", headers=bearer(key))
    assert stored.status_code == 200 and stored.json() == ra
    found = client.get("/fhir/RiskAssessment", params={"subject": "Patient/p7"}, headers=bearer(key)).json()
    Bundle.model_validate(found)
    assert found["total"] == 1 and found["entry"][0]["resource"] == ra


@pytest.mark.req("SRS-FHIR-006", "RC-UNIT-001")
def test_a_bare_bundle_and_unit_conversion_give_the_same_scores(server: Any) -> None:
    client, key, _ = server
    a = client.post(PREDICT, json=parameters(patient_bundle(DEMO_VALUES)), headers=bearer(key)).json()
    in_cm = {**DEMO_VALUES, "tsize": DEMO_VALUES["tsize"] / 10}
    b = client.post(PREDICT, json=patient_bundle(in_cm, units={"tsize": "cm"}), headers=bearer(key)).json()
    assert [p["probabilityDecimal"] for p in a["prediction"]] == pytest.approx(
        [p["probabilityDecimal"] for p in b["prediction"]], abs=1e-12)


@pytest.mark.req("SRS-FHIR-003")
def test_a_batch_scores_each_patient_and_a_bad_entry_fails_only_itself(server: Any) -> None:
    client, key, _ = server
    good = [parameters(patient_bundle({**DEMO_VALUES, "pnodes": n}, patient_id=f"b{n}")) for n in (1, 9)]
    bad = parameters(patient_bundle({**DEMO_VALUES, "tsize": 999.0}, patient_id="bad"))
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": r, "request": {"method": "POST", "url": "Patient/$predict-risk"}}
        for r in (good[0], bad, good[1])]}
    for path in (PREDICT, "/fhir"):
        resp = client.post(path, json=batch, headers=bearer(key))
        assert resp.status_code == 200, resp.text
        out = resp.json()
        Bundle.model_validate(out)
        assert out["type"] == "batch-response"
        statuses = [e["response"]["status"] for e in out["entry"]]
        assert statuses[0] == statuses[2] == "200 OK" and statuses[1].startswith("422")
        issue = out["entry"][1]["response"]["outcome"]["issue"][0]
        assert "Tumour size: 999 mm is outside" in issue["diagnostics"] and issue["expression"]
        risks = [out["entry"][k]["resource"]["prediction"][0]["probabilityDecimal"] for k in (0, 2)]
        assert risks[0] < risks[1]  # more positive nodes, higher risk
        rid = out["entry"][2]["resource"]["id"]
        assert client.get(f"/fhir/RiskAssessment/{rid}", headers=bearer(key)).status_code == 200


# ---------------------------------------------------------------- errors
@pytest.mark.req("SRS-FHIR-004")
def test_unparseable_bodies_are_400(server: Any) -> None:
    client, key, _ = server
    outcome(client.post(PREDICT, content=b"{not json", headers=bearer(key)), 400)
    outcome(client.post(PREDICT, content=b"[1, 2]", headers=bearer(key)), 400)
    outcome(client.post(PREDICT, content=b'{"a": NaN}', headers=bearer(key)), 400)
    bundle = patient_bundle(DEMO_VALUES)
    bundle["entry"][1]["resource"]["status"] = 17
    outcome(client.post(PREDICT, json=bundle, headers=bearer(key)), 400)


@pytest.mark.req("SRS-FHIR-004", "SRS-AUTH-001", "RC-AUTH-001")
def test_tokens_are_required_and_checked_401(server: Any, tmp_path: Path) -> None:
    client, key, _ = server
    body = parameters(patient_bundle(DEMO_VALUES))
    outcome(client.post(PREDICT, json=body, headers={"Content-Type": FHIR_JSON}), 401)
    outcome(client.post(PREDICT, json=body, headers=bearer(key, now=1_000_000)), 401)  # expired
    outcome(client.post(PREDICT, json=body, headers=bearer(key, audience="http://elsewhere/fhir")), 401)
    other = load_or_create_key(tmp_path / "other.pem")
    outcome(client.post(PREDICT, json=body, headers=bearer(other)), 401)
    outcome(client.get("/fhir/RiskAssessment/x", headers={"Authorization": "Basic abc"}), 401)


@pytest.mark.req("SRS-FHIR-004", "SRS-AUTH-002", "RC-AUTH-001")
def test_scopes_are_enforced_403(server: Any) -> None:
    client, key, _ = server
    body = parameters(patient_bundle(DEMO_VALUES, patient_id="p1"))
    outcome(client.post(PREDICT, json=body, headers=bearer(key, "user/RiskAssessment.rs")), 403)
    ra = client.post(PREDICT, json=body, headers=bearer(key, "system/RiskAssessment.c")).json()
    outcome(client.get(f"/fhir/RiskAssessment/{ra['id']}", headers=bearer(key, "user/RiskAssessment.c")), 403)
    mine = bearer(key, "patient/RiskAssessment.rs", patient="p1")
    assert client.get(f"/fhir/RiskAssessment/{ra['id']}", headers=mine).status_code == 200
    theirs = bearer(key, "patient/RiskAssessment.rs", patient="p2")
    outcome(client.get(f"/fhir/RiskAssessment/{ra['id']}", headers=theirs), 403)
    outcome(client.get("/fhir/RiskAssessment", params={"subject": "p1"}, headers=theirs), 403)
    outcome(client.get("/fhir/AuditEvent", headers=bearer(key)), 403)


@pytest.mark.req("SRS-FHIR-004")
def test_unknown_things_are_404(server: Any) -> None:
    client, key, _ = server
    outcome(client.get("/fhir/RiskAssessment/does-not-exist", headers=bearer(key)), 404)
    outcome(client.get("/fhir/Nothing", headers=bearer(key)), 404)
    outcome(client.get("/elsewhere"), 404)


@pytest.mark.req("SRS-FHIR-004")
def test_formats_other_than_fhir_json_are_406_and_415(server: Any) -> None:
    client, key, _ = server
    body = json.dumps(parameters(patient_bundle(DEMO_VALUES)))
    xml = {**bearer(key), "Accept": "application/fhir+xml"}
    outcome(client.post(PREDICT, content=body, headers=xml), 406)
    outcome(client.get("/fhir/metadata", params={"_format": "xml"}), 406)
    xml_body = {**bearer(key), "Content-Type": "application/xml"}
    outcome(client.post(PREDICT, content=body, headers=xml_body), 415)
    no_type = bearer(key)
    del no_type["Content-Type"]
    outcome(client.post(PREDICT, content=body.encode(), headers=no_type), 415)
    ok = {**bearer(key), "Content-Type": "application/json", "Accept": "application/json, */*"}
    assert client.post(PREDICT, content=body, headers=ok).status_code == 200


@pytest.mark.req("SYS-DEV-001")
@pytest.mark.req("SRS-FHIR-004", "SRS-FHIR-005", "RC-INPUT-001", "RC-INPUT-002", "RC-UNIT-001")
def test_business_rules_are_422_with_the_element_named(server: Any) -> None:
    client, key, _ = server
    out = outcome(client.post(PREDICT, json=patient_bundle({**DEMO_VALUES, "tsize": 151.0}),
                              headers=bearer(key)), 422)
    issue = out["issue"][0]
    assert issue["diagnostics"].startswith("Tumour size: 151 mm is outside") and issue["expression"]
    missing = {k: v for k, v in DEMO_VALUES.items() if k != "pnodes"}
    out = outcome(client.post(PREDICT, json=patient_bundle(missing), headers=bearer(key)), 422)
    assert "21893-3" in json.dumps(out)
    out = outcome(client.post(PREDICT, json=patient_bundle(DEMO_VALUES, units={"tsize": "g"}),
                              headers=bearer(key)), 422)
    assert out["issue"][0]["expression"]


# ---------------------------------------------------------------- audit
@pytest.mark.req("SYS-AUTH-001")
@pytest.mark.req("SRS-AUDIT-001", "RC-AUDIT-001")
def test_every_request_allowed_or_refused_is_audited(server: Any) -> None:
    client, key, st = server
    body = parameters(patient_bundle(DEMO_VALUES, patient_id="aud1"))
    raw = json.dumps(body).encode()
    assert client.post(PREDICT, content=raw, headers=bearer(key, subject="dr-a")).status_code == 200
    client.post(PREDICT, content=raw, headers={"Content-Type": FHIR_JSON})  # refused: no token
    client.get("/fhir/metadata")
    admin = bearer(key, "system/AuditEvent.rs", subject="auditor")
    resp = client.get("/fhir/AuditEvent", headers=admin)
    assert resp.status_code == 200
    events = [e["resource"] for e in resp.json()["entry"]]
    for e in events:
        AuditEvent.model_validate(e)
    metadata, refused, allowed = events[:3]  # newest first
    assert allowed["outcome"] == "0" and allowed["agent"][0]["who"]["display"] == "dr-a"
    assert allowed["entity"][0]["what"]["reference"] == "Patient/aud1"
    details = {d["type"]: d["valueString"] for d in allowed["entity"][-1]["detail"]}
    import hashlib
    assert details["input-sha256"] == hashlib.sha256(raw).hexdigest()
    assert details["model-sha256"] == st.models.current().sha256
    assert refused["outcome"] == "4" and refused["agent"][0]["who"]["display"] == "unauthenticated"
    assert metadata["subtype"][0]["code"] == "capabilities"
    total, _ = st.store.search("AuditEvent")
    assert total == 4  # the audit search itself is audited too


# ---------------------------------------------------------------- failures
@pytest.mark.req("SRS-FHIR-004", "SRS-AUDIT-001")
def test_a_defect_is_a_500_outcome_never_a_traceback_and_is_audited(server: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    client, key, st = server

    def broken(*args: Any) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr("device.fhir.service.assess", broken)
    resp = client.post(PREDICT, json=parameters(patient_bundle(DEMO_VALUES)), headers=bearer(key))
    body = outcome(resp, 500)
    assert "secret" not in resp.text and "Traceback" not in resp.text
    assert body["issue"][0]["code"] == "exception"
    _, events = st.store.search("AuditEvent", count=1)
    assert events[0]["outcome"] == "8" and "-> 500" in events[0]["outcomeDesc"]


@pytest.mark.req("SRS-AUDIT-001", "RC-AUDIT-001")
def test_a_result_that_cannot_be_stored_is_not_returned(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, key, st = server
    real = st.store.add_async

    async def refuse_risk_assessments(items: list[Any]) -> None:
        if any(r["resourceType"] == "RiskAssessment" for r, _, _ in items):
            raise sqlite3.OperationalError("disk I/O error")
        await real(items)

    monkeypatch.setattr(st.store, "add_async", refuse_risk_assessments)
    resp = client.post(PREDICT, json=parameters(patient_bundle(DEMO_VALUES)), headers=bearer(key))
    outcome(resp, 500)
    assert "RiskAssessment" not in resp.text
    assert st.store.search("RiskAssessment")[0] == 0
    _, events = st.store.search("AuditEvent", count=1)
    assert "-> 500" in events[0]["outcomeDesc"]


@pytest.mark.req("SRS-FHIR-004")
def test_malformed_requests_found_by_review_are_4xx_never_500(server: Any) -> None:
    import base64

    client, key, _ = server
    for entry in ({"request": "x"}, {"request": {"url": 5}}):
        bad = {"resourceType": "Bundle", "type": "batch", "entry": [entry]}
        outcome(client.post("/fhir", json=bad, headers=bearer(key)), 422)
    outcome(client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": 5},
                        headers=bearer(key)), 400)
    outcome(client.post(PREDICT, content=b"{}", headers={**bearer(key), "Content-Type": ","}), 415)
    deep = base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=")
    outcome(client.post(PREDICT, json={}, headers={"Authorization": f"Bearer {deep}.e30.sig",
                                                    "Content-Type": FHIR_JSON}), 401)

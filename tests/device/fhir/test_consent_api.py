"""Patients read and withdraw their own study consent through FHIR R4 (Consent API over a real workspace)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from consent.registry import ConsentRegistry
from device.fhir.app import create_app
from device.fhir.auth import TokenVerifier, issue_token
from device.fhir.consent_api import ConsentConflict, consent_router
from device.fhir.errors import FhirError
from device.fhir.http import ServerState
from device.fhir.store import FhirStore
from fedprog.fhir_consent import WorkspaceConsent, withdraw_consent
from fedprog.workspace import Workspace
from ledger.canonical import sealed_sha256

pytestmark = pytest.mark.req("SRS-CONS-006")

BASE = "http://testserver/fhir"
FHIR = "application/fhir+json"
GRANTED = "2025-03-01"
Key = ec.EllipticCurvePrivateKey


class NoModel:
    """The consent routes never score: any model request is a 503."""

    def current(self) -> Any:
        raise FhirError(503, "processing", "no model in this test")


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """Three sites; A-0001 (site-a, used by model m@1), A-0002 (site-b), B-0001 (site-a and site-c),
    C-0001 (R5 consent, site-c), D-0001 (a documented refusal, site-b)."""
    sites = {}
    for name in ("site-a", "site-b", "site-c"):
        csv = tmp_path / f"{name}.csv"
        csv.write_text("patient_id,time,event\nX-1,10,1\n", encoding="utf-8")
        sites[name] = csv
    ws = Workspace.create(tmp_path / "ws", "urn:fedprog:study:test", sites)
    grants: list[tuple[str, str, dict[str, Any]]] = [
        ("site-a", "A-0001", {}), ("site-b", "A-0002", {}), ("site-a", "B-0001", {}),
        ("site-c", "B-0001", {}), ("site-c", "C-0001", {"fhir_version": "R5"}),
        ("site-b", "D-0001", {"decision": "deny"})]
    for site, patient, kw in grants:
        reg = ws.registry(site)
        reg.grant(patient, date=GRANTED, **kw)
        if patient == "A-0001":
            reg.record_usage("m@1", ["A-0001"])
        reg.close()
    artifact: dict[str, Any] = {"schema": "fedprog.model/v1", "model_id": "m", "version": "1",
                                "training": {"consent_checkpoint": None}}
    artifact["sha256"] = sealed_sha256(artifact)
    ws.models.register(artifact, "m@1")
    return ws


@pytest.fixture
def key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def st(ws: Workspace, key: Key, tmp_path: Path) -> Iterator[ServerState]:
    store = FhirStore(tmp_path / "fhir.sqlite")
    yield ServerState(base_url=BASE, verifier=TokenVerifier(key.public_key(), BASE), store=store,
                      models=NoModel(), software_version="t", started="2026-01-01",
                      consent=WorkspaceConsent(ws))
    store.close()


@pytest.fixture
def client(st: ServerState) -> Iterator[TestClient]:
    with TestClient(create_app(st, routers=[consent_router()])) as c:
        yield c


def auth(key: Key, patient: str | None = "A-0001", scopes: str = "patient/Consent.*") -> dict[str, str]:
    token = issue_token(key, scopes=scopes, subject="portal", patient=patient, audience=BASE)
    return {"Authorization": f"Bearer {token}", "Accept": FHIR}


def withdrawal(patient: str = "A-0001", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Consent", "status": "inactive", "patient": {"reference": f"Patient/{patient}"},
            **extra}


def post(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Any:
    return client.post("/fhir/Consent", json=body, headers={**headers, "Content-Type": FHIR})


def latest(ws: Workspace, site: str, patient: str) -> Any:
    reg = ws.registry(site)
    try:
        return reg.latest(patient)
    finally:
        reg.close()


def issue(resp: Any) -> dict[str, Any]:
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]


# ------------------------------------------------------------------------ read
def test_patient_reads_own_consent(client: TestClient, key: Key) -> None:
    for param in ("A-0001", "Patient/A-0001"):
        resp = client.get("/fhir/Consent", params={"patient": param}, headers=auth(key))
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(FHIR)
        bundle = resp.json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset" and bundle["total"] == 1
        consent = bundle["entry"][0]["resource"]
        assert consent["resourceType"] == "Consent" and consent["status"] == "active"
        assert consent["patient"] == {"reference": "Patient/A-0001"} and consent["dateTime"] == GRANTED
        assert bundle["entry"][0]["fullUrl"] == f"{BASE}/Consent/{consent['id']}"


@pytest.mark.req("SRS-AUTH-002", "RC-AUTH-001")
def test_reading_another_patients_consent_is_forbidden(client: TestClient, key: Key) -> None:
    resp = client.get("/fhir/Consent", params={"patient": "A-0002"}, headers=auth(key))
    assert resp.status_code == 403 and issue(resp)["code"] == "forbidden"


@pytest.mark.req("SRS-AUTH-002")
def test_clinician_reads_any_patient_but_cannot_withdraw_without_c(client: TestClient, key: Key,
                                                                   ws: Workspace) -> None:
    staff = auth(key, patient=None, scopes="user/Consent.rs")
    resp = client.get("/fhir/Consent", params={"patient": "B-0001"}, headers=staff)
    assert resp.status_code == 200 and resp.json()["total"] == 2  # consented at two sites
    assert post(client, staff, withdrawal("A-0002")).status_code == 403
    assert latest(ws, "site-b", "A-0002").active
    clinician = auth(key, patient=None, scopes="user/Consent.c")
    assert post(client, clinician, withdrawal("A-0002")).status_code == 201


def test_unknown_patient_has_an_empty_searchset(client: TestClient, key: Key) -> None:
    resp = client.get("/fhir/Consent", params={"patient": "Z-9999"}, headers=auth(key, "Z-9999"))
    assert resp.status_code == 200 and resp.json()["total"] == 0 and resp.json()["entry"] == []


def test_r5_consent_is_read_in_r4_shape(client: TestClient, key: Key) -> None:
    consent = client.get("/fhir/Consent", params={"patient": "C-0001"},
                         headers=auth(key, "C-0001")).json()["entry"][0]["resource"]
    assert consent["patient"] == {"reference": "Patient/C-0001"} and consent["dateTime"] == GRANTED
    assert consent["scope"]["coding"][0]["code"] == "research" and consent["provision"] == {"type": "permit"}
    assert not {"subject", "date", "decision", "policyBasis"} & set(consent)


def test_search_needs_a_patient_and_a_token(client: TestClient, key: Key) -> None:
    resp = client.get("/fhir/Consent", headers=auth(key))
    assert resp.status_code == 400 and issue(resp)["expression"] == ["patient"]
    resp = client.get("/fhir/Consent", params={"patient": "Patient/a b"}, headers=auth(key))
    assert resp.status_code == 400
    resp = client.get("/fhir/Consent", params={"patient": "A-0001"})
    assert resp.status_code == 401 and issue(resp)["code"] == "login"


# -------------------------------------------------------------------- withdraw
@pytest.mark.req("SRS-CONS-005", "RC-CONS-001", "RC-PRIV-001")
def test_patient_withdraws_consent(client: TestClient, key: Key, ws: Workspace) -> None:
    revocations = len(ws.ledger.entries("revocation"))
    assert not ws.models.get("m@1").affected_by_revocation
    resp = post(client, auth(key), withdrawal())
    assert resp.status_code == 201, resp.text
    consent = resp.json()
    assert consent["resourceType"] == "Consent" and consent["status"] == "inactive"
    assert consent["meta"]["versionId"] == "2" and resp.headers["etag"] == 'W/"2"'
    assert resp.headers["location"] == f"{BASE}/Consent/{consent['id']}/_history/2"
    assert consent["dateTime"] == dt.datetime.now(dt.UTC).date().isoformat()
    status = latest(ws, "site-a", "A-0001")
    assert status.status == "inactive" and not status.active
    entries = ws.ledger.entries("revocation")
    assert len(entries) == revocations + 1 and entries[-1][2]["affects_jobs"] == ["m@1"]
    assert "A-0001" not in str(entries[-1][2])
    assert ws.models.get("m@1").affected_by_revocation
    size, _, note = ws.ledger.checkpoints()[-1]
    assert size == ws.ledger.size and note.count("witness.fedprog") == 3  # witnessed at once
    history = client.get("/fhir/Consent", params={"patient": "A-0001"}, headers=auth(key)).json()
    assert [e["resource"]["status"] for e in history["entry"]] == ["active", "inactive"]
    again = post(client, auth(key), withdrawal())
    assert again.status_code == 409 and issue(again)["code"] == "conflict"
    assert len(ws.ledger.entries("revocation")) == revocations + 1


def test_withdrawal_by_update(client: TestClient, key: Key, ws: Workspace) -> None:
    consent = client.get("/fhir/Consent", params={"patient": "A-0001"},
                         headers=auth(key)).json()["entry"][0]["resource"]
    cid = consent["id"]
    headers = {**auth(key), "Content-Type": FHIR}
    resp = client.put(f"/fhir/Consent/{cid}", json=withdrawal(id="other"), headers=headers)
    assert resp.status_code == 400 and issue(resp)["expression"] == ["Consent.id"]
    resp = client.put("/fhir/Consent/nope", json=withdrawal(id="nope"), headers=headers)
    assert resp.status_code == 404 and latest(ws, "site-a", "A-0001").active
    resp = client.put(f"/fhir/Consent/{cid}", json={**consent, "status": "inactive"}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"] == cid and resp.json()["status"] == "inactive" and "location" not in resp.headers
    assert not latest(ws, "site-a", "A-0001").active
    upd = client.put(f"/fhir/Consent/{cid}", json={**consent, "status": "inactive"},
                     headers={**auth(key, scopes="patient/Consent.rs"), "Content-Type": FHIR})
    assert upd.status_code == 403


def test_patient_at_two_sites_withdraws_from_the_study(client: TestClient, key: Key, ws: Workspace) -> None:
    before = len(ws.ledger.entries("revocation"))
    assert post(client, auth(key, "B-0001"), withdrawal("B-0001")).status_code == 201
    assert not latest(ws, "site-a", "B-0001").active and not latest(ws, "site-c", "B-0001").active
    assert len(ws.ledger.entries("revocation")) == before + 2


def test_only_withdrawal_is_accepted(client: TestClient, key: Key, ws: Workspace) -> None:
    for status in ("active", None):
        body = withdrawal()
        body["status"] = status
        resp = post(client, auth(key), body)
        assert resp.status_code == 422 and issue(resp)["expression"] == ["Consent.status"]
        assert "only withdraws consent" in issue(resp)["diagnostics"]
    resp = post(client, auth(key), {**withdrawal(), "resourceType": "Patient"})
    assert resp.status_code == 400
    resp = post(client, auth(key), {"resourceType": "Consent", "status": "inactive"})
    assert resp.status_code == 422 and issue(resp)["expression"] == ["Consent.patient.reference"]
    resp = post(client, auth(key), withdrawal() | {"patient": {"reference": "Group/1"}})
    assert resp.status_code == 422
    assert latest(ws, "site-a", "A-0001").active


def test_withdrawal_date(client: TestClient, key: Key, ws: Workspace) -> None:
    future = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    for when in ("2025-02-30", "yesterday", future, "2024-01-01"):  # invalid, invalid, future, before consent
        resp = post(client, auth(key), withdrawal(dateTime=when))
        assert resp.status_code == 422 and issue(resp)["expression"] == ["Consent.dateTime"], when
    assert latest(ws, "site-a", "A-0001").active
    resp = post(client, auth(key), withdrawal(dateTime="2025-06-01T10:00:00+02:00"))
    assert resp.status_code == 201 and resp.json()["dateTime"] == "2025-06-01"


@pytest.mark.req("RC-AUTH-001")
def test_refusals(client: TestClient, key: Key, ws: Workspace) -> None:
    resp = client.post("/fhir/Consent", json=withdrawal(), headers={"Content-Type": FHIR})
    assert resp.status_code == 401
    resp = post(client, auth(key), withdrawal("A-0002"))
    assert resp.status_code == 403 and latest(ws, "site-b", "A-0002").active
    resp = post(client, auth(key, "Z-9999"), withdrawal("Z-9999"))
    assert resp.status_code == 404 and issue(resp)["code"] == "not-found"
    resp = post(client, auth(key, "D-0001"), withdrawal("D-0001"))  # a refusal: nothing to withdraw
    assert resp.status_code == 409
    resp = client.post("/fhir/Consent", content=b"status=inactive",
                       headers={**auth(key), "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 415
    resp = client.post("/fhir/Consent", content=b"{not json", headers={**auth(key), "Content-Type": FHIR})
    assert resp.status_code == 400
    assert latest(ws, "site-a", "A-0001").active


@pytest.mark.req("SRS-AUDIT-001")
def test_every_request_is_audited(client: TestClient, key: Key, st: ServerState) -> None:
    post(client, auth(key), withdrawal())
    post(client, auth(key), withdrawal("A-0002"))
    _, events = st.store.search("AuditEvent", None, 10)
    refused, done = events[0], events[1]
    assert done["subtype"][0]["code"] == "create" and done["action"] == "C" and done["outcome"] == "0"
    assert done["agent"][0]["who"]["display"] == "portal"
    assert {"reference": "Patient/A-0001"} in [e["what"] for e in done["entity"]]
    assert refused["outcome"] == "4"
    assert {"reference": "Patient/A-0002"} in [e["what"] for e in refused["entity"]]


def test_server_without_consent_port(st: ServerState, key: Key) -> None:
    st.consent = None
    with TestClient(create_app(st, routers=[consent_router()])) as c:
        resp = c.get("/fhir/Consent", params={"patient": "A-0001"}, headers=auth(key))
    assert resp.status_code == 404 and "does not offer the Consent API" in issue(resp)["diagnostics"]


# ------------------------------------------------------------------------ port
def test_port_is_thread_safe_and_closes_registries(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[ConsentRegistry] = []
    real = Workspace.registry

    def tracked(self: Workspace, site: str) -> ConsentRegistry:
        opened.append(real(self, site))
        return opened[-1]

    monkeypatch.setattr(Workspace, "registry", tracked)
    port = WorkspaceConsent(ws)
    results: list[str] = []

    def run() -> None:
        try:
            results.append(port.withdraw("A-0001", "2025-06-01")["status"])
        except ConsentConflict:
            results.append("conflict")

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 5 + ["inactive"]
    assert [r["status"] for r in port.history("A-0001")] == ["active", "inactive"]
    assert opened
    for reg in opened:
        with pytest.raises(sqlite3.ProgrammingError):
            reg.latest("A-0001")


@pytest.mark.req("SRS-CONS-005", "RC-CONS-001")
def test_shared_withdrawal_names_affected_models(ws: Workspace) -> None:
    done = withdraw_consent(ws, "A-0001", date="2025-06-01", sites=["site-a"])
    assert done.affected_models == ["m@1"] and set(done.receipts) == {"site-a"}
    assert done.records["site-a"].status == "inactive" and done.checkpoint_error is None
    assert len(done.cosigned_by) == 3

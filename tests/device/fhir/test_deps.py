"""The FHIR edge as FastAPI dependencies (issue 16, "The FHIR edge, typed"): authorisation and
content negotiation are declared on the routes and run before any body is read; the body is
parsed once into a typed request; CDS Hooks and ``$predict-risk`` score through one service path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from device.fhir import deps, service
from device.fhir.app import create_app
from device.fhir.auth import TokenVerifier, issue_token, load_or_create_key
from device.fhir.cds import SERVICE_ID, cds_router
from device.fhir.deps import Audited, Authorized, Grant, Negotiated, PredictRiskRequest
from device.fhir.examples import parameters
from device.fhir.http import FhirResponse, ServerState
from device.fhir.service import FixedModel
from device.fhir.store import FhirStore
from device.model import PrognosticModel

from .conftest import DEMO_VALUES, patient_bundle
from .test_cds import hook

BASE = "http://test/fhir"
PREDICT = "/fhir/Patient/$predict-risk"
HOOK = f"/cds-services/{SERVICE_ID}"
FHIR_JSON = "application/fhir+json"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> ec.EllipticCurvePrivateKey:
    return load_or_create_key(tmp_path_factory.mktemp("keys") / "token.pem")


@pytest.fixture
def st(tmp_path: Path, key: ec.EllipticCurvePrivateKey, demo_model: PrognosticModel) -> Iterator[ServerState]:
    state = ServerState(base_url=BASE, verifier=TokenVerifier(key.public_key(), BASE),
                        store=FhirStore(tmp_path / "fhir.sqlite"), models=FixedModel(demo_model),
                        software_version="test", started="2026-01-01T00:00:00Z")
    yield state
    state.store.close()


def bearer(key: ec.EllipticCurvePrivateKey, scopes: str = "user/RiskAssessment.c") -> dict[str, str]:
    token = issue_token(key, scopes=scopes, subject="dr-deps", audience=BASE)
    return {"Authorization": f"Bearer {token}", "Content-Type": FHIR_JSON}


async def probe_body(request: Request,
                     grant: Annotated[Grant, Depends(Authorized("AuditEvent", "s"))]) -> str:
    """A body dependency behind :class:`Authorized`: records every body it reads."""
    request.app.state.read.append(await request.body())
    return grant.principal.subject


async def probe(who: Annotated[str, Depends(probe_body)]) -> FhirResponse:
    return FhirResponse({"resourceType": "Basic", "id": who})


def probe_app(st: ServerState, read: list[bytes]) -> FastAPI:
    """The server with one more route, declared only through the edge dependencies."""
    app = create_app(st)
    app.state.read = read
    app.post("/fhir/probe", response_class=FhirResponse,
             dependencies=[Depends(Audited("operation")), Negotiated])(probe)
    return app


def events(st: ServerState, path: str) -> list[dict[str, Any]]:
    _, found = st.store.search("AuditEvent", None, 1000)
    return [e for e in found if e["entity"][-1]["what"]["display"].endswith(f" {path}")]


@pytest.mark.req("SRS-AUTH-004", "SRS-AUTH-002", "SRS-AUDIT-001")
def test_a_route_declaring_authorized_refuses_before_its_body_is_read(
        st: ServerState, key: ec.EllipticCurvePrivateKey) -> None:
    read: list[bytes] = []
    with TestClient(probe_app(st, read), base_url="http://test") as client:
        anonymous = client.post("/fhir/probe", content=b"not JSON", headers={"Content-Type": "text/plain"})
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
        assert anonymous.json()["resourceType"] == "OperationOutcome"
        scoped = client.post("/fhir/probe", content=b"{}", headers=bearer(key, "user/RiskAssessment.c"))
        assert scoped.status_code == 403
        assert 'error="insufficient_scope"' in scoped.headers["www-authenticate"]
        assert read == []  # neither refusal read the body
        allowed = client.post("/fhir/probe", content=b"{}", headers=bearer(key, "system/AuditEvent.rs"))
        assert allowed.status_code == 200 and allowed.json()["id"] == "dr-deps" and read == [b"{}"]
    audited = events(st, "/fhir/probe")
    assert sorted(e["outcome"] for e in audited) == ["0", "4", "4"]
    assert {e["subtype"][0]["code"] for e in audited} == {"operation"}  # Audited runs first, refusals too


@pytest.mark.req("SRS-FHIR-004", "SRS-AUTH-004")
def test_negotiation_comes_before_the_token_and_the_token_before_the_content_type(
        st: ServerState, key: ec.EllipticCurvePrivateKey) -> None:
    read: list[bytes] = []
    with TestClient(probe_app(st, read), base_url="http://test") as client:
        for url in ("/fhir/probe", PREDICT, "/fhir"):
            assert client.post(url, content=b"<xml/>", headers={"Accept": "text/html"}).status_code == 406
            refused = client.post(url, content=b"<xml/>", headers={"Content-Type": "application/xml"})
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
            wrong_type = {**bearer(key), "Content-Type": "application/xml"}
            if url != "/fhir/probe":  # the scoring routes' body dependency: 415 once the token is good
                assert client.post(url, content=b"<xml/>", headers=wrong_type).status_code == 415
        assert read == []


@pytest.mark.req("SRS-CDS-004", "SRS-AUTH-004")
def test_a_hook_call_checks_token_then_service_then_body(st: ServerState,
                                                         key: ec.EllipticCurvePrivateKey) -> None:
    with TestClient(create_app(st, routers=[cds_router()]), base_url="http://test") as client:
        anonymous = client.post("/cds-services/other", content=b"{not json",
                                headers={"Content-Type": "text/plain"})
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
        headers = {**bearer(key), "Content-Type": "text/plain"}
        assert client.post("/cds-services/other", content=b"{not json", headers=headers).status_code == 404
        assert client.post(HOOK, content=b"{not json", headers=headers).status_code == 415


@pytest.mark.req("SRS-FHIR-002")
def test_the_body_is_parsed_once_into_a_typed_request(st: ServerState, key: ec.EllipticCurvePrivateKey,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[PredictRiskRequest] = []
    real_assess = service.assess

    def spy(model: PrognosticModel, body: dict[str, Any], only_patient: str | None = None) -> Any:
        parsed.append(PredictRiskRequest(resource=body, sha256="0" * 64, only_patient=only_patient))
        return real_assess(model, body, only_patient)

    reads: list[int] = []
    real_json_body = deps.json_body

    async def counting(request: Request) -> Any:
        reads.append(1)
        return await real_json_body(request)

    app = create_app(st)  # warms up through service.assess: spied on only from here
    monkeypatch.setattr(service, "assess", spy)
    monkeypatch.setattr(deps, "json_body", counting)
    body = parameters(patient_bundle(DEMO_VALUES, patient_id="once"))
    with TestClient(app, base_url="http://test") as client:
        resp = client.post(PREDICT, json=body, headers=bearer(key))
    assert resp.status_code == 200, resp.text
    assert reads == [1] and len(parsed) == 1 and parsed[0].resource == body
    assert parsed[0].only_patient is None and not parsed[0].is_batch


@pytest.mark.req("SRS-CDS-002", "SRS-FHIR-002", "SRS-AUDIT-001")
def test_cds_hooks_and_predict_risk_score_through_one_service_function(
        st: ServerState, key: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_assess = service.assess

    def spy(model: PrognosticModel, body: dict[str, Any], only_patient: str | None = None) -> Any:
        prediction = real_assess(model, body, only_patient)
        calls.append(prediction.patient)
        return prediction

    app = create_app(st, routers=[cds_router()])  # warms up through service.assess: spied on from here
    monkeypatch.setattr(service, "assess", spy)
    with TestClient(app, base_url="http://test") as client:
        ra = client.post(PREDICT, json=parameters(patient_bundle(DEMO_VALUES, patient_id="p1")),
                         headers=bearer(key))
        card = client.post(HOOK, json=hook(DEMO_VALUES, patient_id="p1"), headers=bearer(key))
        assert ra.status_code == 200 and card.status_code == 200, (ra.text, card.text)
        stored = client.get("/fhir/RiskAssessment", params={"subject": "p1"},
                            headers=bearer(key, "user/RiskAssessment.rs"))
    assert calls == ["Patient/p1", "Patient/p1"]  # both routes, one service function
    risks = [e["resource"]["prediction"][-1]["probabilityDecimal"] for e in stored.json()["entry"]]
    assert len(risks) == 2 and risks[0] == risks[1] == ra.json()["prediction"][-1]["probabilityDecimal"]
    pct = 100 * risks[0]
    assert f": {pct:.1f}% risk" in card.json()["cards"][0]["summary"] or f": {pct:.0f}% risk" in \
        card.json()["cards"][0]["summary"]
    (audited,) = events(st, HOOK)  # the hook call's AuditEvent names the patient once, and the model
    assert [e["what"].get("reference") for e in audited["entity"][:-1]] == ["Patient/p1"]


@pytest.mark.req("SRS-CDS-003")
def test_a_hook_call_that_cannot_be_scored_stores_nothing(st: ServerState,
                                                          key: ec.EllipticCurvePrivateKey) -> None:
    with TestClient(create_app(st, routers=[cds_router()]), base_url="http://test") as client:
        out = client.post(HOOK, json=hook({**DEMO_VALUES, "tsize": 999.0}), headers=bearer(key))
    assert out.status_code == 200 and out.json()["cards"][0]["indicator"] == "info"
    assert st.store.search("RiskAssessment", None, 10)[0] == 0

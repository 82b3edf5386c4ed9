"""CDS Hooks 2.0 patient-view service: discovery, cards by risk band, 412 without prefetch, audit."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from device.fhir.app import create_app
from device.fhir.auth import TokenVerifier, issue_token, load_or_create_key
from device.fhir.cds import RISK_BANDS, SERVICE_ID, cds_router, horizon_text, indicator, risk_card
from device.fhir.errors import FhirError
from device.fhir.http import ServerState
from device.fhir.service import FixedModel, assess
from device.fhir.store import FhirStore
from device.model import PrognosticModel, load_model
from device.scoring import score
from tests.device.fhir.conftest import DEMO_VALUES, covariates, patient_bundle
from tests.device.test_model import demo_artifact, reseal

BASE = "http://test/fhir"
URL = f"/cds-services/{SERVICE_ID}"
#: inputs chosen to land in each band of RISK_BANDS at 5 years (checked against score() below), all
#: inside the intended-use envelope (age 27-79 a, tsize 1-120 mm, pnodes 1-14, progrec 0-435, estrec 0-400)
LOW = {**DEMO_VALUES, "age": 78.0, "tsize": 4.0, "tgrade": 1, "pnodes": 1, "progrec": 430.0, "estrec": 10.0,
       "postmenopausal": True}
MIDDLE = {**DEMO_VALUES, "pnodes": 1, "progrec": 300.0}
HIGH = {**DEMO_VALUES, "tgrade": 3, "pnodes": 6}


class NoModel:
    """A model source with nothing in service."""

    def current(self) -> PrognosticModel:
        raise FhirError(503, "processing", "no model in service: none released")


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> ec.EllipticCurvePrivateKey:
    return load_or_create_key(tmp_path_factory.mktemp("keys") / "token.pem")


@pytest.fixture
def st(tmp_path: Path, key: ec.EllipticCurvePrivateKey, demo_model: PrognosticModel) -> Iterator[ServerState]:
    state = ServerState(base_url=BASE, verifier=TokenVerifier(key.public_key(), BASE),
                        store=FhirStore(tmp_path / "fhir.sqlite"), models=FixedModel(demo_model),
                        software_version="test", started="2024-01-01T00:00:00Z")
    yield state
    state.store.close()


@pytest.fixture
def client(st: ServerState) -> Iterator[TestClient]:
    with TestClient(create_app(st, routers=[cds_router()]), base_url="http://test") as c:
        yield c


def auth(key: ec.EllipticCurvePrivateKey, scopes: str = "user/RiskAssessment.c") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(key, scopes=scopes, subject='dr-cds', audience=BASE)}"}


def hook(values: dict[str, Any], patient_id: str = "p1", **extra: Any) -> dict[str, Any]:
    """A patient-view request whose prefetch holds the Patient and a searchset of its Observations."""
    bundle = patient_bundle(values, patient_id=patient_id)
    found = {"resourceType": "Bundle", "type": "searchset", "total": len(bundle["entry"]) - 1,
             "entry": [{**e, "search": {"mode": "match"}} for e in bundle["entry"][1:]]}
    body = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/example", "patientId": patient_id},
            "prefetch": {"patient": bundle["entry"][0]["resource"], "observations": found}}
    body.update(extra)
    return body


def post(client: TestClient, key: ec.EllipticCurvePrivateKey, body: Any, url: str = URL) -> Any:
    return client.post(url, json=body, headers=auth(key))


def one_card(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    cards = response.json()["cards"]
    assert len(cards) == 1
    card: dict[str, Any] = cards[0]
    assert len(card["summary"]) < 140 and card["source"]["label"] == "fedprog gbsg2-recurrence@1"
    assert re.fullmatch(r"[0-9a-f-]{36}", card["uuid"])
    return card


def outcome_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]


# --- discovery ------------------------------------------------------------------------------


@pytest.mark.req("SRS-CDS-001")
def test_discovery_lists_patient_view_with_prefetch_of_every_input(client: TestClient,
                                                                    demo_model: PrognosticModel) -> None:
    response = client.get("/cds-services")  # public: no token
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    (service,) = response.json()["services"]
    assert service["id"] == SERVICE_ID and service["hook"] == "patient-view"
    assert service["title"] == "Recurrence-free survival: risk of event (gbsg2-recurrence@1)"
    assert "3 years and 5 years" in service["description"]
    prefetch = service["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    search, _, query = prefetch["observations"].partition("?")
    assert search == "Observation" and "{{context.patientId}}" in query
    params = dict(p.split("=", 1) for p in query.split("&"))
    assert params["code"].split(",") == [f"{s.code.system}|{s.code.code}" for s in demo_model.inputs]


@pytest.mark.req("SRS-CDS-001")
def test_discovery_without_a_model_in_service_lists_nothing(st: ServerState) -> None:
    st.models = NoModel()
    with TestClient(create_app(st, routers=[cds_router()])) as c:
        response = c.get("/cds-services")
    assert response.status_code == 200 and response.json() == {"services": []}


@pytest.mark.req("SRS-CDS-001", "SRS-AUDIT-001")
def test_discovery_is_audited(client: TestClient, st: ServerState) -> None:
    client.get("/cds-services")
    _, events = st.store.search("AuditEvent")
    assert [e["outcomeDesc"] for e in events] == ["GET /cds-services -> 200"]


# --- cards ----------------------------------------------------------------------------------


@pytest.mark.req("SYS-CDS-001")
@pytest.mark.req("SRS-CDS-002")
@pytest.mark.parametrize(("values", "band"), [(LOW, "info"), (MIDDLE, "warning"), (HIGH, "critical")])
def test_a_full_request_gives_one_card_banded_by_the_five_year_risk(
        client: TestClient, key: ec.EllipticCurvePrivateKey, demo_model: PrognosticModel,
        values: dict[str, Any], band: str) -> None:
    card = one_card(post(client, key, hook(values)))
    x = np.array([covariates(demo_model, values)])
    s = score(demo_model, x)
    risk = float(s.risk[0, -1])
    assert indicator(risk) == band == card["indicator"]
    assert card["indicator"] == next(name for bound, name in RISK_BANDS if risk < bound)
    pct = f"{100 * risk:.1f}%" if risk < 0.0995 else f"{100 * risk:.0f}%"
    want = f"Recurrence-free survival: {pct} risk of event within 5 years (95% CI "
    assert card["summary"].startswith(want)
    detail = card["detail"]
    assert "| Horizon | Risk | 95% interval |" in detail
    assert "| 3 years (1095.75 days) |" in detail and "| 5 years (1826.25 days) |" in detail
    assert "| Input | Meaning | Value |" in detail and "| tsize | Size Tumor |" in detail
    assert "Intended use:" in detail and demo_model.sha256 in detail


@pytest.mark.req("SRS-CDS-002")
def test_the_summary_quotes_the_risk_and_interval_of_the_scorer(client: TestClient,
                                                                 key: ec.EllipticCurvePrivateKey,
                                                                 demo_model: PrognosticModel) -> None:
    card = one_card(post(client, key, hook(HIGH)))
    s = score(demo_model, np.array([covariates(demo_model, HIGH)]))
    lo, hi = (f"{100 * float(a[0, -1]):.0f}" for a in (s.lower, s.upper))
    assert card["summary"].endswith(f"(95% CI {lo}–{hi}%)")
    assert "| hormone_therapy | Hormone therapy | yes |" in card["detail"]
    assert "| tsize | Size Tumor | over 20 to 50 mm |" in card["detail"]  # 25 mm, in its band


@pytest.mark.req("SRS-CDS-002")
def test_horizons_are_worded_in_years_from_a_year_on(demo_model: PrognosticModel) -> None:
    assert horizon_text(demo_model, 1826) == "5 years" and horizon_text(demo_model, 365.25) == "1 year"
    assert horizon_text(demo_model, 200) == "200 days" and horizon_text(demo_model, 548) == "1.5 years"


@pytest.mark.req("SRS-CDS-002")
def test_a_long_outcome_name_is_shortened_to_keep_the_summary_under_140() -> None:
    art = demo_artifact()
    art["outcome"]["name"] = "distant-metastasis-free survival after breast-conserving surgery " * 3
    model = load_model(reseal(art))
    card = risk_card(model, assess(model, patient_bundle(HIGH)))
    assert len(card["summary"]) < 140 and "…: " in card["summary"]
    assert card["summary"].startswith("Distant-metastasis-free") and card["summary"].endswith("%)")


@pytest.mark.req("SYS-CDS-001")
@pytest.mark.req("SRS-CDS-003", "RC-CDS-001", "RC-INPUT-002")
def test_a_missing_input_gives_a_cannot_score_info_card(client: TestClient,
                                                         key: ec.EllipticCurvePrivateKey) -> None:
    values = {k: v for k, v in DEMO_VALUES.items() if k != "tsize"}
    card = one_card(post(client, key, hook(values)))
    assert card["indicator"] == "info" and "%" not in card["summary"]
    assert "not shown" in card["summary"] and "Tumour size" in card["summary"]
    assert "No risk is shown" in card["detail"] and "Tumour size (http://loinc.org|21889-1" in card["detail"]


@pytest.mark.req("SRS-CDS-003", "RC-CDS-001", "RC-INPUT-001")
def test_an_out_of_range_input_gives_a_cannot_score_card_naming_it(client: TestClient,
                                                                   key: ec.EllipticCurvePrivateKey) -> None:
    card = one_card(post(client, key, hook({**DEMO_VALUES, "age": 95.0, "pnodes": 70})))
    assert card["indicator"] == "info"
    assert card["summary"] == ("Recurrence-free survival risk not shown: missing or out-of-range input: "
                               "Age, Positive lymph nodes")
    assert ("Age: 95 years is outside the range this model was developed and validated for (27 to 79 years)"
            in card["detail"])


@pytest.mark.req("SRS-CDS-002")
def test_absolute_subject_references_resolve_against_fhir_server(client: TestClient,
                                                                  key: ec.EllipticCurvePrivateKey) -> None:
    body = hook(HIGH, fhirServer="https://ehr.example.org/fhir/")
    for e in body["prefetch"]["observations"]["entry"]:
        e["resource"]["subject"]["reference"] = "https://ehr.example.org/fhir/Patient/p1"
    assert "%" in one_card(post(client, key, body))["summary"]


@pytest.mark.req("SRS-CDS-002")
def test_other_resources_in_the_searchset_are_ignored(client: TestClient,
                                                      key: ec.EllipticCurvePrivateKey) -> None:
    body = hook(HIGH)
    body["prefetch"]["observations"]["entry"].append({"resource": {
        "resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "too-costly"}]},
        "search": {"mode": "outcome"}})
    assert one_card(post(client, key, body))["indicator"] == "critical"


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.req("SYS-CDS-001")
@pytest.mark.req("SRS-CDS-004", "RC-CDS-001")
@pytest.mark.parametrize("key_name", ["patient", "observations"])
def test_missing_prefetch_is_412(client: TestClient, key: ec.EllipticCurvePrivateKey, key_name: str) -> None:
    body = hook(HIGH)
    del body["prefetch"][key_name]
    issue = outcome_of(post(client, key, body), 412)
    assert issue["code"] == "required" and f"prefetch '{key_name}' missing" in issue["diagnostics"]
    assert "does not query the EHR" in issue["diagnostics"]


@pytest.mark.req("SRS-CDS-004", "RC-CDS-001")
def test_null_prefetch_is_412(client: TestClient, key: ec.EllipticCurvePrivateKey) -> None:
    body = hook(HIGH)
    body["prefetch"]["observations"] = None
    assert outcome_of(post(client, key, body), 412)["expression"] == ["prefetch.observations"]
    del body["prefetch"]
    outcome_of(post(client, key, body), 412)


@pytest.mark.req("SRS-CDS-004", "RC-CDS-001")
def test_a_prefetch_the_client_could_not_fetch_is_412(client: TestClient,
                                                      key: ec.EllipticCurvePrivateKey) -> None:
    body = hook(HIGH)
    body["prefetch"]["observations"] = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "timeout", "diagnostics": "upstream timed out"}]}
    assert "upstream timed out" in outcome_of(post(client, key, body), 412)["diagnostics"]


@pytest.mark.req("SRS-CDS-004", "SRS-AUTH-002", "RC-AUTH-001")
def test_no_token_is_401_and_a_token_without_the_scope_is_403(client: TestClient,
                                                              key: ec.EllipticCurvePrivateKey) -> None:
    assert outcome_of(client.post(URL, json=hook(HIGH)), 401)["code"] == "login"
    refused = client.post(URL, json=hook(HIGH), headers=auth(key, "user/RiskAssessment.rs"))
    assert outcome_of(refused, 403)["code"] == "forbidden"


@pytest.mark.req("SRS-CDS-004")
def test_an_unknown_service_is_404(client: TestClient, key: ec.EllipticCurvePrivateKey) -> None:
    assert outcome_of(post(client, key, hook(HIGH), "/cds-services/other"), 404)["code"] == "not-found"


@pytest.mark.req("SRS-CDS-004", "RC-INPUT-002")
def test_a_patient_id_mismatch_is_400(client: TestClient, key: ec.EllipticCurvePrivateKey) -> None:
    body = hook(HIGH)
    body["context"]["patientId"] = "p2"
    issue = outcome_of(post(client, key, body), 400)
    assert "Patient/p1" in issue["diagnostics"] and "Patient/p2" in issue["diagnostics"]


@pytest.mark.req("SRS-CDS-004")
@pytest.mark.parametrize(("change", "where"), [
    ({"hook": "order-select"}, "hook"),
    ({"context": {"userId": "Practitioner/example"}}, "context.patientId"),
    ({"context": "p1"}, "context"),
])
def test_a_malformed_request_is_400(client: TestClient, key: ec.EllipticCurvePrivateKey,
                                    change: dict[str, Any], where: str) -> None:
    assert outcome_of(post(client, key, {**hook(HIGH), **change}), 400)["expression"] == [where]


@pytest.mark.req("SRS-CDS-004")
def test_a_body_that_is_not_a_json_object_is_400(client: TestClient, key: ec.EllipticCurvePrivateKey) -> None:
    outcome_of(post(client, key, ["patient-view"]), 400)
    bad = client.post(URL, content=b"{not json", headers={**auth(key), "Content-Type": "application/json"})
    outcome_of(bad, 400)


@pytest.mark.req("SRS-CDS-004")
def test_an_invalid_observation_is_400_naming_the_prefetch_entry(client: TestClient,
                                                                  key: ec.EllipticCurvePrivateKey) -> None:
    body = hook(HIGH)
    body["prefetch"]["observations"]["entry"][2]["resource"]["valueQuantity"]["value"] = "25"
    issue = outcome_of(post(client, key, body), 400)
    assert all(x.startswith("prefetch.observations.entry[2]") for x in issue["expression"])


# --- audit ----------------------------------------------------------------------------------


@pytest.mark.req("SRS-AUDIT-001", "RC-AUDIT-001")
def test_a_hook_call_is_audited_with_patient_and_model(client: TestClient, st: ServerState,
                                                        key: ec.EllipticCurvePrivateKey,
                                                        demo_model: PrognosticModel) -> None:
    one_card(post(client, key, hook(HIGH)))
    _, events = st.store.search("AuditEvent")
    (event,) = [e for e in events if e["subtype"][0]["code"] == "hook"]
    assert event["outcome"] == "0" and event["agent"][0]["who"]["display"] == "dr-cds"
    assert event["entity"][0]["what"]["reference"] == "Patient/p1"
    details = {d["type"]: d["valueString"] for d in event["entity"][-1]["detail"]}
    assert details["model-sha256"] == demo_model.sha256 and len(details["input-sha256"]) == 64


@pytest.mark.req("SRS-AUDIT-001")
def test_a_refused_hook_call_is_audited_too(client: TestClient, st: ServerState,
                                            key: ec.EllipticCurvePrivateKey) -> None:
    body = copy.deepcopy(hook(HIGH))
    del body["prefetch"]
    post(client, key, body)
    _, events = st.store.search("AuditEvent")
    assert events[0]["outcome"] == "4" and events[0]["entity"][0]["what"]["reference"] == "Patient/p1"

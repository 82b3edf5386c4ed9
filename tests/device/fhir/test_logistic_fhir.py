"""A released logistic model served by the real FHIR app on loopback (uvicorn, real sockets): the
RiskAssessment of ``$predict-risk`` (the probability of the outcome at its one horizon, equal to
statsmodels, with per-effect log odds ratios), refusals, the CDS Hooks card, and a scoring worker."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fhir.resources.R4B.riskassessment import RiskAssessment

from device.fhir import inputs
from device.fhir.app import create_app
from device.fhir.auth import issue_token
from device.fhir.cds import SERVICE_ID, cds_router, indicator
from device.fhir.examples import EFFECTIVE, parameters, patient_bundle
from device.fhir.http import ServerState
from device.fhir.pool_worker import PROTOCOL, Worker
from device.fhir.resources import (
    INTERVAL_URL,
    LOG_ODDS_INTERACTION_URL,
    LOG_ODDS_URL,
    SHA256_SYSTEM,
    check_risk_assessment,
)
from device.fhir.service import assess_entries
from device.model import LogisticModel, load_model
from prognosis.logistic import expit
from tests.device.logistic_model import glm_prediction, logistic_artifact

from .conftest import server_state
from .loopback import loopback

AUD = "http://testserver/fhir"
AS_OF = "2024-06-01"
#: a woman aged 54 at AS_OF (born 1970-03-02), node-positive, on hormone therapy after the menopause
VALUES = {"pnodes": 4, "progrec": 60.0, "hormone_therapy": True, "postmenopausal": True}
BORN = "1970-03-02"


@pytest.fixture(scope="module")
def model() -> LogisticModel:
    loaded = load_model(logistic_artifact())
    assert isinstance(loaded, LogisticModel)
    return loaded


@pytest.fixture(scope="module")
def served(model: LogisticModel, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, ec.EllipticCurvePrivateKey, ServerState]]:
    st, key = server_state(tmp_path_factory.mktemp("logistic-fhir"), model, audience=AUD)
    with loopback(create_app(st, routers=[cds_router()])) as (origin, _):
        yield origin, key, st
    st.store.close()


def bearer(key: ec.EllipticCurvePrivateKey, scopes: str = "user/RiskAssessment.c") -> dict[str, str]:
    token = issue_token(key, scopes=scopes, subject="dr-logistic", audience=AUD)
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


def request(model: LogisticModel, values: dict[str, Any], patient_id: str = "p1") -> dict[str, Any]:
    return parameters(patient_bundle(model.inputs, values, patient_id=patient_id, birth_date=BORN,
                                     effective=EFFECTIVE), as_of=AS_OF)


def scored_row(model: LogisticModel, body: dict[str, Any], as_of: str | None = AS_OF) -> np.ndarray:
    """The inputs the device scores for ``body`` (the age from the date of birth, at ``as_of``, default
    today), ``names`` order."""
    bundle, _ = inputs.request_bundle(body)
    when = None if as_of is None else date.fromisoformat(as_of)
    return np.array([inputs.extract(model, bundle, when).values])


def predict(origin: str, key: ec.EllipticCurvePrivateKey, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{origin}/fhir/Patient/$predict-risk", json=body, headers=bearer(key), timeout=30)


@pytest.mark.req("SRS-FHIR-013", "SRS-MOD-027")
def test_the_risk_assessment_states_the_probability_at_the_horizon(
        served: tuple[str, ec.EllipticCurvePrivateKey, ServerState], model: LogisticModel) -> None:
    origin, key, _ = served
    body = request(model, VALUES)
    resp = predict(origin, key, body)
    assert resp.status_code == 200, resp.text
    ra = resp.json()
    RiskAssessment.model_validate(ra)  # FHIR R4B
    check_risk_assessment(ra)
    x = scored_row(model, body)
    assert 54.0 <= x[0, 0] < 55.0  # the age the device computed from the date of birth
    (pred,) = ra["prediction"]
    prob, lower, upper = (v[0] for v in model.probability_with_interval(x))
    ref = glm_prediction(x).iloc[0]
    interval = next(e["valueRange"] for e in pred["extension"] if e["url"] == INTERVAL_URL)
    assert pred["probabilityDecimal"] == float(model.probability(x)[0]) == prob
    assert abs(pred["probabilityDecimal"] - ref["mean"]) <= 1e-8
    low, high = interval["low"]["value"], interval["high"]["value"]
    assert abs(low - ref["mean_ci_lower"]) <= 1e-8 and low == lower
    assert abs(high - ref["mean_ci_upper"]) <= 1e-8 and high == upper
    assert pred["whenRange"]["high"] == {"value": 1.0, "unit": "d", "system": "http://unitsofmeasure.org",
                                         "code": "d"}
    assert pred["outcome"]["text"] == "grade 3 tumour"
    assert ra["code"]["text"] == "probability of grade 3 tumour"
    assert pred["rationale"] == "probability of grade 3 tumour at 1 days, when it is recorded"
    # relativeRisk is a ratio of probabilities (against the reference patient), not the odds ratio
    assert pred["relativeRisk"] == pytest.approx(prob / expit(model.intercept), rel=1e-12)
    assert ra["method"]["coding"][0]["display"] == f"fedprog logistic {model.ref}"
    assert {"system": SHA256_SYSTEM, "code": model.sha256} in ra["method"]["coding"]
    # one log odds ratio per input (on its basis reference) and one per interaction (on the resource)
    per_input = [e["valueDecimal"] for b in ra["basis"] for e in b.get("extension", [])
                 if e["url"] == LOG_ODDS_URL]
    (interaction,) = [e for e in ra["extension"] if e["url"] == LOG_ODDS_INTERACTION_URL]
    parts = {p["url"]: p for p in interaction["extension"]}
    assert parts["effect"]["valueString"] == "hormone_therapy:postmenopausal"
    contributions = [*per_input, parts["contribution"]["valueDecimal"]]
    np.testing.assert_allclose(contributions, model.contributions(x)[0], rtol=0, atol=1e-15)
    log_odds = math.log(prob / (1 - prob))
    assert abs(sum(contributions) - (log_odds - model.intercept)) <= 1e-9
    assert not any("hazard" in e["url"] for b in ra["basis"] for e in b.get("extension", []))
    (note,) = ra["note"]
    assert "Wald interval on the log-odds scale" in note["text"] and "logistic regression" in note["text"]
    assert "estimated probability of grade 3 tumour at 1 day, when it is recorded" in note["text"]


@pytest.mark.req("SRS-FHIR-013", "SRS-MOD-027")
def test_another_horizon_and_an_input_outside_the_envelope_are_refused(
        served: tuple[str, ec.EllipticCurvePrivateKey, ServerState], model: LogisticModel) -> None:
    origin, key, _ = served
    body = request(model, VALUES)
    body["parameter"].append({"name": "horizon", "valueDecimal": 365.25})
    resp = predict(origin, key, body)
    assert resp.status_code == 422, resp.text
    issue = resp.json()["issue"][0]
    assert resp.json()["resourceType"] == "OperationOutcome" and issue["severity"] == "error"
    assert issue["diagnostics"] == ("horizon 365.25 day: grade3@1 predicts grade 3 tumour only at 1 day, "
                                    "when it is recorded; the device neither extrapolates nor interpolates")
    resp = predict(origin, key, request(model, {**VALUES, "pnodes": 20}))
    assert resp.status_code == 422, resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert re.match(r"Positive lymph nodes.*20.*outside", resp.json()["issue"][0]["diagnostics"])


@pytest.mark.req("SRS-CDS-005")
def test_the_cds_card_gives_the_probability_of_the_outcome_at_the_horizon(
        served: tuple[str, ec.EllipticCurvePrivateKey, ServerState], model: LogisticModel) -> None:
    origin, key, _ = served
    (service,) = httpx.get(f"{origin}/cds-services", timeout=30).json()["services"]
    assert service["description"].startswith("Estimated probability of grade 3 tumour at 1 day (when it "
                                              "is recorded), with a 95% interval, from the released logistic")
    bundle = patient_bundle(model.inputs, VALUES, patient_id="c1", birth_date=BORN, effective=EFFECTIVE)
    found = {"resourceType": "Bundle", "type": "searchset", "entry": bundle["entry"][1:]}
    hook = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/example", "patientId": "c1"},
            "prefetch": {"patient": bundle["entry"][0]["resource"], "observations": found}}
    resp = httpx.post(f"{origin}/cds-services/{SERVICE_ID}", json=hook, timeout=30,
                      headers={**bearer(key), "Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    (card,) = resp.json()["cards"]
    x = scored_row(model, parameters(bundle), as_of=None)  # scored on today's date: her age today
    prob, lower, upper = (100 * v[0] for v in model.probability_with_interval(x))
    assert card["summary"] == (f"{prob:.0f}% probability of grade 3 tumour at 1 day "
                               f"(95% CI {lower:.0f}–{upper:.0f}%)")
    assert len(card["summary"]) <= 139 and card["indicator"] == indicator(prob / 100) == "warning"
    assert "**Probability of grade 3 tumour**" in card["detail"]
    assert "| Horizon | Probability |" in card["detail"]
    assert "Wald interval on the log-odds scale" in card["detail"]


@pytest.mark.req("SRS-FHIR-014")
def test_a_scoring_worker_loads_the_logistic_artifact_and_answers_as_in_process(model: LogisticModel) -> None:
    entries = [request(model, VALUES, "w1"), request(model, {**VALUES, "pnodes": 20}, "w2")]
    occurrence = "2024-06-01T10:00:00Z"
    reply = Worker().handle({"protocol": PROTOCOL, "sha256": model.sha256, "artifact": logistic_artifact(),
                             "entries": entries, "start": 0, "occurrence": occurrence})
    assert "failed" not in reply, reply
    here = assess_entries(model, entries, 0, occurrence)
    got, refused = reply["results"]
    assert here[0].resource is not None and here[1].error is not None
    assert {k: v for k, v in got["resource"].items() if k != "id"} == \
        {k: v for k, v in here[0].resource.items() if k != "id"}
    assert refused["error"]["status"] == 422 and refused["error"]["diagnostics"] == here[1].error.diagnostics


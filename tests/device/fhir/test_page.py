"""What the risk page is built from: ``/app/model.json``, the static files, predictions at requested
horizons (``$predict-risk`` ``horizon``), and the CDS card's link to the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.riskassessment import RiskAssessment

from device.fhir.app import create_app
from device.fhir.auth import TokenVerifier, load_or_create_key
from device.fhir.cds import SERVICE_ID, cds_router
from device.fhir.examples import parameters
from device.fhir.http import ServerState
from device.fhir.inputs import MAX_HORIZONS
from device.fhir.page import STATIC, model_facts, mount_page, page_router
from device.fhir.resources import INTERVAL_URL
from device.fhir.service import FixedModel
from device.fhir.store import FhirStore
from device.model import PrognosticModel
from device.scoring import score

from .conftest import DEMO_VALUES, covariates, patient_bundle
from .test_app import AUD, PREDICT, bearer, outcome
from .test_cds import hook


@pytest.fixture
def page(tmp_path: Path, demo_model: PrognosticModel) -> tuple[TestClient, Any]:
    key = load_or_create_key(tmp_path / "token.pem")
    st = ServerState(base_url=AUD, verifier=TokenVerifier(key.public_key(), AUD),
                     store=FhirStore(tmp_path / "fhir.sqlite"), models=FixedModel(demo_model),
                     software_version="test", started="2026-11-29T00:00:00Z")
    app = create_app(st, routers=[cds_router(), page_router()])
    mount_page(app)
    return TestClient(app), key


def with_horizons(values: dict[str, Any], horizons: list[Any]) -> dict[str, Any]:
    body = parameters(patient_bundle(values))
    body["parameter"] += [{"name": "horizon", "valueDecimal": h} for h in horizons]
    return body


@pytest.mark.req("SRS-PAGE-004")
def test_predictions_at_requested_horizons_equal_the_scorer(page: Any, demo_model: PrognosticModel) -> None:
    client, key = page
    asked = [30.0, 365.25, 1000.0, 1826.0]
    resp = client.post(PREDICT, json=with_horizons(DEMO_VALUES, [1000.0, 30.0, 1826.0, 365.25, 30.0]),
                       headers=bearer(key))
    assert resp.status_code == 200, resp.text
    ra = resp.json()
    RiskAssessment.model_validate(ra)
    x = np.array([covariates(demo_model, DEMO_VALUES)])
    expected = score(demo_model, x, asked)
    got = [(p["whenRange"]["high"]["value"], p["probabilityDecimal"],
            next(e for e in p["extension"] if e["url"] == INTERVAL_URL)["valueRange"])
           for p in ra["prediction"]]
    assert [g[0] for g in got] == asked  # sorted, duplicates removed
    for k, (_, risk, interval) in enumerate(got):
        assert risk == pytest.approx(expected.risk[0, k], abs=1e-12)
        assert interval["low"]["value"] == pytest.approx(expected.lower[0, k], abs=1e-12)
        assert interval["high"]["value"] == pytest.approx(expected.upper[0, k], abs=1e-12)


@pytest.mark.req("SRS-PAGE-004")
@pytest.mark.parametrize("horizons, why", [
    ([0.0], "horizon 1: want a positive valueDecimal"), (["5 years"], "horizon 1"), ([True], "horizon 1"),
    ([1.0, -2.0], "horizon 2"), ([99999.0], "beyond the last released baseline time"),
    ([1.0] * (MAX_HORIZONS + 1), f"at most {MAX_HORIZONS} per call")])
def test_unusable_horizons_are_refused_by_name(page: Any, horizons: list[Any], why: str) -> None:
    client, key = page
    body = outcome(client.post(PREDICT, json=with_horizons(DEMO_VALUES, horizons), headers=bearer(key)), 422)
    assert why in body["issue"][0]["diagnostics"]


@pytest.mark.req("SRS-PAGE-001")
def test_model_json_describes_the_released_model_without_patient_data(page: Any,
                                                                      demo_model: PrognosticModel) -> None:
    client, _ = page
    facts = client.get("/app/model.json").json()
    assert facts == model_facts(demo_model, None)
    assert facts["sha256"] == demo_model.sha256 and facts["ref"] == demo_model.ref
    assert [h["value"] for h in facts["horizons"]] == list(demo_model.horizons)
    assert [h["label"] for h in facts["horizons"]] == ["3 years", "5 years"]
    assert [t["label"] for t in facts["ticks"]] == ["0", "1 year", "2 years", "3 years", "4 years", "5 years"]
    age = next(i for i in facts["inputs"] if i["name"] == "age")
    assert age["range_text"] == "validated range 27–79 years" and age["code"]["code"] == "30525-0"
    assert facts["limitations"] and "Intended use" in facts["intended_use"]


@pytest.mark.req("SRS-PAGE-001")
def test_the_page_is_served_from_this_origin_only(page: Any) -> None:
    client, _ = page
    html = client.get("/app/")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    for name in ("app.js", "app.css"):
        assert client.get(f"/app/{name}").status_code == 200
    text = "".join(p.read_text(encoding="utf-8") for p in STATIC.iterdir())
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "").replace(
        "http://unitsofmeasure.org", "")
    assert "https://" not in text  # no CDN, no font service: hospitals often have no internet


@pytest.mark.req("SRS-PAGE-005", "SRS-CDS-001")
@pytest.mark.parametrize("values", [DEMO_VALUES, {**DEMO_VALUES, "pnodes": 0}])
def test_every_cds_card_links_to_the_page_as_a_smart_app(page: Any, values: dict[str, Any]) -> None:
    client, key = page
    resp = client.post(f"/cds-services/{SERVICE_ID}", json=hook(values),
                       headers={**bearer(key, "user/RiskAssessment.c"), "Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    (card,) = resp.json()["cards"]
    link = {"label": "Open the risk page", "url": "http://testserver/app/", "type": "smart"}
    assert card["links"] == [link]


@pytest.mark.req("SRS-PAGE-002")
def test_the_capability_statement_names_the_smart_endpoints(page: Any) -> None:
    client, _ = page
    security = client.get("/fhir/metadata").json()["rest"][0]["security"]
    (uris,) = security["extension"]
    assert {e["url"]: e["valueUri"] for e in uris["extension"]} == {
        "authorize": "http://testserver/auth/authorize", "token": "http://testserver/auth/token"}


@pytest.mark.req("SRS-PAGE-007", "SRS-PAGE-006")
def test_model_json_gives_clinical_labels_the_event_in_words_and_each_caveat_once(page: Any) -> None:
    client, _ = page
    facts = client.get("/app/model.json").json()
    labels = {i["name"]: i["display"] for i in facts["inputs"]}
    assert labels == {"age": "Age", "tsize": "Tumour size", "tgrade": "Tumour grade",
                      "pnodes": "Positive lymph nodes", "progrec": "Progesterone receptor",
                      "estrec": "Oestrogen receptor",
                      "hormone_therapy": "Hormone therapy", "postmenopausal": "Postmenopausal"}
    assert [i["name"] for i in facts["inputs"] if i["from_birth_date"]] == ["age"]  # asked as a date of birth
    assert facts["event"] == "recurrence or death" and facts["sex"] == "female"
    assert facts["purpose"].startswith("Estimates the absolute risk of recurrence or death within 3 years "
                                       "and 5 years for adult women with primary, non-metastatic")
    assert facts["limitations"][:2] == [
        "Only for adult women with primary, non-metastatic, node-positive invasive breast cancer after "
        "surgery: the patient's sex and every input are checked, and a value outside the validated range "
        "shown beside each input is refused, never guessed.",
        "Results older than 365 days on the day of the assessment are refused."]
    shown = [facts["purpose"], *facts["limitations"]]  # what the page's About panel shows
    for caveat in ("95% interval", "support", "associations", "validated range", "older than"):
        assert sum(caveat in text for text in shown) == 1, caveat

"""A released logistic model on the risk page in headless Chromium (the real app on loopback, a pasted
token): the probability of the outcome at its one horizon with its interval, read back from the stored
RiskAssessment, no survival curve, contributions as odds factors and the age spline as an odds-ratio
curve; a screenshot (``build/screenshots/risk-page-logistic.png``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from device.fhir.app import create_app
from device.fhir.auth import issue_token
from device.fhir.cds import cds_router
from device.fhir.page import mount_page, page_router
from device.model import LogisticModel, load_model
from tests.device.logistic_model import logistic_artifact

from .conftest import server_state
from .loopback import loopback
from .test_page_browser import browser, enter, pytestmark, screenshot, wait_for  # noqa: F401

AUD = "http://testserver/fhir"
PATIENT = "logistic-page"
VALUES = {"age": 62, "pnodes": 4, "progrec": 60, "hormone_therapy": True, "postmenopausal": True}


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ec.EllipticCurvePrivateKey]]:
    model = load_model(logistic_artifact())
    assert isinstance(model, LogisticModel)
    st, key = server_state(tmp_path_factory.mktemp("logistic-page"), model, audience=AUD)
    app = create_app(st, routers=[cds_router(), page_router()])
    mount_page(app)
    with loopback(app) as (origin, _):
        yield origin, key
    st.store.close()


def token(key: ec.EllipticCurvePrivateKey, scopes: str) -> str:
    return issue_token(key, scopes=scopes, subject="dr-logistic", audience=AUD)


def stored(origin: str, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    found = httpx.get(f"{origin}/fhir/RiskAssessment", params={"subject": f"Patient/{PATIENT}"}, timeout=30,
                      headers={"Authorization": f"Bearer {token(key, 'user/RiskAssessment.rs')}",
                               "Accept": "application/fhir+json"}).json()
    assert found["total"] == 1
    resource: dict[str, Any] = found["entry"][0]["resource"]
    return resource


@pytest.mark.req("SRS-PAGE-008", "SRS-FHIR-013")
def test_the_page_shows_the_probability_at_the_horizon_without_a_survival_curve(
        page_server: tuple[str, ec.EllipticCurvePrivateKey], browser: Any) -> None:  # noqa: F811
    origin, key = page_server
    facts = httpx.get(f"{origin}/app/model.json", timeout=30).json()
    assert facts["curve"] is False and facts["ratio"] == "odds" and facts["kind"] == "logistic model"
    (age,) = facts["effects"]
    assert age["ratio"] == "odds" and len(age["odds_ratio"]) == len(age["x"]) and "hazard_ratio" not in age
    browser.get(f"{origin}/app/")
    wait_for(browser, "#token-box")
    browser.find_element("id", "token").send_keys(token(key, "user/RiskAssessment.cr"))
    patient = browser.find_element("id", "patient-id")
    patient.clear()
    patient.send_keys(PATIENT)
    enter(browser, VALUES)
    card = wait_for(browser, "#result .headline")
    ra = stored(origin, key)
    (pred,) = ra["prediction"]
    interval = pred["extension"][0]["valueRange"]
    assert float(card.get_attribute("data-horizon")) == 1.0
    assert float(card.get_attribute("data-risk")) == pred["probabilityDecimal"]
    assert float(card.get_attribute("data-lower")) == interval["low"]["value"]
    assert float(card.get_attribute("data-upper")) == interval["high"]["value"]
    n = round(100 * pred["probabilityDecimal"])
    assert "Probability of grade 3 tumour at 1 day" in card.text and "95% interval" in card.text
    assert f"{n} of 100 patients like this one have grade 3 tumour at 1 day; {100 - n} do not." in card.text
    assert browser.find_element("id", "result-title").text == "Estimated probability of grade 3 tumour"
    # no survival curve: a logistic model predicts one outcome at one horizon
    assert not browser.find_element("id", "curve-figure").is_displayed()
    assert not browser.find_element("id", "curve-title").is_displayed()
    assert not browser.find_elements("css selector", "#curve svg")
    # contributions as odds factors, one row per input and one for the interaction, as stored
    rows = {r.get_attribute("data-input"): float(r.get_attribute("data-contribution"))
            for r in browser.find_elements("css selector", "#drivers tbody tr")}
    stored_parts = [e["valueDecimal"] for b in ra["basis"] for e in b.get("extension", [])]
    stored_parts += [x["valueDecimal"] for e in ra["extension"] for x in e["extension"]
                     if x["url"] == "contribution"]
    assert sorted(rows.values()) == sorted(stored_parts) and len(rows) == len(facts["inputs"]) + 1
    drivers = browser.find_element("id", "drivers").text
    assert "the odds ×" in drivers and "hazard" not in drivers
    assert "odds of the outcome" in browser.find_element("id", "drivers-note").text
    # the age spline as an odds-ratio curve, her age marked
    curve = wait_for(browser, '#effect-curves svg[data-effect="age"]')
    assert curve.get_attribute("aria-label").startswith("Odds ratio by Age")
    points = curve.find_element("css selector", "polyline").get_attribute("points").split()
    assert len(points) == len(age["x"])
    assert 62.0 <= float(curve.find_element("css selector", "circle").get_attribute("data-value")) < 63.0
    note = browser.find_element("id", "effects-note").text
    assert "odds ratio against the model's reference patient" in note
    about = browser.find_element("id", "about").text
    assert "Wald interval on the log-odds scale" in about and "Logistic regression model" in about
    assert "log-hazard" not in browser.find_element("tag name", "body").text
    logs = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not logs, logs
    assert screenshot(browser, "risk-page-logistic").stat().st_size > 20_000

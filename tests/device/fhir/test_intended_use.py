"""The intended purpose enforced on each request: the clinician (or the EHR) receives, as one
diagnostics line of a 422 OperationOutcome, why a patient is outside what the model was developed
for — another or no recorded sex, results older than the model allows, a node-negative patient —
and no number; a patient inside it is scored as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from device.fhir.app import create_app
from device.fhir.cds import SERVICE_ID, cds_router
from device.fhir.examples import parameters
from device.model import PrognosticModel

from .conftest import DEMO_VALUES, patient_bundle, server_state
from .test_app import PREDICT, bearer, outcome
from .test_cds import hook

WOMEN = ("this model was developed for women (adult women with primary, non-metastatic, node-positive "
         "invasive breast cancer after surgery)")


@pytest.fixture
def client(tmp_path: Path, demo_model: PrognosticModel) -> tuple[TestClient, Any]:
    st, key = server_state(tmp_path, demo_model)
    return TestClient(create_app(st, routers=[cds_router()])), key


def days_ago(n: int) -> str:
    return (datetime.now(UTC) - timedelta(days=n)).date().isoformat()


def refused(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    """The one issue of the 422 OperationOutcome ``$predict-risk`` answers ``body`` with."""
    http, key = client
    (issue,) = outcome(http.post(PREDICT, json=body, headers=bearer(key)), 422)["issue"]
    return dict(issue)


# ----------------------------------------------------------------------------- sex
@pytest.mark.req("SRS-DEV-011")
@pytest.mark.parametrize("gender", ["male", "other", "unknown"])
def test_a_patient_of_another_sex_is_refused_in_clinical_words(client: Any, gender: str) -> None:
    issue = refused(client, parameters(patient_bundle(DEMO_VALUES, gender=gender)))
    assert issue["code"] == "business-rule"
    assert issue["diagnostics"] == f"The patient's recorded sex is {gender}; {WOMEN}, so no risk is given"
    assert issue["expression"] == ["Bundle.entry[0].resource.gender"]


@pytest.mark.req("SRS-DEV-011")
def test_a_patient_without_a_recorded_sex_is_refused(client: Any) -> None:
    issue = refused(client, parameters(patient_bundle(DEMO_VALUES, gender=None)))
    assert issue["code"] == "required"
    assert issue["diagnostics"] == (f"The patient's sex is not recorded (Patient/p1 has no gender); {WOMEN}, "
                                    "so no risk is given without it")
    assert issue["expression"] == ["Bundle.entry[0].resource.gender"]


@pytest.mark.req("SRS-DEV-011")
def test_the_cds_card_of_a_man_gives_no_risk_and_says_why(client: Any) -> None:
    http, key = client
    body = hook(DEMO_VALUES)
    body["prefetch"]["patient"]["gender"] = "male"
    resp = http.post(f"/cds-services/{SERVICE_ID}", json=body,
                     headers={**bearer(key, "user/RiskAssessment.c"), "Content-Type": "application/json"})
    (card,) = resp.json()["cards"]
    assert card["summary"] == "Recurrence-free survival risk not shown: patient outside the intended use"
    assert card["indicator"] == "info" and "%" not in card["summary"]
    assert f"\n- The patient's recorded sex is male; {WOMEN}, so no risk is given\n" in card["detail"]


@pytest.mark.req("SRS-DEV-014", "SRS-DEV-013")
def test_the_cds_card_lists_each_clinical_refusal_whole(client: Any) -> None:
    http, key = client
    body = hook({**DEMO_VALUES, "pnodes": 0, "age": 95.0})
    body["prefetch"]["observations"]["entry"][2]["resource"]["effectiveDateTime"] = days_ago(500)  # tgrade
    resp = http.post(f"/cds-services/{SERVICE_ID}", json=body,
                     headers={**bearer(key, "user/RiskAssessment.c"), "Content-Type": "application/json"})
    (card,) = resp.json()["cards"]
    lines = [x for x in card["detail"].splitlines() if x.startswith("- ")]
    assert lines == [
        f"- Results too old to use on {datetime.now(UTC).date()}: Tumour grade (Observation/p1-tgrade, "
        f"{days_ago(500)}, 500 days old); this model uses results up to 365 days old, so send current ones",
        "- Age: 95 years is outside the range this model was developed and validated for (27 to 79 years)",
        "- Positive lymph nodes: this model was developed for node-positive patients; 0 positive nodes is "
        "outside it"]
    assert card["summary"].endswith("input: Age, Tumour grade, Positive lymph nodes")


@pytest.mark.req("SRS-DEV-011")
def test_a_model_without_an_intended_use_scores_any_sex(tmp_path: Path, unlimited_model: PrognosticModel
                                                        ) -> None:
    st, key = server_state(tmp_path, unlimited_model)
    http = TestClient(create_app(st))
    body = parameters(patient_bundle(DEMO_VALUES, gender=None, effective="2001-01-01"))
    resp = http.post(PREDICT, json=body, headers=bearer(key))
    assert resp.status_code == 200, resp.text  # no sex, a 25-year-old result: nothing to enforce


# ----------------------------------------------------------------------- stale results
@pytest.mark.req("SRS-DEV-013")
def test_results_older_than_a_year_are_refused_not_used(client: Any) -> None:
    bundle = patient_bundle(DEMO_VALUES)
    old = days_ago(400)
    for k in (2, 4):  # tsize and pnodes, measured 400 days ago
        bundle["entry"][k]["resource"]["effectiveDateTime"] = old
    issue = refused(client, parameters(bundle))
    today = datetime.now(UTC).date()
    assert issue["code"] == "business-rule"
    assert issue["diagnostics"] == (
        f"Results too old to use on {today}: Tumour size (Observation/p1-tsize, {old}, 400 days old), "
        f"Positive lymph nodes (Observation/p1-pnodes, {old}, 400 days old); this model uses results up to "
        "365 days old, so send current ones")
    assert issue["expression"] == ["Bundle.entry[2].resource.effective", "Bundle.entry[4].resource.effective"]


@pytest.mark.req("SRS-DEV-013")
def test_the_limit_is_counted_at_as_of_and_a_newer_result_is_used(client: Any) -> None:
    http, key = client
    exactly = patient_bundle(DEMO_VALUES, effective="2024-01-15")
    resp = http.post(PREDICT, json=parameters(exactly, as_of="2025-01-14"), headers=bearer(key))
    assert resp.status_code == 200, resp.text  # 365 days old at asOf: still usable
    issue = refused(client, parameters(exactly, as_of="2025-01-15"))  # 366 days
    assert issue["diagnostics"].startswith("Results too old to use on 2025-01-15: Age (Observation/p1-age, "
                                           "2024-01-15, 366 days old), Tumour size")
    newer = patient_bundle({**DEMO_VALUES, "tsize": 30.0}, effective="2025-01-10", patient_id="p1")
    both = patient_bundle(DEMO_VALUES, effective="2023-01-01")
    both["entry"] += [{"resource": {**e["resource"], "id": e["resource"]["id"] + "-new"}}
                      for e in newer["entry"][1:]]
    resp = http.post(PREDICT, json=parameters(both, as_of="2025-01-15"), headers=bearer(key))
    assert resp.status_code == 200, resp.text  # an old result beside a recent one is not a refusal


@pytest.mark.req("SRS-DEV-013")
def test_an_undated_result_is_refused_when_its_age_cannot_be_checked(client: Any) -> None:
    issue = refused(client, parameters(patient_bundle(DEMO_VALUES, effective=None)))
    assert "Positive lymph nodes (Observation/p1-pnodes, undated)" in issue["diagnostics"]


# ------------------------------------------------------------------- clinical wording
@pytest.mark.req("SRS-DEV-014")
def test_a_node_negative_patient_is_refused_in_the_words_of_the_intended_use(client: Any) -> None:
    issue = refused(client, parameters(patient_bundle({**DEMO_VALUES, "pnodes": 0})))
    assert issue["code"] == "business-rule"
    assert issue["diagnostics"] == ("Positive lymph nodes: this model was developed for node-positive "
                                    "patients; 0 positive nodes is outside it")
    assert issue["expression"] == ["Bundle.entry[4].resource.valueQuantity"]


@pytest.mark.req("SRS-DEV-014")
def test_above_the_range_the_validated_range_is_named_in_words(client: Any) -> None:
    issue = refused(client, parameters(patient_bundle({**DEMO_VALUES, "pnodes": 30, "tsize": 2.0},
                                                      units={"tsize": "cm"})))
    assert issue["diagnostics"] == ("Positive lymph nodes: 30 is outside the range this model was developed "
                                    "and validated for (1 to 14)")

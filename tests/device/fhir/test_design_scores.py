"""A model with a spline, ordinal categories and an interaction, served: one effect per input in the
RiskAssessment, the interaction's own, and the age effect the page draws (``/app/model.json``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.riskassessment import RiskAssessment

from device.fhir.app import create_app
from device.fhir.cds import cds_router
from device.fhir.examples import parameters
from device.fhir.page import mount_page, page_router
from device.fhir.resources import CONTRIBUTION_URL, INTERACTION_URL
from device.model import PrognosticModel, load_model
from device.scoring import score
from federated.demo_study import AGE_KNOTS, INTERACTION
from prognosis.design import rcs_basis
from tests.device.spline_model import spline_artifact

from .conftest import DEMO_VALUES, covariates, patient_bundle, server_state
from .test_app import PREDICT, bearer


@pytest.fixture(scope="module")
def spline_model() -> PrognosticModel:
    return load_model(spline_artifact())


@pytest.fixture
def client(tmp_path: Path, spline_model: PrognosticModel) -> tuple[TestClient, Any]:
    st, key = server_state(tmp_path, spline_model)
    app = create_app(st, routers=[cds_router(), page_router()])
    mount_page(app)
    return TestClient(app), key


@pytest.mark.req("SRS-MOD-004", "SRS-MOD-007")
@pytest.mark.parametrize("therapy,post", [(True, True), (True, False), (False, True)])
def test_the_risk_assessment_carries_one_contribution_per_input_and_the_interactions(
        client: tuple[TestClient, Any], spline_model: PrognosticModel, therapy: bool, post: bool) -> None:
    http, key = client
    values = {**DEMO_VALUES, "age": 71.0, "hormone_therapy": therapy, "postmenopausal": post}
    resp = http.post(PREDICT, json=parameters(patient_bundle(values)), headers=bearer(key))
    assert resp.status_code == 200, resp.text
    ra = resp.json()
    RiskAssessment.model_validate(ra)
    per_input = [e["valueDecimal"] for b in ra["basis"] for e in b["extension"]
                 if e["url"] == CONTRIBUTION_URL]
    inter = [{x["url"]: x for x in e["extension"]} for e in ra.get("extension",
                                                                   []) if e["url"] == INTERACTION_URL]
    assert len(per_input) == len(spline_model.inputs)
    assert [i["effect"]["valueString"] for i in inter] == [":".join(INTERACTION)]
    total = sum(per_input) + sum(i["contribution"]["valueDecimal"] for i in inter)
    rr = ra["prediction"][0]["relativeRisk"]
    assert total == pytest.approx(math.log(rr), abs=1e-12)
    # the same numbers as the scorer, and the age effect is the spline's (three columns, one effect)
    x = np.array([covariates(spline_model, values)])
    s = score(spline_model, x)
    assert [p["probabilityDecimal"] for p in ra["prediction"]] == pytest.approx(list(s.risk[0]), abs=1e-15)
    b = spline_model.artifact.coefficients
    cols = rcs_basis(np.array([71.0]), AGE_KNOTS)[0] - spline_model.center[:3]
    assert per_input[0] == pytest.approx(cols @ [b["age"], b["age'"], b["age''"]], abs=1e-12)
    assert inter[0]["contribution"]["valueDecimal"] == pytest.approx(
        b[":".join(INTERACTION)] * (float(therapy and post) - spline_model.center[-1]), abs=1e-12)


@pytest.mark.req("SRS-MOD-005", "SRS-MOD-007")
def test_the_page_is_given_the_age_effect_over_its_validated_range(client: tuple[TestClient, Any],
                                                                    spline_model: PrognosticModel) -> None:
    http, _ = client
    facts = http.get("/app/model.json").json()
    assert [e["name"] for e in facts["effects"]] == ["age"]
    age = facts["effects"][0]
    spec = spline_model.inputs[0]
    assert age["x"][0] == spec.min and age["x"][-1] == spec.max and age["knots"] == list(AGE_KNOTS)
    assert age["reference"] == 55.0
    # the hazard ratio against the reference patient as age alone varies: the model's own
    X = np.repeat(spline_model.reference[None, :], len(age["x"]), axis=0)
    X[:, 0] = age["x"]
    np.testing.assert_allclose(age["hazard_ratio"], np.exp(spline_model.lp(X)), rtol=1e-12)
    assert np.all(np.array(age["lower"]) <= np.array(age["hazard_ratio"]))
    assert np.all(np.array(age["hazard_ratio"]) <= np.array(age["upper"]))
    at_reference = int(np.argmin(np.abs(np.array(age["x"]) - 55.0)))
    assert age["x"][at_reference] != 55.0 or age["hazard_ratio"][at_reference] == pytest.approx(1.0,
                                                                                                abs=1e-12)
    assert facts["interactions"] == [{"name": ":".join(INTERACTION), "inputs": list(INTERACTION)}]

"""Inputs that cannot hurt (issue 16 H1, M1, M3 and the Bundle-entry defect), through the real
ASGI app: each answer is a 4xx OperationOutcome naming the input, never a 500, and in a batch a
bad entry fails alone while the others are scored."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from device.fhir.app import create_app
from device.fhir.examples import parameters
from device.model import PrognosticModel

from .conftest import DEMO_VALUES, patient_bundle, server_state
from .test_app import PREDICT, bearer, outcome


@pytest.fixture
def client(tmp_path: Path, demo_model: PrognosticModel) -> tuple[TestClient, Any]:
    st, key = server_state(tmp_path, demo_model)
    return TestClient(create_app(st)), key


@pytest.fixture
def integer_client(tmp_path: Path, integer_model: PrognosticModel) -> tuple[TestClient, Any]:
    st, key = server_state(tmp_path, integer_model)
    return TestClient(create_app(st)), key


def with_unit(unit: str) -> dict[str, Any]:
    return parameters(patient_bundle({**DEMO_VALUES, "tsize": 2}, units={"tsize": unit}))


def batch(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": r, "request": {"method": "POST", "url": "Patient/$predict-risk"}} for r in resources]}


# ----------------------------------------------------------------------- H1: units
@pytest.mark.req("SRS-DEV-008", "SRS-FHIR-006")
@pytest.mark.parametrize("unit", ["km999/m998", "m" + "9" * 5000, "km999999/m999998", "m7", "mm-99",
                                  "fm6.fm6.fm6/km6.km6.km6", "m٣", "mol", "[lb_av]", "mm/mm.mm.mm.mm.mm.mm"])
def test_an_unbounded_or_foreign_unit_is_a_422_naming_the_code(client: Any, unit: str) -> None:
    """Before: 500 (OverflowError in int(exp), factor**exp or float()), or seconds of CPU."""
    http, key = client
    started = time.perf_counter()
    resp = http.post(PREDICT, json=with_unit(unit), headers=bearer(key))
    assert time.perf_counter() - started < 1.0
    body = outcome(resp, 422)
    issue = body["issue"][0]
    assert issue["expression"] == ["Bundle.entry[2].resource.valueQuantity.code"]
    assert issue["diagnostics"].startswith("Tumour size: Observation/p1-tsize is in ")
    assert len(issue["diagnostics"]) < 400  # a long unit is never echoed whole


@pytest.mark.req("SRS-DEV-008", "SRS-FHIR-006")
def test_units_of_the_declared_dimension_still_convert(client: Any) -> None:
    http, key = client
    risks = []
    for unit, value in (("mm", 25.0), ("cm", 2.5), ("m", 0.025), ("mm{tumour}", 25.0)):
        body = parameters(patient_bundle({**DEMO_VALUES, "tsize": value}, units={"tsize": unit}))
        resp = http.post(PREDICT, json=body, headers=bearer(key))
        assert resp.status_code == 200, resp.text
        risks.append(resp.json()["prediction"][0]["probabilityDecimal"])
    assert max(risks) - min(risks) < 1e-12


# ----------------------------------------------------------------------- M1: dates
EXTREME = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]


def dated(values: dict[str, Any], when: str, element: str = "effectiveDateTime", **kw: Any) -> dict[str, Any]:
    """A patient Bundle whose second Observation (entry 2) is dated ``when`` in ``element``."""
    bundle = patient_bundle(values, **kw)
    obs = bundle["entry"][2]["resource"]
    del obs["effectiveDateTime"]
    obs[element] = when
    return bundle


@pytest.mark.req("SRS-FHIR-007")
@pytest.mark.parametrize("when", EXTREME)
@pytest.mark.parametrize("element", ["effectiveDateTime", "issued"])
def test_a_date_outside_the_representable_range_is_a_422(client: Any, when: str, element: str) -> None:
    """Before: 500 (OverflowError in astimezone)."""
    http, key = client
    resp = http.post(PREDICT, json=parameters(dated(DEMO_VALUES, when, element)), headers=bearer(key))
    issue = outcome(resp, 422)["issue"][0]
    assert issue["expression"] == [f"Bundle.entry[2].resource.{element}"]
    assert "outside the dates" in issue["diagnostics"]


@pytest.mark.req("SRS-FHIR-007", "SRS-FHIR-003")
def test_in_a_batch_an_extreme_date_fails_only_its_entry(client: Any) -> None:
    """Before: one such entry failed the whole batch with 500."""
    http, key = client
    good = [parameters(patient_bundle(DEMO_VALUES, patient_id=f"g{i}")) for i in range(2)]
    bad = parameters(dated(DEMO_VALUES, EXTREME[0], patient_id="bad"))
    late = parameters(patient_bundle({**DEMO_VALUES, "tsize": 2}, patient_id="unit", units={"tsize": "m998"}))
    for path in (PREDICT, "/fhir"):
        resp = http.post(path, json=batch(good[0], bad, late, good[1]), headers=bearer(key))
        assert resp.status_code == 200, resp.text
        entries = resp.json()["entry"]
        assert [e["response"]["status"][:3] for e in entries] == ["200", "422", "422", "200"]
        assert entries[1]["response"]["outcome"]["issue"][0]["expression"] == [
            "Bundle.entry[2].resource.effectiveDateTime"]
        assert entries[2]["response"]["outcome"]["issue"][0]["expression"] == [
            "Bundle.entry[2].resource.valueQuantity.code"]


# ------------------------------------------------------------------- M3: integers
@pytest.mark.req("SRS-DEV-009")
@pytest.mark.parametrize(("name", "label", "value"), [("tgrade", "Tumour grade", 2.5),
                                                      ("pnodes", "Positive lymph nodes", 3.7),
                                                      ("pnodes", "Positive lymph nodes", 1.000001)])
def test_a_count_or_grade_that_is_not_whole_is_refused(integer_client: Any, name: str, label: str,
                                                       value: float) -> None:
    """Before: a grade of 2.5 or 3.7 positive nodes was scored (the envelope checked ranges only)."""
    http, key = integer_client
    body = parameters(patient_bundle({**DEMO_VALUES, name: value}))
    resp = http.post(PREDICT, json=body, headers=bearer(key))
    issue = outcome(resp, 422)["issue"][0]
    assert issue["diagnostics"].startswith(f"{label}: {value} is not a whole number")
    assert issue["expression"][0].endswith("valueQuantity")


@pytest.mark.req("SRS-DEV-009")
def test_whole_counts_and_grades_are_scored_as_before(integer_client: Any, client: Any,
                                                      integer_model: PrognosticModel) -> None:
    http, key = integer_client
    body = parameters(patient_bundle({**DEMO_VALUES, "pnodes": 3.0}))
    resp = http.post(PREDICT, json=body, headers=bearer(key))
    assert resp.status_code == 200, resp.text
    plain, key2 = client
    same = plain.post(PREDICT, json=parameters(patient_bundle(DEMO_VALUES)), headers=bearer(key2))
    assert resp.json()["prediction"] == same.json()["prediction"]
    kinds = {s.name: s.kind for s in integer_model.inputs}
    assert kinds["pnodes"] == "integer" and kinds["tgrade"] == kinds["tsize"] == "category"  # banded
    # 250 % is 2.5: a conversion that lands between whole numbers is refused too
    body = parameters(patient_bundle({**DEMO_VALUES, "tgrade": 250}, units={"tgrade": "%"}))
    assert "not a whole number" in outcome(http.post(PREDICT, json=body, headers=bearer(key)), 422)[
        "issue"][0]["diagnostics"]


# --------------------------------------------------------- non-resource Bundle entries
@pytest.mark.req("SRS-FHIR-007", "SRS-FHIR-004")
@pytest.mark.parametrize("type_", ["Element", "Quantity", "CodeableConcept", "BackboneElement"])
def test_a_data_type_is_not_accepted_as_a_bundle_entry(client: Any, type_: str) -> None:
    """Before: ``{"resourceType": "Element"}`` was accepted as an entry."""
    http, key = client
    bundle = patient_bundle(DEMO_VALUES)
    bundle["entry"].append({"resource": {"resourceType": type_}})
    issue = outcome(http.post(PREDICT, json=parameters(bundle), headers=bearer(key)), 400)["issue"][0]
    k = len(bundle["entry"]) - 1
    assert issue["expression"] == [f"Bundle.entry[{k}].resource.resourceType"]
    assert "is not a FHIR resource type" in issue["diagnostics"]

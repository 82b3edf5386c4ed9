"""A $predict-risk patient Bundle becomes the model's covariate vector, or a precise FHIR refusal."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.fhir import examples
from device.fhir.errors import FhirError
from device.fhir.examples import EFFECTIVE, NO, SNOMED, YES, obs_id, parameters, value_element
from device.fhir.inputs import PatientInputs, extract, request_bundle
from device.model import PrognosticModel
from device.units import age_in, convert
from tests.device.fhir import conftest
from tests.device.fhir.conftest import DEMO_VALUES, GRADES

pytestmark = pytest.mark.req("SRS-FHIR-005")

AS_OF = date(2024, 6, 1)


def patient_bundle(values: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """The demo Bundle with results dated 2024-01-15 (138 days before :data:`AS_OF`) unless told."""
    return conftest.patient_bundle(values, **{"effective": EFFECTIVE, **kw})


def observation(*args: Any, **kw: Any) -> dict[str, Any]:
    """One Observation dated 2024-01-15 unless told."""
    return examples.observation(*args, **{"effective": EFFECTIVE, **kw})


def refusal(call: Any, *args: Any, **kwargs: Any) -> FhirError:
    with pytest.raises(FhirError) as info:
        call(*args, **kwargs)
    return info.value


def spec_of(model: PrognosticModel, name: str) -> Any:
    return next(s for s in model.inputs if s.name == name)


def entry_of(bundle: dict[str, Any], name: str, patient_id: str = "p1") -> tuple[int, dict[str, Any]]:
    oid = obs_id(patient_id, name)
    return next((i, e["resource"]) for i, e in enumerate(bundle["entry"]) if e["resource"].get("id") == oid)


def expected(model: PrognosticModel, values: dict[str, Any]) -> list[float]:
    return conftest.covariates(model, values)


# --- request forms ----------------------------------------------------------------------


def test_a_bare_bundle_and_a_parameters_give_the_same_vector(demo_model: PrognosticModel) -> None:
    bundle = patient_bundle(DEMO_VALUES)
    assert request_bundle(bundle) == (bundle, None)
    got, as_of = request_bundle(parameters(bundle))
    assert got is bundle and as_of is None
    result = extract(demo_model, bundle, AS_OF)
    assert isinstance(result, PatientInputs)
    assert result.patient == "Patient/p1" and result.as_of == AS_OF
    np.testing.assert_array_equal(result.values, expected(demo_model, DEMO_VALUES))
    assert result.values.dtype == float and not result.values.flags.writeable
    assert result.basis == tuple(f"Observation/{obs_id('p1', n)}" for n in demo_model.names)
    assert set(result.sources) == set(demo_model.names)
    assert result.sources["tsize"] == "Observation/p1-tsize 21889-1 = 25 mm -> over 20 to 50 mm"
    assert result.sources["hormone_therapy"] == "Observation/p1-hormone-therapy 169413002 = true"


def test_the_default_as_of_is_today_utc(demo_model: PrognosticModel) -> None:
    bundle = patient_bundle(DEMO_VALUES, effective=examples.TODAY)
    assert extract(demo_model, bundle).as_of == datetime.now(UTC).date()


@pytest.mark.parametrize("kind", ["searchset", "transaction", "document"])
def test_other_patient_record_bundle_types_are_read(demo_model: PrognosticModel, kind: str) -> None:
    bundle = patient_bundle(DEMO_VALUES, bundle_type=kind)
    np.testing.assert_array_equal(extract(demo_model, request_bundle(bundle)[0], AS_OF).values,
                                  expected(demo_model, DEMO_VALUES))


@pytest.mark.parametrize(("part", "want"), [
    ({"valueDate": "2024-06-01"}, date(2024, 6, 1)),
    ({"valueDateTime": "2024-06-01T23:00:00-05:00"}, date(2024, 6, 1)),  # the date as written
    ({"valueDateTime": "2024-06-01"}, date(2024, 6, 1)),
])
def test_as_of_is_read_from_the_parameters(part: dict[str, Any], want: date) -> None:
    body = parameters(patient_bundle(DEMO_VALUES))
    body["parameter"].append({"name": "asOf", **part})
    assert request_bundle(body)[1] == want


@pytest.mark.parametrize("part", [{"valueDate": "2024-13-01"}, {"valueDate": "2024"},
                                  {"valueDateTime": "2024-06"}, {"valueString": "2024-06-01"},
                                  {"valueDate": 20240601}])
def test_a_bad_as_of_is_refused(part: dict[str, Any]) -> None:
    body = parameters(patient_bundle(DEMO_VALUES))
    body["parameter"].append({"name": "asOf", **part})
    err = refusal(request_bundle, body)
    assert (err.status, err.code) == (422, "value")
    assert err.expression == ["Parameters.parameter.where(name='asOf')"]
    assert err.diagnostics.startswith("asOf")


def test_an_as_of_in_the_future_is_refused(demo_model: PrognosticModel) -> None:
    err = refusal(extract, demo_model, patient_bundle(DEMO_VALUES), date(2999, 1, 1))
    assert (err.status, err.code) == (422, "value") and "future" in err.diagnostics


def test_as_of_leaves_out_later_observations(demo_model: PrognosticModel) -> None:
    bundle = patient_bundle(DEMO_VALUES)
    spec = spec_of(demo_model, "progrec")
    later = observation(spec, "later", value_element(spec, 400.0), effective="2024-06-02T08:00:00Z")
    bundle["entry"].append({"resource": later})
    assert extract(demo_model, bundle, AS_OF).values[4] == 120.0
    assert extract(demo_model, bundle, date(2024, 6, 2)).values[4] == 400.0
    del bundle["entry"][entry_of(bundle, "progrec")[0]]
    err = refusal(extract, demo_model, bundle, AS_OF)
    assert err.code == "required"
    assert "Observation/later, which is dated 2024-06-02, after asOf 2024-06-01" in err.diagnostics


@pytest.mark.parametrize("body", [None, [], "Bundle", 3, {"entry": []}, {"resourceType": 3}])
def test_a_body_that_is_not_a_resource_is_a_400(body: Any) -> None:
    err = refusal(request_bundle, body)
    assert (err.status, err.code) == (400, "structure")


def test_a_batch_bundle_goes_to_the_batch_path() -> None:
    for body in (patient_bundle(DEMO_VALUES, bundle_type="batch"),
                 parameters(patient_bundle(DEMO_VALUES, bundle_type="batch"))):
        err = refusal(request_bundle, body)
        assert (err.status, err.code) == (422, "not-supported")
        assert "batch" in err.diagnostics and err.expression[0].endswith(".type")


@pytest.mark.parametrize("kind", ["history", "message", "batch-response"])
def test_other_bundle_types_are_not_supported(kind: str) -> None:
    assert refusal(request_bundle, patient_bundle(DEMO_VALUES, bundle_type=kind)).code == "not-supported"


@pytest.mark.parametrize(("kind", "codes"), [("colection", ("value", "value")),
                                             (["collection"], ("value", "structure")),  # once a 500 (fuzzing)
                                             ({"code": "collection"}, ("value", "structure"))])
def test_a_bundle_type_outside_the_value_set_is_invalid_fhir(demo_model: PrognosticModel, kind: Any,
                                                             codes: tuple[str, str]) -> None:
    bundle = {**patient_bundle(DEMO_VALUES), "type": kind}
    errors = (refusal(request_bundle, bundle), refusal(extract, demo_model, bundle, AS_OF))
    assert [(e.status, e.code, e.expression) for e in errors] == [(400, c, ["Bundle.type"]) for c in codes]


@pytest.mark.parametrize("body", [
    {"resourceType": "Parameters", "parameter": []},
    {"resourceType": "Parameters"},
    {"resourceType": "Parameters",
     "parameter": [{"name": "patient", "resource": {"resourceType": "Patient"}}]},
    {"resourceType": "Parameters", "parameter": [{"name": "patient", "valueString": "p1"}]},
])
def test_parameters_without_a_patient_bundle_are_refused(body: dict[str, Any]) -> None:
    err = refusal(request_bundle, body)
    assert (err.status, err.code) == (422, "required")
    assert err.expression == ["Parameters.parameter.where(name='patient')"]


def test_two_patient_parts_and_other_resources_are_refused() -> None:
    body = parameters(patient_bundle(DEMO_VALUES))
    body["parameter"].append(body["parameter"][0])
    assert refusal(request_bundle, body).code == "not-supported"
    err = refusal(request_bundle, {"resourceType": "Patient", "id": "p1"})
    assert (err.status, err.code) == (422, "not-supported") and "Patient" in err.diagnostics
    assert refusal(request_bundle, {"resourceType": "Parameters", "parameter": "x"}).status == 400


# --- values -----------------------------------------------------------------------------


@pytest.mark.req("SRS-FHIR-006", "RC-UNIT-001")
def test_centimetres_become_millimetres_exactly(demo_model: PrognosticModel) -> None:
    values = {**DEMO_VALUES, "tsize": 2.5, "progrec": 120000.0}
    bundle = patient_bundle(values, units={"tsize": "cm", "progrec": "fmol/g"})
    result = extract(demo_model, bundle, AS_OF)
    assert result.values[1] == 1.0 and result.values[4] == 120.0
    assert result.sources["tsize"] == "Observation/p1-tsize 21889-1 = 2.5 cm -> 25 mm -> over 20 to 50 mm"
    # exact: 2 cm is 20 mm, inside the first band (≤ 20 mm), and a hair more is not
    for cm, band in ((2, 0.0), (2.0000001, 1.0), (5, 1.0)):
        got = extract(demo_model, patient_bundle({**DEMO_VALUES, "tsize": cm}, units={"tsize": "cm"}), AS_OF)
        assert got.values[1] == band, cm
    inch = patient_bundle({**DEMO_VALUES, "tsize": 1}, units={"tsize": "[in_i]"})
    inches = extract(demo_model, inch, AS_OF)
    assert inches.values[1] == 1.0 and "1 [in_i] -> 25.4 mm ->" in inches.sources["tsize"]


def test_a_count_may_be_a_value_integer(demo_model: PrognosticModel) -> None:
    bundle = patient_bundle(DEMO_VALUES)
    _, obs = entry_of(bundle, "pnodes")
    del obs["valueQuantity"]
    obs["valueInteger"] = 7
    result = extract(demo_model, bundle, AS_OF)
    assert result.values[3] == 7.0 and result.sources["pnodes"] == "Observation/p1-pnodes 21893-3 = 7"


@pytest.mark.req("SRS-DEV-006")
def test_age_comes_from_the_birth_date_unless_observed(demo_model: PrognosticModel) -> None:
    values = {k: v for k, v in DEMO_VALUES.items() if k != "age"}
    result = extract(demo_model, patient_bundle(values, birth_date="1970-03-15"), AS_OF)
    assert result.values[0] == age_in("a", date(1970, 3, 15), AS_OF)
    assert result.values[0] == (AS_OF - date(1970, 3, 15)).days / 365.25
    assert result.basis[0] == "Patient/p1" and len(result.basis) == 8
    assert result.sources["age"].startswith("Patient/p1 birthDate 1970-03-15 -> age 54.2")
    observed = extract(demo_model, patient_bundle(DEMO_VALUES, birth_date="1970-03-15"), AS_OF)
    assert observed.values[0] == 54.0 and "Patient/p1" not in observed.basis
    months = extract(demo_model, patient_bundle({**DEMO_VALUES, "age": 600}, units={"age": "mo"}), AS_OF)
    assert months.values[0] == 50.0


@pytest.mark.req("RC-INPUT-002")
def test_a_partial_birth_date_is_refused(demo_model: PrognosticModel) -> None:
    values = {k: v for k, v in DEMO_VALUES.items() if k != "age"}
    for partial in ("1970", "1970-03"):
        err = refusal(extract, demo_model, patient_bundle(values, birth_date=partial), AS_OF)
        assert (err.status, err.code) == (422, "business-rule")
        assert err.expression == ["Bundle.entry[0].resource.birthDate"]
        assert "not a full date" in err.diagnostics and "guess" in err.diagnostics


def test_a_birth_date_after_as_of_is_refused(demo_model: PrognosticModel) -> None:
    values = {k: v for k, v in DEMO_VALUES.items() if k != "age"}
    err = refusal(extract, demo_model, patient_bundle(values, birth_date="2024-07-01"), AS_OF)
    assert err.code == "business-rule" and "before the birth date" in err.diagnostics


@pytest.mark.parametrize("boolean_as", ["valueBoolean", "snomed"])
def test_booleans_as_value_boolean_or_snomed_yes_no(demo_model: PrognosticModel, boolean_as: str) -> None:
    for ht, pm in ((True, False), (False, True)):
        values = {**DEMO_VALUES, "hormone_therapy": ht, "postmenopausal": pm}
        result = extract(demo_model, patient_bundle(values, boolean_as=boolean_as), AS_OF)
        assert list(result.values[6:]) == [float(ht), float(pm)]
    snomed = extract(demo_model, patient_bundle(DEMO_VALUES, boolean_as="snomed"), AS_OF)
    assert snomed.sources["postmenopausal"] == "Observation/p1-postmenopausal 76498008 = No"


def test_a_boolean_with_an_unknown_or_contradictory_code_is_refused(demo_model: PrognosticModel) -> None:
    bundle = patient_bundle(DEMO_VALUES, boolean_as="snomed")
    i, obs = entry_of(bundle, "hormone_therapy")
    obs["valueCodeableConcept"]["coding"] = [{"system": SNOMED, "code": "260385009"}]  # "Negative"
    err = refusal(extract, demo_model, bundle, AS_OF)
    assert err.code == "business-rule"
    assert err.expression == [f"Bundle.entry[{i}].resource.valueCodeableConcept"]
    assert "Hormone therapy" in err.diagnostics and YES in err.diagnostics
    obs["valueCodeableConcept"]["coding"] = [{"system": SNOMED, "code": YES}, {"system": SNOMED, "code": NO}]
    assert "several different answers" in refusal(extract, demo_model, bundle, AS_OF).diagnostics


def test_a_category_is_its_index(category_model: PrognosticModel) -> None:
    for index, grade in enumerate(GRADES):
        values = {**DEMO_VALUES, "tgrade": grade["code"]}
        result = extract(category_model, patient_bundle(values, inputs=category_model.inputs), AS_OF)
        assert result.values[2] == index
    assert result.sources["tgrade"] == "Observation/p1-tgrade 33732-9 = G3 grade -> 2"
    bundle = patient_bundle(DEMO_VALUES | {"tgrade": 0}, inputs=category_model.inputs)
    grade = entry_of(bundle, "tgrade")[1]["valueCodeableConcept"]
    grade["coding"] = [{"system": SNOMED, "code": "369792005"}]  # G4, not a category of the model
    err = refusal(extract, category_model, bundle, AS_OF)
    assert err.code == "business-rule" and "no accepted code" in err.diagnostics
    assert f"{SNOMED}|1288008" in err.diagnostics


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.req("RC-INPUT-002")
def test_a_missing_input_is_named_with_its_code(demo_model: PrognosticModel) -> None:
    values = {k: v for k, v in DEMO_VALUES.items() if k != "estrec"}
    err = refusal(extract, demo_model, patient_bundle(values), AS_OF)
    assert (err.status, err.code) == (422, "required")
    assert err.diagnostics.startswith("Oestrogen receptor (http://loinc.org|16113-3 'Estrogen receptor")
    assert err.expression == ["Bundle.entry.resource.ofType(Observation).where(code.coding.where("
                              "system = 'http://loinc.org' and code = '16113-3').exists())"]


@pytest.mark.req("RC-INPUT-002", "RC-INPUT-001")
def test_every_problem_is_reported_at_once(demo_model: PrognosticModel) -> None:
    values = {k: v for k, v in DEMO_VALUES.items() if k not in ("age", "estrec")} | {"tsize": 200.0}
    bundle = patient_bundle(values)
    err = refusal(extract, demo_model, bundle, AS_OF)
    reasons = err.diagnostics.split("; ")
    assert len(reasons) == 3 and err.code == "required"
    assert reasons[0].startswith("Age (") and reasons[0].endswith("and Patient/p1 has no birthDate")
    assert reasons[1] == ("Tumour size: 200 mm is outside the range this model was developed and validated "
                          "for (1 to 120 mm)")
    assert reasons[2].startswith("Oestrogen receptor (")
    assert err.expression[1:3] == ["Bundle.entry[0].resource.birthDate",
                                   f"Bundle.entry[{entry_of(bundle, 'tsize')[0]}].resource.valueQuantity"]
    assert len(err.expression) == 4


@pytest.mark.req("SRS-DEV-005", "RC-INPUT-001")
def test_a_value_outside_the_envelope_is_refused_not_clamped(demo_model: PrognosticModel) -> None:
    bundle = patient_bundle({**DEMO_VALUES, "tsize": 12.0001}, units={"tsize": "cm"})
    i, _ = entry_of(bundle, "tsize")
    err = refusal(extract, demo_model, bundle, AS_OF)
    assert (err.status, err.code) == (422, "business-rule")
    assert err.diagnostics == ("Tumour size: 120.001 mm is outside the range this model was developed and "
                               "validated for (1 to 120 mm)")
    assert err.expression == [f"Bundle.entry[{i}].resource.valueQuantity"]
    edge = extract(demo_model, patient_bundle({**DEMO_VALUES, "tsize": 12.0}, units={"tsize": "cm"}), AS_OF)
    assert edge.values[1] == 2.0


@pytest.mark.req("SRS-FHIR-006", "RC-UNIT-001")
@pytest.mark.parametrize(("unit", "why"), [("kg", "mass vs length"), ("Cel", "unknown unit"),
                                           ("[IU]", "unknown unit")])
def test_an_inconvertible_unit_is_refused(demo_model: PrognosticModel, unit: str, why: str) -> None:
    bundle = patient_bundle({**DEMO_VALUES, "tsize": 2}, units={"tsize": unit})
    i, _ = entry_of(bundle, "tsize")
    err = refusal(extract, demo_model, bundle, AS_OF)
    assert (err.status, err.code) == (422, "business-rule")
    assert err.diagnostics.startswith(f"Tumour size: Observation/p1-tsize is in {unit!r}, which cannot be "
                                      "converted to the model's unit 'mm'")
    assert why in err.diagnostics
    assert err.expression == [f"Bundle.entry[{i}].resource.valueQuantity.code"]


@pytest.mark.req("SRS-FHIR-006", "RC-UNIT-001")
@pytest.mark.parametrize("quantity", [
    {"value": 2, "unit": "mm"}, {"value": 2, "system": "urn:x", "code": "mm"},
    {"value": 2, "comparator": "<", "code": "mm"}, {"code": "mm"}])
def test_a_quantity_needs_a_ucum_point_value(demo_model: PrognosticModel, quantity: dict[str, Any]) -> None:
    bundle = patient_bundle(DEMO_VALUES)
    entry_of(bundle, "tsize")[1]["valueQuantity"] = quantity
    err = refusal(extract, demo_model, bundle, AS_OF)
    assert (err.status, err.code) == (422, "business-rule") and err.diagnostics.startswith("Tumour size: ")


def test_a_value_of_the_wrong_type_is_refused(demo_model: PrognosticModel) -> None:
    bundle = patient_bundle(DEMO_VALUES)
    i, obs = entry_of(bundle, "tsize")
    del obs["valueQuantity"]
    obs["valueString"] = "25 mm"
    err = refusal(extract, demo_model, bundle, AS_OF)
    assert err.code == "business-rule" and "no valueQuantity" in err.diagnostics


@pytest.mark.req("RC-INPUT-002")
def test_one_patient_exactly(demo_model: PrognosticModel) -> None:
    bundle = patient_bundle(DEMO_VALUES)
    bundle["entry"].append({"resource": {"resourceType": "Patient", "id": "p2"}})
    err = refusal(extract, demo_model, bundle, AS_OF)
    assert (err.status, err.code) == (422, "business-rule") and "2 Patients" in err.diagnostics
    last = len(bundle["entry"]) - 1
    assert err.expression == ["Bundle.entry[0].resource", f"Bundle.entry[{last}].resource"]
    bundle["entry"] = bundle["entry"][1:-1]
    err = refusal(extract, demo_model, bundle, AS_OF)
    assert (err.status, err.code) == (422, "required") and "0 Patients" in err.diagnostics


def test_a_patient_without_id_is_refused(demo_model: PrognosticModel) -> None:
    bundle = patient_bundle(DEMO_VALUES)
    del bundle["entry"][0]["resource"]["id"]
    err = refusal(extract, demo_model, bundle, AS_OF)
    assert (err.status, err.code, err.expression) == (422, "required", ["Patient.id"])


@pytest.mark.req("RC-INPUT-002")
@pytest.mark.parametrize("subject", [None, {"reference": "Patient/p2"}, {"display": "Jane"}])
def test_an_observation_about_someone_else_is_refused(demo_model: PrognosticModel, subject: Any) -> None:
    bundle = patient_bundle(DEMO_VALUES)
    i, obs = entry_of(bundle, "estrec")
    obs.pop("subject")
    if subject is not None:
        obs["subject"] = subject
    err = refusal(extract, demo_model, bundle, AS_OF)
    assert (err.status, err.code) == (422, "business-rule")
    assert err.diagnostics.startswith("Oestrogen receptor: ")
    assert f"Bundle.entry[{i}].resource.subject" in err.expression


def test_the_patient_full_url_is_a_valid_subject(demo_model: PrognosticModel) -> None:
    bundle = patient_bundle(DEMO_VALUES)
    for entry in bundle["entry"][1:]:
        entry["resource"]["subject"]["reference"] = bundle["entry"][0]["fullUrl"]
    assert extract(demo_model, bundle, AS_OF).patient == "Patient/p1"


# --- choosing among observations ----------------------------------------------------------


def test_the_most_recent_observation_is_used(demo_model: PrognosticModel) -> None:
    bundle = patient_bundle(DEMO_VALUES)
    spec = spec_of(demo_model, "progrec")
    for oid, value, when in (("old", 100.0, "2023-01-01"), ("new", 300.0, "2024-02-01T00:00:00+01:00"),
                             ("period", 350.0, None)):
        obs = observation(spec, oid, value_element(spec, value), effective=when)
        if when is None:
            obs["effectivePeriod"] = {"start": "2023-05-01", "end": "2023-06-01"}
        bundle["entry"].append({"resource": obs})
    result = extract(demo_model, bundle, AS_OF)
    assert result.values[4] == 300.0 and "Observation/new" in result.basis
    assert "Observation/p1-progrec" not in result.basis


@pytest.mark.req("RC-INPUT-002")
def test_ignored_statuses_do_not_count(demo_model: PrognosticModel) -> None:
    bundle = patient_bundle(DEMO_VALUES)
    spec = spec_of(demo_model, "progrec")
    for status in ("entered-in-error", "preliminary", "cancelled"):
        wrong = observation(spec, status, value_element(spec, 99.0), effective="2024-05-01", status=status)
        bundle["entry"].append({"resource": wrong})
    assert extract(demo_model, bundle, AS_OF).values[4] == 120.0
    del bundle["entry"][entry_of(bundle, "progrec")[0]]
    err = refusal(extract, demo_model, bundle, AS_OF)
    assert err.code == "required"
    assert ("found only Observation/entered-in-error, which is entered-in-error and "
            "Observation/preliminary, which is preliminary and") in err.diagnostics


@pytest.mark.parametrize("status", ["amended", "corrected"])
def test_amended_and_corrected_observations_count(demo_model: PrognosticModel, status: str) -> None:
    bundle = patient_bundle(DEMO_VALUES, status=status)
    got = extract(demo_model, bundle, AS_OF).values
    np.testing.assert_array_equal(got, expected(demo_model, DEMO_VALUES))


@pytest.mark.req("RC-INPUT-002")
def test_equally_recent_observations_must_agree(demo_model: PrognosticModel) -> None:
    bundle = patient_bundle(DEMO_VALUES)
    spec = spec_of(demo_model, "progrec")
    same = observation(spec, "same", value_element(spec, 120000.0, "fmol/g"))
    bundle["entry"].append({"resource": same})
    assert extract(demo_model, bundle, AS_OF).values[4] == 120.0
    same["valueQuantity"]["value"] = 130000
    err = refusal(extract, demo_model, bundle, AS_OF)
    assert (err.status, err.code) == (422, "business-rule")
    assert "equally recent observations disagree" in err.diagnostics
    assert "130000 fmol/g -> 130 fmol/mg" in err.diagnostics
    assert len(err.expression) == 2


def test_undated_observations_count_only_without_dated_ones(unlimited_model: PrognosticModel) -> None:
    bundle = patient_bundle(DEMO_VALUES, effective=None)  # a model without a maximum result age
    assert extract(unlimited_model, bundle, AS_OF).values[4] == 120.0
    spec = spec_of(unlimited_model, "progrec")
    issued = observation(spec, "issued", value_element(spec, 12.0), effective=None)
    issued["issued"] = "2023-03-01T12:00:00Z"  # no effective[x]: the issue time ranks it
    bundle["entry"].append({"resource": issued})
    assert extract(unlimited_model, bundle, AS_OF).values[4] == 12.0


# --- invalid FHIR -----------------------------------------------------------------------


def _bogus_status(b: dict[str, Any]) -> None:
    entry_of(b, "tsize")[1]["status"] = "bogus"


def _string_number(b: dict[str, Any]) -> None:
    entry_of(b, "tsize")[1]["valueQuantity"]["value"] = "25"


def _string_boolean(b: dict[str, Any]) -> None:
    entry_of(b, "hormone_therapy")[1]["valueBoolean"] = "true"


def _no_code(b: dict[str, Any]) -> None:
    del entry_of(b, "tsize")[1]["code"]


def _bad_date(b: dict[str, Any]) -> None:
    entry_of(b, "tsize")[1]["effectiveDateTime"] = "2024-01-15T09:30:00"  # a time needs a zone


def _unknown_type(b: dict[str, Any]) -> None:
    b["entry"].append({"resource": {"resourceType": "Observaton"}})


def _unknown_field(b: dict[str, Any]) -> None:
    entry_of(b, "tsize")[1]["valueQuantity"]["amount"] = 3


@pytest.mark.parametrize(("mutate", "code", "where"), [
    (_bogus_status, "value", "resource.status"), (_string_number, "structure", "valueQuantity.value"),
    (_string_boolean, "structure", "valueBoolean"), (_no_code, "structure", "resource.code"),
    (_bad_date, "structure", "effectiveDateTime"), (_unknown_type, "structure", "resource.resourceType"),
    (_unknown_field, "structure", "valueQuantity.amount"),
])
def test_invalid_fhir_is_a_400(demo_model: PrognosticModel, mutate: Any, code: str, where: str) -> None:
    bundle = patient_bundle(DEMO_VALUES)
    mutate(bundle)
    err = refusal(extract, demo_model, bundle, AS_OF)
    assert (err.status, err.code) == (400, code)
    assert len(err.expression) == 1 and err.expression[0].startswith("Bundle.entry[")
    assert err.expression[0].endswith(where) and err.diagnostics.startswith(err.expression[0])


def test_an_entry_that_is_not_an_object_is_a_400(demo_model: PrognosticModel) -> None:
    for entry in ("x", {"resource": "x"}, {"resource": {"id": "x"}}):
        bundle = patient_bundle(DEMO_VALUES)
        bundle["entry"].append(entry)
        assert refusal(extract, demo_model, bundle, AS_OF).status == 400
    assert refusal(extract, demo_model, {"resourceType": "Patient"}, AS_OF).status == 400
    for empty in ({"resourceType": "Bundle", "type": "collection", "entry": None},
                  {"resourceType": "Bundle", "type": "collection"}):
        err = refusal(extract, demo_model, empty, AS_OF)
        assert err.status == 422 and "0 Patients" in err.diagnostics


# --- property and speed -----------------------------------------------------------------

#: units a sender may use instead of the model's (value in model unit × factor = sent value)
OTHER_UNITS = {"age": ["a", "mo", "wk"], "tsize": ["mm", "cm", "[in_i]"], "progrec": ["fmol/mg", "fmol/g"],
               "estrec": ["fmol/mg", "pmol/g"], "tgrade": ["1"], "pnodes": ["1", "{nodes}"]}


@st.composite
def patients(draw: st.DrawFn, model: PrognosticModel) -> tuple[dict[str, Any], dict[str, str], list[float]]:
    values: dict[str, Any] = {}
    units: dict[str, str] = {}
    want = []
    for spec in model.inputs:
        if spec.kind == "boolean":
            values[spec.name] = draw(st.booleans())
            want.append(float(values[spec.name]))
            continue
        unit = draw(st.sampled_from(OTHER_UNITS[spec.name]))
        if spec.bands is not None:  # a measured value, scored as its band (away from a cut by a hair)
            b = spec.bands
            x = float(draw(st.integers(int(b.min), int(b.max)))) if b.whole else \
                draw(st.floats(b.min * (1 + 1e-9), b.max * (1 - 1e-9), allow_nan=False)
                     .filter(lambda v, cuts=b.cuts: all(abs(v - c) > 1e-6 for c in cuts)))
            values[spec.name], units[spec.name] = convert(x, spec.unit, unit), unit
            want.append(float(spec.band(x)))
            continue
        margin = 0.0 if unit == spec.unit else 1e-9 * spec.max
        x = float(draw(st.integers(int(spec.min), int(spec.max)))) if spec.kind == "integer" \
            else draw(st.floats(spec.min + margin, spec.max - margin, allow_nan=False))
        values[spec.name], units[spec.name] = convert(x, spec.unit, unit), unit
        want.append(x)
    return values, units, want


@pytest.mark.req("SRS-FHIR-006")
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_in_range_values_are_read_back_exactly(demo_model: PrognosticModel, data: st.DataObject) -> None:
    values, units, want = data.draw(patients(demo_model))
    bundle = json.loads(json.dumps(patient_bundle(values, units=units)))
    got = extract(demo_model, bundle, AS_OF).values
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)

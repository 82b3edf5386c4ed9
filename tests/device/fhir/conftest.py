"""Shared helpers of the FHIR tests: the demo model and real FHIR R4 patient Bundles built from values.

:func:`patient_bundle` turns ``{"tsize": 25.0, "hormone_therapy": True, …}`` into a Bundle of one
Patient and one Observation per value, coded with the model inputs' LOINC / SNOMED CT codings and
UCUM units; :func:`observation` builds a single Observation for tests that need odd ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from device.model import InputSpec, PrognosticModel, load_model
from federated.demo_study import DEMO_INPUTS
from tests.device.test_model import demo_artifact, reseal

UCUM, SNOMED = "http://unitsofmeasure.org", "http://snomed.info/sct"
YES, NO = "373066001", "373067005"
EFFECTIVE = "2024-01-15T09:30:00Z"

#: an admissible demo patient, in the model's units
DEMO_VALUES: dict[str, Any] = {"age": 54.0, "tsize": 25.0, "tgrade": 2, "pnodes": 3, "progrec": 120.0,
                               "estrec": 80.5, "hormone_therapy": True, "postmenopausal": False}

#: SNOMED CT histologic grades G1 / G2 / G3 (the category variant of ``tgrade``)
GRADES = [{"system": SNOMED, "code": "54102005", "display": "G1 grade"},
          {"system": SNOMED, "code": "1288008", "display": "G2 grade"},
          {"system": SNOMED, "code": "61026006", "display": "G3 grade"}]


def demo_inputs() -> list[InputSpec]:
    """The demo study's inputs as the device declares them (no training needed)."""
    return [InputSpec.model_validate({
        "name": name, "code": spec.code.model_dump() if spec.code else None, "unit": spec.unit,
        "kind": spec.kind, "min": spec.min, "max": spec.max,
        "categories": [c.model_dump() for c in spec.categories] or None})
        for name, spec in DEMO_INPUTS.items()]


def obs_id(patient_id: str, name: str) -> str:
    """The id :func:`patient_bundle` gives the Observation of input ``name`` (FHIR ids allow no '_')."""
    return f"{patient_id}-{name}".replace("_", "-")


def value_element(spec: InputSpec, value: Any, unit: str | None = None, boolean_as: str = "valueBoolean"
                  ) -> dict[str, Any]:
    """The ``value[x]`` of an Observation for ``spec`` (a quantity in ``unit``, default the model's)."""
    if spec.kind == "boolean":
        if boolean_as == "valueBoolean":
            return {"valueBoolean": bool(value)}
        yes = bool(value)
        return {"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": YES if yes else NO,
                                                     "display": "Yes" if yes else "No"}]}}
    if spec.kind == "category":
        cats = spec.categories or []
        cat = cats[value] if isinstance(value, int) else next(c for c in cats if c.code == value)
        return {"valueCodeableConcept": {"coding": [cat.model_dump()], "text": cat.display}}
    unit = unit or spec.unit
    return {"valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}


def observation(spec: InputSpec, oid: str, value: dict[str, Any] | None = None, *, patient_id: str = "p1",
                effective: str | None = EFFECTIVE, status: str = "final") -> dict[str, Any]:
    """One Observation of input ``spec``; ``value`` is its ``value[x]`` element(s)."""
    res: dict[str, Any] = {"resourceType": "Observation", "id": oid, "status": status,
                           "code": {"coding": [spec.code.model_dump()], "text": spec.code.display},
                           "subject": {"reference": f"Patient/{patient_id}"}}
    if effective is not None:
        res["effectiveDateTime"] = effective
    res.update(value or {})
    return res


def patient_bundle(values: dict[str, Any], *, patient_id: str = "p1", birth_date: str | None = None,
                   units: dict[str, str] | None = None, inputs: Sequence[InputSpec] | None = None,
                   effective: str | None = EFFECTIVE, status: str = "final", boolean_as: str = "valueBoolean",
                   bundle_type: str = "collection") -> dict[str, Any]:
    """A FHIR R4 Bundle: one Patient and one Observation per entry of ``values``.

    Quantities are sent as given, in ``units[name]`` or else the model's unit (no conversion
    here); booleans as ``valueBoolean`` or, with ``boolean_as="snomed"``, SNOMED CT Yes/No; a
    category as its code or 0-based index. ``inputs`` defaults to the demo study's. The Patient
    is entry 0 and the Observations follow in ``values`` order.
    """
    specs = {s.name: s for s in (inputs if inputs is not None else demo_inputs())}
    patient: dict[str, Any] = {"resourceType": "Patient", "id": patient_id, "gender": "female"}
    if birth_date is not None:
        patient["birthDate"] = birth_date
    entries = [{"fullUrl": f"http://example.org/fhir/Patient/{patient_id}", "resource": patient}]
    for name, value in values.items():
        spec, oid = specs[name], obs_id(patient_id, name)
        res = observation(spec, oid, value_element(spec, value, (units or {}).get(name), boolean_as),
                          patient_id=patient_id, effective=effective, status=status)
        entries.append({"fullUrl": f"http://example.org/fhir/Observation/{oid}", "resource": res})
    return {"resourceType": "Bundle", "type": bundle_type, "entry": entries}


def parameters(bundle: dict[str, Any], as_of: str | None = None, as_of_type: str = "valueDate"
               ) -> dict[str, Any]:
    """The ``$predict-risk`` Parameters holding ``bundle`` (and ``asOf`` when given)."""
    parts: list[dict[str, Any]] = [{"name": "patient", "resource": bundle}]
    if as_of is not None:
        parts.append({"name": "asOf", as_of_type: as_of})
    return {"resourceType": "Parameters", "parameter": parts}


@pytest.fixture(scope="session")
def demo_model() -> PrognosticModel:
    """The demo study's real, trained model."""
    return load_model(demo_artifact())


@pytest.fixture(scope="session")
def category_model() -> PrognosticModel:
    """The demo model with ``tgrade`` declared as a category (SNOMED CT G1/G2/G3, index 0…2)."""
    art = demo_artifact()
    for item in art["inputs"]:
        if item["name"] == "tgrade":
            item.update(kind="category", unit="1", min=None, max=None, categories=GRADES)
            item.pop("coverage", None)
    return load_model(reseal(art))

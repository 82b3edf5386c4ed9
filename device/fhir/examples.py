"""Example ``$predict-risk`` requests: real FHIR R4 patient Bundles built from input values.

Used by the demo (the request ``fedprog demo`` writes for the printed ``curl`` line), the
README, the load benchmark and the tests. Each Observation carries its input's LOINC /
SNOMED CT coding and a UCUM unit; booleans are ``valueBoolean`` (or SNOMED CT Yes/No).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..model import InputSpec, PrognosticModel

UCUM, SNOMED = "http://unitsofmeasure.org", "http://snomed.info/sct"
YES, NO = "373066001", "373067005"
EFFECTIVE = "2024-01-15T09:30:00Z"
#: ``effective`` meaning "today" (UTC): a result as recent as a model with a maximum result age accepts
TODAY = "today"
#: the EHR base URL of the example resources (RFC 2606 example domain)
BASE = "http://example.org/fhir"

#: an admissible demo patient (GBSG2 inputs), in the model's units; tumour size is sent in cm
DEMO_PATIENT: dict[str, Any] = {"tsize": 2.5, "tgrade": 2, "pnodes": 3, "progrec": 120.0, "estrec": 80.5,
                                "hormone_therapy": True, "postmenopausal": True}


def obs_id(patient_id: str, name: str) -> str:
    """The id :func:`patient_bundle` gives the Observation of input ``name`` (FHIR ids allow no '_')."""
    return f"{patient_id}-{name}".replace("_", "-")


def value_element(spec: InputSpec, value: Any, unit: str | None = None,
                  boolean_as: str = "valueBoolean") -> dict[str, Any]:
    """The ``value[x]`` of an Observation for ``spec`` (a quantity in ``unit``, default the model's).

    A category is given by its code or 0-based index, except a banded one: a number is then its
    measured value (a quantity, as a pathology report gives a tumour size), a string its code."""
    if spec.kind == "boolean":
        if boolean_as == "valueBoolean":
            return {"valueBoolean": bool(value)}
        yes = bool(value)
        return {"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": YES if yes else NO,
                                                     "display": "Yes" if yes else "No"}]}}
    if spec.kind == "category" and not (spec.bands is not None and not isinstance(value, str)):
        cats = spec.categories or []
        cat = cats[value] if isinstance(value, int) else next(c for c in cats if c.code == value)
        return {"valueCodeableConcept": {"coding": [cat.model_dump()], "text": cat.display}}
    unit = unit or spec.unit
    return {"valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}


def observation(spec: InputSpec, oid: str, value: dict[str, Any] | None = None, *, patient_id: str = "p1",
                effective: str | None = TODAY, status: str = "final") -> dict[str, Any]:
    """One Observation of input ``spec``; ``value`` is its ``value[x]`` element(s); ``effective`` its
    ``effectiveDateTime`` (:data:`TODAY`: today's date in UTC; None: undated)."""
    res: dict[str, Any] = {"resourceType": "Observation", "id": oid, "status": status,
                           "code": {"coding": [spec.code.model_dump()], "text": spec.code.display},
                           "subject": {"reference": f"Patient/{patient_id}"}}
    if effective is not None:
        res["effectiveDateTime"] = datetime.now(UTC).date().isoformat() if effective == TODAY else effective
    res.update(value or {})
    return res


def patient_bundle(inputs: Sequence[InputSpec], values: dict[str, Any], *, patient_id: str = "p1",
                   birth_date: str | None = None, units: dict[str, str] | None = None,
                   effective: str | None = TODAY, status: str = "final", boolean_as: str = "valueBoolean",
                   bundle_type: str = "collection", gender: str | None = "female") -> dict[str, Any]:
    """A FHIR R4 Bundle: one Patient (entry 0) and one Observation per entry of ``values``.

    Quantities are sent as given, in ``units[name]`` or else the model's unit; booleans as
    ``valueBoolean`` or, with ``boolean_as="snomed"``, SNOMED CT Yes/No; a category as its code
    or 0-based index. Observations are dated today unless ``effective`` says otherwise; the Patient's
    ``gender`` is ``female`` unless given (None: not recorded).
    """
    specs = {s.name: s for s in inputs}
    patient: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
    if gender is not None:
        patient["gender"] = gender
    if birth_date is not None:
        patient["birthDate"] = birth_date
    entries = [{"fullUrl": f"{BASE}/Patient/{patient_id}", "resource": patient}]
    for name, value in values.items():
        spec, oid = specs[name], obs_id(patient_id, name)
        res = observation(spec, oid, value_element(spec, value, (units or {}).get(name), boolean_as),
                          patient_id=patient_id, effective=effective, status=status)
        entries.append({"fullUrl": f"{BASE}/Observation/{oid}", "resource": res})
    return {"resourceType": "Bundle", "type": bundle_type, "entry": entries}


def parameters(bundle: dict[str, Any], as_of: str | None = None, as_of_type: str = "valueDate"
               ) -> dict[str, Any]:
    """The ``$predict-risk`` Parameters holding ``bundle`` (and ``asOf`` when given)."""
    parts: list[dict[str, Any]] = [{"name": "patient", "resource": bundle}]
    if as_of is not None:
        parts.append({"name": "asOf", as_of_type: as_of})
    return {"resourceType": "Parameters", "parameter": parts}


def typical_values(model: PrognosticModel) -> dict[str, Any]:
    """An admissible patient for any model: each input at its training centre (the released
    covariate mean), booleans and integers rounded, categories at their first code, kept inside
    the envelope."""
    out: dict[str, Any] = {}
    for spec, c in zip(model.inputs, model.reference, strict=True):
        if spec.kind == "boolean":
            out[spec.name] = bool(round(float(c)))
        elif spec.kind == "category":
            out[spec.name] = 0 if spec.bands is None else (spec.categories or [])[0].code
        else:
            lo = -float("inf") if spec.min is None else spec.min
            hi = float("inf") if spec.max is None else spec.max
            value = min(max(float(c), lo), hi)
            if spec.kind == "integer":  # the nearest whole number inside the envelope
                value = float(round(value))
                value = float(math.ceil(lo)) if value < lo else float(math.floor(hi)) if value > hi else value
            out[spec.name] = value
    return out


def demo_request(model: PrognosticModel, patient_id: str = "example-1") -> dict[str, Any]:
    """A Parameters for :data:`DEMO_PATIENT`: age from a birth date (54 at ``asOf``), the tumour
    size in cm (the server converts it to the model's mm)."""
    names = {s.name for s in model.inputs}
    values = {k: v for k, v in DEMO_PATIENT.items() if k in names}
    bundle = patient_bundle(model.inputs, values, patient_id=patient_id, birth_date="1970-03-02",
                            units={"tsize": "cm"} if "tsize" in names else None, effective=EFFECTIVE)
    return parameters(bundle, as_of="2024-06-01")

"""The ``$predict-risk`` request around the patient record: which Bundle, ``asOf`` and ``horizon``.

FHIR R4 operations.html and parameters.html: the body is a ``Parameters`` with a part ``patient``
holding a Bundle (optional ``asOf``, ``horizon`` parts) or that Bundle itself (R4 bundle.html,
the required binding ``bundle-type``). Pure functions; every refusal is a :class:`FhirError`.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from typing import Any

from fhir.resources.R4B.parameters import ParametersParameter
from pydantic import ValidationError

from .errors import FhirError

PATIENT_BUNDLES = frozenset({"collection", "document", "transaction", "searchset"})
BUNDLE_TYPES = PATIENT_BUNDLES | {"message", "transaction-response", "batch", "batch-response", "history"}
PATIENT_PART = "Parameters.parameter.where(name='patient')"
AS_OF_PART = "Parameters.parameter.where(name='asOf')"
HORIZON_PART = "Parameters.parameter.where(name='horizon')"
#: most ``horizon`` parameters one call may ask for (a survival curve needs a few dozen)
MAX_HORIZONS = 100


def bundle_type(bundle: dict[str, Any], where: str) -> None:
    kind = bundle.get("type")
    if kind == "batch":
        raise FhirError(422, "not-supported", "a Bundle of type batch holds one request per entry: it goes "
                        "to the batch path, not to a single patient's $predict-risk", [f"{where}.type"])
    if isinstance(kind, str) and kind in BUNDLE_TYPES and kind not in PATIENT_BUNDLES:
        raise FhirError(422, "not-supported", f"a Bundle of type {kind} is not a patient record; send a "
                        f"{', '.join(sorted(PATIENT_BUNDLES))} Bundle", [f"{where}.type"])
    if kind is not None and (not isinstance(kind, str) or kind not in BUNDLE_TYPES):  # a list is unhashable
        raise FhirError(400, "value", f"{where}.type: {kind!r} is not a Bundle type (R4 bundle-type)",
                        [f"{where}.type"])


def request_bundle(body: Any) -> tuple[dict[str, Any], date | None]:
    """The patient Bundle and the ``asOf`` date of a ``$predict-risk`` body (R4 parameters.html).

    Raises
    ------
    FhirError
        400 not a resource; 422 no ``patient`` Bundle, a batch or other unsupported Bundle type,
        another resource type, or an ``asOf`` that is not one full date.
    """
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise FhirError(400, "structure", "the body is not a FHIR resource (a JSON object with resourceType)")
    if body["resourceType"] == "Bundle":
        bundle_type(body, "Bundle")
        return body, None
    if body["resourceType"] != "Parameters":
        raise FhirError(422, "not-supported", f"$predict-risk takes a Parameters or a Bundle, not a "
                        f"{body['resourceType']}", ["resourceType"])
    parts = body.get("parameter", [])
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise FhirError(400, "structure", "Parameters.parameter must be a list of objects",
                        ["Parameters.parameter"])
    patients = [p for p in parts if p.get("name") == "patient"]
    if len(patients) > 1:
        raise FhirError(422, "not-supported", f"{len(patients)} patient parts: one patient per call "
                        "(send several as a batch Bundle)", [PATIENT_PART])
    bundle = patients[0].get("resource") if patients else None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirError(422, "required", "the Parameters has no part 'patient' whose resource is a Bundle "
                        "(Patient + Observations)", [PATIENT_PART])
    bundle_type(bundle, f"{PATIENT_PART}.resource")
    return bundle, _as_of([p for p in parts if p.get("name") == "asOf"])


def request_horizons(body: Any) -> list[float] | None:
    """The ``horizon`` parameters of a ``$predict-risk`` Parameters (model time unit), or None.

    Raises
    ------
    FhirError
        422 more than :data:`MAX_HORIZONS`, or a value that is not a positive finite decimal
        (a horizon beyond the released baseline is refused when scoring).
    """
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        return None
    parts = [p for p in body.get("parameter", []) if isinstance(p, dict) and p.get("name") == "horizon"]
    if not parts:
        return None
    if len(parts) > MAX_HORIZONS:
        raise FhirError(422, "too-costly", f"{len(parts)} horizons: at most {MAX_HORIZONS} per call",
                        [HORIZON_PART])
    out = []
    for i, part in enumerate(parts):
        value = part.get("valueDecimal", part.get("valueInteger"))
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or value <= 0 or set(part) - {"name", "valueDecimal", "valueInteger"}:
            raise FhirError(422, "value", f"horizon {i + 1}: want a positive valueDecimal in the model's "
                            f"time unit, got {json.dumps(part)[:120]}", [f"{HORIZON_PART}[{i}]"])
        out.append(float(value))
    return sorted(set(out))


def _as_of(parts: list[dict[str, Any]]) -> date | None:
    if not parts:
        return None
    try:
        if len(parts) > 1:
            raise ValueError("asOf is given more than once")
        part = ParametersParameter.model_validate(parts[0])
        value = part.valueDate or part.valueDateTime
        if value is None:
            raise ValueError("asOf must be a valueDate or a valueDateTime")
    except (ValueError, TypeError, KeyError) as exc:
        msg = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise FhirError(422, "value", f"asOf: {msg.removeprefix('Value error, ')}", [AS_OF_PART]) from None
    if isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    raise FhirError(422, "value", f"asOf {value!r} is not a full date (YYYY-MM-DD)", [AS_OF_PART])

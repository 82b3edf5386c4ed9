"""From one ``$predict-risk`` request to the model's covariate vector (pure functions, no I/O).

The body is a ``Parameters`` (FHIR R4 operations.html, parameters.html: part ``patient`` holding
a Bundle, optional ``asOf``) or that Bundle (R4 bundle.html). Each resource is validated with
``fhir.resources.R4B`` one entry at a time (faster than the whole Bundle), plus the required
bindings fhir.resources leaves unchecked (Bundle.type, Observation.status, Quantity.comparator)
and the JSON types of the values read (R4 json.html: numbers and booleans are never strings).
An input is matched by any ``Observation.code.coding`` equal to its (system, code); of the
patient's final/amended/corrected observations dated on or before ``asOf`` the most recent wins
(by the latest instant its effective[x], else ``issued``, may denote; undated ones only if no
dated one exists). Quantities are converted to the model's UCUM unit and never clamped.
"""

from __future__ import annotations

import calendar
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.parameters import ParametersParameter
from pydantic import ValidationError

from device.model import InputSpec, PrognosticModel
from device.units import UnitError, age_in, convert

from .errors import FhirError

UCUM, SNOMED, LOINC = "http://unitsofmeasure.org", "http://snomed.info/sct", "http://loinc.org"
YES_NO = {"373066001": 1.0, "373067005": 0.0}  # SNOMED CT Yes / No
#: codes of an "age" input that may be computed from Patient.birthDate when no Observation gives it
AGE_CODES = frozenset({(LOINC, "30525-0"), (LOINC, "21612-7"), (LOINC, "29553-5"), (SNOMED, "424144002"),
                       (SNOMED, "397669002")})
TIME_UNITS = frozenset({"a", "mo", "wk", "d"})
USABLE = frozenset({"final", "amended", "corrected"})
OBSERVATION_STATUS = USABLE | {"registered", "preliminary", "cancelled", "entered-in-error", "unknown"}
PATIENT_BUNDLES = frozenset({"collection", "document", "transaction", "searchset"})
BUNDLE_TYPES = PATIENT_BUNDLES | {"message", "transaction-response", "batch", "batch-response", "history"}
PATIENT_PART = "Parameters.parameter.where(name='patient')"
AS_OF_PART = "Parameters.parameter.where(name='asOf')"
HORIZON_PART = "Parameters.parameter.where(name='horizon')"
#: most ``horizon`` parameters one call may ask for (a survival curve needs a few dozen)
MAX_HORIZONS = 100


@dataclass(frozen=True)
class PatientInputs:
    """One patient's covariates, in the model's units and ``model.names`` order (read-only)."""

    patient: str
    values: np.ndarray
    basis: tuple[str, ...]
    as_of: date
    sources: dict[str, str]
    #: per input, in ``model.names`` order, the reference of the resource its value came from
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Entry:
    index: int
    raw: dict[str, Any]
    obj: Any
    full_url: str | None

    @property
    def path(self) -> str:
        return f"Bundle.entry[{self.index}].resource"

    @property
    def ref(self) -> str:
        rid = self.raw.get("id")
        return f"{self.raw['resourceType']}/{rid}" if rid else self.full_url or self.path


class _Refusal(Exception):
    """One 422 problem with one input; collected so that the caller sees them all at once."""

    def __init__(self, code: str, reason: str, *expression: str) -> None:
        super().__init__(reason)
        self.code, self.reason, self.expression = code, reason, list(expression)


def _fmt(v: float) -> str:
    return f"{v:g}" if float(f"{v:g}") == v else repr(v)


def _bundle_type(bundle: dict[str, Any], where: str) -> None:
    kind = bundle.get("type")
    if kind == "batch":
        raise FhirError(422, "not-supported", "a Bundle of type batch holds one request per entry: it goes "
                        "to the batch path, not to a single patient's $predict-risk", [f"{where}.type"])
    if isinstance(kind, str) and kind in BUNDLE_TYPES and kind not in PATIENT_BUNDLES:
        raise FhirError(422, "not-supported", f"a Bundle of type {kind} is not a patient record; send a "
                        f"{', '.join(sorted(PATIENT_BUNDLES))} Bundle", [f"{where}.type"])
    if kind is not None and kind not in BUNDLE_TYPES:
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
        _bundle_type(body, "Bundle")
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
    _bundle_type(bundle, f"{PATIENT_PART}.resource")
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


def _validated(cls: Any, data: dict[str, Any], where: str) -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = where + "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in err["loc"] if x != "root")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        msg = " ".join(err["msg"].removeprefix("Value error, ").split())
        raise FhirError(400, "structure", f"{path}: {msg}{more}", [path]) from None
    except (ValueError, TypeError, KeyError) as exc:  # fhir.resources on an unknown contained type
        raise FhirError(400, "structure", f"{where}: not valid FHIR R4 ({exc})", [where]) from None


def _entries(bundle: Any) -> list[_Entry]:
    """Validate the Bundle shell, then each resource against its own R4B model."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirError(400, "structure", "the patient record is not a Bundle", ["Bundle"])
    raw = bundle.get("entry") or []
    shell = [{k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e for e in raw] \
        if isinstance(raw, list) else raw
    _validated(Bundle, {**bundle, "entry": shell}, "Bundle")
    _bundle_type(bundle, "Bundle")
    out = []
    for i, e in enumerate(raw):
        res, where = e.get("resource"), f"Bundle.entry[{i}].resource"
        if res is None:
            continue
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            raise FhirError(400, "structure", f"{where}: not a resource (no resourceType)", [where])
        try:
            cls = get_fhir_model_class(res["resourceType"])
        except (KeyError, ValueError):
            raise FhirError(400, "structure", f"{where}.resourceType: {res['resourceType']!r} is not a FHIR "
                            "resource type", [f"{where}.resourceType"]) from None
        out.append(_Entry(i, res, _validated(cls, res, where), e.get("fullUrl")))
    return out


def _latest(value: Any) -> tuple[date, datetime]:
    """Last calendar date and latest UTC instant a FHIR date/dateTime/instant may denote."""
    if isinstance(value, datetime):
        return value.date(), (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(value, date):
        return value, datetime.combine(value, time.max, UTC)
    year, _, month = str(value).partition("-")  # partial date: 'YYYY' or 'YYYY-MM'
    m = int(month) if month else 12
    last = date(int(year), m, calendar.monthrange(int(year), m)[1])
    return last, datetime.combine(last, time.max, UTC)


def _when(obs: Any) -> tuple[date, datetime] | None:
    period = obs.effectivePeriod
    for value in (obs.effectiveDateTime, obs.effectiveInstant, period and (period.end or period.start),
                  obs.issued):
        if value is not None:
            return _latest(value)
    return None


@dataclass(frozen=True)
class _Found:
    """Observations of one input: usable candidates and why others were left out."""

    candidates: list[tuple[_Entry, datetime | None]]
    ignored: list[str]


def _observations(model: PrognosticModel, entries: list[_Entry], refs: set[str], as_of: date,
                  problems: list[_Refusal]) -> dict[str, _Found]:
    found = {s.name: _Found([], []) for s in model.inputs}
    keys = {(s.code.system, s.code.code): s.name for s in model.inputs}
    for e in entries:
        if e.raw["resourceType"] != "Observation":
            continue
        status = e.raw["status"]
        if status not in OBSERVATION_STATUS:
            raise FhirError(400, "value", f"{e.path}.status: {status!r} is not an ObservationStatus code",
                            [f"{e.path}.status"])
        codings = e.raw["code"].get("coding") or []
        names = {keys[k] for c in codings if (k := (c.get("system"), c.get("code"))) in keys}
        if not names:
            continue
        subject = (e.raw.get("subject") or {}).get("reference")
        when = _when(e.obj)
        why = (f"{e.ref}, which is {status}" if status not in USABLE
               else f"{e.ref}, which is dated {when[0]}, after asOf {as_of}" if when and when[0] > as_of
               else f"{e.ref}, which has no value" if not any(k.startswith("value") for k in e.raw)
               else None)
        for name in sorted(names):
            if subject not in refs:
                problems.append(_Refusal("business-rule", f"{name}: {e.ref} is about "
                                         f"{subject or 'no subject'}, not the Bundle's Patient",
                                         f"{e.path}.subject"))
            elif why:
                found[name].ignored.append(why)
            else:
                found[name].candidates.append((e, when[1] if when else None))
    return found


def _number(value: Any, where: str, boolean: bool = False) -> float:
    if boolean and isinstance(value, bool):
        return float(value)
    if boolean or isinstance(value, bool) or not isinstance(value, int | float):
        raise FhirError(400, "structure", f"{where}: {value!r} is not a JSON "
                        f"{'boolean' if boolean else 'number'}", [where])
    return float(value)


def _quantity(spec: InputSpec, e: _Entry) -> tuple[float, str, str]:
    q, where = e.raw.get("valueQuantity"), f"{e.path}.valueQuantity"
    if q is None and spec.unit == "1" and "valueInteger" in e.raw:
        v = _number(e.raw["valueInteger"], f"{e.path}.valueInteger")
        return v, f"{e.ref} {spec.code.code} = {_fmt(v)}", f"{e.path}.valueInteger"
    if not isinstance(q, dict) or q.get("value") is None:
        raise _Refusal("business-rule", f"{spec.name}: {e.ref} has no valueQuantity (expected a value in "
                       f"{spec.unit})", f"{e.path}.value")
    v, unit = _number(q["value"], f"{where}.value"), q.get("code")
    if q.get("comparator") is not None:
        if q["comparator"] not in ("<", "<=", ">=", ">"):
            raise FhirError(400, "value", f"{where}.comparator: {q['comparator']!r} is not a "
                            "QuantityComparator", [f"{where}.comparator"])
        raise _Refusal("business-rule", f"{spec.name}: {e.ref} is {q['comparator']} {_fmt(v)} {unit or ''}, "
                       "not a point value", f"{where}.comparator")
    if q.get("system", UCUM) != UCUM or not unit:
        raise _Refusal("business-rule", f"{spec.name}: {e.ref} gives no UCUM unit code (system {UCUM}); "
                       f"expected {spec.unit}", f"{where}.code")
    try:
        x = convert(v, unit, spec.unit)
    except UnitError as exc:
        raise _Refusal("business-rule", f"{spec.name}: {e.ref} is in {unit!r}, which cannot be converted to "
                       f"the model's unit {spec.unit!r} ({exc})", f"{where}.code") from None
    to = f" -> {_fmt(x)} {spec.unit}" if unit != spec.unit else ""
    return x, f"{e.ref} {spec.code.code} = {_fmt(v)} {unit}{to}", where


def _coded(spec: InputSpec, e: _Entry) -> tuple[float, str, str]:
    where = f"{e.path}.valueCodeableConcept"
    if spec.kind == "boolean" and "valueBoolean" in e.raw:
        v = _number(e.raw["valueBoolean"], f"{e.path}.valueBoolean", boolean=True)
        return v, f"{e.ref} {spec.code.code} = {str(bool(v)).lower()}", f"{e.path}.valueBoolean"
    codings = (e.raw.get("valueCodeableConcept") or {}).get("coding") or []
    given = {(c.get("system"), c.get("code")) for c in codings}
    if spec.kind == "boolean":
        options = {(SNOMED, c): (v, "Yes" if v else "No") for c, v in YES_NO.items()}
        expected = f"valueBoolean or valueCodeableConcept SNOMED {' / '.join(YES_NO)} (Yes / No)"
    else:
        options = {(c.system, c.code): (float(i), c.display) for i, c in enumerate(spec.categories or [])}
        expected = "one of " + ", ".join(f"{s}|{c}" for s, c in options)
    hits = {options[k] for k in given if k in options}
    if len(hits) != 1:
        what = "several different answers" if hits else "no accepted code"
        raise _Refusal("business-rule", f"{spec.name}: {e.ref} has {what}; expected {expected}", where)
    (v, label), = hits
    return v, f"{e.ref} {spec.code.code} = {label}" + ("" if spec.kind == "boolean" else f" -> {v:g}"), where


def _pick(spec: InputSpec, found: _Found) -> tuple[float, str, str, str] | None:
    """Value, source text, expression and reference of the most recent usable observation."""
    dated = [c for c in found.candidates if c[1] is not None]
    pool = dated or found.candidates
    if not pool:
        return None
    top = max((c[1] for c in pool), default=None, key=lambda t: t or datetime.min.replace(tzinfo=UTC))
    best = [(e, (_quantity if spec.kind == "quantity" else _coded)(spec, e)) for e, t in pool if t == top]
    if len({r[0] for _, r in best}) > 1:
        shown = ", ".join(f"{e.ref} ({r[1].split(' = ', 1)[1]})" for e, r in best)
        raise _Refusal("business-rule", f"{spec.name}: equally recent observations disagree: {shown}",
                       *(r[2] for _, r in best))
    e, (v, text, where) = best[0]
    return v, text, where, e.ref


def _age(spec: InputSpec, patient: _Entry, as_of: date) -> tuple[float, str, str, str] | None:
    if spec.kind != "quantity" or spec.unit not in TIME_UNITS or \
            (spec.code.system, spec.code.code) not in AGE_CODES or patient.obj.birthDate is None:
        return None
    born, where = patient.obj.birthDate, f"{patient.path}.birthDate"
    if not isinstance(born, date):
        raise _Refusal("business-rule", f"{spec.name}: {patient.ref} birthDate {born!r} is not a full date, "
                       f"so the age would be a guess; send a full birthDate or an age Observation", where)
    try:
        v = age_in(spec.unit, born, as_of)
    except ValueError as exc:
        raise _Refusal("business-rule", f"{spec.name}: {exc}", where) from None
    return v, f"{patient.ref} birthDate {born} -> age {_fmt(v)} {spec.unit} at {as_of}", where, patient.ref


def _missing(spec: InputSpec, found: _Found, patient: _Entry, as_of: date) -> _Refusal:
    c = spec.code
    text = (f"{spec.name} ({c.system}|{c.code} {c.display!r}) is missing: no final, amended or corrected "
            f"Observation of the patient with this code dated on or before {as_of}")
    if found.ignored:
        text += f" (found only {' and '.join(found.ignored)})"
    where = [f"Bundle.entry.resource.ofType(Observation).where(code.coding.where(system = '{c.system}' "
             f"and code = '{c.code}').exists())"]
    if spec.unit in TIME_UNITS and (c.system, c.code) in AGE_CODES:
        text += f", and {patient.ref} has no birthDate"
        where.append(f"{patient.path}.birthDate")
    return _Refusal("required", text, *where)


def _patient(entries: list[_Entry]) -> tuple[_Entry, set[str]]:
    patients = [e for e in entries if e.raw["resourceType"] == "Patient"]
    if len(patients) != 1:
        raise FhirError(422, "required" if not patients else "business-rule",
                        f"the Bundle holds {len(patients)} Patients; $predict-risk scores exactly one",
                        [e.path for e in patients] or ["Bundle.entry.resource.ofType(Patient)"])
    p = patients[0]
    if not p.obj.id:
        raise FhirError(422, "required", "the Patient has no id, so the result could not reference it",
                        ["Patient.id"])
    return p, {f"Patient/{p.obj.id}"} | ({p.full_url} if p.full_url else set())


def extract(model: PrognosticModel, bundle: dict[str, Any], as_of: date | None = None) -> PatientInputs:
    """The covariate vector of the patient in ``bundle`` (R4 bundle.html, observation.html, patient.html).

    Raises
    ------
    FhirError
        400 when the Bundle is not valid FHIR R4; 422 for no or several Patients, and — all at
        once, expressions listed and reasons joined with ``"; "`` — for missing inputs,
        unconvertible units, conflicting observations and values outside the intended use.
    """
    today = datetime.now(UTC).date()
    as_of = as_of.date() if isinstance(as_of, datetime) else as_of or today
    if as_of > today + timedelta(days=1):
        raise FhirError(422, "value", f"asOf {as_of} is in the future", [AS_OF_PART])
    entries = _entries(bundle)
    patient, refs = _patient(entries)
    problems: list[_Refusal] = []
    found = _observations(model, entries, refs, as_of, problems)
    got: dict[str, tuple[float, str, str, str]] = {}
    for spec in model.inputs:
        try:
            one = _pick(spec, found[spec.name]) or _age(spec, patient, as_of)
            if one is None:
                raise _missing(spec, found[spec.name], patient, as_of)
            if reason := spec.accepts(one[0]):
                raise _Refusal("business-rule", reason, one[2])
            got[spec.name] = one
        except _Refusal as refusal:
            problems.append(refusal)
    if problems:
        where = list(dict.fromkeys(x for p in problems for x in p.expression))
        raise FhirError(422, problems[0].code, "; ".join(p.reason for p in problems), where)
    vector = np.array([got[n][0] for n in model.names], dtype=float)
    vector.setflags(write=False)
    return PatientInputs(patient=f"Patient/{patient.obj.id}", values=vector, as_of=as_of,
                         basis=tuple(dict.fromkeys(got[n][3] for n in model.names)),
                         sources={n: got[n][1] for n in model.names},
                         references=tuple(got[n][3] for n in model.names))

"""From one ``$predict-risk`` request to the model's covariate vector (pure functions, no I/O).

The body is a ``Parameters`` (FHIR R4 operations.html, parameters.html: part ``patient`` holding
a Bundle, optional ``asOf``) or that Bundle (R4 bundle.html). Each resource is validated with
``fhir.resources.R4B`` one entry at a time (faster than the whole Bundle) — or, when it fits,
by a compiled shape that accepts a subset of what fhir.resources accepts (:mod:`.shapes`) — plus the required
bindings fhir.resources leaves unchecked (Bundle.type, Observation.status, Quantity.comparator)
and the JSON types of the values read (R4 json.html: numbers and booleans are never strings).
An input is matched by any ``Observation.code.coding`` equal to its (system, code); of the
patient's final/amended/corrected observations dated on or before ``asOf`` the most recent wins
(by the latest instant its effective[x], else ``issued``, may denote; undated ones only if no
dated one exists). Quantities are converted to the model's UCUM unit and never clamped. A model that
carries an intended use refuses a patient of another sex and results older than it allows
(:mod:`device.fhir.intended`).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from device.model import InputSpec, PrognosticModel
from device.units import UnitError, age_in, check_vocabulary, convert

from . import shapes
from .errors import FhirError
from .intended import check_sex, max_age, stale_reason, too_old
from .parameters import (  # noqa: F401  (re-exported: the request side of an extraction)
    AS_OF_PART,
    BUNDLE_TYPES,
    HORIZON_PART,
    MAX_HORIZONS,
    PATIENT_BUNDLES,
    PATIENT_PART,
    bundle_type,
    request_bundle,
    request_horizons,
)

UCUM, SNOMED, LOINC = "http://unitsofmeasure.org", "http://snomed.info/sct", "http://loinc.org"
YES_NO = {"373066001": 1.0, "373067005": 0.0}  # SNOMED CT Yes / No
#: codes of an "age" input that may be computed from Patient.birthDate when no Observation gives it
AGE_CODES = frozenset({(LOINC, "30525-0"), (LOINC, "21612-7"), (LOINC, "29553-5"), (SNOMED, "424144002"),
                       (SNOMED, "397669002")})
TIME_UNITS = frozenset({"a", "mo", "wk", "d"})
#: input kinds sent as a valueQuantity (an ``integer`` is a count or grade: whole numbers only)
NUMERIC_KINDS = frozenset({"quantity", "integer"})
USABLE = frozenset({"final", "amended", "corrected"})
OBSERVATION_STATUS = USABLE | {"registered", "preliminary", "cancelled", "entered-in-error", "unknown"}


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
    shell_body = {**bundle, "entry": shell}
    if shapes.read(shell_body) is None:
        _validated(Bundle, shell_body, "Bundle")
    bundle_type(bundle, "Bundle")
    out = []
    for i, e in enumerate(raw):
        res, where = e.get("resource"), f"Bundle.entry[{i}].resource"
        if res is None:
            continue
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            raise FhirError(400, "structure", f"{where}: not a resource (no resourceType)", [where])
        try:
            cls = get_fhir_model_class(res["resourceType"])
            if not issubclass(cls, Resource):  # a data type (Element, Quantity, …) is no entry
                raise ValueError(res["resourceType"])
        except (KeyError, ValueError):
            raise FhirError(400, "structure", f"{where}.resourceType: {res['resourceType']!r} is not a FHIR "
                            "resource type", [f"{where}.resourceType"]) from None
        out.append(_Entry(i, res, shapes.read(res) or _validated(cls, res, where), e.get("fullUrl")))
    return out


def _latest(value: Any) -> tuple[date, datetime]:
    """Last calendar date and latest UTC instant a FHIR date/dateTime/instant may denote.

    Raises ``OverflowError``/``ValueError`` when that instant is outside what a Python
    ``datetime`` represents (years 1–9999 in UTC), e.g. ``9999-12-31T23:59:59-14:00``."""
    if isinstance(value, datetime):
        return value.date(), (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(value, date):
        return value, datetime.combine(value, time.max, UTC)
    year, _, month = str(value).partition("-")  # partial date: 'YYYY' or 'YYYY-MM'
    m = int(month) if month else 12
    last = date(int(year), m, calendar.monthrange(int(year), m)[1])
    return last, datetime.combine(last, time.max, UTC)


def _when(e: _Entry) -> tuple[date, datetime] | None:
    """When an Observation was made (R4 observation.html: effective[x], else ``issued``); 422 for a
    date outside the representable range (years 1–9999 once in UTC), naming the element."""
    obs, period = e.obj, e.obj.effectivePeriod
    for name, value in (("effectiveDateTime", obs.effectiveDateTime),
                        ("effectiveInstant", obs.effectiveInstant),
                        ("effectivePeriod.end", period and period.end),
                        ("effectivePeriod.start", period and period.start), ("issued", obs.issued)):
        if value is not None:
            try:
                return _latest(value)
            except (OverflowError, ValueError):
                raise FhirError(422, "value", f"{e.path}.{name}: {value} is outside the dates this "
                                "device represents (years 1 to 9999, in UTC)", [f"{e.path}.{name}"]) from None
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
    labels = {s.name: s.label for s in model.inputs}
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
        when = _when(e)
        why = (f"{e.ref}, which is {status}" if status not in USABLE
               else f"{e.ref}, which is dated {when[0]}, after asOf {as_of}" if when and when[0] > as_of
               else f"{e.ref}, which has no value" if not any(k.startswith("value") for k in e.raw)
               else None)
        for name in sorted(names):
            if subject not in refs:
                problems.append(_Refusal("business-rule", f"{labels[name]}: {e.ref} is about "
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
        raise FhirError(400, "structure", f"{where}: {str(value)[:40]!r} is not a JSON "
                        f"{'boolean' if boolean else 'number'}", [where])
    try:
        return float(value)
    except OverflowError:  # an integer beyond the range of a double (json.loads keeps it exact)
        raise FhirError(422, "value", f"{where}: the number is beyond the range of a double",
                        [where]) from None


def _quantity(spec: InputSpec, e: _Entry) -> tuple[float, str, str]:
    q, where = e.raw.get("valueQuantity"), f"{e.path}.valueQuantity"
    if q is None and spec.unit == "1" and "valueInteger" in e.raw:
        v = _number(e.raw["valueInteger"], f"{e.path}.valueInteger")
        return v, f"{e.ref} {spec.code.code} = {_fmt(v)}", f"{e.path}.valueInteger"
    if not isinstance(q, dict) or q.get("value") is None:
        raise _Refusal("business-rule", f"{spec.label}: {e.ref} has no valueQuantity (expected a value in "
                       f"{spec.unit})", f"{e.path}.value")
    v, unit = _number(q["value"], f"{where}.value"), q.get("code")
    # the unit as shown in messages: never echo a long one
    shown = unit if not isinstance(unit, str) or len(unit) <= 40 else unit[:37] + "..."
    if q.get("comparator") is not None:
        if q["comparator"] not in ("<", "<=", ">=", ">"):
            raise FhirError(400, "value", f"{where}.comparator: {q['comparator']!r} is not a "
                            "QuantityComparator", [f"{where}.comparator"])
        raise _Refusal("business-rule", f"{spec.label}: {e.ref} is {q['comparator']} {_fmt(v)} "
                       f"{shown or ''}, not a point value", f"{where}.comparator")
    if q.get("system", UCUM) != UCUM or not unit:
        raise _Refusal("business-rule", f"{spec.label}: {e.ref} gives no UCUM unit code (system {UCUM}); "
                       f"expected {spec.unit}", f"{where}.code")
    try:
        x = convert(v, unit, spec.unit)
        check_vocabulary(unit, spec.unit)
    except UnitError as exc:
        raise _Refusal("business-rule", f"{spec.label}: {e.ref} is in {shown!r}, which cannot be converted "
                       f"to the model's unit {spec.unit!r} ({exc})", f"{where}.code") from None
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
        raise _Refusal("business-rule", f"{spec.label}: {e.ref} has {what}; expected {expected}", where)
    (v, label), = hits
    return v, f"{e.ref} {spec.code.code} = {label}" + ("" if spec.kind == "boolean" else f" -> {v:g}"), where


def _banded(spec: InputSpec, e: _Entry) -> tuple[float, str, str]:
    """A banded category measured as a number (``valueQuantity`` in the input's unit, or
    ``valueInteger``): the band it falls in (:meth:`prognosis.InputSpec.band`); a value the bands do
    not cover is refused in the input's words."""
    v, text, where = _quantity(spec, e)
    band = spec.band(v)
    if isinstance(band, str):
        raise _Refusal("business-rule", band, where)
    return float(band), f"{text} -> {(spec.categories or [])[band].display}", where


def _reader(spec: InputSpec, e: _Entry) -> tuple[float, str, str]:
    if spec.kind in NUMERIC_KINDS:
        return _quantity(spec, e)
    if spec.bands is not None and "valueCodeableConcept" not in e.raw:  # measured, unless coded
        return _banded(spec, e)
    return _coded(spec, e)


def _newest(found: _Found) -> tuple[_Entry, datetime | None] | None:
    """The most recent usable observation and its instant (undated ones only if none is dated)."""
    pool = [c for c in found.candidates if c[1] is not None] or found.candidates
    return max(pool, key=lambda c: c[1] or datetime.min.replace(tzinfo=UTC)) if pool else None


def _pick(spec: InputSpec, found: _Found) -> tuple[float, str, str, str] | None:
    """Value, source text, expression and reference of the most recent usable observation."""
    dated = [c for c in found.candidates if c[1] is not None]
    pool = dated or found.candidates
    if not pool:
        return None
    top = max((c[1] for c in pool), default=None, key=lambda t: t or datetime.min.replace(tzinfo=UTC))
    best = [(e, _reader(spec, e)) for e, t in pool if t == top]
    if len({r[0] for _, r in best}) > 1:
        shown = ", ".join(f"{e.ref} ({r[1].split(' = ', 1)[1]})" for e, r in best)
        raise _Refusal("business-rule", f"{spec.label}: equally recent observations disagree: {shown}",
                       *(r[2] for _, r in best))
    e, (v, text, where) = best[0]
    return v, text, where, e.ref


def _age(spec: InputSpec, patient: _Entry, as_of: date) -> tuple[float, str, str, str] | None:
    if spec.kind != "quantity" or spec.unit not in TIME_UNITS or \
            (spec.code.system, spec.code.code) not in AGE_CODES or patient.obj.birthDate is None:
        return None
    born, where = patient.obj.birthDate, f"{patient.path}.birthDate"
    if not isinstance(born, date):
        raise _Refusal("business-rule", f"{spec.label}: {patient.ref} birthDate {born!r} is not a full date, "
                       f"so the age would be a guess; send a full birthDate or an age Observation", where)
    try:
        v = age_in(spec.unit, born, as_of)
    except ValueError as exc:
        raise _Refusal("business-rule", f"{spec.label}: {exc}", where) from None
    return v, f"{patient.ref} birthDate {born} -> age {_fmt(v)} {spec.unit} at {as_of}", where, patient.ref


def _missing(spec: InputSpec, found: _Found, patient: _Entry, as_of: date) -> _Refusal:
    c = spec.code
    text = (f"{spec.label} ({c.system}|{c.code} {c.display!r}) is missing: no final, amended or corrected "
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
    check_sex(model, patient.raw.get("gender"), patient.ref, patient.path)
    problems: list[_Refusal] = []
    limit, old, old_at = max_age(model), [], []  # results older than the intended use allows
    found = _observations(model, entries, refs, as_of, problems)
    got: dict[str, tuple[float, str, str, str]] = {}
    for spec in model.inputs:
        try:
            newest = _newest(found[spec.name])
            if newest and limit is not None and too_old(newest[1], as_of, limit):
                old.append((spec.label, newest[0].ref, newest[1]))
                old_at.append(f"{newest[0].path}.effective")
                continue
            one = _pick(spec, found[spec.name]) or _age(spec, patient, as_of)
            if one is None:
                raise _missing(spec, found[spec.name], patient, as_of)
            if reason := spec.accepts(one[0]):
                raise _Refusal("business-rule", reason, one[2])
            got[spec.name] = one
        except _Refusal as refusal:
            problems.append(refusal)
    if old:
        problems.insert(0, _Refusal("business-rule", stale_reason(old, as_of, limit or 0), *old_at))
    if problems:
        where = list(dict.fromkeys(x for p in problems for x in p.expression))
        raise FhirError(422, problems[0].code, "; ".join(p.reason for p in problems), where)
    vector = np.array([got[n][0] for n in model.names], dtype=float)
    vector.setflags(write=False)
    return PatientInputs(patient=f"Patient/{patient.obj.id}", values=vector, as_of=as_of,
                         basis=tuple(dict.fromkeys(got[n][3] for n in model.names)),
                         sources={n: got[n][1] for n in model.names},
                         references=tuple(got[n][3] for n in model.names))

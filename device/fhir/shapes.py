"""Compiled fast-path shapes of the FHIR resources the hot path reads and writes (issue 21).

Full ``fhir.resources`` validation costs about a millisecond per request and per RiskAssessment,
almost all of it in its per-element model machinery rather than in the checks themselves. These
pydantic models cover only the shapes a ``$predict-risk`` client sends (a Patient; an Observation
with code, subject, effective[x]/issued and one value[x]) and the RiskAssessment this device
builds, with the **same primitive types** as ``fhir.resources`` (``fhir_core.types``: id, code,
uri, string, decimal, date, dateTime, instant — so a value is checked and parsed exactly as there)
and strictly more constraints on the structure:

* no field they do not declare (``extra="forbid"``): extensions, ``meta``, ``text``, primitive
  ``_element`` siblings and every other element fall through to the oracle;
* no ``null`` and no empty string, list or object anywhere;
* at most one ``value[x]`` and one ``effective[x]`` (R4 choice types).

So the set of resources a shape accepts is a subset of what ``fhir.resources`` accepts (the
property the tests check against ``fhir.resources`` as the oracle). A resource a shape refuses is
validated by ``fhir.resources`` itself (:func:`device.fhir.inputs._validated`), which accepts it or
refuses it with its own message: the server accepts and refuses exactly what it did before.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fhir_core.types import (
    BooleanType,
    CodeType,
    DateTimeType,
    DateType,
    DecimalType,
    IdType,
    InstantType,
    IntegerType,
    MarkdownType,
    StringType,
    UriType,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: a URI or markdown that is not empty (``fhir_core`` allows ``""`` for these; a shape never does)
Uri = Annotated[UriType, Field(min_length=1)]
Markdown = Annotated[MarkdownType, Field(min_length=1)]
#: one or more items (FHIR JSON never sends an empty array)
T = TypeVar("T")
Some = Annotated[list[T], Field(min_length=1)]
#: an optional element: absent is ``None``, an explicit JSON ``null`` is refused (the type is not nullable)
ABSENT: Any = Field(default=None)


class _Shape(BaseModel):
    """Closed and immutable; every check compiled (pydantic-core), none in Python."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Coding(_Shape):
    system: Uri
    version: StringType = ABSENT
    code: CodeType
    display: StringType = ABSENT


class CodeableConcept(_Shape):
    coding: Some[Coding]
    text: StringType = ABSENT


class Reference(_Shape):
    reference: StringType
    display: StringType = ABSENT


class Quantity(_Shape):
    value: DecimalType
    comparator: CodeType = ABSENT
    unit: StringType = ABSENT
    system: Uri = ABSENT
    code: CodeType = ABSENT


class Period(_Shape):
    start: DateTimeType
    end: DateTimeType = ABSENT


class Patient(_Shape):
    resourceType: Literal["Patient"]
    id: IdType = ABSENT
    gender: Literal["male", "female", "other", "unknown"] = ABSENT
    birthDate: DateType = ABSENT


class Observation(_Shape):
    """An Observation with at most one value[x] and one effective[x] (checked by :func:`read`)."""

    resourceType: Literal["Observation"]
    id: IdType = ABSENT
    status: CodeType
    code: CodeableConcept
    subject: Reference = ABSENT
    effectiveDateTime: DateTimeType = ABSENT
    effectiveInstant: InstantType = ABSENT
    effectivePeriod: Period = ABSENT
    issued: InstantType = ABSENT
    valueQuantity: Quantity = ABSENT
    valueCodeableConcept: CodeableConcept = ABSENT
    valueBoolean: BooleanType = ABSENT
    valueInteger: IntegerType = ABSENT


class BundleEntry(_Shape):
    fullUrl: Uri = ABSENT


class BundleShell(_Shape):
    """A Bundle without its entries' resources (each is validated on its own)."""

    resourceType: Literal["Bundle"]
    id: IdType = ABSENT
    type: CodeType
    entry: Some[BundleEntry] = ABSENT


INPUTS: dict[str, type[_Shape]] = {"Patient": Patient, "Observation": Observation, "Bundle": BundleShell}


def _choices(resource: dict[str, Any]) -> bool:
    """At most one ``value[x]`` and one ``effective[x]`` (R4 choice types)."""
    values = effective = 0
    for key in resource:
        values += key.startswith("value")
        effective += key.startswith("effective")
    return values <= 1 and effective <= 1


def read(resource: dict[str, Any]) -> _Shape | None:
    """The fast shape of an input resource (``Patient``, ``Observation``, a Bundle shell), parsed with
    the primitive types of ``fhir.resources``; None when it has another type or does not fit the
    shape (then validate it with ``fhir.resources``)."""
    shape = INPUTS.get(resource.get("resourceType"))  # type: ignore[arg-type]
    if shape is None or not _choices(resource):
        return None
    try:
        return shape.model_validate(resource)
    except ValidationError:
        return None


# ------------------------------------------------------------------ output
#: a number the device wrote: a finite JSON number. ``fhir_core``'s decimal accepts exactly the ints and
#: the floats whose ``str`` matches its regex, which every finite float's does (NaN and inf do not)
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)] | Annotated[int, Field(strict=True)]


class _Value(_Shape):
    value: Number


class _Quantity(_Shape):
    value: Number
    unit: StringType
    system: Uri
    code: CodeType


class _Interval(_Shape):
    low: _Value
    high: _Value


class _Range(_Shape):
    low: _Quantity
    high: _Quantity


class _DecimalExtension(_Shape):
    url: Uri
    valueDecimal: Number


class _StringExtension(_Shape):
    url: Uri
    valueString: StringType


class _RangeExtension(_Shape):
    url: Uri
    valueRange: _Interval


#: an extension with exactly one value[x] (or nested extensions: R4 ext-1), as a closed union
Extension = _DecimalExtension | _StringExtension | _RangeExtension


class _NestedExtension(_Shape):
    url: Uri
    extension: Some[Extension]


class _Basis(_Shape):
    reference: StringType
    extension: Some[_DecimalExtension] = ABSENT


class _Outcome(_Shape):
    text: StringType


class _Prediction(_Shape):
    outcome: _Outcome
    probabilityDecimal: Number
    relativeRisk: Number
    whenRange: _Range
    rationale: StringType
    extension: Some[_RangeExtension] = ABSENT


class _Text(_Shape):
    text: StringType


class _Note(_Shape):
    text: Markdown


class _Method(_Shape):
    coding: Some[Coding]
    text: StringType


class RiskAssessment(_Shape):
    """The RiskAssessment :func:`device.fhir.resources.risk_assessment` builds."""

    resourceType: Literal["RiskAssessment"]
    id: IdType
    extension: Some[_NestedExtension] = ABSENT
    status: CodeType
    method: _Method
    code: _Text
    subject: Reference
    occurrenceDateTime: DateTimeType
    basis: Some[_Basis] = ABSENT
    prediction: Some[_Prediction]
    note: Some[_Note] = ABSENT


def fits_risk_assessment(resource: dict[str, Any]) -> bool:
    """Whether an outgoing RiskAssessment fits the fast shape (else check it with ``fhir.resources``)."""
    try:
        RiskAssessment.model_validate(resource)
    except ValidationError:
        return False
    return True

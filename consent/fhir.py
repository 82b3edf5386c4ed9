"""FHIR Consent (R4B and R5) <-> consent-registry record, losslessly.

The registry keeps one :class:`ConsentRecord` per consent version of a patient for a study: the
fields it needs plus the original resource JSON, so ``export_consent(parse_consent(r)) == r``.
Specs: https://hl7.org/fhir/R4B/consent.html and https://hl7.org/fhir/R5/consent.html.

Rules (fhir.resources checks structure and types, not bindings or invariants; we check what we use):

* FHIR version: ``fhir_version=`` if given, else the shape: R5-only elements (``subject``, ``decision``,
  ``date``, ``grantor``, ``policyBasis``, …, a list ``provision``) or R4B-only ones (``patient``,
  ``scope``, ``dateTime``, ``policy``, …, an object ``provision``); both or neither is an error.
* Patient: ``patient`` (R4B) / ``subject`` (R5): the id of a ``Patient/<id>`` reference (relative or
  absolute), else ``identifier.value``; a reference to anything but a Patient is refused.
* Study: a reference to the study wins over a policy URL. R4B: the ``consent-ResearchStudyContext``
  extension on ``provision``, else the first ``policy.uri``. R5: ``policyBasis.reference``, else
  ``policyBasis.url``, else that extension on a top-level ``provision``. A logical reference gives
  ``system|value``. Not used: policyRule/regulatoryBasis (a regulation, not the study),
  sourceReference/sourceAttachment (the signed form), policy.authority (the organisation).
* R4B scope must be consentscope#research (this registry holds study consents only).
* Decision: R5 ``decision``, R4B root ``provision.type``; ``permit`` when absent. Nested provisions
  (exceptions) stay in the resource and are not interpreted.
* Status: the FHIR code verbatim. R5 has no ``proposed``/``rejected``; R5 ``not-done``/``unknown`` are
  refused. Date: R4B ``dateTime`` (time needs a zone), R5 ``date`` (a date only); required.
* Version: ``meta.versionId`` when it is a positive integer, else ``version=`` (default 1).

Error messages name the field and the rule on one line and never quote patient identifiers.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast, get_args

from fhir.resources.consent import Consent as ConsentR5
from fhir.resources.R4B.consent import Consent as ConsentR4B
from pydantic import ValidationError

Status = Literal["active", "inactive", "rejected", "entered-in-error", "draft", "proposed"]
Decision = Literal["permit", "deny"]
FhirVersion = Literal["R4B", "R5"]

#: Statuses the registry accepts per FHIR version (R5 ConsentState lacks proposed/rejected).
STATUSES: dict[str, frozenset[str]] = {
    "R4B": frozenset(get_args(Status)),
    "R5": frozenset({"draft", "active", "inactive", "entered-in-error"}),
}
DECISIONS = frozenset(get_args(Decision))
SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
STUDY_CONTEXT = "http://hl7.org/fhir/StructureDefinition/consent-ResearchStudyContext"
CATEGORY = {"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}

_R5_ONLY = frozenset({"subject", "decision", "_decision", "date", "_date", "grantor", "grantee", "manager",
                      "controller", "period", "policyBasis", "policyText", "regulatoryBasis"})
_R4B_ONLY = frozenset({"patient", "scope", "dateTime", "_dateTime", "performer", "organization", "policy",
                       "policyRule"})
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")
_DATETIME = re.compile(r"\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?)?)?")
_VERSION_ID = re.compile(r"[1-9][0-9]{0,8}")
_TOKEN = re.compile(r"\S+")


class ConsentError(ValueError):
    """A Consent resource or argument is unusable; one line naming the field and the rule."""


@dataclass(frozen=True)
class ConsentRecord:
    """One consent version of a patient for a study, with the full FHIR resource it came from."""

    patient: str
    study: str
    status: Status
    decision: Decision
    date: str
    version: int
    fhir_version: FhirVersion
    resource: dict[str, Any] = field(hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.fhir_version not in STATUSES:
            raise ConsentError("fhir_version: must be 'R4B' or 'R5'")
        if self.status not in STATUSES[self.fhir_version]:
            raise ConsentError(f"status: not one of {', '.join(sorted(STATUSES[self.fhir_version]))} "
                               f"({self.fhir_version})")
        if self.decision not in DECISIONS:
            raise ConsentError("decision: must be 'permit' or 'deny'")
        _check_version(self.version)

    @property
    def is_active_permit(self) -> bool:
        """True when the consent is in force (status ``active``) and permits (decision ``permit``)."""
        return self.status == "active" and self.decision == "permit"


def parse_consent(resource: dict[str, Any] | str, *, fhir_version: FhirVersion | None = None,
                  version: int | None = None) -> ConsentRecord:
    """Record of a Consent (dict or JSON text); keeps a copy of the resource. Rules: module docstring."""
    data = _load(resource)
    kind = data.get("resourceType")
    if kind != "Consent":
        got = f"'{kind}'" if isinstance(kind, str) and kind.isalpha() and len(kind) < 40 else "something else"
        raise ConsentError(f"resourceType: expected 'Consent', got {got}")
    fv = _detect_version(data) if fhir_version is None else fhir_version
    if fv not in STATUSES:
        raise ConsentError("fhir_version: must be 'R4B' or 'R5'")
    date_key = "dateTime" if fv == "R4B" else "date"
    if data.get(date_key) is not None:  # before the model: a clearer message, and ints are not dates
        _check_date(data[date_key], fv, date_key)
    _validate_model(data, fv)
    if data.get(date_key) is None:
        raise ConsentError(f"{date_key}: the consent date is missing")
    status = data.get("status")
    if status not in STATUSES[fv]:
        raise ConsentError(f"status: not a status the registry supports in {fv} "
                           f"(one of {', '.join(sorted(STATUSES[fv]))})")
    if fv == "R4B":
        _check_scope(data)
    return ConsentRecord(patient=_patient(data, fv), study=_study(data, fv), status=cast(Status, status),
                         decision=_decision(data, fv), date=data[date_key],
                         version=_version(data, version), fhir_version=cast(FhirVersion, fv), resource=data)


def build_consent(patient: str, study: str, *, status: str, decision: str = "permit", date: str,
                  fhir_version: FhirVersion = "R4B", version: int = 1,
                  previous: ConsentRecord | None = None, basis: str | None = None) -> ConsentRecord:
    """A new, valid Consent for that FHIR version (R4B: scope research, LOINC 59284-0 category,
    ``policy.uri``, ``provision.type``; R5: ``decision``, ``subject``, ``date``, ``policyBasis`` —
    a ``reference`` for ``ResearchStudy/<id>``, else ``url``). With ``previous``, the resource keeps
    its id, so the registry's history is versions (``meta.versionId``) of one Consent.

    ``basis``: the legal basis under which the data are used when it is not the patient's consent
    (e.g. a research exemption in national law, GDPR Art. 9(2)(j)), as declared by the site; recorded
    as R4B ``policyRule.text`` / R5 ``regulatoryBasis[0].text``, so it is never silently assumed."""
    if not isinstance(patient, str) or not patient or patient != patient.strip():
        raise ConsentError("patient: the patient identifier must be a non-empty string without outer spaces")
    if not isinstance(study, str) or not _TOKEN.fullmatch(study):
        raise ConsentError("study: must be a non-empty URI or id without spaces")
    if fhir_version not in STATUSES:
        raise ConsentError("fhir_version: must be 'R4B' or 'R5'")
    if decision not in DECISIONS:
        raise ConsentError("decision: must be 'permit' or 'deny'")
    _check_date(date, fhir_version, "date")  # status and the rest: checked by parse_consent below
    _check_version(version)
    rid: str | None = str(uuid.uuid4())
    if previous is not None:
        if (previous.patient, previous.study, previous.fhir_version) != (patient, study, fhir_version):
            raise ConsentError("previous: must be for the same patient, study and FHIR version")
        if version <= previous.version:
            raise ConsentError("version: must be greater than the previous record's version")
        rid = previous.resource.get("id")
    subject = ({"reference": f"Patient/{patient}"} if _FHIR_ID.fullmatch(patient)
               else {"type": "Patient", "identifier": {"value": patient}})
    res: dict[str, Any] = {"resourceType": "Consent", "id": rid, "meta": {"versionId": str(version)},
                           "status": status}
    if fhir_version == "R4B":
        res |= {"scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "research", "display": "Research"}]},
                "category": [copy.deepcopy(CATEGORY)], "patient": subject, "dateTime": date,
                "policy": [{"uri": study}], "provision": {"type": decision}}
    else:
        policy = {"reference": {"reference": study}} if study.startswith("ResearchStudy/") else {"url": study}
        res |= {"category": [copy.deepcopy(CATEGORY)], "subject": subject, "date": date,
                "decision": decision, "policyBasis": policy}
    if basis is not None:
        res |= _legal_basis(basis, fhir_version)
    if rid is None:
        del res["id"]
    return parse_consent(res, fhir_version=fhir_version)


def _legal_basis(basis: str, fhir_version: FhirVersion) -> dict[str, Any]:
    """The legal basis stated in words: R4B ``policyRule.text``, R5 ``regulatoryBasis[0].text``."""
    if not basis.strip():
        raise ConsentError("basis: the legal basis must be stated in words")
    if fhir_version == "R4B":
        return {"policyRule": {"text": basis.strip()}}
    return {"regulatoryBasis": [{"text": basis.strip()}]}


def export_consent(record: ConsentRecord) -> dict[str, Any]:
    """The record's FHIR Consent JSON (a deep copy: editing it does not change the record)."""
    return copy.deepcopy(record.resource)


def revoke(record: ConsentRecord, *, date: str) -> ConsentRecord:
    """Withdraw an active consent: the next version of the same resource with status ``inactive``
    (R4B/R5 ConsentState: "terminated or replaced"), ``date``/``dateTime`` set to ``date`` and
    ``meta.versionId`` = version + 1; every other element is kept. The registry keeps the history."""
    if record.status != "active":
        raise ConsentError("status: only an active consent can be revoked")
    _check_date(date, record.fhir_version, "date")
    if _before(date, record.date):
        raise ConsentError("date: the revocation is dated before the consent")
    res = export_consent(record)
    res["status"] = "inactive"
    res["dateTime" if record.fhir_version == "R4B" else "date"] = date
    res["meta"] = {**res.get("meta", {}), "versionId": str(record.version + 1)}
    return parse_consent(res, fhir_version=record.fhir_version)


def with_version(record: ConsentRecord, version: int) -> ConsentRecord:
    """The same consent renumbered, ``meta.versionId`` included (for the registry's own numbering;
    rather than ``ConsentRecord(**{..., "version": n})``, which leaves the resource's versionId stale)."""
    res = export_consent(record)
    res["meta"] = {**res.get("meta", {}), "versionId": str(_check_version(version))}
    return parse_consent(res, fhir_version=record.fhir_version)


def to_bundle(records: Sequence[ConsentRecord]) -> dict[str, Any]:
    """A ``collection`` Bundle (https://hl7.org/fhir/R4B/bundle.html) of the records' resources.
    ``fullUrl`` is ``urn:uuid:`` of the resource id (or derived from it), shared by its versions."""
    if len({r.fhir_version for r in records}) > 1:
        raise ConsentError("records: one Bundle holds one FHIR version, got both R4B and R5")
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "collection"}
    if records:
        bundle["entry"] = [{"fullUrl": _full_url(r.resource), "resource": export_consent(r)} for r in records]
    return bundle


def from_bundle(bundle: dict[str, Any] | str, *,
                fhir_version: FhirVersion | None = None) -> list[ConsentRecord]:
    """Records of every Consent in a Bundle of any type (other resources, e.g. search includes, are
    skipped), or of ndjson text (one Consent per line, as in bulk export)."""
    if isinstance(bundle, str):
        try:
            data = json.loads(bundle)
        except json.JSONDecodeError:
            return _from_ndjson(bundle, fhir_version)
        if not (isinstance(data, dict) and data.get("resourceType") == "Bundle"):
            return [_located("resource", data, fhir_version)]
        bundle = data
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ConsentError("bundle: expected a FHIR Bundle or ndjson text")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConsentError("Bundle.entry: must be a list of objects")
    return [_located(f"Bundle.entry[{i}].resource", e["resource"], fhir_version)
            for i, e in enumerate(entries)
            if isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == "Consent"]


def _load(resource: Any) -> dict[str, Any]:
    if isinstance(resource, str):
        try:
            resource = json.loads(resource)
        except json.JSONDecodeError as exc:
            raise ConsentError(f"resource: not valid JSON ({exc.msg} at line {exc.lineno} "
                               f"column {exc.colno})") from None
    if not isinstance(resource, dict):
        raise ConsentError("resource: expected a JSON object")
    return copy.deepcopy(resource)


def _detect_version(data: dict[str, Any]) -> str:
    prov = data.get("provision")
    r5 = (_R5_ONLY & data.keys()) | ({"provision[]"} if isinstance(prov, list) else set())
    r4 = (_R4B_ONLY & data.keys()) | ({"provision{}"} if isinstance(prov, dict) else set())
    if r5 and r4:
        raise ConsentError(f"resource: mixes R4B ({', '.join(sorted(r4))}) and R5 ({', '.join(sorted(r5))}) "
                           "elements; pass fhir_version")
    if not (r5 or r4):
        raise ConsentError("resource: cannot tell R4B from R5 (no patient/scope/policy nor subject/decision/"
                           "policyBasis); pass fhir_version")
    return "R5" if r5 else "R4B"


def _validate_model(data: dict[str, Any], fv: str) -> None:
    model = ConsentR4B if fv == "R4B" else ConsentR5
    try:
        model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "resource"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        msg = " ".join(str(first["msg"]).removeprefix("Value error, ").split())
        raise ConsentError(f"{where}: {msg[:160]}{more} [FHIR {fv} Consent]") from None


def _check_scope(data: dict[str, Any]) -> None:
    codings = data["scope"].get("coding") or []
    if not any(c.get("system") == SCOPE_SYSTEM and c.get("code") == "research" for c in codings):
        raise ConsentError(f"scope: must include {SCOPE_SYSTEM}#research (the registry holds study consents)")


def _patient(data: dict[str, Any], fv: str) -> str:
    key = "patient" if fv == "R4B" else "subject"
    ref = data.get(key)
    if not isinstance(ref, dict):
        raise ConsentError(f"{key}: the patient reference is missing")
    if ref.get("type", "Patient") not in ("Patient", "http://hl7.org/fhir/StructureDefinition/Patient"):
        raise ConsentError(f"{key}.type: the patient reference must point to a Patient")
    text = ref.get("reference")
    if text is not None:
        match = _PATIENT_REF.search(text)
        if match is None or match.end() != len(text):
            raise ConsentError(f"{key}.reference: the patient reference must be Patient/<id>")
        return match.group(1)
    value = (ref.get("identifier") or {}).get("value")
    if isinstance(value, str) and value.strip():
        return value
    raise ConsentError(f"{key}: the patient reference has neither a reference nor an identifier.value")


def _ref_text(ref: Any) -> str | None:
    """``reference`` of a Reference, else its identifier as ``system|value`` (or ``value``)."""
    if not isinstance(ref, dict):
        return None
    ident = ref.get("identifier") or {}
    if ref.get("reference") is not None or ident.get("value") is None:
        return ref.get("reference")
    return f"{ident['system']}|{ident['value']}" if ident.get("system") else cast(str, ident["value"])


def _study_context(provision: Any) -> str | None:
    for ext in (provision or {}).get("extension") or []:
        if ext.get("url") == STUDY_CONTEXT:
            return _ref_text(ext.get("valueReference"))
    return None


def _study(data: dict[str, Any], fv: str) -> str:
    if fv == "R4B":
        ext = "provision.extension(consent-ResearchStudyContext)"
        candidates = [(ext, _study_context(data.get("provision")))]
        candidates += [(f"policy[{i}].uri", p.get("uri")) for i, p in enumerate(data.get("policy") or [])]
    else:
        basis = data.get("policyBasis") or {}
        candidates = [("policyBasis.reference", _ref_text(basis.get("reference"))),
                      ("policyBasis.url", basis.get("url"))]
        candidates += [(f"provision[{i}].extension(consent-ResearchStudyContext)", _study_context(p))
                       for i, p in enumerate(data.get("provision") or [])]
    for where, value in candidates:
        if value is None:
            continue
        if not _TOKEN.fullmatch(value):
            raise ConsentError(f"{where}: the study pointer must be a URI or reference without spaces")
        return value
    where = "policy.uri" if fv == "R4B" else "policyBasis.reference/url"
    raise ConsentError(f"{where}: no study pointer (nor a provision consent-ResearchStudyContext extension)")


def _decision(data: dict[str, Any], fv: str) -> Decision:
    where, value = ("decision", data.get("decision")) if fv == "R5" else (
        "provision.type", (data.get("provision") or {}).get("type"))
    if value is not None and value not in DECISIONS:
        raise ConsentError(f"{where}: must be 'permit' or 'deny'")
    return cast(Decision, value or "permit")


def _check_date(value: Any, fv: str, where: str) -> str:
    pattern, kind = (_DATETIME, "a FHIR dateTime (a time needs a zone)") if fv == "R4B" else (
        _DATE, "a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD; R5 Consent.date has no time)")
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConsentError(f"{where}: must be {kind}")
    try:  # calendar check: month 13, 30 February, hour 25 …; partial dates probed at day 1
        datetime.fromisoformat((value + "-01" * ((10 - len(value)) // 3)).replace("Z", "+00:00"))
    except ValueError:
        raise ConsentError(f"{where}: not a valid calendar date/time") from None
    return value


def _check_version(version: Any) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConsentError("version: must be a positive integer")
    return version


def _version(data: dict[str, Any], version: int | None) -> int:
    vid = (data.get("meta") or {}).get("versionId")
    if isinstance(vid, str) and _VERSION_ID.fullmatch(vid):
        if version is not None and version != int(vid):
            raise ConsentError("meta.versionId: disagrees with the version given")
        return int(vid)
    return 1 if version is None else _check_version(version)


def _before(later: str, earlier: str) -> bool:
    """True when ``later`` is certainly before ``earlier`` (instants if both have times, else days)."""
    if "T" in later and "T" in earlier:
        return datetime.fromisoformat(later.replace("Z", "+00:00")) < datetime.fromisoformat(
            earlier.replace("Z", "+00:00"))
    n = min(len(later), len(earlier), 10)
    return later[:n] < earlier[:n]


def _full_url(resource: dict[str, Any]) -> str:
    rid = resource.get("id")
    try:
        return f"urn:uuid:{uuid.UUID(rid) if rid else uuid.uuid4()}"
    except ValueError:
        return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'Consent/{rid}')}"


def _located(where: str, resource: Any, fhir_version: FhirVersion | None) -> ConsentRecord:
    try:
        return parse_consent(resource, fhir_version=fhir_version)
    except ConsentError as exc:
        raise ConsentError(f"{where}: {exc}") from None


def _from_ndjson(text: str, fhir_version: FhirVersion | None) -> list[ConsentRecord]:
    return [_located(f"ndjson line {n}", line, fhir_version)
            for n, line in enumerate(text.splitlines(), start=1) if line.strip()]

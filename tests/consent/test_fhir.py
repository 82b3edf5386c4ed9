"""consent.fhir: FHIR Consent (R4B, R5) <-> registry record, lossless round trips and one-line errors."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fhir.resources.bundle import Bundle as BundleR5
from fhir.resources.consent import Consent as ConsentR5
from fhir.resources.R4B.bundle import Bundle as BundleR4B
from fhir.resources.R4B.consent import Consent as ConsentR4B
from pydantic import BaseModel

from consent.fhir import (
    STUDY_CONTEXT,
    ConsentError,
    ConsentRecord,
    build_consent,
    export_consent,
    from_bundle,
    parse_consent,
    revoke,
    to_bundle,
    with_version,
)

pytestmark = pytest.mark.req("SRS-CONS-001")

STUDY = "https://fedprog.example.org/studies/FEDPROG-1/protocol-v2"
SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
MODELS: dict[str, type[BaseModel]] = {"R4B": ConsentR4B, "R5": ConsentR5}
BUNDLES: dict[str, type[BaseModel]] = {"R4B": BundleR4B, "R5": BundleR5}
#: Patient identifiers used below; none may ever appear in an error message.
PATIENT_IDS = ("mrn-77231", "pt-5521", "MRN 0042/7", "secret-991")

ACTOR_ROLE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                          "code": "IRCP", "display": "information recipient"}]}
PURPOSE = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH",
           "display": "healthcare research"}
NARRATIVE = {"status": "generated",
             "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Consent to the FEDPROG-1 study</p></div>'}
THO = "http://terminology.hl7.org/CodeSystem"
CATEGORY = {"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}
ACTION = {"coding": [{"system": f"{THO}/consentaction", "code": "use"}]}
FORM_EXT = {"url": "https://hospital-a.example.org/fhir/StructureDefinition/consent-form-version",
            "valueString": "v2.1"}

#: A realistic R4B research consent, with elements the record does not hold.
R4B_CONSENT: dict[str, Any] = {
    "resourceType": "Consent",
    "id": "consent-fedprog-0042",
    "meta": {"versionId": "3", "lastUpdated": "2024-03-02T09:15:00+01:00",
             "security": [{"system": f"{THO}/v3-Confidentiality", "code": "R"}]},
    "text": NARRATIVE,
    "extension": [FORM_EXT],
    "identifier": [{"system": "https://hospital-a.example.org/consent-forms", "value": "CF-2024-0042"}],
    "status": "active",
    "scope": {"coding": [{"system": SCOPE, "code": "research", "display": "Research"}]},
    "category": [CATEGORY, {"coding": [{"system": f"{THO}/consentcategorycodes", "code": "research"}]}],
    "patient": {"reference": "Patient/mrn-77231"},
    "dateTime": "2024-03-01T14:30:00+01:00",
    "performer": [{"reference": "Patient/mrn-77231"}],
    "organization": [{"reference": "Organization/hospital-a", "display": "Hospital A"}],
    "sourceAttachment": {"contentType": "application/pdf", "title": "Signed consent form",
                         "url": "https://hospital-a.example.org/docs/cf-2024-0042.pdf"},
    "policy": [{"authority": "https://hospital-a.example.org", "uri": STUDY}],
    "policyRule": {"coding": [{"system": f"{THO}/v3-ActCode", "code": "OPTIN"}]},
    "verification": [{"verified": True, "verifiedWith": {"reference": "Patient/mrn-77231"},
                      "verificationDate": "2024-03-01T14:35:00+01:00"}],
    "provision": {
        "type": "permit",
        "period": {"start": "2024-03-01", "end": "2029-02-28"},
        "actor": [{"role": ACTOR_ROLE, "reference": {"reference": "Organization/fedprog-consortium"}}],
        "action": [ACTION],
        "purpose": [PURPOSE],
        "provision": [{"type": "deny",
                       "class": [{"system": "http://hl7.org/fhir/resource-types",
                                  "code": "DocumentReference"}]}],
    },
}

#: A realistic R5 research consent (decision, subject, controller, policyBasis, list of provisions).
R5_CONSENT: dict[str, Any] = {
    "resourceType": "Consent",
    "id": "c5-fedprog-0099",
    "meta": {"versionId": "2", "lastUpdated": "2024-06-11T08:00:00Z",
             "profile": ["https://fedprog.example.org/fhir/StructureDefinition/StudyConsent"]},
    "text": NARRATIVE,
    "extension": [FORM_EXT],
    "identifier": [{"system": "https://hospital-b.example.org/consent-forms", "value": "CF-99"}],
    "status": "active",
    "category": [CATEGORY],
    "subject": {"reference": "Patient/pt-5521", "display": "the patient"},
    "date": "2024-06-10",
    "period": {"start": "2024-06-10"},
    "grantor": [{"reference": "Patient/pt-5521"}],
    "grantee": [{"reference": "Organization/fedprog-consortium"}],
    "manager": [{"reference": "Organization/hospital-b"}],
    "controller": [{"reference": "Organization/hospital-b", "display": "Hospital B"}],
    "sourceAttachment": [{"contentType": "application/pdf", "title": "Signed consent form"}],
    "regulatoryBasis": [{"coding": [{"system": f"{THO}/v3-ActCode", "code": "INFA"}]}],
    "policyBasis": {"url": STUDY},
    "verification": [{"verified": True, "verifiedWith": {"reference": "Patient/pt-5521"},
                      "verificationDate": ["2024-06-10T10:00:00Z"]}],
    "decision": "permit",
    "provision": [{
        "period": {"start": "2024-06-10", "end": "2034-06-09"},
        "actor": [{"role": ACTOR_ROLE, "reference": {"reference": "Organization/fedprog-consortium"}}],
        "action": [ACTION],
        "purpose": [PURPOSE],
        "provision": [{"documentType": [{"system": "http://loinc.org", "code": "11488-4"}]}],
    }],
}


def error_of(call: Any, *args: Any, **kw: Any) -> str:
    """The ConsentError message of ``call``; asserts it is one line and names no patient."""
    with pytest.raises(ConsentError) as info:
        call(*args, **kw)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg and len(msg) < 300
    assert not any(p in msg for p in PATIENT_IDS), msg
    assert "pydantic" not in msg and "validation error" not in msg
    return msg


# -- build → export → parse ----------------------------------------------------------------------------

@pytest.mark.parametrize("fhir_version", ["R4B", "R5"])
@pytest.mark.parametrize("decision", ["permit", "deny"])
def test_build_export_parse_round_trip(fhir_version: Any, decision: str) -> None:
    date = "2024-05-01T10:00:00+02:00" if fhir_version == "R4B" else "2024-05-01"
    record = build_consent("mrn-77231", STUDY, status="active", decision=decision, date=date,
                           fhir_version=fhir_version)
    assert (record.patient, record.study, record.status, record.decision, record.date, record.version,
            record.fhir_version) == ("mrn-77231", STUDY, "active", decision, date, 1, fhir_version)
    assert record.is_active_permit is (decision == "permit")
    exported = export_consent(record)
    MODELS[fhir_version].model_validate(exported)
    assert exported["meta"]["versionId"] == "1" and exported["id"]
    assert parse_consent(exported) == record
    assert parse_consent(json.dumps(exported)) == record
    if fhir_version == "R4B":
        assert exported["scope"]["coding"][0] == {"system": SCOPE, "code": "research", "display": "Research"}
        assert exported["category"][0]["coding"][0]["code"] == "59284-0"
        assert exported["provision"] == {"type": decision} and exported["policy"] == [{"uri": STUDY}]
        assert exported["patient"] == {"reference": "Patient/mrn-77231"}
    else:
        assert exported["decision"] == decision and exported["policyBasis"] == {"url": STUDY}
        assert exported["subject"] == {"reference": "Patient/mrn-77231"} and "provision" not in exported


@pytest.mark.parametrize("fhir_version", ["R4B", "R5"])
def test_build_with_identifier_and_study_reference(fhir_version: Any) -> None:
    """A local identifier that is not a FHIR id becomes a logical reference; a ResearchStudy pointer in R5
    becomes policyBasis.reference."""
    record = build_consent("MRN 0042/7", "ResearchStudy/fedprog-1", status="draft", date="2024-05-01",
                           fhir_version=fhir_version)
    key = "patient" if fhir_version == "R4B" else "subject"
    assert record.resource[key] == {"type": "Patient", "identifier": {"value": "MRN 0042/7"}}
    if fhir_version == "R5":
        assert record.resource["policyBasis"] == {"reference": {"reference": "ResearchStudy/fedprog-1"}}
    again = parse_consent(export_consent(record))
    assert (again.patient, again.study, again.status) == ("MRN 0042/7", "ResearchStudy/fedprog-1", "draft")
    assert not again.is_active_permit


def test_build_with_previous_keeps_the_resource_id() -> None:
    first = build_consent("pt-5521", STUDY, status="active", date="2024-01-02", fhir_version="R5")
    second = build_consent("pt-5521", STUDY, status="active", decision="deny", date="2024-02-03",
                           fhir_version="R5", version=2, previous=first)
    assert second.resource["id"] == first.resource["id"] and second.resource["meta"]["versionId"] == "2"
    assert second.version == 2 and second.decision == "deny"
    assert "version" in error_of(build_consent, "pt-5521", STUDY, status="active", date="2024-02-03",
                                 fhir_version="R5", version=1, previous=first)
    assert "previous" in error_of(build_consent, "secret-991", STUDY, status="active", date="2024-02-03",
                                  fhir_version="R5", version=2, previous=first)


def test_build_rejects_bad_arguments() -> None:
    assert "status" in error_of(build_consent, "pt-5521", STUDY, status="proposed", date="2024-01-02",
                                fhir_version="R5")   # R5 has no 'proposed'
    assert "status" in error_of(build_consent, "pt-5521", STUDY, status="approved", date="2024-01-02")
    assert "decision" in error_of(build_consent, "pt-5521", STUDY, status="active", decision="maybe",
                                  date="2024-01-02")
    assert "date" in error_of(build_consent, "pt-5521", STUDY, status="active", date="2024-01-02T10:00:00Z",
                              fhir_version="R5")   # R5 Consent.date is a date
    assert "zone" in error_of(build_consent, "pt-5521", STUDY, status="active", date="2024-01-02T10:00:00")
    assert "calendar" in error_of(build_consent, "pt-5521", STUDY, status="active", date="2024-02-30")
    assert "patient" in error_of(build_consent, " secret-991", STUDY, status="active", date="2024-01-02")
    assert "study" in error_of(build_consent, "pt-5521", "two words", status="active", date="2024-01-02")
    assert "version" in error_of(build_consent, "pt-5521", STUDY, status="active", date="2024-01-02",
                                 version=0)
    assert "fhir_version" in error_of(build_consent, "pt-5521", STUDY, status="active", date="2024-01-02",
                                      fhir_version="R4")


# -- lossless import -----------------------------------------------------------------------------------

@pytest.mark.parametrize("resource, expected", [
    (R4B_CONSENT, ("mrn-77231", STUDY, "active", "permit", "2024-03-01T14:30:00+01:00", 3, "R4B")),
    (R5_CONSENT, ("pt-5521", STUDY, "active", "permit", "2024-06-10", 2, "R5")),
])
def test_lossless_import(resource: dict[str, Any], expected: tuple[Any, ...]) -> None:
    original = copy.deepcopy(resource)
    MODELS[expected[-1]].model_validate(resource)   # the fixtures themselves are valid FHIR
    for given in (resource, json.dumps(resource, indent=2)):
        record = parse_consent(given)
        assert (record.patient, record.study, record.status, record.decision, record.date, record.version,
                record.fhir_version) == expected
        assert export_consent(record) == original
        assert json.dumps(export_consent(record), sort_keys=True) == json.dumps(original, sort_keys=True)
    exported = export_consent(record)
    exported["status"] = "inactive"          # a copy: editing it leaves the record alone
    assert export_consent(record) == original and resource == original


def test_explicit_fhir_version_and_detection() -> None:
    assert parse_consent(R4B_CONSENT, fhir_version="R4B").fhir_version == "R4B"
    assert "R4B" in error_of(parse_consent, R5_CONSENT, fhir_version="R4B")   # R5 elements in an R4B model
    mixed = {**R4B_CONSENT, "decision": "permit"}
    assert "mixes" in error_of(parse_consent, mixed)
    bare = {"resourceType": "Consent", "status": "active"}
    assert "fhir_version" in error_of(parse_consent, bare)
    assert "fhir_version" in error_of(parse_consent, R5_CONSENT, fhir_version="R4")


def test_study_pointer_rules() -> None:
    context = {"url": STUDY_CONTEXT, "valueReference": {"reference": "ResearchStudy/fedprog-1"}}
    r4b = copy.deepcopy(R4B_CONSENT)
    r4b["provision"]["extension"] = [context]
    assert parse_consent(r4b).study == "ResearchStudy/fedprog-1"     # the study itself wins over policy.uri
    r5 = copy.deepcopy(R5_CONSENT)
    r5["policyBasis"] = {"reference": {"type": "ResearchStudy", "identifier": {
        "system": "https://clinicaltrials.gov", "value": "NCT01234567"}}, "url": STUDY}
    assert parse_consent(r5).study == "https://clinicaltrials.gov|NCT01234567"
    del r5["policyBasis"]
    r5["provision"][0]["extension"] = [context]
    assert parse_consent(r5).study == "ResearchStudy/fedprog-1"


@pytest.mark.parametrize("reference", ["Patient/pt-5521", "https://fhir.hospital-b.example.org/Patient/pt-5521",
                                       "Patient/pt-5521/_history/4"])
def test_patient_reference_forms(reference: str) -> None:
    assert parse_consent({**R5_CONSENT, "subject": {"reference": reference}}).patient == "pt-5521"
    by_identifier = {"type": "Patient", "identifier": {"system": "urn:oid:1.2.3", "value": "pt-5521"}}
    assert parse_consent({**R5_CONSENT, "subject": by_identifier}).patient == "pt-5521"


def test_decision_defaults_to_permit() -> None:
    r4b = copy.deepcopy(R4B_CONSENT)
    del r4b["provision"]["type"]
    assert parse_consent(r4b).decision == "permit"
    r5 = {k: v for k, v in R5_CONSENT.items() if k != "decision"}
    assert parse_consent(r5).decision == "permit"
    assert parse_consent({**R5_CONSENT, "decision": "deny"}).is_active_permit is False


# -- revoke --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("resource, date_key, date", [(R4B_CONSENT, "dateTime", "2024-09-30T08:00:00Z"),
                                                      (R5_CONSENT, "date", "2024-09-30")])
def test_revoke(resource: dict[str, Any], date_key: str, date: str) -> None:
    record = parse_consent(resource)
    assert record.is_active_permit
    revoked = revoke(record, date=date)
    assert (revoked.status, revoked.version, revoked.date) == ("inactive", record.version + 1, date)
    assert (revoked.patient, revoked.study, revoked.decision, revoked.fhir_version) == (
        record.patient, record.study, record.decision, record.fhir_version)
    assert not revoked.is_active_permit
    new = export_consent(revoked)
    MODELS[record.fhir_version].model_validate(new)
    assert new["id"] == resource["id"] and new["status"] == "inactive" and new[date_key] == date
    assert new["meta"] == {**resource["meta"], "versionId": str(record.version + 1)}
    unchanged = {k: v for k, v in resource.items() if k not in ("status", "meta", date_key)}
    assert {k: v for k, v in new.items() if k not in ("status", "meta", date_key)} == unchanged
    assert export_consent(record) == resource          # the previous version is untouched
    assert parse_consent(new) == revoked
    assert "active" in error_of(revoke, revoked, date=date)   # already withdrawn


def test_revoke_checks_the_date() -> None:
    r4b, r5 = parse_consent(R4B_CONSENT), parse_consent(R5_CONSENT)
    # given at 14:30+01:00 = 13:30Z: compared as instants, not as text
    assert "before" in error_of(revoke, r4b, date="2024-03-01T13:29:59Z")
    assert revoke(r4b, date="2024-03-01T13:30:00Z").date == "2024-03-01T13:30:00Z"
    assert "before" in error_of(revoke, r5, date="2024-06-09")
    assert "date" in error_of(revoke, r5, date="2024-06-12T10:00:00Z")
    assert revoke(r5, date="2024-06-10").version == 3


def test_revoke_of_a_built_consent_and_renumbering() -> None:
    record = build_consent("pt-5521", STUDY, status="active", date="2024-01-02")
    revoked = revoke(record, date="2024-02-01")
    assert revoked.resource["id"] == record.resource["id"] and revoked.resource["meta"] == {"versionId": "2"}
    moved = with_version(revoked, 7)
    assert moved.version == 7 and moved.resource["meta"]["versionId"] == "7"
    assert parse_consent(export_consent(moved)) == moved


# -- bundles and ndjson --------------------------------------------------------------------------------

@pytest.mark.parametrize("fhir_version", ["R4B", "R5"])
def test_bundle_round_trip(fhir_version: Any) -> None:
    base = R4B_CONSENT if fhir_version == "R4B" else R5_CONSENT
    first = parse_consent(base)
    built = build_consent("MRN 0042/7", STUDY, status="active", decision="deny", date="2024-07-01",
                          fhir_version=fhir_version)
    records = [first, revoke(first, date="2024-10-01"), built]
    bundle = to_bundle(records)
    BUNDLES[fhir_version].model_validate(bundle)
    assert bundle["type"] == "collection" and len(bundle["entry"]) == 3
    assert bundle["entry"][0]["fullUrl"] == bundle["entry"][1]["fullUrl"]   # versions of one resource
    assert bundle["entry"][0]["resource"] == base
    assert from_bundle(bundle) == records
    assert from_bundle(json.dumps(bundle)) == records
    ndjson = "\n".join(json.dumps(export_consent(r)) for r in records) + "\n\n"
    assert from_bundle(ndjson) == records
    assert from_bundle(json.dumps(base)) == [first]          # one line of ndjson
    assert to_bundle([]) == {"resourceType": "Bundle", "type": "collection"}


def test_from_searchset_skips_other_resources() -> None:
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": 1, "entry": [
        {"fullUrl": "https://fhir.example.org/Consent/c5-fedprog-0099", "resource": R5_CONSENT,
         "search": {"mode": "match"}},
        {"resource": {"resourceType": "Patient", "id": "pt-5521"}, "search": {"mode": "include"}},
        {"resource": {"resourceType": "OperationOutcome", "issue": [
            {"severity": "information", "code": "informational"}]}, "search": {"mode": "outcome"}},
        {"request": {"method": "DELETE", "url": "Consent/old"}},
    ]}
    assert from_bundle(bundle) == [parse_consent(R5_CONSENT)]


def test_bundle_errors() -> None:
    assert "R4B and R5" in error_of(to_bundle, [parse_consent(R4B_CONSENT), parse_consent(R5_CONSENT)])
    bad = {**R5_CONSENT, "status": "not-done"}
    msg = error_of(from_bundle, {"resourceType": "Bundle", "type": "collection",
                                 "entry": [{"resource": R5_CONSENT}, {"resource": bad}]})
    assert msg.startswith("Bundle.entry[1].resource: status")
    msg = error_of(from_bundle, json.dumps(R5_CONSENT) + "\n" + json.dumps({"resourceType": "Patient",
                                                                             "id": "secret-991"}))
    assert msg.startswith("ndjson line 2: resourceType")
    assert "ndjson line 1" in error_of(from_bundle, '{"resourceType": "Consent",\n')
    assert "Bundle" in error_of(from_bundle, {"resourceType": "Patient", "id": "secret-991"})


# -- errors --------------------------------------------------------------------------------------------

def _without(resource: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in keys}


def _r4b_provision(**changes: Any) -> dict[str, Any]:
    return {**R4B_CONSENT, "provision": {**R4B_CONSENT["provision"], **changes}}


INVALID = [
    ("a Patient", {"resourceType": "Patient", "id": "secret-991",
                   "identifier": [{"value": "secret-991"}]}, "resourceType"),
    ("not an object", "[1, 2]", "JSON object"),
    ("broken JSON", '{"resourceType": "Consent", "patient": {"reference": "Patient/secret-991"',
     "not valid JSON"),
    ("R4B without patient", _without(R4B_CONSENT, "patient"), "patient"),
    ("R5 without subject", _without(R5_CONSENT, "subject"), "subject"),
    ("R4B patient is a Group", {**R4B_CONSENT, "patient": {"reference": "Group/secret-991"}},
     "patient.reference"),
    ("R4B patient contained", {**R4B_CONSENT, "patient": {"reference": "#secret-991"}}, "patient.reference"),
    ("R5 subject typed Group",
     {**R5_CONSENT, "subject": {"type": "Group", "identifier": {"value": "secret-991"}}}, "subject.type"),
    ("R5 subject empty", {**R5_CONSENT, "subject": {"display": "secret-991"}}, "subject"),
    ("unknown status", {**R4B_CONSENT, "status": "approved"}, "status"),
    ("R5 not-done status", {**R5_CONSENT, "status": "not-done"}, "status"),
    ("missing status", _without(R5_CONSENT, "status"), "status"),
    ("R4B without study", _without(R4B_CONSENT, "policy"), "policy.uri"),
    ("R4B policy with authority only", {**R4B_CONSENT, "policy": [{"authority": "https://hospital-a.example.org"}]},
     "policy.uri"),
    ("R5 without study", _without(R5_CONSENT, "policyBasis"), "policyBasis"),
    ("R5 sourceReference is not a study", {**_without(R5_CONSENT, "policyBasis"),
                                           "sourceReference": [{"reference": "DocumentReference/f1"}]},
     "policyBasis"),
    ("blank study", {**R4B_CONSENT, "policy": [{"uri": " "}]}, "policy[0].uri"),
    ("R4B privacy scope",
     {**R4B_CONSENT, "scope": {"coding": [{"system": SCOPE, "code": "patient-privacy"}]}}, "scope"),
    ("R5 bad decision", {**R5_CONSENT, "decision": "maybe"}, "decision"),
    ("R4B bad provision.type", _r4b_provision(type="opt-in"), "provision.type"),
    ("R4B without dateTime", _without(R4B_CONSENT, "dateTime"), "dateTime"),
    ("R4B dateTime as a number", {**R4B_CONSENT, "dateTime": 1714557600}, "dateTime"),
    ("R4B dateTime without zone", {**R4B_CONSENT, "dateTime": "2024-03-01T14:30:00"}, "dateTime"),
    ("R5 date with time", {**R5_CONSENT, "date": "2024-06-10T10:00:00Z"}, "date"),
    ("bad id", {**R5_CONSENT, "id": "secret 991!"}, "id"),
    ("wrong type", {**R5_CONSENT, "subject": {"reference": 991}}, "subject.reference"),
    ("extension with two values", {**R5_CONSENT, "extension": [{**FORM_EXT, "valueInteger": 2}]},
     "extension"),
    ("unknown element", {**R5_CONSENT, "patientNote": "secret-991"}, "patientNote"),
]


@pytest.mark.parametrize("resource, field", [(r, f) for _, r, f in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_resources_raise_one_line_errors(resource: Any, field: str) -> None:
    assert field in error_of(parse_consent, resource)


def test_version_from_meta_or_argument() -> None:
    unversioned = {**R5_CONSENT, "meta": {"versionId": "a3f9-e1"}}
    assert parse_consent(unversioned).version == 1
    assert parse_consent(unversioned, version=4).version == 4
    assert parse_consent(_without(R5_CONSENT, "meta"), version=5).version == 5
    assert parse_consent(R5_CONSENT, version=2).version == 2
    assert "versionId" in error_of(parse_consent, R5_CONSENT, version=3)
    assert "version" in error_of(parse_consent, unversioned, version=0)


def test_record_invariants() -> None:
    record = parse_consent(R5_CONSENT)
    assert hash(record) == hash(parse_consent(R5_CONSENT))   # usable in sets despite the dict
    fields = {**record.__dict__}
    assert "status" in error_of(ConsentRecord, **{**fields, "status": "proposed"})   # not an R5 status
    assert "decision" in error_of(ConsentRecord, **{**fields, "decision": "maybe"})
    assert "fhir_version" in error_of(ConsentRecord, **{**fields, "fhir_version": "R4"})
    assert "version" in error_of(ConsentRecord, **{**fields, "version": 0})
    assert "resource" not in repr(record) and "secret" not in repr(record)

"""FHIR R4 (4.0.1) resources the server sends: RiskAssessment, CapabilityStatement,
OperationDefinition, searchset Bundles — built as JSON, validated with ``fhir.resources`` (R4B
models; identical to R4 for these elements) **and** by :func:`check_risk_assessment`, which
enforces what the library does not: the ``status`` binding, probabilities as fractions, the
interval around the estimate, required elements (FHIR R4 §RiskAssessment, invariants ras-1/ras-2).

A RiskAssessment states what the model in service predicts, of either kind: a Cox model the
absolute risk by each horizon, each input's log hazard ratio and ``relativeRisk`` the hazard ratio
against the reference patient; a logistic model the probability of its recorded binary outcome at
its one horizon, each input's log odds ratio (:data:`CONTRIBUTION_URLS`) and ``relativeRisk`` the
risk ratio π(x)/π(reference) at that horizon — a ratio of probabilities, as the element defines it,
never the odds ratio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationdefinition import OperationDefinition
from fhir.resources.R4B.riskassessment import RiskAssessment

from prognosis.logistic import expit

from ..model import LogisticModel, PrognosticModel
from ..registry import ModelEntry
from ..revocation import iso
from ..scoring import Scores
from . import shapes
from .smart import origin

FHIR_VERSION = "4.0.1"
UCUM = "http://unitsofmeasure.org"
#: extension carrying the 95% interval of ``probabilityDecimal`` (a Range of fractions)
INTERVAL_URL = "urn:fedprog:fhir:StructureDefinition:prediction-interval-95"
#: extension on a ``basis`` reference: the log hazard ratio β_j (x_j − c_j) the input it supplied
#: contributes (one per input, in the model's input order, if a resource supplied several)
CONTRIBUTION_URL = "urn:fedprog:fhir:StructureDefinition:log-hazard-contribution"
#: a declared interaction's log-hazard contribution (complex extension: ``effect``, ``valueDecimal``)
INTERACTION_URL = "urn:fedprog:fhir:StructureDefinition:interaction-contribution"
#: a logistic model's: the log odds ratio against the reference patient (input; declared interaction)
LOG_ODDS_URL = "urn:fedprog:fhir:StructureDefinition:log-odds-contribution"
LOG_ODDS_INTERACTION_URL = "urn:fedprog:fhir:StructureDefinition:interaction-log-odds-contribution"
#: the contribution extensions by what the contributions are the logarithm of (``Scores.ratio``)
CONTRIBUTION_URLS = {"hazard": CONTRIBUTION_URL, "odds": LOG_ODDS_URL}
INTERACTION_URLS = {"hazard": INTERACTION_URL, "odds": LOG_ODDS_INTERACTION_URL}
#: a model's kind in words
KIND_WORDS = {"cox-ph": "Cox proportional hazards", "logistic": "logistic regression"}
MODEL_SYSTEM = "urn:fedprog:model"
SHA256_SYSTEM = "urn:fedprog:model-sha256"
RA_STATUSES = frozenset({"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                         "entered-in-error", "unknown"})
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
#: CapabilityStatement extension: the model in service is flagged ``retrain due`` (issue 15):
#: ``model`` (ref), ``revocations``, ``needed``, ``deadline``, ``due`` (a successor is due now)
RETRAIN_DUE_URL = "urn:fedprog:fhir:StructureDefinition:retrain-due"
#: model time units → UCUM
TIME_UCUM = {"day": "d", "week": "wk", "month": "mo", "year": "a"}


class ResourceError(ValueError):
    """An outgoing resource that breaks FHIR or our own invariants: a defect, never sent."""


def event(model: PrognosticModel) -> str:
    """What the risk is the probability of, with its article: the event as the intended use names it
    ("recurrence or death"), else "an event ending <the model's outcome>" (Cox: 1 − S(h | x)) or the
    recorded outcome itself (logistic)."""
    use = model.artifact.intended_use
    if use is not None and use.event:
        return use.event
    return model.outcome if isinstance(model, LogisticModel) else f"an event ending {model.outcome}"


def interval_note(model: PrognosticModel) -> str:
    """How the 95% interval was built, for this model (RC-DEV-001, SRS-DEV-012): a logistic model's
    Wald interval on the log-odds scale; a Cox model's with the baseline hazard's variance and the
    coefficients', or, for an artifact that predates it, the coefficients' only."""
    if isinstance(model, LogisticModel):
        return ("The 95% interval is a Wald interval on the log-odds scale (the log-odds ± 1.96 standard "
                "errors, by the delta method from the covariance of the intercept and the coefficients), "
                "mapped back to a probability.")
    if model.interval_includes_baseline:
        return "The 95% interval includes the uncertainty of the coefficients and of the baseline hazard."
    return ("The 95% interval reflects coefficient uncertainty only (this model's artifact does not carry "
            "the baseline hazard's variance), so it may be too narrow or too wide.")


def intended_use(model: PrognosticModel) -> str:
    """The intended-use note every RiskAssessment carries (the population, when the model states it)."""
    n = model.artifact.training.get("n")
    sites = model.artifact.training.get("sites") or []
    use = model.artifact.intended_use
    who = (f"for {use.population}" if use is not None else "for adults") + " inside the model's input ranges"
    what = (f"estimated probability of {event(model)} at {model.horizon_text(model.horizons[0])}, when it "
            "is recorded" if isinstance(model, LogisticModel)
            else f"estimated absolute risk of {event(model)} by each horizon")
    return (f"Intended use: {what}, {who}, "
            f"to support (not replace) clinical judgement. Model {model.ref} "
            f"({KIND_WORDS[model.kind]}, federated fit on {n} patients at {len(sites)} sites). "
            f"{interval_note(model)} Not for use outside the "
            "documented input ranges or for patients unlike the training population.")


def method(model: PrognosticModel) -> dict[str, Any]:
    """``RiskAssessment.method``: the model id, version and artifact sha256."""
    return {"coding": [{"system": MODEL_SYSTEM, "version": model.version, "code": model.model_id,
                        "display": f"fedprog {model.artifact.kind} {model.ref}"},
                       {"system": SHA256_SYSTEM, "code": model.sha256}],
            "text": f"{model.ref} (sha256 {model.sha256})"}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def relative_risk(model: PrognosticModel, scores: Scores, i: int, h: int) -> float:
    """``prediction.relativeRisk``: the hazard ratio exp(η) against the reference patient (Cox), or the
    risk ratio π(x)/π(reference) at the horizon (logistic; π(reference) = expit(α)) — a ratio of
    probabilities, never the odds ratio exp(Σ contributions)."""
    if isinstance(model, LogisticModel):
        return float(scores.risk[i, h] / expit(model.intercept))
    return float(math.exp(scores.lp[i]))


def _prediction(model: PrognosticModel, scores: Scores, i: int, h: int) -> dict[str, Any]:
    unit = TIME_UCUM[model.time_unit]
    when = "at" if isinstance(model, LogisticModel) else "within"
    return {
        "outcome": {"text": event(model)},
        "probabilityDecimal": float(scores.risk[i, h]),
        "relativeRisk": relative_risk(model, scores, i, h),
        "whenRange": {"low": _quantity(0, unit), "high": _quantity(float(scores.horizons[h]), unit)},
        "rationale": f"probability of {event(model)} {when} {scores.horizons[h]:g} {model.time_unit}s"
                     + (", when it is recorded" if when == "at" else ""),
        "extension": [{"url": INTERVAL_URL, "valueRange": {
            "low": {"value": float(scores.lower[i, h])}, "high": {"value": float(scores.upper[i, h])}}}],
    }


def _basis(scores: Scores, i: int, references: Sequence[str]) -> list[dict[str, Any]]:
    """``basis``: each resource an input came from, with that input's log hazard (or odds) ratio."""
    out: dict[str, list[dict[str, Any]]] = {}
    url = CONTRIBUTION_URLS[scores.ratio]
    for j, ref in enumerate(references):
        out.setdefault(ref, []).append({"url": url,
                                        "valueDecimal": float(scores.contributions[i, j])})
    return [{"reference": ref, "extension": ext} for ref, ext in out.items()]


def _interactions(scores: Scores, i: int, inputs: int) -> list[dict[str, Any]]:
    """One :data:`INTERACTION_URLS` extension per declared interaction (effects after the inputs)."""
    return [{"url": INTERACTION_URLS[scores.ratio], "extension": [
        {"url": "effect", "valueString": scores.names[j]},
        {"url": "contribution", "valueDecimal": float(scores.contributions[i, j])}]}
        for j in range(inputs, len(scores.names))]


def risk_assessment(model: PrognosticModel, scores: Scores, i: int, *, id_: str, patient: str,
                    references: Sequence[str], occurrence: str) -> dict[str, Any]:
    """The RiskAssessment of row ``i`` of ``scores``: one prediction per horizon.

    ``references[j]`` is the resource input ``j`` came from. Each ``basis`` reference carries, as the
    extension :data:`CONTRIBUTION_URLS` names for the model's kind, the log ratio against the reference
    patient of the input it supplied (summed over the input's spline or dummy columns), and each
    declared interaction ``a:b`` its own :data:`INTERACTION_URLS` extension on the resource. Cox: log
    hazard ratios, summing to log ``relativeRisk`` (the hazard ratio exp(η)). Logistic: log odds
    ratios, summing to the log-odds minus the intercept; ``relativeRisk`` is the risk ratio
    (:func:`relative_risk`). The note says how the interval was built (:func:`interval_note`).
    """
    extra = _interactions(scores, i, len(references))
    return {**({"extension": extra} if extra else {}),
        "resourceType": "RiskAssessment", "id": id_, "status": "final",
        "method": method(model),
        "code": {"text": f"{'probability' if scores.kind == 'logistic' else 'risk'} of {event(model)}"},
        "subject": {"reference": patient},
        "occurrenceDateTime": occurrence,
        "basis": _basis(scores, i, references),
        "prediction": [_prediction(model, scores, i, h) for h in range(len(scores.horizons))],
        "note": [{"text": intended_use(model)}],
    }


def check_risk_assessment(ra: dict[str, Any]) -> None:
    """Validate an outgoing RiskAssessment: the R4B model, then our invariants (raises ResourceError)."""
    try:
        if not shapes.fits_risk_assessment(ra):  # the compiled shape, else the full R4B model
            RiskAssessment.model_validate(ra)
    except ValueError as exc:
        raise ResourceError(f"RiskAssessment fails the FHIR model: {exc}") from None
    problems: list[str] = []
    if ra.get("status") not in RA_STATUSES:
        problems.append(f"status {ra.get('status')!r} is not in the ObservationStatus binding")
    for field in ("subject", "method", "prediction"):
        if not ra.get(field):
            problems.append(f"{field} is required by the device")
    for k, pred in enumerate(ra.get("prediction", [])):
        problems += _check_prediction(k, pred)
    if problems:
        raise ResourceError("RiskAssessment: " + "; ".join(problems))


def _check_prediction(k: int, pred: dict[str, Any]) -> list[str]:
    where, out = f"prediction[{k}]", []
    p = pred.get("probabilityDecimal")
    if not isinstance(p, float | int) or not 0.0 <= p <= 1.0:
        out.append(f"{where}.probabilityDecimal {p!r} is not a fraction in [0, 1]")
    interval = [e for e in pred.get("extension", []) if e.get("url") == INTERVAL_URL]
    if len(interval) != 1:
        out.append(f"{where} needs exactly one 95% interval extension")
    elif isinstance(p, float | int):
        lo, hi = interval[0]["valueRange"]["low"]["value"], interval[0]["valueRange"]["high"]["value"]
        if not 0.0 <= lo <= p <= hi <= 1.0:
            out.append(f"{where}: interval [{lo}, {hi}] does not hold the estimate {p} inside [0, 1]")
    when = pred.get("whenRange", {})
    if not ("low" in when and "high" in when and when["low"]["value"] <= when["high"]["value"]):
        out.append(f"{where}.whenRange needs low <= high")
    return out


def searchset(resources: list[dict[str, Any]], total: int, base: str) -> dict[str, Any]:
    """A searchset Bundle of ``resources`` (FHIR R4 §3.1.1.4)."""
    return {"resourceType": "Bundle", "type": "searchset", "total": total,
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in resources]}


OPERATION = {
    "resourceType": "OperationDefinition", "id": "predict-risk",
    "url": "urn:fedprog:fhir:OperationDefinition:predict-risk", "version": "1",
    "name": "PredictRisk", "title": "Predict absolute risk with the released prognostic model",
    "status": "active", "kind": "operation", "code": "predict-risk", "system": False, "type": True,
    "instance": False, "resource": ["Patient"], "affectsState": True,
    "description": ("Scores one patient (a Bundle of the Patient and the Observations the model's inputs "
                    "name, alone or as the 'patient' parameter) and returns a RiskAssessment with one "
                    "prediction per horizon, stored and readable afterwards. A batch Bundle scores many."),
    "parameter": [
        {"name": "patient", "use": "in", "min": 1, "max": "1", "type": "Bundle",
         "documentation": "Patient and input Observations (LOINC/SNOMED CT codes, UCUM units)."},
        {"name": "asOf", "use": "in", "min": 0, "max": "1", "type": "date",
         "documentation": "Date the age and observations are taken at (default: today)."},
        {"name": "horizon", "use": "in", "min": 0, "max": "100", "type": "decimal",
         "documentation": "A time (model time unit, after the assessment, not beyond the released baseline) "
                          "to predict at instead of the model's default horizons; repeat for a curve. A "
                          "logistic model takes only its one horizon, when its outcome is recorded."},
        {"name": "return", "use": "out", "min": 1, "max": "1", "type": "RiskAssessment"},
    ],
}


def _served(served: ModelEntry | None) -> tuple[str, list[dict[str, Any]]]:
    """The implementation description naming the model in service and, when it is flagged
    ``retrain due`` (in service until its deadline), the flag as text and as an extension."""
    if served is None:
        return "fedprog prognostic risk device (no model in service)", []
    text = f"fedprog prognostic risk device serving {served.ref} (sha256 {served.sha256})"
    flag = served.retrain
    if flag is None:
        return text, []
    ext = [{"url": RETRAIN_DUE_URL, "extension": [
        {"url": "model", "valueString": served.ref},
        {"url": "revocations", "valueInteger": flag.revocations},
        {"url": "needed", "valueInteger": flag.needed},
        {"url": "deadline", "valueDateTime": iso(flag.deadline)},
        {"url": "due", "valueBoolean": flag.due}]}]
    return f"{text}; RETRAIN DUE: {flag.summary()}", ext


def capability_statement(base: str, date: str, software_version: str,
                         served: ModelEntry | None = None) -> dict[str, Any]:
    """The server's CapabilityStatement (R4 4.0.1, JSON, SMART bearer tokens); the implementation
    names the model in service (``served``) and its ``retrain due`` flag, if any."""
    read = [{"code": "read"}, {"code": "search-type"}]
    description, extension = _served(served)
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": date, "kind": "instance",
        **({"extension": extension} if extension else {}),
        "publisher": "fedprog", "fhirVersion": FHIR_VERSION, "format": ["json", "application/fhir+json"],
        "software": {"name": "fedprog", "version": software_version},
        "implementation": {"description": description, "url": base},
        "rest": [{
            "mode": "server",
            "security": {
                # SMART App Launch 1.0 discovery in the CapabilityStatement (2.x: .well-known)
                "extension": [{"url": OAUTH_URIS, "extension": [
                    {"url": "authorize", "valueUri": f"{origin(base)}/auth/authorize"},
                    {"url": "token", "valueUri": f"{origin(base)}/auth/token"}]}],
                "service": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR"}]}],
                "description": "Bearer JWT (ES256) with SMART v2 scopes: user|system/RiskAssessment.c to "
                               "predict, .rs to read; patient/Consent.* for a patient's own consent; "
                               "system/AuditEvent.rs to read the audit trail."},
            "resource": [
                {"type": "Patient", "operation": [{"name": "predict-risk", "definition": OPERATION["url"]}]},
                {"type": "RiskAssessment", "interaction": read,
                 "searchParam": [{"name": "subject", "type": "reference"},
                                 {"name": "patient", "type": "reference"}]},
                {"type": "AuditEvent", "interaction": [{"code": "search-type"}]},
                {"type": "Consent", "interaction": [{"code": "search-type"}, {"code": "create"},
                                                    {"code": "update"}],
                 "searchParam": [{"name": "patient", "type": "reference"}]},
                {"type": "OperationDefinition", "interaction": [{"code": "read"}]},
            ],
            "operation": [{"name": "predict-risk", "definition": OPERATION["url"]}],
        }],
    }


def warm_up() -> None:
    """Build the validators once so the first request is as fast as later ones."""
    CapabilityStatement.model_validate(capability_statement("http://localhost/fhir", "2026-01-01", "0"))
    OperationDefinition.model_validate(OPERATION)
    Bundle.model_validate({"resourceType": "Bundle", "type": "searchset", "entry": []})

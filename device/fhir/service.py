"""What the endpoint does, free of HTTP: pick the released model, score a request, build,
check and store the RiskAssessment (one patient or a batch)."""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Protocol

import numpy as np

from ..model import ModelError, PrognosticModel, load_model
from ..registry import ModelEntry, ModelRegistry, RegistryError
from ..scoring import ScoringError, score
from . import inputs
from .errors import FhirError, challenge
from .resources import check_risk_assessment, risk_assessment

log = logging.getLogger("fedprog.fhir")


class ModelSource(Protocol):
    """Where the server gets the one model it may serve."""

    def current(self) -> PrognosticModel:
        """The released model, or :class:`FhirError` 503 naming why there is none."""
        ...


class ReleasedModel:
    """The newest released, unaffected version in a registry (of ``model_id`` if given).

    Re-read whenever the ledger grows, so a withdrawal, a consent revocation touching the model
    or a newer release takes effect on the next request, without a restart — and when the
    revocation window of the model in service reaches its deadline (the registry's clock): the
    model flagged ``retrain due`` is then ``affected`` and no longer served (issue 15). A refresh
    first opens the window of any model newly flagged (:meth:`ModelRegistry.note_revocations`),
    so a revocation recorded by another path still starts its window by the next request. The
    artifact is re-verified (sha256 and contract) each time it is loaded.
    """

    def __init__(self, registry: ModelRegistry, model_id: str | None = None) -> None:
        self.registry = registry
        self.model_id = model_id
        self._lock = threading.Lock()
        self._size = -1
        self._model: PrognosticModel | None = None
        self._entry: ModelEntry | None = None
        self._error = ""

    def current(self) -> PrognosticModel:
        with self._lock:
            size = self.registry.ledger.size  # read first: whatever lands during the refresh re-triggers it
            if size != self._size or self._deadline_passed():
                self._refresh()
                self._size = size
            if self._model is None:
                raise FhirError(503, "processing", self._error)
            return self._model

    @property
    def entry(self) -> ModelEntry | None:
        """The registry entry of the model in service as of the last request (None: none)."""
        return self._entry

    def _deadline_passed(self) -> bool:
        flag = None if self._entry is None else self._entry.retrain
        return flag is not None and flag.since is not None and self.registry.clock() >= flag.deadline

    def _refresh(self) -> None:
        try:
            self.registry.note_revocations()
        except ValueError as exc:  # a read-only or busy ledger: the window opens at the next writer
            log.warning("could not record a retrain-due window: %s", exc)
        try:
            entry = self.registry.released(self.model_id)
            if self._model is None or self._model.sha256 != entry.sha256:
                self._model = load_model(self.registry.artifact(entry.ref))
            self._entry, self._error = entry, ""
        except (RegistryError, ModelError) as exc:
            self._model, self._entry, self._error = None, None, f"no model in service: {self._why_none(exc)}"

    def _why_none(self, exc: Exception) -> str:
        """Why no model is served: when the newest model that was ever released has left service,
        say how (withdrawn; affected by a consent revocation, its window expired) rather than
        the registry's advice for a model never released."""
        if not isinstance(exc, RegistryError):
            return str(exc)
        try:
            gone = [e for e in self.registry.list() if (self.model_id is None or e.model_id == self.model_id)
                    and any(state == "released" for _, state in e.history)]
        except (RegistryError, ValueError):
            return str(exc)
        if not gone:
            return str(exc)
        last = gone[-1]
        if last.status == "affected":
            flag = last.retrain
            ended = "" if flag is None else f" (revocation window ended {flag.deadline:%Y-%m-%d %H:%M %Z})"
            return (f"no released model: {last.ref} is affected by a consent revocation{ended} and is no "
                    f"longer served; retrain it (fedprog model retrain {last.ref}) and release the successor")
        if last.lifecycle == "withdrawn":
            return (f"no released model: {last.ref} was withdrawn and is no longer served; release a "
                    "validated successor (fedprog model release REF)")
        return str(exc)


def served_entry(models: ModelSource) -> ModelEntry | None:
    """The registry entry of the model in service (None: none, or not served from a registry)."""
    if not isinstance(models, ReleasedModel):
        return None
    try:
        models.current()
    except FhirError:
        return None
    return models.entry


class FixedModel:
    """Serve one already-verified model (tests, and ``fedprog serve --model-file`` style use)."""

    def __init__(self, model: PrognosticModel) -> None:
        self.model = model

    def current(self) -> PrognosticModel:
        return self.model


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Prediction:
    """A scored, checked RiskAssessment (not yet stored) and what the audit trail needs."""

    resource: dict[str, Any]
    patient: str
    model_sha256: str
    #: the patient's inputs as scored (a CDS Hooks card lists them)
    inputs: inputs.PatientInputs

    @property
    def rows(self) -> list[tuple[dict[str, Any], str | None, str]]:
        """What to store: ``(resource, subject, recorded)``."""
        return [(self.resource, self.patient, self.resource["occurrenceDateTime"])]


@dataclass
class BatchResult:
    """A ``batch-response`` Bundle, the patients it concerned and the RiskAssessments to store."""

    bundle: dict[str, Any]
    patients: list[str] = field(default_factory=list)
    rows: list[tuple[dict[str, Any], str | None, str]] = field(default_factory=list)


def _score(model: PrognosticModel, extracted: list[inputs.PatientInputs],
           occurrence: str | None = None, horizons: list[float] | None = None) -> list[dict[str, Any]]:
    """RiskAssessments of several extracted patients, scored in one vectorised call (at ``horizons``,
    default the model's)."""
    X = np.vstack([e.values for e in extracted])
    try:
        scores = score(model, X, horizons)
    except ScoringError as exc:  # extraction checks the envelope first; this is a second line
        raise FhirError(422, "business-rule", str(exc)) from None
    stamp = occurrence or now_iso()
    out = []
    for i, e in enumerate(extracted):
        ra = risk_assessment(model, scores, i, id_=str(uuid.uuid4()), patient=e.patient,
                             references=e.references, occurrence=stamp)
        check_risk_assessment(ra)
        out.append(ra)
    return out


def assess(model: PrognosticModel, body: dict[str, Any], only_patient: str | None = None) -> Prediction:
    """``$predict-risk`` for one patient (a Parameters or a patient Bundle); the caller stores it.

    ``only_patient``: the id of the one patient a ``patient/RiskAssessment.c`` token may score
    (SMART App Launch v2); a Bundle about anyone else is refused (403) before it is scored.
    """
    bundle, as_of = inputs.request_bundle(body)
    horizons = inputs.request_horizons(body)
    extracted = inputs.extract(model, bundle, as_of)
    if only_patient is not None and extracted.patient != f"Patient/{only_patient}":
        raise FhirError(403, "forbidden", "token allows RiskAssessment.c only for its own patient "
                        "(patient/ scope), and the Bundle's Patient is another",
                        ["Bundle.entry.resource.ofType(Patient).id"],
                        headers=challenge("insufficient_scope", scope="user/RiskAssessment.c"))
    ra = _score(model, [extracted], horizons=horizons)[0]
    return Prediction(ra, extracted.patient, model.sha256, extracted)


@dataclass
class EntryResult:
    """The outcome of one batch entry: a checked RiskAssessment of ``patient``, or ``error``."""

    resource: dict[str, Any] | None = None
    patient: str = ""
    error: FhirError | None = None


def batch_entries(bundle: dict[str, Any], limit: int = 10_000) -> list[Any]:
    """The entries of a ``batch`` Bundle (400 not a list, 422 more than ``limit``)."""
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise FhirError(400, "structure", "Bundle.entry must be a list", ["Bundle.entry"])
    if len(entries) > limit:
        raise FhirError(422, "too-costly", f"batch of {len(entries)} entries exceeds the limit of {limit}",
                        ["Bundle.entry"])
    return entries


def entry_resource(entry: Any) -> Any:
    """``entry.resource`` of a batch entry (``None`` when there is none)."""
    return entry.get("resource") if isinstance(entry, dict) else None


def assess_entries(model: PrognosticModel, resources: list[Any], start: int = 0,
                   occurrence: str | None = None) -> list[EntryResult]:
    """Score the resources of consecutive batch entries (``Bundle.entry[start]`` onwards): each is
    extracted on its own — a bad one fails alone — and the good ones are scored in one vectorised
    call, their RiskAssessments built and checked (stamped ``occurrence``, default now).

    The one code path of a batch, whether it runs in the server or in a scoring worker process.
    Raises :class:`FhirError` only for what fails the whole call (the scorer refusing the matrix).
    """
    results = [EntryResult() for _ in resources]
    good: list[tuple[int, inputs.PatientInputs]] = []
    for i, resource in enumerate(resources):
        try:
            if not isinstance(resource, dict):
                k = start + i
                raise FhirError(400, "structure", f"Bundle.entry[{k}] has no resource",
                                [f"Bundle.entry[{k}].resource"])
            patient_bundle, as_of = inputs.request_bundle(resource)
            good.append((i, inputs.extract(model, patient_bundle, as_of)))
        except FhirError as exc:
            results[i].error = exc
    if good:
        ras = _score(model, [e for _, e in good], occurrence)
        for ra, (i, e) in zip(ras, good, strict=True):
            results[i].resource, results[i].patient = ra, e.patient
    return results


def _entry_error(exc: FhirError) -> dict[str, Any]:
    return {"response": {"status": f"{exc.status} {HTTPStatus(exc.status).phrase}", "outcome": exc.outcome()}}


def batch_result(results: list[EntryResult]) -> BatchResult:
    """The ``batch-response`` Bundle of entry results (in request order) and the rows to store."""
    entries: list[dict[str, Any]] = []
    out = BatchResult({"resourceType": "Bundle", "type": "batch-response", "entry": entries})
    for r in results:
        if r.resource is None:
            entries.append(_entry_error(r.error or FhirError(500, "exception", "entry not processed")))
            continue
        entries.append({"resource": r.resource, "response": {
            "status": "200 OK", "location": f"RiskAssessment/{r.resource['id']}"}})
        out.patients.append(r.patient)
        out.rows.append((r.resource, r.patient, r.resource["occurrenceDateTime"]))
    return out


def assess_batch(model: PrognosticModel, bundle: dict[str, Any], limit: int = 10_000) -> BatchResult:
    """A ``batch`` Bundle: each entry a patient (Parameters or Bundle), a bad entry failing only itself.

    FHIR R4 §3.1.0.11 (batch): entries are processed independently; the response has one
    entry per request entry, in order, each with its own ``response.status``. The good entries
    are scored in one vectorised call; the caller stores their RiskAssessments in one transaction.
    (:class:`device.fhir.pool.ScoringPool` spreads a large batch over worker processes.)
    """
    resources = [entry_resource(e) for e in batch_entries(bundle, limit)]
    return batch_result(assess_entries(model, resources))

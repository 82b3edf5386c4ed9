"""What the endpoint does, free of HTTP: pick the released model, score a request, build,
check and store the RiskAssessment (one patient or a batch)."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Protocol

import numpy as np

from ..model import ModelError, PrognosticModel, load_model
from ..registry import ModelRegistry, RegistryError
from ..scoring import ScoringError, score
from . import inputs
from .errors import FhirError
from .resources import check_risk_assessment, risk_assessment


class ModelSource(Protocol):
    """Where the server gets the one model it may serve."""

    def current(self) -> PrognosticModel:
        """The released model, or :class:`FhirError` 503 naming why there is none."""
        ...


class ReleasedModel:
    """The newest released, unaffected version in a registry (of ``model_id`` if given).

    Re-read whenever the ledger grows, so a withdrawal, a consent revocation touching the model
    or a newer release takes effect on the next request, without a restart. The artifact is
    re-verified (sha256 and contract) each time it is loaded.
    """

    def __init__(self, registry: ModelRegistry, model_id: str | None = None) -> None:
        self.registry = registry
        self.model_id = model_id
        self._lock = threading.Lock()
        self._size = -1
        self._model: PrognosticModel | None = None
        self._error = ""

    def current(self) -> PrognosticModel:
        with self._lock:
            size = self.registry.ledger.size
            if size != self._size:
                self._refresh()
                self._size = size
            if self._model is None:
                raise FhirError(503, "processing", self._error)
            return self._model

    def _refresh(self) -> None:
        try:
            entry = self.registry.released(self.model_id)
            if self._model is None or self._model.sha256 != entry.sha256:
                self._model = load_model(self.registry.artifact(entry.ref))
            self._error = ""
        except (RegistryError, ModelError) as exc:
            self._model, self._error = None, f"no model in service: {exc}"


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


def _score(model: PrognosticModel, extracted: list[inputs.PatientInputs]) -> list[dict[str, Any]]:
    """RiskAssessments of several extracted patients, scored in one vectorised call."""
    X = np.vstack([e.values for e in extracted])
    try:
        scores = score(model, X)
    except ScoringError as exc:  # extraction checks the envelope first; this is a second line
        raise FhirError(422, "business-rule", str(exc)) from None
    stamp = now_iso()
    out = []
    for i, e in enumerate(extracted):
        ra = risk_assessment(model, scores, i, id_=str(uuid.uuid4()), patient=e.patient,
                             references=e.references, occurrence=stamp)
        check_risk_assessment(ra)
        out.append(ra)
    return out


def assess(model: PrognosticModel, body: dict[str, Any]) -> Prediction:
    """``$predict-risk`` for one patient (a Parameters or a patient Bundle); the caller stores it."""
    bundle, as_of = inputs.request_bundle(body)
    extracted = inputs.extract(model, bundle, as_of)
    ra = _score(model, [extracted])[0]
    return Prediction(ra, extracted.patient, model.sha256)


def _entry_error(exc: FhirError) -> dict[str, Any]:
    return {"response": {"status": f"{exc.status} {HTTPStatus(exc.status).phrase}", "outcome": exc.outcome()}}


def assess_batch(model: PrognosticModel, bundle: dict[str, Any], limit: int = 10_000) -> BatchResult:
    """A ``batch`` Bundle: each entry a patient (Parameters or Bundle), a bad entry failing only itself.

    FHIR R4 §3.1.0.11 (batch): entries are processed independently; the response has one
    entry per request entry, in order, each with its own ``response.status``. The good entries
    are scored in one vectorised call; the caller stores their RiskAssessments in one transaction.
    """
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise FhirError(400, "structure", "Bundle.entry must be a list", ["Bundle.entry"])
    if len(entries) > limit:
        raise FhirError(422, "too-costly", f"batch of {len(entries)} entries exceeds the limit of {limit}",
                        ["Bundle.entry"])
    results: list[dict[str, Any] | None] = [None] * len(entries)
    good: list[tuple[int, inputs.PatientInputs]] = []
    for k, entry in enumerate(entries):
        try:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                raise FhirError(400, "structure", f"Bundle.entry[{k}] has no resource",
                                [f"Bundle.entry[{k}].resource"])
            patient_bundle, as_of = inputs.request_bundle(resource)
            good.append((k, inputs.extract(model, patient_bundle, as_of)))
        except FhirError as exc:
            results[k] = _entry_error(exc)
    out = BatchResult({"resourceType": "Bundle", "type": "batch-response", "entry": results},
                      [e.patient for _, e in good])
    if good:
        ras = _score(model, [e for _, e in good])
        for ra, (k, e) in zip(ras, good, strict=True):
            results[k] = {"resource": ra, "response": {"status": "200 OK",
                                                       "location": f"RiskAssessment/{ra['id']}"}}
            out.rows.append((ra, e.patient, ra["occurrenceDateTime"]))
    return out

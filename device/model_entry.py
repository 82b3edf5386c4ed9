"""A registered model version as the ledger's replay sees it (:class:`ModelEntry`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .revocation import RetrainDue

#: lifecycle states in order; ``affected`` overrides any but ``withdrawn``
STATES = ("candidate", "validated", "released", "withdrawn")


@dataclass(frozen=True)
class ModelEntry:
    """One registered model version, as the ledger records it.

    ``lifecycle`` is the release-gate state; ``status`` is what users and the server act on:
    the lifecycle state, or ``affected`` once a consent revocation touches the training job —
    unless the model is released and inside its revocation window: then it stays ``released``
    with ``retrain`` set (the ``retrain due`` qualifier; :mod:`device.revocation`). ``retrain`` is
    kept after the deadline passes (``expired``), to say why the model is affected.
    ``history`` lists ``(ledger index, state)`` for every transition, oldest first.
    """

    model_id: str
    version: str
    sha256: str
    job: str
    lifecycle: str
    ledger_index: int
    consent_checkpoint: dict[str, Any] | None
    predecessor: str | None
    affected_by_revocation: bool
    history: tuple[tuple[int, str], ...] = ()
    validation: dict[str, Any] | None = None
    retrain: RetrainDue | None = None

    @property
    def status(self) -> str:
        in_window = self.retrain is not None and not self.retrain.expired
        if self.affected_by_revocation and self.lifecycle != "withdrawn" and not in_window:
            return "affected"
        return self.lifecycle

    @property
    def ref(self) -> str:
        """``model_id@version``: how commands name a model."""
        return f"{self.model_id}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "version": self.version, "status": self.status,
                "sha256": self.sha256, "affected_by_revocation": self.affected_by_revocation,
                "job": self.job, "ledger_index": self.ledger_index, "predecessor": self.predecessor,
                "consent_checkpoint": self.consent_checkpoint, "lifecycle": self.lifecycle,
                "history": [{"ledger_index": i, "state": st} for i, st in self.history],
                "validation": self.validation,
                "retrain_due": None if self.retrain is None else self.retrain.to_dict()}

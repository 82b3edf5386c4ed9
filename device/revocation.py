"""Revocation windows (issue 15): what a consent withdrawal does to a released model.

The study declares the policy (``federated.study.RevocationPolicy``, kept in the study settings
beside each model; read here through :class:`RevocationTerms`, since the device layer does not
import ``federated``):

``window`` (default)
    A released model whose training job a revocation names stays **in service**, flagged
    ``retrain due``. A successor is *due* once ``min_revocations`` revocations name the
    job (default: the study's ``policy.min_cell_count``), or at the deadline — the window's start
    plus ``window_days`` — whichever comes first. When the deadline passes and no successor has
    been released, the model becomes ``affected``: out of service (503) — the window is enforced.
``immediate``
    Such a model is ``affected`` at once (no risk is served until a successor is released).

The ledger has no clock, so the window opens with a ``retrain-due`` ledger entry (its time, the
deadline and the terms it was opened under; :func:`flag_body`), appended when the revocation is
recorded (``fedprog``'s withdrawal path) or, failing that, when the server first sees it. Until
then the window is shown as opening now and cannot expire. Only a *released* model gets a window:
a candidate or validated model named by a revocation is ``affected`` at once, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: the ledger entry kind that opens a model's revocation window
RETRAIN_DUE = "retrain-due"
#: ``federated.disclosure.policy.DisclosurePolicy.min_cell_count``'s default (a test keeps them equal)
DEFAULT_MIN_CELL_COUNT = 5


class RevocationTerms(BaseModel):
    """A study's revocation policy, resolved (``min_revocations`` filled in from ``min_cell_count``).

    Mirrors ``federated.study.RevocationPolicy`` at the boundary where the device reads the study
    settings kept beside a model.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    policy: Literal["window", "immediate"] = "window"
    window_days: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    min_revocations: int = Field(default=DEFAULT_MIN_CELL_COUNT, ge=1)


def terms_of(study: Mapping[str, Any] | None) -> RevocationTerms:
    """The revocation terms of study settings (``StudySpec`` as JSON); the defaults when there are
    none (a model registered without its settings)."""
    study = study or {}
    raw = dict(study.get("revocation") or {})
    if raw.get("min_revocations") is None:
        raw["min_revocations"] = (study.get("policy") or {}).get("min_cell_count", DEFAULT_MIN_CELL_COUNT)
    return RevocationTerms.model_validate(raw)


@dataclass(frozen=True)
class Revocations:
    """The revocations naming one training job: how many, and the first one's ledger index.

    Each ``revocation`` entry naming the job counts once: the consent registry names a job at most
    once per patient and site (:mod:`consent.registry`), so this counts withdrawn patients — one
    patient withdrawing at two hospitals counts twice (the ledger cannot link her two entries).
    """

    count: int
    first_index: int


def revocations_by_job(entries: list[tuple[int, dict[str, Any]]]) -> dict[str, Revocations]:
    """Count ``revocation`` ledger entries ``(index, body)`` per job they name (``affects_jobs``)."""
    indices: dict[str, list[int]] = {}
    for idx, body in entries:
        for job in dict.fromkeys(body.get("affects_jobs", [])):
            indices.setdefault(job, []).append(idx)
    return {job: Revocations(len(found), min(found)) for job, found in indices.items()}


def iso(t: datetime) -> str:
    """``2026-07-01T12:00:00Z``: how ledger entries record times (UTC, seconds)."""
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class RetrainDue:
    """The ``retrain due`` flag of a released model trained on since-revoked consent.

    ``since`` is when its window opened (``None``: not yet recorded in the ledger, shown as opening
    now); ``due``: a successor is due (``needed`` revocations reached, or the deadline passed);
    ``expired``: the deadline passed without a released successor — the model is out of service.
    """

    revocations: int
    needed: int
    window_days: float
    first_revocation: int
    since: datetime | None
    deadline: datetime
    due: bool
    expired: bool
    ledger_index: int | None

    def summary(self) -> str:
        """One line for people: ``1 of 5 revocations, deadline 2026-07-01 12:00 UTC, successor due …``."""
        deadline = self.deadline.strftime("%Y-%m-%d %H:%M UTC")
        if self.expired:
            when = "deadline passed: out of service until a successor is released"
        elif self.due:
            when = "successor due now"
        else:
            when = f"successor due at {self.needed} revocations or by the deadline"
        opened = "" if self.since is not None else " (window not yet recorded in the ledger)"
        return f"{self.revocations} of {self.needed} revocations, deadline {deadline}, {when}{opened}"

    def notice(self) -> str:
        """What the clinician is told while the model stays in service."""
        who = "a patient who has" if self.revocations == 1 else f"{self.revocations} patients who have"
        return (f"This model was trained with data of {who} since withdrawn consent. "
                f"It stays in service until a retrained successor is released, at the latest until "
                f"{self.deadline.strftime('%Y-%m-%d %H:%M UTC')}.")

    def to_dict(self) -> dict[str, Any]:
        return {"revocations": self.revocations, "needed": self.needed, "window_days": self.window_days,
                "first_revocation": self.first_revocation,
                "since": None if self.since is None else iso(self.since), "deadline": iso(self.deadline),
                "due": self.due, "expired": self.expired, "ledger_index": self.ledger_index}


def window(revocations: Revocations, terms: RevocationTerms, flag: tuple[int, dict[str, Any]] | None,
           now: datetime) -> RetrainDue:
    """The flag of a released model as of ``now`` under ``terms``: its window opened by its first
    ``retrain-due`` entry ``(index, body)`` — whose recorded time and deadline win — else opening now."""
    if flag is not None:
        index, body = flag
        since, deadline = datetime.fromisoformat(body["at"]), datetime.fromisoformat(body["deadline"])
    else:
        index, since, deadline = None, None, now + timedelta(days=terms.window_days)
    expired = since is not None and now >= deadline
    return RetrainDue(revocations.count, terms.min_revocations, terms.window_days, revocations.first_index,
                      since, deadline, revocations.count >= terms.min_revocations or expired, expired, index)


def flag_terms(body: Mapping[str, Any]) -> RevocationTerms:
    """The terms a ``retrain-due`` entry opened its window under (they win over the study file,
    which may have changed since)."""
    return RevocationTerms.model_validate(body)


def flag_body(model: str, sha256: str, job: str, flag: RetrainDue, now: datetime) -> dict[str, Any]:
    """The ``retrain-due`` entry opening a model's window at ``now`` (only aggregates, no patient)."""
    return {"model": model, "sha256": sha256, "job": job, "at": iso(now), "deadline": iso(flag.deadline),
            "policy": "window", "window_days": flag.window_days, "min_revocations": flag.needed,
            "revocations": flag.revocations, "first_revocation": flag.first_revocation}

"""Which of its patients a site lets a request use: consent at the freshest witnessed checkpoint,
then a contribution that differs from every earlier job's by 0 or at least k.

Adversaries: a **malicious coordinator** naming an old consent checkpoint (bringing withdrawn
patients back) or stepping through checkpoints to isolate one patient's entry; a **reader of
releases** differencing a model and its successor after a withdrawal
(:mod:`federated.site.contribution`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np
import pandas as pd

from federated.disclosure.rules import Refusal
from federated.exceptions import DataError
from federated.protocol.messages import EvaluateRequest, PrepareRequest, PweEventsRequest
from federated.site.contribution import ContributionError, contribution, job_key, robust
from federated.site.data import Cohort

#: the requests that name a cohort and a consent checkpoint
Asked = PrepareRequest | PweEventsRequest | EvaluateRequest


class ConsentSource(Protocol):
    """What a site needs from its consent registry (:class:`consent.registry.ConsentRegistry`)."""

    def ledger_root(self, size: int) -> bytes: ...

    def newest_checkpoint(self) -> int: ...

    def active_patients(self, as_of: int) -> set[str]: ...

    def record_usage(self, job: str, patients: Iterable[str]) -> None: ...

    def usage(self) -> dict[str, frozenset[str]]: ...


class PatientGate:
    """A site's consent registry, the checkpoint its witness vouches for, and what each job used.

    Parameters
    ----------
    consent : ConsentSource
        The site's registry.
    patient_column : str
        The table's column of patient ids.
    witnessed : callable, optional
        Size of the newest checkpoint the site's own witness cosigned with a quorum (default: the
        ledger's newest signed checkpoint).
    secret : bytes
        The site's own secret for drawing the patients it withholds (:func:`contribution.job_key`).
    """

    def __init__(self, consent: ConsentSource, patient_column: str, witnessed: Callable[[], int] | None,
                 secret: bytes) -> None:
        self.consent = consent
        self.patient_column = patient_column
        self._witnessed = witnessed
        self._secret = secret
        self._contributed: dict[tuple[str, str], frozenset[str]] = {}  # (study, job) → patients used

    def consented(self, req: Asked, table: pd.DataFrame,
                  where: str) -> pd.DataFrame:
        """The rows of patients with active consent at the checkpoint the request names, which must
        be the newest one this site's witness cosigned."""
        gate = req.consent
        if gate is None:
            raise Refusal("consent", "this site answers only requests that name a consent checkpoint")
        fresh = self._witnessed() if self._witnessed is not None else self.consent.newest_checkpoint()
        if gate.size != fresh:
            raise Refusal("consent", "the request does not name the newest witnessed checkpoint")
        if self.consent.ledger_root(gate.size).hex() != gate.root:
            raise Refusal("consent", "the checkpoint does not match this site's ledger")
        if self.patient_column not in table.columns:
            raise DataError(f"{where}: unknown patient id column {self.patient_column!r}")
        ids = table[self.patient_column].astype(str)
        return table[ids.isin(self.consent.active_patients(gate.size))]

    def contribute(self, req: Asked, table: pd.DataFrame, cohort: Cohort,
                   k: int) -> Cohort:
        """``cohort`` (prepared from the consented ``table``) without the patients this job withholds:
        its set differs from every earlier job's of the study by 0 or at least ``k``, withholding
        first patients whose cells stay at ``k`` or more."""
        gate = req.consent
        assert gate is not None
        ids = table[self.patient_column].astype(str).to_numpy()[cohort.rows]
        earlier = {job: used for job, used in self.consent.usage().items() if job != gate.job}
        try:
            chosen = contribution(ids.tolist(), earlier, k, job_key(self._secret, req.study, gate.job),
                                  prefer=frozenset(ids[robust(cohort, req.cohort, k)].tolist()))
        except ContributionError as exc:
            raise Refusal("cells", str(exc)) from None
        self._contributed[(req.study, gate.job)] = chosen
        return cohort.take(np.isin(ids, list(chosen)))

    def record_usage(self, req: PrepareRequest | PweEventsRequest) -> None:
        """Remember (privately) the patients a job used, once the site has accepted it."""
        if req.consent is None:
            return
        used = self._contributed.get((req.study, req.consent.job))
        if used is not None:
            self.consent.record_usage(req.consent.job, used)

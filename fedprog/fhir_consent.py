"""The FHIR Consent API's port over a workspace: the sites' consent registries and the ledger.

:func:`withdraw_consent` is the one withdrawal path (``fedprog consent revoke`` can share it):
:meth:`consent.registry.ConsentRegistry.revoke` at each site (a new Consent version with status
``inactive``, anchored as a ``revocation`` ledger entry naming the training jobs it affects, which
the model registry then reports as ``affected``), then a checkpoint cosigned by every site's
witness, so the revocation is witnessed at once rather than at the next training run.

A patient withdraws from the study, not from one hospital: without ``sites``, the consent is
revoked at every site whose registry holds an active consent for the patient.

The server's side (:class:`WorkspaceConsent`) speaks FHIR R4 (https://hl7.org/fhir/R4/consent.html):
R4B Consent resources are R4's and are returned as stored; R5 ones are re-expressed in R4 shape.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consent.fhir import ConsentError, ConsentRecord, build_consent, export_consent, revoke
from consent.registry import ConsentRegistry, ConsentRegistryError
from device.fhir.consent_api import ConsentConflict, ConsentNotFound, ConsentRejected

if TYPE_CHECKING:
    from ledger.log import Receipt

    from .workspace import Workspace

log = logging.getLogger("fedprog.consent")


@dataclass(frozen=True)
class Withdrawal:
    """What one withdrawal did: per site the ledger receipt and the new (inactive) Consent version,
    the models it affects (``model_id@version``) and the witnesses that cosigned the checkpoint
    (``checkpoint_error`` says why none did; the revocation itself is anchored regardless)."""

    receipts: dict[str, Receipt]
    records: dict[str, ConsentRecord]
    affected_models: list[str]
    cosigned_by: list[str]
    checkpoint_error: str | None = None


@contextmanager
def _registries(ws: Workspace, sites: Sequence[str]) -> Iterator[dict[str, ConsentRegistry]]:
    """The sites' registries, each closed on the way out."""
    opened: dict[str, ConsentRegistry] = {}
    try:
        for name in sites:
            opened[name] = ws.registry(name)
        yield opened
    finally:
        for registry in opened.values():
            registry.close()


def _targets(registries: dict[str, ConsentRegistry], patient: str) -> list[str]:
    """Sites where the patient's consent is an active permit (ConsentNotFound/ConsentConflict if none)."""
    latest = {name: reg.latest(patient) for name, reg in registries.items()}
    active = [name for name, status in latest.items() if status is not None and status.active]
    if active:
        return active
    if all(status is None for status in latest.values()):
        raise ConsentNotFound("no consent is recorded for this patient at any site")
    raise ConsentConflict("the patient has no active consent to withdraw")


def _dry_run(registry: ConsentRegistry, patient: str, date: str) -> None:
    """Refuse (ConsentError) a revocation the registry would refuse, before any site records one."""
    history = registry.history(patient)
    if history and history[-1].is_active_permit:
        revoke(history[-1], date=date)


def _checkpoint(ws: Workspace) -> tuple[list[str], str | None]:
    """Publish a witnessed checkpoint: (cosigners, None), or ([], reason) when it cannot be."""
    try:
        _, cosigned = ws.publish_checkpoint()
    except ValueError as exc:  # LedgerError, CheckpointError, ForkDetected: an alarm, not a refusal
        log.warning("consent withdrawal anchored but the checkpoint was not published: %s", exc)
        return [], str(exc)
    return cosigned, None


def withdraw_consent(ws: Workspace, patient: str, *, date: str,
                     sites: Sequence[str] | None = None) -> Withdrawal:
    """Withdraw ``patient``'s consent as of ``date`` at ``sites`` (default: every site where active).

    Raises ``ConsentRegistryError`` (a named site has nothing active to revoke), ``ConsentError``
    (e.g. ``date`` before the consent; nothing is recorded then), and without ``sites``
    ``ConsentNotFound`` (patient unknown everywhere) or ``ConsentConflict`` (nothing active).
    """
    with _registries(ws, ws.sites if sites is None else sites) as registries:
        targets = list(registries) if sites is not None else _targets(registries, patient)
        for name in targets:
            _dry_run(registries[name], patient, date)
        receipts = {name: registries[name].revoke(patient, date=date) for name in targets}
        records = {name: registries[name].history(patient)[-1] for name in targets}
        jobs = {job for name in targets for job in registries[name].jobs_using(patient)}
    ws.models.note_revocations()  # open the retrain-due windows under this checkpoint (issue 15)
    affected = [m.ref for m in ws.models.list() if m.job in jobs]
    cosigned, error = _checkpoint(ws)
    return Withdrawal(receipts, records, affected, cosigned, error)


def as_r4(record: ConsentRecord) -> dict[str, Any]:
    """The record as FHIR R4 Consent JSON: an R4B resource as stored; an R5 one rebuilt in R4 shape
    (patient, dateTime, scope research, policy.uri, provision.type) keeping id and versionId —
    R5-only elements are not carried over."""
    if record.fhir_version == "R4B":
        return export_consent(record)
    resource = export_consent(build_consent(record.patient, record.study, status=record.status,
                                            decision=record.decision, date=record.date,
                                            fhir_version="R4B", version=record.version))
    resource.pop("id", None)
    if "id" in record.resource:
        resource["id"] = record.resource["id"]
    return resource


def _day(record: ConsentRecord) -> str:
    return record.date[:10]


class WorkspaceConsent:
    """:class:`device.fhir.consent_api.ConsentPort` over a workspace's sites.

    Thread-safe: one lock serialises calls, and each call opens the registries it needs and
    closes them before returning.
    """

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._lock = threading.Lock()

    def history(self, patient: str) -> list[dict[str, Any]]:
        """Every Consent version of the patient at every site, oldest first (by date; each site's
        versions in their order); empty when no site knows the patient."""
        with self._lock, _registries(self.ws, self.ws.sites) as registries:
            per_site = [reg.history(patient) for reg in registries.values()]
        return [as_r4(r) for r in heapq.merge(*per_site, key=_day)]

    def withdraw(self, patient: str, date: str) -> dict[str, Any]:
        """Withdraw at every site where the consent is active (see :func:`withdraw_consent`);
        the new inactive Consent of the first such site (by name)."""
        with self._lock:
            try:
                done = withdraw_consent(self.ws, patient, date=date)
            except ConsentError as exc:
                raise ConsentRejected(str(exc)) from None
            except ConsentRegistryError as exc:  # revoked meanwhile by another process
                raise ConsentConflict(str(exc)) from None
        return as_r4(done.records[min(done.records)])

"""A site's consent registry: who agreed to the study, every version kept, anchored in the ledger.

Identities never leave the site. Each consent event (a grant, a refusal, a revocation, an
imported version) is anchored in the shared ledger as a *fresh* commitment
``HMAC-SHA256(r_e, enc(TAG, site, study, patient))`` under a one-time 32-byte salt ``r_e``
(RFC 2104; scheme, hiding and binding in :mod:`consent.commitment`).

Adversary: a reader of the ledger (every hospital witnesses it, so it is effectively public).
A ``consent`` body is ``{site, study, commitment, status, decision}``. A ``revocation`` body adds
``affects_jobs``. Nothing in either links two events of one patient: there is no per-patient
commitment, no ``previous_entry`` and no version number. Those versions are FHIR
``meta.versionId`` and stay in this database. ``status`` and ``decision`` take a few values that
every patient in that state shares. A revocation names only the jobs that no earlier revocation
of the same patient has named. If a patient revokes twice, her two revocations never list the
same job, and a job is flagged once, which is all the model registry needs. The model registry
(:mod:`device.registry`) reads ``affects_jobs``.

Left to the reader, and out of scope here:

* the *kind* ``revocation`` tells that some patient of that site had an active permit;
* timing and position: an import of one patient's history appends consecutive entries;
* the job ids themselves, which cover every patient a job used.

Off the ledger, ``consent.sqlite`` keeps each event's salt with its ledger index.
:meth:`ConsentRegistry.linkage_proof` hands those openings to an auditor, who checks them with
:func:`consent.commitment.verify_linkage`. Erasure (GDPR Art. 17) deletes the patient's salts
and records (crypto-shredding). SQLite's ``secure_delete`` zeroes the freed bytes, and the WAL
is truncated afterwards. The commitments stay on the ledger, can no longer be opened, and every
proof still verifies.

The registry also records, privately, which patients each training job used, so that a
revocation can name the jobs (models) it affects: by job id, never by patient.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ledger.anchors import TrustAnchors
from ledger.log import Ledger, Receipt
from ledger.trusted import VerifiedLog, read_verified

from .commitment import Opening, commit, new_salt
from .fhir import ConsentRecord, build_consent, parse_consent, revoke, with_version

log = logging.getLogger("fedprog.consent")

#: ``PRAGMA user_version`` of the schema below. Version 1 (unversioned, 0) kept one salt per patient.
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS consents (
    patient TEXT NOT NULL, version INTEGER NOT NULL, status TEXT NOT NULL, decision TEXT NOT NULL,
    date TEXT NOT NULL, fhir_version TEXT NOT NULL, resource TEXT NOT NULL, ledger_index INTEGER NOT NULL,
    PRIMARY KEY (patient, version));
CREATE TABLE IF NOT EXISTS events (
    ledger_index INTEGER PRIMARY KEY, patient TEXT NOT NULL, salt BLOB NOT NULL CHECK (length(salt) = 32));
CREATE INDEX IF NOT EXISTS events_patient ON events (patient);
CREATE TABLE IF NOT EXISTS usage (job TEXT NOT NULL, patient TEXT NOT NULL, PRIMARY KEY (job, patient));
"""


#: (version, status, decision, date, ledger_index, resource JSON) of one consent version
_Row = tuple[int, str, str, str, int, str]


class ConsentRegistryError(ValueError):
    """Misuse of the registry (unknown patient, revoking what is not active, …)."""


@dataclass(frozen=True)
class PatientStatus:
    """A patient's latest consent at this site (local view; identifiers stay here)."""

    patient: str
    status: str
    decision: str
    version: int

    @property
    def active(self) -> bool:
        return self.status == "active" and self.decision == "permit"


def _open_schema(db: sqlite3.Connection, path: Path) -> bool:
    """Create or upgrade the schema; True when a version-1 ``salts`` table is still present.

    Upgrading version 1 only adds ``events``. Its earlier ledger entries keep their per-patient
    (linkable) commitments, which cannot be changed on an append-only ledger, and a warning says
    so. A newer schema is refused.
    """
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise ConsentRegistryError(f"{path} has consent schema {version}; this fedprog reads up to "
                                   f"{SCHEMA_VERSION}: upgrade fedprog")
    legacy_rows = 0
    if version < SCHEMA_VERSION and db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'consents'").fetchone():
        legacy_rows = int(db.execute("SELECT COUNT(*) FROM consents").fetchone()[0])
    db.executescript(_SCHEMA)
    if version < SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if legacy_rows:
            log.warning("%s: upgraded from consent schema 1; its %d earlier ledger entries keep their "
                        "linkable per-patient commitments and have no per-event opening", path, legacy_rows)
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'salts'").fetchone() \
        is not None


class ConsentRegistry:
    """Consent of one site's patients for one study (``sites/<name>/consent.sqlite``).

    Parameters
    ----------
    folder : Path
        The site's folder: holds ``consent.sqlite`` (records, usage, and every event's salt).
    site, study : str
        This site's name and the study the consents are for.
    ledger : Ledger
        The shared log in which every consent event is anchored.
    anchors : TrustAnchors, optional
        Keys pinned outside the ledger file and the witnesses' states. What this registry reads
        from the ledger (checkpoint sizes and roots, its own revocations) comes only from a log
        whose leaves and root were recomputed and checked against them
        (:func:`ledger.trusted.read_verified`): the adversary is someone with write access to
        ``ledger.sqlite`` (an insider, or malware on the coordinator host), not the witnesses.
    """

    def __init__(self, folder: Path, site: str, study: str, ledger: Ledger,
                 anchors: TrustAnchors | None = None) -> None:
        self.folder, self.site, self.study, self.ledger = Path(folder), site, study, ledger
        self.anchors = anchors
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "consent.sqlite"
        # used from the site's worker thread in-process; one site, one request at a time
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")  # erased salts are overwritten, not just unlinked
        self._legacy_salts = _open_schema(self._db, path)

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------ commitments
    def _anchor(self, record: ConsentRecord, kind: Literal["consent", "revocation"]) -> tuple[Receipt, bytes]:
        """Append the event under a fresh commitment; return its receipt and (secret) salt.

        The site's own records are a trust anchor outside the ledger file: an event of this site
        anchored at an index the ledger no longer has means the ledger was rolled back or replaced,
        and nothing is appended to it.
        """
        row = self._db.execute("SELECT MAX(ledger_index) FROM events").fetchone()
        if row is not None and row[0] is not None and int(row[0]) >= self.ledger.size:
            raise ConsentRegistryError(
                f"this site anchored a consent event at ledger entry {int(row[0])}, but the ledger has only "
                f"{self.ledger.size} entries: it was rolled back or replaced (run fedprog ledger witness)")
        salt = new_salt()
        body: dict[str, Any] = {"site": self.site, "study": self.study,
                                "commitment": commit(salt, self.site, self.study, record.patient),
                                "status": record.status, "decision": record.decision}
        if kind == "revocation":
            body["affects_jobs"] = self._jobs_not_yet_named(record.patient)
        return self.ledger.append(kind, body), salt

    def _jobs_not_yet_named(self, patient: str) -> list[str]:
        """Jobs that used the patient and that none of her earlier revocation entries names.

        If these were named again, her two revocations would share a value.
        """
        named: set[str] = set()
        log = self._verified()
        for (index,) in self._db.execute("SELECT ledger_index FROM consents WHERE patient = ?", (patient,)):
            kind, body = log.entry(int(index))
            if kind == "revocation":
                named.update(body.get("affects_jobs", []))
        return [job for job in self.jobs_using(patient) if job not in named]

    def _store(self, record: ConsentRecord, receipt: Receipt, salt: bytes) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT INTO consents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (record.patient, record.version, record.status, record.decision, record.date,
                        record.fhir_version, json.dumps(record.resource, sort_keys=True), receipt.index))
            db.execute("INSERT INTO events VALUES (?, ?, ?)", (receipt.index, record.patient, salt))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def linkage_proof(self, patient: str) -> list[Opening]:
        """Openings of every ledger entry of ``patient`` at this site, oldest first, for an auditor.

        The auditor checks them with :func:`consent.commitment.verify_linkage`. Giving them out
        links these entries for whoever receives them, so they go to an auditor only. Raises
        ConsentRegistryError for an unknown or erased patient, or one with events anchored under
        schema 1, which have no per-event opening.
        """
        rows = self._db.execute("SELECT ledger_index, salt FROM events WHERE patient = ? "
                                "ORDER BY ledger_index", (patient,)).fetchall()
        if not rows:
            raise ConsentRegistryError("no openable consent event for this patient (unknown or erased)")
        unopenable = self._db.execute(
            "SELECT COUNT(*) FROM consents c WHERE c.patient = ? AND NOT EXISTS "
            "(SELECT 1 FROM events e WHERE e.ledger_index = c.ledger_index)", (patient,)).fetchone()[0]
        if unopenable:
            raise ConsentRegistryError(f"{unopenable} of this patient's events were anchored under consent "
                                       "schema 1 (one commitment per patient) and have no per-event opening")
        return [Opening(ledger_index=int(i), salt=bytes(s).hex()) for i, s in rows]

    # ---------------------------------------------------------------- events
    def import_resources(self, records: Iterable[ConsentRecord]) -> list[Receipt]:
        """Store FHIR Consent versions (as parsed by :func:`consent.fhir.parse_consent`)."""
        records = list(records)
        for record in records:  # all checked before any is anchored: nothing half-imported
            if record.study != self.study:
                raise ConsentRegistryError(f"a Consent is for study {record.study!r}, not {self.study!r}")
        receipts = []
        for record in records:
            latest = self.latest(record.patient)
            if latest is not None and record.version <= latest.version:
                record = with_version(record, latest.version + 1)
            receipt, salt = self._anchor(record, "consent")
            self._store(record, receipt, salt)
            receipts.append(receipt)
        return receipts

    def grant(self, patient: str, *, date: str, decision: Literal["permit", "deny"] = "permit",
              fhir_version: Literal["R4B", "R5"] = "R4B", basis: str | None = None) -> Receipt:
        """Record a new consent (permit, or a documented refusal with ``decision='deny'``); with
        ``basis``, the legal basis other than consent under which the site uses the data
        (:func:`consent.fhir.build_consent`)."""
        latest = self.latest(patient)
        record = build_consent(patient, self.study, status="active", decision=decision, date=date,
                               fhir_version=fhir_version, basis=basis,
                               version=1 if latest is None else latest.version + 1)
        receipt, salt = self._anchor(record, "consent")
        self._store(record, receipt, salt)
        return receipt

    def revoke(self, patient: str, *, date: str) -> Receipt:
        """Withdraw consent at any time: a new version with status ``inactive``, history kept."""
        row = self._latest_row(patient)
        if row is None or row[1] != "active" or row[2] != "permit":
            raise ConsentRegistryError("the patient has no active consent to revoke")
        record = with_version(revoke(parse_consent(row[5]), date=date), row[0] + 1)
        receipt, salt = self._anchor(record, "revocation")
        self._store(record, receipt, salt)
        return receipt

    def erase(self, patient: str) -> int:
        """Crypto-shred a patient: delete every event salt, the consent records and usage; return
        the rows removed. Freed bytes are zeroed (``secure_delete``) and the WAL truncated."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            n = db.execute("DELETE FROM consents WHERE patient = ?", (patient,)).rowcount
            n += db.execute("DELETE FROM events WHERE patient = ?", (patient,)).rowcount
            if self._legacy_salts:
                n += db.execute("DELETE FROM salts WHERE patient = ?", (patient,)).rowcount
            # her usage rows stay, under a random token: a site must still count her among the
            # patients an earlier job used (:mod:`federated.site.contribution`), not forget she left
            n += db.execute("UPDATE usage SET patient = ? WHERE patient = ?",
                            (f"erased:{secrets.token_hex(16)}", patient)).rowcount
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if n == 0:
            raise ConsentRegistryError("no such patient in this registry")
        busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            log.warning("erasure committed, but the WAL could not be truncated yet (a reader is active)")
        return n
    # ----------------------------------------------------------------- views
    def _latest_row(self, patient: str, before: int | None = None) -> _Row | None:
        sql = ("SELECT version, status, decision, date, ledger_index, resource FROM consents "
               "WHERE patient = ?" + (" AND ledger_index < ?" if before is not None else "")
               + " ORDER BY version DESC LIMIT 1")
        args: tuple[object, ...] = (patient,) if before is None else (patient, before)
        row = self._db.execute(sql, args).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]),
                                         str(row[5]))

    def latest(self, patient: str) -> PatientStatus | None:
        row = self._latest_row(patient)
        return None if row is None else PatientStatus(patient, row[1], row[2], row[0])

    def statuses(self, as_of: int | None = None) -> list[PatientStatus]:
        """Every patient's latest consent, as of ledger size ``as_of`` (default: now)."""
        patients = [r[0] for r in self._db.execute("SELECT DISTINCT patient FROM consents ORDER BY patient")]
        out = []
        for p in patients:
            row = self._latest_row(p, before=as_of)
            if row is not None:
                out.append(PatientStatus(p, row[1], row[2], row[0]))
        return out

    def active_patients(self, as_of: int) -> set[str]:
        """Patients whose consent, as of ledger size ``as_of``, is an active permit."""
        return {s.patient for s in self.statuses(as_of) if s.active}

    def history(self, patient: str) -> list[ConsentRecord]:
        rows = self._db.execute("SELECT resource FROM consents WHERE patient = ? ORDER BY version",
                                (patient,))
        return [parse_consent(r[0]) for r in rows]

    def _verified(self) -> VerifiedLog:
        """The ledger, its leaves and root recomputed and checked against the anchors
        (:class:`ledger.trusted.UntrustedLedger` if it fails)."""
        return read_verified(self.ledger, self.anchors)

    def newest_checkpoint(self) -> int:
        """Size of the newest checkpoint of the ledger (0 if none): the only consent state a site
        accepts when it has no witness of its own to ask — with anchors, the newest one a quorum
        of pinned witnesses cosigned, else the newest signed one."""
        log = self._verified()
        if self.anchors is not None:
            return 0 if log.witnessed is None else log.witnessed.size
        latest = self.ledger.latest_checkpoint()
        return 0 if latest is None else latest[0]

    def ledger_root(self, size: int) -> bytes:
        """Root of the shared ledger at ``size`` entries (to check a request's consent checkpoint),
        recomputed from the entries, never read from the stored tree."""
        log = self._verified()
        if not 0 <= size <= log.size:
            raise ConsentRegistryError(f"the ledger has {log.size} entries, not {size}")
        return log.root_at(size)

    def record_usage(self, job: str, patients: Iterable[str]) -> None:
        """Remember (privately) which patients a training job used."""
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("INSERT OR IGNORE INTO usage VALUES (?, ?)", [(job, p) for p in patients])
        self._db.execute("COMMIT")

    def usage(self) -> dict[str, frozenset[str]]:
        """Every job this registry recorded, with the patients it used (an erased patient under a
        random token)."""
        out: dict[str, set[str]] = {}
        for job, patient in self._db.execute("SELECT job, patient FROM usage"):
            out.setdefault(job, set()).add(patient)
        return {job: frozenset(ps) for job, ps in out.items()}

    def jobs_using(self, patient: str) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT job FROM usage WHERE patient = ? ORDER BY job",
                                               (patient,))]

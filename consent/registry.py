"""A site's consent registry: who agreed to the study, every version kept, anchored in the ledger.

Identities never leave the site. Each consent event is anchored in the shared ledger as a
*commitment*: HMAC-SHA256 under a site-held key of a per-patient random salt and the patient
id — no identifier, name or date of birth reaches the ledger. Erasure (GDPR Art. 17)
deletes the salt and the off-ledger records (crypto-shredding): the ledger's commitments can
then no longer be linked to anyone, and every existing proof still verifies.

The registry also records, privately, which patients each training job used, so that a
revocation can name the jobs (models) it affects — by job id, never by patient.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ledger.files import secret_file
from ledger.log import Ledger, Receipt

from .fhir import ConsentRecord, build_consent, parse_consent, revoke, with_version

_SCHEMA = """
CREATE TABLE IF NOT EXISTS salts (patient TEXT PRIMARY KEY, salt BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS consents (
    patient TEXT NOT NULL, version INTEGER NOT NULL, status TEXT NOT NULL, decision TEXT NOT NULL,
    date TEXT NOT NULL, fhir_version TEXT NOT NULL, resource TEXT NOT NULL, ledger_index INTEGER NOT NULL,
    PRIMARY KEY (patient, version));
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


class ConsentRegistry:
    """Consent of one site's patients for one study (``sites/<name>/consent.sqlite``).

    Parameters
    ----------
    folder : Path
        The site's folder: holds ``consent.sqlite`` and ``consent.key`` (the HMAC key).
    site, study : str
        This site's name and the study the consents are for.
    ledger : Ledger
        The shared log in which every consent event is anchored.
    """

    def __init__(self, folder: Path, site: str, study: str, ledger: Ledger) -> None:
        self.folder, self.site, self.study, self.ledger = Path(folder), site, study, ledger
        self.folder.mkdir(parents=True, exist_ok=True)
        # used from the site's worker thread in-process; one site, one request at a time
        self._db = sqlite3.connect(self.folder / "consent.sqlite", isolation_level=None, timeout=30,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._key = secret_file(self.folder / "consent.key")

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------ commitments
    def commitment(self, patient: str) -> str:
        """HMAC-SHA256(site key, salt ‖ patient id), hex; creates the patient's salt once."""
        row = self._db.execute("SELECT salt FROM salts WHERE patient = ?", (patient,)).fetchone()
        if row is None:
            salt = secrets.token_bytes(32)
            self._db.execute("INSERT INTO salts VALUES (?, ?)", (patient, salt))
        else:
            salt = bytes(row[0])
        return hmac.new(self._key, salt + patient.encode("utf-8"), hashlib.sha256).hexdigest()

    def _anchor(self, record: ConsentRecord, previous: int | None = None) -> Receipt:
        body = {"site": self.site, "study": self.study, "commitment": self.commitment(record.patient),
                "version": record.version, "status": record.status, "decision": record.decision}
        if previous is not None:
            body["previous_entry"] = previous
        kind = "revocation" if record.status == "inactive" and previous is not None else "consent"
        if kind == "revocation":
            body["affects_jobs"] = self.jobs_using(record.patient)
        return self.ledger.append(kind, body)

    def _store(self, record: ConsentRecord, receipt: Receipt) -> None:
        self._db.execute("INSERT INTO consents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (record.patient, record.version, record.status, record.decision, record.date,
                          record.fhir_version, json.dumps(record.resource, sort_keys=True), receipt.index))

    # ---------------------------------------------------------------- events
    def import_resources(self, records: Iterable[ConsentRecord]) -> list[Receipt]:
        """Store FHIR Consent versions (as parsed by :func:`consent.fhir.parse_consent`)."""
        receipts = []
        for record in records:
            if record.study != self.study:
                raise ConsentRegistryError(f"a Consent is for study {record.study!r}, not {self.study!r}")
            latest = self.latest(record.patient)
            if latest is not None and record.version <= latest.version:
                record = with_version(record, latest.version + 1)
            receipt = self._anchor(record, None)
            self._store(record, receipt)
            receipts.append(receipt)
        return receipts

    def grant(self, patient: str, *, date: str, decision: Literal["permit", "deny"] = "permit",
              fhir_version: Literal["R4B", "R5"] = "R4B") -> Receipt:
        """Record a new consent (permit, or a documented refusal with ``decision='deny'``)."""
        latest = self.latest(patient)
        record = build_consent(patient, self.study, status="active", decision=decision, date=date,
                               fhir_version=fhir_version,
                               version=1 if latest is None else latest.version + 1)
        receipt = self._anchor(record)
        self._store(record, receipt)
        return receipt

    def revoke(self, patient: str, *, date: str) -> Receipt:
        """Withdraw consent at any time: a new version with status ``inactive``, history kept."""
        row = self._latest_row(patient)
        if row is None or row[1] != "active" or row[2] != "permit":
            raise ConsentRegistryError("the patient has no active consent to revoke")
        record = with_version(revoke(parse_consent(row[5]), date=date), row[0] + 1)
        receipt = self._anchor(record, previous=row[4])
        self._store(record, receipt)
        return receipt

    def erase(self, patient: str) -> int:
        """Crypto-shred a patient: delete salt, consent records and usage; return rows removed."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        n = db.execute("DELETE FROM consents WHERE patient = ?", (patient,)).rowcount
        n += db.execute("DELETE FROM salts WHERE patient = ?", (patient,)).rowcount
        n += db.execute("DELETE FROM usage WHERE patient = ?", (patient,)).rowcount
        db.execute("COMMIT")
        if n == 0:
            raise ConsentRegistryError("no such patient in this registry")
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

    def newest_checkpoint(self) -> int:
        """Size of the newest signed checkpoint of the ledger (0 if none): the only consent state
        a site accepts when it has no witness of its own to ask."""
        latest = self.ledger.latest_checkpoint()
        return 0 if latest is None else latest[0]

    def ledger_root(self, size: int) -> bytes:
        """Root of the shared ledger at ``size`` entries (to check a request's consent checkpoint)."""
        return self.ledger.root(size)

    def record_usage(self, job: str, patients: Iterable[str]) -> None:
        """Remember (privately) which patients a training job used."""
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("INSERT OR IGNORE INTO usage VALUES (?, ?)", [(job, p) for p in patients])
        self._db.execute("COMMIT")

    def jobs_using(self, patient: str) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT job FROM usage WHERE patient = ? ORDER BY job",
                                               (patient,))]

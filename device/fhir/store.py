"""The server's resource store: RiskAssessments it produced and AuditEvents of every request.

One SQLite file (``<workspace>/fhir.sqlite``, WAL, ``synchronous=FULL``): a stored resource is
committed before the response that names it is sent, and an AuditEvent before the request's
response leaves (IEC 62304 §5.1.9 / ISO 27789: the audit trail is complete). Resources are
append-only — triggers refuse UPDATE and DELETE — and kept as the exact JSON that was served.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    type     TEXT NOT NULL,
    id       TEXT NOT NULL,
    subject  TEXT,
    recorded TEXT NOT NULL,
    json     TEXT NOT NULL,
    UNIQUE (type, id)
);
CREATE INDEX IF NOT EXISTS resources_subject ON resources (type, subject);
CREATE TRIGGER IF NOT EXISTS resources_no_update BEFORE UPDATE ON resources
BEGIN SELECT RAISE(ABORT, 'the FHIR store is append-only'); END;
CREATE TRIGGER IF NOT EXISTS resources_no_delete BEFORE DELETE ON resources
BEGIN SELECT RAISE(ABORT, 'the FHIR store is append-only'); END;
"""
_INSERT = "INSERT INTO resources (type, id, subject, recorded, json) VALUES (?, ?, ?, ?, ?)"


class FhirStore:
    """Append-only store of served resources, safe to share between the server's threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, resource: dict[str, Any], *, subject: str | None, recorded: str) -> None:
        """Store ``resource`` (its ``resourceType`` and ``id``) durably; a duplicate id is refused."""
        text = json.dumps(resource, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            self._db.execute(_INSERT, (resource["resourceType"], resource["id"], subject, recorded, text))

    def add_many(self, items: list[tuple[dict[str, Any], str | None, str]]) -> None:
        """Store several ``(resource, subject, recorded)`` in one transaction: all or none."""
        rows = [(r["resourceType"], r["id"], s, rec, json.dumps(r, separators=(",", ":"), ensure_ascii=False))
                for r, s, rec in items]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_INSERT, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get(self, type_: str, id_: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT json FROM resources WHERE type = ? AND id = ?",
                                   (type_, id_)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def search(self, type_: str, subject: str | None = None,
               count: int = 100) -> tuple[int, list[dict[str, Any]]]:
        """(total matches, newest ``count`` of them) of one type, optionally for one subject."""
        where, args = "type = ?", [type_]
        if subject is not None:
            where, args = where + " AND subject = ?", [*args, subject]
        with self._lock:
            total = int(self._db.execute(f"SELECT COUNT(*) FROM resources WHERE {where}", args).fetchone()[0])
            rows = self._db.execute(f"SELECT json FROM resources WHERE {where} ORDER BY seq DESC LIMIT ?",
                                    [*args, count]).fetchall()
        return total, [dict(json.loads(r[0])) for r in rows]

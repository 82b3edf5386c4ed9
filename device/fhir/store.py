"""The server's resource store: RiskAssessments it produced and AuditEvents of every request.

One SQLite file (``<workspace>/fhir.sqlite``, WAL, ``synchronous=FULL``). Writes go through one
writer thread that **group-commits**: whatever arrived while the previous transaction was being
made durable is written in the next one, so concurrent requests share an fsync instead of
queueing for one each (the classic database group commit; Gray & Reuter 1993, §9.4.7). A
caller's write returns only once its transaction is durable, so a stored resource is committed
before the response that names it is sent, and an AuditEvent before the request's response
leaves (the audit trail is complete). Resources are append-only — triggers refuse UPDATE and
DELETE — and kept as the exact JSON that was served. A batch's resources share one transaction:
all or none.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson

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
#: how long a writer waits for its commit before giving up (nothing waits forever)
WRITE_TIMEOUT = 30.0

Row = tuple[str, str, str | None, str, str]
_Job = tuple[list[Row], "Future[None]"]


def _row(resource: dict[str, Any], subject: str | None, recorded: str) -> Row:
    text = orjson.dumps(resource).decode("utf-8")
    return resource["resourceType"], resource["id"], subject, recorded, text


class FhirStore:
    """Append-only store of served resources, safe to share between the server's threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._connect()
        self._db.executescript(_SCHEMA)
        self._read_lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="fhir-store-writer", daemon=True)
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def close(self) -> None:
        self._jobs.put(None)
        self._writer.join(timeout=WRITE_TIMEOUT)
        with self._read_lock:
            self._db.close()

    # ------------------------------------------------------------------ writes
    def _write_loop(self) -> None:
        db = self._connect()
        try:
            while (job := self._jobs.get()) is not None:
                jobs = [job]
                while True:  # group commit: take everything that is already waiting
                    try:
                        nxt = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._jobs.put(None)
                        break
                    jobs.append(nxt)
                self._commit(db, jobs)
        finally:
            db.close()

    @staticmethod
    def _commit(db: sqlite3.Connection, jobs: list[_Job]) -> None:
        """One transaction for the group; a job that fails (e.g. a duplicate id) fails alone."""
        db.execute("BEGIN IMMEDIATE")
        outcomes: list[BaseException | None] = []
        for rows, _ in jobs:
            db.execute("SAVEPOINT job")
            try:
                db.executemany(_INSERT, rows)
                db.execute("RELEASE job")
                outcomes.append(None)
            except sqlite3.Error as exc:
                db.execute("ROLLBACK TO job")
                db.execute("RELEASE job")
                outcomes.append(exc)
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:  # nothing of the group is durable
            db.execute("ROLLBACK")
            outcomes = [exc] * len(jobs)
        for (_, fut), err in zip(jobs, outcomes, strict=True):
            if err is None:
                fut.set_result(None)
            else:
                fut.set_exception(err)

    def submit(self, items: list[tuple[dict[str, Any], str | None, str]]) -> Future[None]:
        """Queue ``(resource, subject, recorded)`` rows as one all-or-none job; the future
        completes when they are durable."""
        fut: Future[None] = Future()
        self._jobs.put(([_row(r, s, rec) for r, s, rec in items], fut))
        return fut

    def add(self, resource: dict[str, Any], *, subject: str | None, recorded: str) -> None:
        """Store ``resource`` durably (blocking); a duplicate id is refused."""
        self.submit([(resource, subject, recorded)]).result(timeout=WRITE_TIMEOUT)

    def add_many(self, items: list[tuple[dict[str, Any], str | None, str]]) -> None:
        """Store several ``(resource, subject, recorded)`` in one transaction: all or none."""
        self.submit(items).result(timeout=WRITE_TIMEOUT)

    async def add_async(self, items: list[tuple[dict[str, Any], str | None, str]]) -> None:
        """:meth:`add_many` for the event loop: awaits durability without blocking other requests."""
        await asyncio.wait_for(asyncio.wrap_future(self.submit(items)), WRITE_TIMEOUT)

    # ------------------------------------------------------------------- reads
    def get(self, type_: str, id_: str) -> dict[str, Any] | None:
        with self._read_lock:
            row = self._db.execute("SELECT json FROM resources WHERE type = ? AND id = ?",
                                   (type_, id_)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def search(self, type_: str, subject: str | None = None,
               count: int = 100) -> tuple[int, list[dict[str, Any]]]:
        """(total matches, newest ``count`` of them) of one type, optionally for one subject."""
        where, args = "type = ?", [type_]
        if subject is not None:
            where, args = where + " AND subject = ?", [*args, subject]
        with self._read_lock:
            total = int(self._db.execute(f"SELECT COUNT(*) FROM resources WHERE {where}", args).fetchone()[0])
            rows = self._db.execute(f"SELECT json FROM resources WHERE {where} ORDER BY seq DESC LIMIT ?",
                                    [*args, count]).fetchall()
        return total, [dict(orjson.loads(r[0])) for r in rows]

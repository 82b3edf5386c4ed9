"""Revoked bearer tokens: a deny-list of token ids (``jti``, RFC 7519 §4.1.7) in the workspace.

``fedprog token revoke JTI`` adds an id; every server process consults the list on every
request (:class:`device.fhir.auth.TokenVerifier`), so a revocation takes effect on the next
request without a restart. The list lives in SQLite (``<workspace>/keys/revoked-tokens.sqlite``,
WAL) so that the command and every uvicorn worker see the same rows; an id is kept for good
(tokens live at most 8 h, so the list only grows by what operators revoke).
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

_SCHEMA = """CREATE TABLE IF NOT EXISTS revoked (jti TEXT PRIMARY KEY, revoked_at TEXT NOT NULL,
                                                reason TEXT NOT NULL DEFAULT '')"""
#: longest token id accepted (ours are 32 hex digits)
MAX_JTI = 256


def denylist_path(workspace_root: Path) -> Path:
    """Where a workspace keeps its revoked token ids: ``<workspace>/keys/revoked-tokens.sqlite``."""
    return Path(workspace_root) / "keys" / "revoked-tokens.sqlite"


class TokenDenyList:
    """Token ids that must no longer be accepted (thread-safe; one connection per instance)."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def revoke(self, jti: str, reason: str = "") -> bool:
        """Deny ``jti`` from now on; False when it already was. ``ValueError`` for an empty,
        over-long or unprintable id."""
        if not jti or len(jti) > MAX_JTI or not jti.isprintable() or jti.strip() != jti:
            raise ValueError(f"not a token id (jti): want 1..{MAX_JTI} printable characters, as "
                             "`fedprog token --json` prints it")
        stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO revoked VALUES (?, ?, ?)", (jti, stamp, reason))
        return cur.rowcount == 1

    def is_revoked(self, jti: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM revoked WHERE jti = ?", (jti,)).fetchone() is not None

    def revoked(self) -> list[tuple[str, str, str]]:
        """``(jti, revoked_at, reason)`` of every revoked token, oldest first."""
        with self._lock:
            return list(self._db.execute("SELECT jti, revoked_at, reason FROM revoked ORDER BY revoked_at"))

"""Canonical JSON and the sealing hash every fedprog record uses (artifacts, ledger bodies).

Canonical form: sorted keys, no whitespace, UTF-8 (not ASCII-escaped), finite numbers only —
so the same content always gives the same bytes and the same SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON bytes; ``ValueError`` for NaN or infinities."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def sealed_sha256(record: dict[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of ``record`` without its ``sha256`` field."""
    return hashlib.sha256(canonical_json({k: v for k, v in record.items() if k != "sha256"})).hexdigest()

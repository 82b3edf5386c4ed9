"""The log's small records: receipts, verification reports, raw snapshots, and transactions."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from . import merkle
from .leaves import Row


@dataclass(frozen=True)
class Receipt:
    """Proof that entry ``index`` is in the log of ``size`` entries with ``root``."""

    index: int
    kind: str
    leaf_hash: bytes
    size: int
    root: bytes
    proof: tuple[bytes, ...]

    def verify(self) -> None:
        """Raise :class:`ledger.merkle.InvalidProof` unless the receipt checks out."""
        merkle.verify_inclusion(self.leaf_hash, self.index, self.size, list(self.proof), self.root)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "leaf_hash": self.leaf_hash.hex(),
                "size": self.size, "root": self.root.hex(), "proof": [p.hex() for p in self.proof]}


@dataclass
class VerifyReport:
    """Outcome of :meth:`Ledger.verify`: ``ok`` when nothing is wrong."""

    size: int
    checkpoints: int
    problems: list[str]
    #: the latest checkpoint a quorum of pinned witnesses cosigned (:class:`ledger.anchors.Witnessed`)
    witnessed: Any = None

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Snapshot:
    """The raw cells of a ledger at one instant (:meth:`Ledger.snapshot`): ``rows`` as
    ``(index, kind, body text, stored leaf)``, ``checkpoints`` as ``(size, root, note)``, the root
    of the stored tree (None if it cannot be assembled) and the log key the file records."""

    rows: list[Row]
    checkpoints: list[tuple[int, bytes, str]]
    stored_root: bytes | None
    vkey: str | None


class Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` on an exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

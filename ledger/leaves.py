"""Leaves recomputed from entries: what every reader of the log trusts instead of stored hashes.

The adversary is someone with write access to ``ledger.sqlite`` (an insider, or malware on
the coordinator host) who does not hold the sites' witness keys. Such a writer can drop the
append-only triggers and change any cell: a ``kind``, a ``body``, a stored ``leaf`` hash, a
tree node. A reader therefore never takes an entry's meaning from its cells alone: it
recomputes the RFC 9162 §2.1.1 leaf hash ``SHA-256(0x00 || canonical({"kind", "body"}))``
from the kind and the body it is about to act on, refuses the entry unless that equals the
stored leaf, and recomputes the root (RFC 9162 §2.1.1 MTH) from those leaves — never from the
stored ``nodes``. The recomputed root is what gets compared with the witnessed checkpoint
(:mod:`ledger.trusted`), so a cell changed without its leaf is caught here, and a cell changed
*with* its leaf (and the tree rebuilt) is caught by the witnesses' cosigned root.

Pure functions over rows ``(idx, kind, body_text, stored_leaf)``; no SQLite here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import merkle
from .canonical import canonical_json

#: one stored entry as read: index, kind cell, body cell (canonical JSON text), stored leaf hash
Row = tuple[int, str, str, bytes]


def leaf_data(kind: str, body: Any) -> bytes:
    """The bytes a leaf commits to: the canonical JSON of ``{"kind", "body"}``."""
    return canonical_json({"kind": kind, "body": body})


def entry_leaf(kind: str, body_text: str) -> tuple[bytes, Any]:
    """RFC 9162 leaf hash of an entry from its kind and body cells, and the parsed body.

    ``ValueError`` when the body is not JSON (or holds NaN/infinities): such an entry has no
    leaf anyone could have signed.
    """
    body = json.loads(body_text)
    return merkle.leaf_hash(leaf_data(kind, body)), body


@dataclass(frozen=True)
class Recomputed:
    """Entries whose leaves were recomputed from their cells, in index order.

    ``entries`` holds ``(index, kind, body)`` of every entry, ``leaves`` the recomputed leaf
    hashes, ``problems`` one line per entry whose cells do not give its stored leaf (or whose
    index is out of sequence). Only when ``problems`` is empty may anyone act on ``entries``.
    """

    entries: tuple[tuple[int, str, Any], ...]
    leaves: tuple[bytes, ...]
    problems: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.leaves)

    def root(self, size: int | None = None) -> bytes:
        """RFC 9162 MTH of the first ``size`` recomputed leaves (default: all)."""
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise ValueError(f"size {n} is not in 0..{self.size}")
        return merkle.root(list(self.leaves[:n]))


def recompute(rows: Iterable[Row]) -> Recomputed:
    """Recompute every leaf from its ``kind`` and ``body`` cells and compare it with the stored one.

    Indices must run 0, 1, 2, … (a gap or a repeat is a problem: entries were deleted or
    reordered by hand). An entry whose cells do not reproduce its stored leaf is named; its
    *recomputed* leaf is kept, so the root computed from ``leaves`` is the root of what a
    reader would act on — the one that must match the witnessed checkpoint.
    """
    entries: list[tuple[int, str, Any]] = []
    leaves: list[bytes] = []
    problems: list[str] = []
    for idx, kind, body_text, stored in rows:
        if idx != len(leaves):
            problems.append(f"entry indices jump from {len(leaves) - 1} to {idx}")
        try:
            leaf, body = entry_leaf(str(kind), str(body_text))
        except ValueError:
            problems.append(f"entry {idx}: body is not canonical JSON")
            leaf, body = b"", None
        if leaf != bytes(stored):
            problems.append(f"entry {idx}: stored leaf hash does not match its body and kind "
                            f"{str(kind)[:40]!r}: the entry was edited")
        entries.append((int(idx), str(kind), body))
        leaves.append(leaf)
    return Recomputed(tuple(entries), tuple(leaves), tuple(problems))


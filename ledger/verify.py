"""Full verification of a ledger file: trust nothing stored, recompute everything.

Every leaf is recomputed from its entry's kind and body, every perfect subtree from its
children, every checkpoint's root from the recomputed leaves; every checkpoint signature
and cosignature is checked, and every two checkpoints must be consistent. This catches an
entry rewritten directly in the SQLite file even by someone who dropped the triggers.
"""

from __future__ import annotations

import json
from typing import Any

from . import merkle
from .checkpoint import CheckpointError, open_checkpoint
from .log import Ledger, LedgerError, VerifyReport, leaf_data


def verify_ledger(ledger: Ledger) -> VerifyReport:
    """Recompute the log from its entries and check it against every stored hash and note."""
    db = ledger._db  # noqa: SLF001 — verification reads storage directly, bypassing the API
    problems: list[str] = []
    leaves: list[bytes] = []
    for idx, kind, body, leaf in db.execute("SELECT idx, kind, body, leaf FROM entries ORDER BY idx"):
        if idx != len(leaves):
            problems.append(f"entry indices jump from {len(leaves) - 1} to {idx}")
        recomputed = _leaf(kind, body, idx, problems)
        if recomputed != bytes(leaf):
            problems.append(f"entry {idx}: stored leaf hash does not match its body")
        leaves.append(recomputed)
    problems += _check_nodes(ledger, leaves)
    checkpoints = ledger.checkpoints()
    problems += _check_checkpoints(ledger, leaves, checkpoints)
    return VerifyReport(size=len(leaves), checkpoints=len(checkpoints), problems=problems)


def _leaf(kind: str, body: str, idx: int, problems: list[str]) -> bytes:
    try:
        parsed: dict[str, Any] = json.loads(body)
    except json.JSONDecodeError:
        problems.append(f"entry {idx}: body is not JSON")
        return b""
    return merkle.leaf_hash(leaf_data(kind, parsed))


def _check_nodes(ledger: Ledger, leaves: list[bytes]) -> list[str]:
    problems = []
    level = leaves
    depth = 0
    stored = {(int(lv), int(i)): bytes(h) for lv, i, h in
              ledger._db.execute("SELECT level, idx, hash FROM nodes")}  # noqa: SLF001
    while level:
        for i, h in enumerate(level):
            if stored.get((depth, i)) != h:
                problems.append(f"tree node (level {depth}, index {i}) does not match the entries")
                break
        level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        depth += 1
    return problems


def _check_checkpoints(ledger: Ledger, leaves: list[bytes],
                       checkpoints: list[tuple[int, bytes, str]]) -> list[str]:
    problems = []
    try:
        verifier = ledger.verifier
    except LedgerError as exc:
        return [str(exc)] if checkpoints else []
    witnesses = ledger.witnesses()
    for size, root, note in checkpoints:
        if size > len(leaves):
            problems.append(f"checkpoint {size} is beyond the log's {len(leaves)} entries")
            continue
        try:
            cp, cosigned = open_checkpoint(note, verifier, witnesses)
        except CheckpointError as exc:
            problems.append(f"checkpoint {size}: {exc}")
            continue
        actual = merkle.root(leaves[:size])
        if cp.size != size or cp.root != root or root != actual:
            problems.append(f"checkpoint {size}: signed root {cp.root.hex()[:16]}… does not match the "
                            f"entries (recomputed {actual.hex()[:16]}…)")
    return problems

"""Full verification of a ledger file: trust nothing stored, recompute everything.

Every leaf is recomputed from its entry's kind and body (:mod:`ledger.leaves`), every perfect
subtree from its children, every checkpoint's root from the recomputed leaves; every checkpoint
signature and cosignature is checked, and every two checkpoints must be consistent. This
catches an entry rewritten directly in the SQLite file even by someone who dropped the triggers.

With :class:`~ledger.anchors.TrustAnchors` it also checks what the file cannot vouch for
itself (the adversary being someone with write access to ``ledger.sqlite`` — an insider, or
malware on the coordinator host — who is not the witnesses): that the log key is the pinned
one, that the latest checkpoint a quorum of the *pinned* witnesses cosigned has the recomputed
root, and that every site witness's last cosigned (size, root) is a prefix of the file. Each
problem names the anchor that disagreed, so a re-keyed rewrite, a truncation, a rollback, a
reordering or a fork is reported as such.
"""

from __future__ import annotations

from . import merkle
from .anchors import TrustAnchors, all_problems, short
from .checkpoint import CheckpointError, open_checkpoint
from .leaves import Recomputed, recompute
from .log import Ledger, LedgerError, VerifyReport


def verify_ledger(ledger: Ledger, anchors: TrustAnchors | None = None) -> VerifyReport:
    """Recompute the log from its entries and check it against every stored hash and note, and
    (given ``anchors``) against the pinned keys and the witnesses' own state."""
    states = anchors.load_states() if anchors is not None else None  # before the ledger: see all_problems
    snap = ledger.snapshot()
    recomputed = recompute(snap.rows)
    problems = list(recomputed.problems)
    leaves = list(recomputed.leaves)
    problems += _check_nodes(ledger, leaves)
    checkpoints = snap.checkpoints
    problems += _check_checkpoints(ledger, recomputed, checkpoints)
    witnessed = None
    if anchors is not None:
        witnessed, found = all_problems(recomputed, checkpoints, snap.vkey, anchors, states)
        problems += [p for p in found if p not in problems]
    return VerifyReport(size=len(leaves), checkpoints=len(checkpoints), problems=problems,
                        witnessed=witnessed)


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


def _check_checkpoints(ledger: Ledger, recomputed: Recomputed,
                       checkpoints: list[tuple[int, bytes, str]]) -> list[str]:
    """Every checkpoint under the file's own keys (what the file claims; the anchors decide)."""
    problems = []
    try:
        verifier = ledger.verifier
    except LedgerError as exc:
        return [str(exc)] if checkpoints else []
    witnesses = ledger.witnesses()
    for size, root, note in checkpoints:
        if size > recomputed.size:
            problems.append(f"checkpoint of size {size} is beyond the file's {recomputed.size} entries: "
                            "the log was truncated")
            continue
        try:
            cp, _ = open_checkpoint(note, verifier, witnesses)
        except CheckpointError as exc:
            problems.append(f"checkpoint {size}: {exc}")
            continue
        actual = recomputed.root(size)
        if cp.size != size or cp.root != root or root != actual:
            problems.append(f"checkpoint {size}: signed root {short(cp.root)} does not match the "
                            f"entries (recomputed {short(actual)})")
    return problems

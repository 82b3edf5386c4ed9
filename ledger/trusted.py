"""Reading the log as a reader that the file alone cannot fool, and witnessing the same way.

Adversary: someone with write access to ``ledger.sqlite`` (an insider, or malware on the
coordinator host) who is not the witnesses. They may edit a kind or a body cell, rebuild the
stored tree, truncate, reorder, or re-key the file and re-sign its checkpoints. Every reader
that acts on the log — the model registry, the consent registry's checkpoint roots, the FHIR
server's choice of model — goes through :func:`read_verified`, which

1. recomputes every leaf from the entry's kind and body (RFC 9162 §2.1.1) and refuses the log
   if one differs from its stored leaf (:mod:`ledger.leaves`);
2. recomputes the root from those leaves and refuses a stored tree that gives another one;
3. with :class:`~ledger.anchors.TrustAnchors` (keys pinned outside the file, the witnesses'
   own state files), refuses a re-keyed file, a latest quorum-cosigned checkpoint (C2SP
   tlog-cosignature) whose root the entries do not give, and a witness state the file does
   not extend (truncation, rollback, fork). Without anchors only the file's own checkpoints
   are checked (self-consistency: enough for tests, not against this adversary).

The verdict is cached by (:meth:`Ledger.change_mark`, the anchors' fingerprint), so a reader
that asks on every request pays one PRAGMA query while nothing changed. Entries appended after
the witnessed checkpoint are served (their leaves match); they are vouched for by the next one.

:class:`AuditingWitness` is a site witness that cosigns a checkpoint only when it recomputed the
same root from leaves that match their entries — never on the log's word.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .anchors import TrustAnchors, Witnessed, all_problems, checkpoint_problems, short
from .checkpoint import CheckpointError, NoteSignature, NoteSigner, NoteVerifier, open_checkpoint
from .leaves import Recomputed, recompute
from .log import Ledger, LedgerError
from .witness import QuorumPolicy, Witness


class UntrustedLedger(LedgerError):
    """The ledger file fails its check against its own entries or the trust anchors.

    ``problems`` lists every disagreement, each naming the entry or the anchor.
    """

    def __init__(self, path: object, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        extra = len(self.problems) - 1
        more = f" (and {extra} more: run fedprog ledger verify)" if extra else ""
        super().__init__(f"ledger {path} fails its check: {self.problems[0]}{more}")


@dataclass(frozen=True)
class VerifiedLog:
    """A log whose leaves were recomputed and whose root was checked against the anchors."""

    recomputed: Recomputed
    witnessed: Witnessed | None

    @property
    def size(self) -> int:
        return self.recomputed.size

    @property
    def root(self) -> bytes:
        return self.recomputed.root()

    def root_at(self, size: int) -> bytes:
        return self.recomputed.root(size)

    def entries(self, kind: str | None = None) -> list[tuple[int, str, Any]]:
        """``(index, kind, body)`` of every entry (of ``kind``), as recomputed."""
        return [e for e in self.recomputed.entries if kind is None or e[1] == kind]

    def entry(self, index: int) -> tuple[str, Any]:
        if not 0 <= index < self.size:
            raise LedgerError(f"no entry {index} (size {self.size})")
        _, kind, body = self.recomputed.entries[index]
        return kind, body


@dataclass(frozen=True)
class Audit:
    """Everything wrong with a ledger file (empty ``problems``: it passes)."""

    log: VerifiedLog
    problems: list[str]


def audit(ledger: Ledger, anchors: TrustAnchors | None = None) -> Audit:
    """Recompute the log and compare it with its stored tree, its checkpoints and the anchors
    (the witnesses' states are read first, then the ledger in one transaction)."""
    states = anchors.load_states() if anchors is not None else None
    snap = ledger.snapshot()
    recomputed = recompute(snap.rows)
    problems = list(recomputed.problems)
    if recomputed.size and snap.stored_root != recomputed.root():
        problems.append("the stored tree nodes do not give the root of the entries")
    checkpoints = snap.checkpoints
    if anchors is not None:
        witnessed, found = all_problems(recomputed, checkpoints, snap.vkey, anchors, states)
    else:
        witnessed, found = None, _self_check(ledger, recomputed, checkpoints)
    return Audit(VerifiedLog(recomputed, witnessed), problems + found)


def _self_check(ledger: Ledger, recomputed: Recomputed,
                checkpoints: list[tuple[int, bytes, str]]) -> list[str]:
    """Without anchors: the file's newest checkpoint must be signed by the file's key and match."""
    if not checkpoints:
        return []
    try:
        verifier = ledger.verifier
        witnesses = ledger.witnesses()
        policy = QuorumPolicy(witnesses, log_verifier=verifier) if witnesses else None
    except (LedgerError, CheckpointError, ValueError) as exc:
        return [f"the file's own keys are unusable: {exc}"]
    if policy is None:
        return _unsigned_newest(recomputed, checkpoints, verifier)
    return checkpoint_problems(recomputed, checkpoints, policy, "the file")[1]


def _unsigned_newest(recomputed: Recomputed, checkpoints: list[tuple[int, bytes, str]],
                     verifier: NoteVerifier) -> list[str]:
    size, _, note = checkpoints[-1]
    try:
        cp, _ = open_checkpoint(note, verifier)
    except CheckpointError as exc:
        return [f"checkpoint {size}: {exc}"]
    if cp.size > recomputed.size:
        return [f"checkpoint of size {cp.size} is beyond the file's {recomputed.size} entries"]
    if cp.root != recomputed.root(cp.size):
        return [f"checkpoint {cp.size} has root {short(cp.root)}, the file's entries give "
                f"{short(recomputed.root(cp.size))}"]
    return []


_cache: weakref.WeakKeyDictionary[Ledger, tuple[object, VerifiedLog | UntrustedLedger]] = \
    weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def read_verified(ledger: Ledger, anchors: TrustAnchors | None = None, *, fresh: bool = False) -> VerifiedLog:
    """The log, only if it passes :func:`audit`; else :class:`UntrustedLedger` naming why.

    The verdict (either way) is cached by the ledger's change mark and the anchors'
    fingerprint, so asking again while nothing changed costs one query; ``fresh`` recomputes
    regardless (the periodic check of a long-running server).
    """
    key = (ledger.change_mark(), None if anchors is None else anchors.fingerprint())
    with _cache_lock:
        hit = _cache.get(ledger)
    if hit is None or hit[0] != key or fresh:
        result = audit(ledger, anchors)
        verdict = UntrustedLedger(ledger.path, result.problems) if result.problems else result.log
        with _cache_lock:
            _cache[ledger] = (key, verdict)
        hit = (key, verdict)
    if isinstance(hit[1], UntrustedLedger):
        raise UntrustedLedger(ledger.path, hit[1].problems)
    return hit[1]


class AuditingWitness(Witness):
    """A site witness that recomputes before it cosigns (C2SP tlog-witness, plus a full audit).

    :meth:`Witness.cosign` checks the log's signature and a consistency proof against the last
    checkpoint it cosigned. That alone would vouch for a root the log computed from tampered
    storage (issue 16, H2: a kind cell edited, the stored tree untouched). This witness first
    recomputes the root at the checkpoint's size from the entries of ``ledger`` — every leaf
    from its kind and body, every one matching its stored leaf — and refuses (CheckpointError,
    its state unchanged) unless it equals the root in the note.
    """

    def __init__(self, name: str, signer: NoteSigner, log_verifier: NoteVerifier,
                 state_path: str | os.PathLike[str], ledger: Ledger, **kw: Any) -> None:
        super().__init__(name, signer, log_verifier, state_path, **kw)
        self.ledger = ledger

    def cosign(self, note: str, proof: Sequence[bytes] = ()) -> NoteSignature:
        claimed, _ = open_checkpoint(note, self.log_verifier)  # signed-note: verify before reading
        recomputed = recompute(self.ledger.rows()[:claimed.size])
        if recomputed.problems:
            raise CheckpointError(f"witness {self.name} refuses to cosign: {recomputed.problems[0]}")
        if recomputed.size != claimed.size:
            raise CheckpointError(f"witness {self.name} refuses to cosign: the checkpoint claims "
                                  f"{claimed.size} entries, the ledger has {recomputed.size}")
        if recomputed.root() != claimed.root:
            raise CheckpointError(f"witness {self.name} refuses to cosign: the checkpoint's root "
                                  f"{short(claimed.root)} is not the root {short(recomputed.root())} "
                                  "recomputed from the entries")
        return super().cosign(note, proof)

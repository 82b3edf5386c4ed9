"""Site witnesses: every hospital cosigns the log's checkpoints only if the log stayed append-only.

A transparency log can lie by showing different sites different histories (a split view) or
by rewriting its past. Each site therefore runs a :class:`Witness` that remembers the last
checkpoint it cosigned and cosigns a new one only when an RFC 9162 consistency proof shows the
new tree extends the old one (C2SP tlog-witness semantics, https://c2sp.org/tlog-witness; the
cosignature is C2SP tlog-cosignature/v1, see :mod:`ledger.checkpoint`). A client accepts a
checkpoint only with cosignatures from a quorum of sites (:class:`QuorumPolicy`), so a split
view must fool a majority of hospitals at once.

When the witness sees two log-signed checkpoints that cannot both be true (a smaller size, the
same size with another root, or a consistency proof that does not verify) it raises
:class:`ForkDetected` and persists the evidence (both checkpoints, the proof). From then on it
refuses to cosign anything, in this and every later process, until an operator investigates:
a log that forked once cannot be vouched for by simply moving on. This is deliberately strict:
only log-signed checkpoints reach the check, but a replayed *old* checkpoint or a proof
corrupted in transit also stops the witness (the persisted evidence lets an operator tell a
real split view from a faulty relay before resetting the state file).

State is one small JSON file owned by the witness, replaced atomically (temporary file in the
same directory, fsync, ``os.replace``), so a crash leaves either the old or the new state and
never a torn one. A missing file is a fresh witness (size 0, trust on first use); a corrupt
file is an error, never silently a fresh start.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from pathlib import Path
from typing import Any

from . import merkle
from .checkpoint import (
    HASH_SIZE,
    Checkpoint,
    CheckpointError,
    CosignatureSigner,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    format_note,
    open_checkpoint,
    parse_note,
)
from .files import write_json_atomic

__all__ = [
    "STATE_FORMAT",
    "ForkDetected",
    "ForkEvidence",
    "QuorumNotMet",
    "QuorumPolicy",
    "Witness",
    "WitnessState",
    "WitnessStateError",
    "fork_reason",
    "load_state",
    "save_state",
]

STATE_FORMAT = "fedprog-witness-state/v1"


class ForkDetected(ValueError):
    """The log showed two checkpoints that cannot both be true; ``evidence`` holds both."""

    def __init__(self, message: str, evidence: ForkEvidence | None = None) -> None:
        super().__init__(message)
        self.evidence = evidence


class WitnessStateError(ValueError):
    """The witness state file is unreadable or malformed (never treated as a fresh witness)."""


class QuorumNotMet(CheckpointError):
    """A checkpoint lacks the cosignatures its :class:`QuorumPolicy` requires."""


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class ForkEvidence:
    """Why the witness stopped: the last cosigned and the offending checkpoint, and the proof.

    The notes keep the log's own signatures, so together they prove the log signed both.
    """

    reason: str
    old_size: int
    old_root: bytes | None
    old_note: str | None
    new_size: int
    new_root: bytes
    new_note: str
    proof: tuple[bytes, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "old": {"size": self.old_size, "root": _hex(self.old_root), "note": self.old_note},
            "new": {"size": self.new_size, "root": self.new_root.hex(), "note": self.new_note},
            "proof": [p.hex() for p in self.proof],
        }

    @classmethod
    def from_json(cls, data: Any) -> ForkEvidence:
        obj = _object(data, "fork")
        old, new = _object(obj.get("old"), "fork.old"), _object(obj.get("new"), "fork.new")
        proof = obj.get("proof")
        if not isinstance(proof, list):
            raise WitnessStateError("fork.proof must be a list")
        new_root = _unhex(new.get("root"), "fork.new.root")
        if new_root is None:
            raise WitnessStateError("fork.new.root is missing")
        return cls(
            reason=_str(obj.get("reason"), "fork.reason"),
            old_size=_size(old.get("size"), "fork.old.size"),
            old_root=_unhex(old.get("root"), "fork.old.root"),
            old_note=_opt_str(old.get("note"), "fork.old.note"),
            new_size=_size(new.get("size"), "fork.new.size"),
            new_root=new_root,
            new_note=_str(new.get("note"), "fork.new.note"),
            proof=tuple(_unhex(p, "fork.proof[]") or b"" for p in proof),
        )


@dataclass(frozen=True)
class WitnessState:
    """What a witness remembers: the last cosigned checkpoint, and a fork if it saw one.

    ``root`` is None only for a fresh witness that has cosigned nothing yet.
    """

    origin: str | None = None
    size: int = 0
    root: bytes | None = None
    note: str | None = None
    fork: ForkEvidence | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "origin": self.origin,
            "size": self.size,
            "root": _hex(self.root),
            "note": self.note,
            "fork": None if self.fork is None else self.fork.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> WitnessState:
        obj = _object(data, "state")
        if obj.get("format") != STATE_FORMAT:
            raise WitnessStateError(f"state format is {obj.get('format')!r}, expected {STATE_FORMAT!r}")
        state = cls(
            origin=_opt_str(obj.get("origin"), "origin"),
            size=_size(obj.get("size"), "size"),
            root=_unhex(obj.get("root"), "root"),
            note=_opt_str(obj.get("note"), "note"),
            fork=None if obj.get("fork") is None else ForkEvidence.from_json(obj["fork"]),
        )
        if state.root is None and (state.size or state.origin is not None):
            raise WitnessStateError("state has a size or origin but no root")
        if state.root is not None and len(state.root) != HASH_SIZE:
            raise WitnessStateError(f"state root is {len(state.root)} bytes")
        return state


def load_state(path: str | os.PathLike[str]) -> WitnessState:
    """Read the state file; a missing file is a fresh witness, a corrupt one is an error."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return WitnessState()
    except (OSError, UnicodeDecodeError) as exc:
        raise WitnessStateError(f"cannot read witness state {path}: {exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise WitnessStateError(f"witness state {path} is not JSON: {exc}") from None
    return WitnessState.from_json(data)


def save_state(path: str | os.PathLike[str], state: WitnessState) -> None:
    """Write the state atomically (:func:`ledger.files.write_json_atomic`)."""
    write_json_atomic(path, state.to_json())


# --------------------------------------------------------------------------- the check


def fork_reason(state: WitnessState, new: Checkpoint, proof: Sequence[bytes]) -> str | None:
    """Why ``new`` cannot follow the last cosigned checkpoint, or None if it may be cosigned.

    A fresh witness accepts any first checkpoint (trust on first use). A smaller size is a
    rollback; the same size must have the same root; a larger size needs an RFC 9162
    consistency proof from the old tree (none is needed from the empty tree).
    """
    if state.root is None:
        return None
    if new.size < state.size:
        return f"rollback: size {new.size} is smaller than the cosigned size {state.size}"
    if new.size == state.size:
        return None if new.root == state.root else f"two different roots for size {new.size}"
    if state.size == 0:
        return None
    try:
        merkle.verify_consistency(state.size, new.size, list(proof), state.root, new.root)
    except merkle.InvalidProof as exc:  # also raised for malformed proofs (wrong length, not bytes)
        return f"consistency proof from size {state.size} to {new.size} does not verify ({exc})"
    return None


# --------------------------------------------------------------------------- the witness


class Witness:
    """One site's witness of the log.

    Parameters
    ----------
    name : str
        The witness's key name (must equal ``signer.name``), e.g. ``"site-a.fedprog/witness"``.
    signer : NoteSigner
        The witness key; a :class:`~ledger.checkpoint.CosignatureSigner` yields C2SP
        tlog-cosignature/v1 cosignatures (recommended), a plain NoteSigner plain note signatures.
    log_verifier : NoteVerifier
        The log's public key: notes without its valid signature are refused (CheckpointError).
    state_path : path
        The JSON state file this witness owns (created on the first cosignature).
    origin : str, optional
        Pin the log's origin line; by default the origin of the first cosigned checkpoint.
    clock : callable, optional
        POSIX seconds for cosignature timestamps (default: the system clock).
    """

    def __init__(self, name: str, signer: NoteSigner, log_verifier: NoteVerifier,
                 state_path: str | os.PathLike[str], *, origin: str | None = None,
                 clock: Callable[[], int] | None = None) -> None:
        if signer.name != name:
            raise ValueError(f"witness name {name!r} differs from its key name {signer.name!r}")
        if signer.public_key == log_verifier.public_key:
            raise ValueError("a witness must not use the log's own key")
        self.name = name
        self.signer = signer
        self.log_verifier = log_verifier
        self.state_path = Path(state_path)
        self._clock = clock or (lambda: int(time.time()))
        self.state = load_state(self.state_path)
        if origin is not None and self.state.origin not in (None, origin):
            raise WitnessStateError(f"state {self.state_path} is for origin {self.state.origin!r}, "
                                    f"not {origin!r}")
        self.origin = origin if origin is not None else self.state.origin

    @property
    def verifier(self) -> NoteVerifier:
        """The public key clients use to check this witness's cosignatures."""
        return self.signer.verifier()

    @property
    def forked(self) -> bool:
        return self.state.fork is not None

    def cosign(self, note: str, proof: Sequence[bytes] = ()) -> NoteSignature:
        """Cosign the checkpoint ``note`` if it extends the last cosigned one (``proof`` shows it).

        Raises ForkDetected (and persists the evidence) on a rollback, a second root for a
        size, or a consistency proof that fails; refuses with ForkDetected forever after.
        Raises CheckpointError, leaving the state unchanged, when the note is malformed, lacks
        a valid log signature, or names another origin.
        """
        if self.state.fork is not None:
            raise ForkDetected(f"witness refuses to cosign after a detected fork: {self.state.fork.reason}",
                               self.state.fork)
        checkpoint, _ = open_checkpoint(note, self.log_verifier)
        if self.origin is not None and checkpoint.origin != self.origin:
            raise CheckpointError(f"checkpoint origin {checkpoint.origin!r} is not the witnessed log "
                                  f"{self.origin!r}")
        log_note = self._log_note(note)
        reason = fork_reason(self.state, checkpoint, proof)
        if reason is not None:
            raise self._record_fork(reason, checkpoint, log_note, proof)
        if self.state.root is None or checkpoint.size != self.state.size:
            self._save(WitnessState(origin=checkpoint.origin, size=checkpoint.size, root=checkpoint.root,
                                    note=log_note))
        self.origin = checkpoint.origin
        text = checkpoint.body()
        if isinstance(self.signer, CosignatureSigner):
            return self.signer.sign(text, timestamp=self._clock())
        return self.signer.sign(text)

    def _log_note(self, note: str) -> str:
        """The note with only the log's signatures: the evidence kept in the state file."""
        text, signatures = parse_note(note)
        return format_note(text, [sig for sig in signatures if self.log_verifier.matches(sig)])

    def _record_fork(self, reason: str, new: Checkpoint, new_note: str,
                     proof: Sequence[bytes]) -> ForkDetected:
        old = self.state
        evidence = ForkEvidence(reason=reason, old_size=old.size, old_root=old.root, old_note=old.note,
                                new_size=new.size, new_root=new.root, new_note=new_note,
                                proof=tuple(bytes(p) for p in proof))
        self._save(replace(old, fork=evidence))
        return ForkDetected(
            f"fork detected in log {new.origin!r}: {reason}; last cosigned (size {old.size}, root "
            f"{_hex(old.root)}), new (size {new.size}, root {new.root.hex()})", evidence)

    def _save(self, state: WitnessState) -> None:
        save_state(self.state_path, state)
        self.state = state

    def __repr__(self) -> str:
        return f"Witness(name={self.name!r}, size={self.state.size}, forked={self.forked})"


# --------------------------------------------------------------------------- quorum


@dataclass
class QuorumPolicy:
    """Which witnesses a client trusts, and how many must cosign a checkpoint.

    ``threshold`` defaults to a strict majority (``n // 2 + 1``). ``log_verifier`` (keyword)
    is the log's key, needed to open the checkpoint; ``origin`` (keyword) optionally pins it.
    The log's key may not double as a witness, nor one key serve two witnesses, otherwise one
    party could reach the quorum alone.
    """

    witnesses: Mapping[str, NoteVerifier]
    threshold: int | None = None
    _: KW_ONLY
    log_verifier: NoteVerifier
    origin: str | None = field(default=None)

    def __post_init__(self) -> None:
        n = len(self.witnesses)
        if n == 0:
            raise ValueError("a quorum policy needs at least one witness")
        if self.threshold is not None and not 1 <= self.threshold <= n:
            raise ValueError(f"threshold {self.threshold} is not in 1..{n}")
        keys = [v.public_key for v in self.witnesses.values()]
        if len(set(keys)) != n:
            raise ValueError("two witnesses share a public key")
        if self.log_verifier.public_key in keys:
            raise ValueError("the log's key cannot count as a witness")

    @property
    def required(self) -> int:
        """The number of valid witness cosignatures needed."""
        return self.threshold if self.threshold is not None else len(self.witnesses) // 2 + 1

    def cosigners(self, note: str) -> tuple[Checkpoint, set[str]]:
        """Open ``note`` (log signature required) and return the witnesses that validly cosigned."""
        return open_checkpoint(note, self.log_verifier, self.witnesses, origin=self.origin)

    def counts(self, note: str) -> bool:
        """Whether ``note`` carries at least ``required`` valid witness cosignatures.

        CheckpointError if the log signature is missing or bad, or a known witness's
        cosignature does not verify.
        """
        return len(self.cosigners(note)[1]) >= self.required

    def missing(self, note: str) -> list[str]:
        """The witnesses (sorted) without a valid cosignature on ``note``."""
        cosigned = self.cosigners(note)[1]
        return sorted(name for name in self.witnesses if name not in cosigned)

    def require(self, note: str) -> Checkpoint:
        """The checkpoint, or QuorumNotMet naming the witnesses that have not cosigned."""
        checkpoint, cosigned = self.cosigners(note)
        if len(cosigned) < self.required:
            missing = sorted(name for name in self.witnesses if name not in cosigned)
            raise QuorumNotMet(f"checkpoint of size {checkpoint.size} has {len(cosigned)} of the "
                               f"{self.required} required cosignatures (missing: {', '.join(missing)})")
        return checkpoint


# --------------------------------------------------------------------------- JSON helpers


def _hex(data: bytes | None) -> str | None:
    return None if data is None else data.hex()


def _unhex(value: Any, what: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise WitnessStateError(f"{what} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise WitnessStateError(f"{what} is not hex") from None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WitnessStateError(f"{what} must be a JSON object")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise WitnessStateError(f"{what} must be a string")
    return value


def _opt_str(value: Any, what: str) -> str | None:
    return None if value is None else _str(value, what)


def _size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WitnessStateError(f"{what} must be a non-negative integer")
    return value

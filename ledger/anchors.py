"""Trust anchors kept outside ``ledger.sqlite``, and the checks of a recomputed log against them.

Adversary: someone with write access to ``ledger.sqlite`` (an insider, or malware on the
coordinator host) who is not the witnesses — who cannot sign with a site witness's key, nor
write a site's ``witness.json``. Anything such a writer controls cannot vouch for the log: not
the log key or witness keys recorded in the file's ``meta``, not its checkpoints' cosigners as
counted with those keys. What can vouch for it (C2SP tlog-witness, https://c2sp.org/tlog-witness;
RFC 9162 §8.2 on split views) is:

* the **pinned keys**: the log's checkpoint key and each site witness's cosignature key, pinned
  in the workspace's configuration (``workspace.json``) when the workspace was created;
* each **witness's own state** (``sites/<name>/witness.json``): the last (size, root) that
  witness cosigned after checking a consistency proof. A file with fewer entries was truncated
  or rolled back; a file whose entries give another root at that size was rewritten (a fork).

The functions here are pure: they compare a :class:`~ledger.leaves.Recomputed` log (leaves
recomputed from the entries' cells) with the checkpoints found in the file and with those
anchors, and return one line per disagreement naming the anchor that disagreed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, NoteVerifier
from .leaves import Recomputed
from .witness import QuorumPolicy, WitnessState, WitnessStateError, load_state

#: a stored checkpoint: (size, root, signed note)
StoredCheckpoint = tuple[int, bytes, str]


@dataclass(frozen=True)
class TrustAnchors:
    """What a reader trusts instead of the file: pinned keys and the witnesses' state files.

    ``log_vkey`` and ``witnesses`` (site name → cosignature vkey) are signed-note verifier keys
    pinned in ``source`` (e.g. ``"workspace.json"``); ``threshold`` is the quorum (default a
    strict majority); ``states`` maps a site to its witness state file.
    """

    log_vkey: str
    witnesses: Mapping[str, str]
    threshold: int | None = None
    origin: str | None = None
    states: Mapping[str, Path] = field(default_factory=dict)
    source: str = "workspace.json"

    def log_verifier(self) -> NoteVerifier:
        return NoteVerifier.from_vkey(self.log_vkey)

    def quorum(self) -> QuorumPolicy:
        """The quorum of the pinned witnesses over the pinned log key."""
        return QuorumPolicy({site: NoteVerifier.from_vkey(v) for site, v in self.witnesses.items()},
                            self.threshold, log_verifier=self.log_verifier(), origin=self.origin)

    def load_states(self) -> tuple[dict[str, WitnessState], list[str]]:
        """Every site's witness state, and one problem per state file that cannot be read."""
        states, problems = {}, []
        for site, path in sorted(self.states.items()):
            try:
                states[site] = load_state(path)
            except WitnessStateError as exc:
                problems.append(f"{site}'s witness state cannot be read: {exc}")
        return states, problems

    def fingerprint(self) -> tuple[object, ...]:
        """Changes whenever an anchor may have changed (for caching a verdict)."""
        stats: list[tuple[str, int | None, int | None, int | None]] = []
        for site, path in sorted(self.states.items()):
            try:
                st = os.stat(path)
                stats.append((site, st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                stats.append((site, None, None, None))
        return (self.log_vkey, tuple(sorted(self.witnesses.items())), self.threshold, self.origin,
                tuple(stats))


def from_manifest(root: Path, manifest: Mapping[str, Any], source: str = "workspace.json") -> TrustAnchors:
    """The anchors pinned in a workspace manifest's ``trust`` block (``log``, ``witnesses``, ``quorum``),
    each witness's state file under ``root/sites/<name>/witness.json``: read only, nothing is pinned."""
    trust = manifest.get("trust") or {}
    if "log" not in trust:
        raise ValueError(f"{source}: no pinned log key (trust.log)")
    witnesses = dict(trust.get("witnesses") or {})
    return TrustAnchors(log_vkey=trust["log"], witnesses=witnesses, threshold=trust.get("quorum"),
                        origin=manifest.get("origin"), source=source,
                        states={site: Path(root) / "sites" / site / "witness.json" for site in witnesses})


@dataclass(frozen=True)
class Witnessed:
    """The latest checkpoint in the file that a quorum of trusted witnesses cosigned."""

    size: int
    root: bytes
    cosigners: tuple[str, ...]


def short(h: bytes | None) -> str:
    """The first 16 hex digits of a hash, for messages."""
    return "none" if h is None else h.hex()[:16] + "…"


def key_problems(file_vkey: str | None, anchors: TrustAnchors) -> list[str]:
    """The file's recorded log key must be the pinned one (a re-keyed rewrite changes it)."""
    if file_vkey is None or file_vkey == anchors.log_vkey:
        return []
    return [f"the log key differs from the one pinned in {anchors.source}: the file records "
            f"{file_vkey.split('+')[0]} ({file_vkey.split('+')[1] if '+' in file_vkey else '?'}), "
            f"{anchors.source} pins {anchors.log_vkey.split('+')[0]} ({anchors.log_vkey.split('+')[1]}): "
            "the log was re-keyed"]


def _roots(recomputed: Recomputed) -> Callable[[int], bytes]:
    cache: dict[int, bytes] = {}

    def root_at(size: int) -> bytes:
        if size not in cache:
            cache[size] = recomputed.root(size)
        return cache[size]

    return root_at


def checkpoint_problems(recomputed: Recomputed, checkpoints: Sequence[StoredCheckpoint],
                        policy: QuorumPolicy | None, source: str,
                        root_at: Callable[[int], bytes] | None = None) -> tuple[Witnessed | None, list[str]]:
    """Find the latest checkpoint a quorum cosigned and check the recomputed root against it.

    Walks the file's checkpoints from the newest: each must lie within the file and open under
    the trusted log key; the newest and the latest quorum-cosigned one (``policy``; None: no
    quorum is checked) must have the root recomputed from the entries. RFC 9162 §2.1.4
    consistency between older checkpoints is what the witnesses checked before cosigning.
    """
    root_at = root_at or _roots(recomputed)
    problems: list[str] = []
    witnessed: Witnessed | None = None
    newest = True
    for size, stored_root, note in sorted(checkpoints, reverse=True):
        if size > recomputed.size:
            problems.append(f"checkpoint of size {size} is beyond the file's {recomputed.size} entries: "
                            "the log was truncated")
            continue
        if policy is None:
            cosigners: set[str] = set()
            cp_root = stored_root
        else:
            try:
                cp, cosigners = policy.cosigners(note)
            except CheckpointError as exc:
                problems.append(f"checkpoint {size} does not open under the keys pinned in {source}: {exc}")
                continue
            if cp.size != size or cp.root != stored_root:
                problems.append(f"checkpoint {size}: its signed note does not match its row")
                continue
            cp_root = cp.root
        quorum = policy is not None and len(cosigners) >= policy.required
        if (newest or quorum) and cp_root != root_at(size):
            who = f"cosigned by {', '.join(sorted(cosigners))}" if quorum else "signed by the log"
            problems.append(f"checkpoint {size} ({who}) has root {short(cp_root)}, the file's entries "
                            f"give {short(root_at(size))}: the entries were rewritten")
        newest = False
        if quorum:
            witnessed = Witnessed(size, cp_root, tuple(sorted(cosigners)))
            break
    if policy is not None and witnessed is None and checkpoints:
        problems.append(f"no checkpoint in the file carries cosignatures of a quorum ({policy.required} of "
                        f"{len(policy.witnesses)}) of the witnesses pinned in {source}")
    return witnessed, problems


def state_problems(recomputed: Recomputed, states: Mapping[str, WitnessState],
                   root_at: Callable[[int], bytes] | None = None) -> list[str]:
    """Each site witness's last cosigned (size, root) must be a prefix of the recomputed log.

    A smaller file is a truncation or rollback; another root at that size a rewrite or fork; a
    witness that recorded a fork vouches for nothing until an operator investigates.
    """
    root_at = root_at or _roots(recomputed)
    problems = []
    for site, state in sorted(states.items()):
        if state.fork is not None:
            problems.append(f"{site}'s witness recorded a fork and stopped cosigning: {state.fork.reason}")
        if state.root is None:
            continue
        said = f"{site}'s witness cosigned size {state.size} root {short(state.root)}"
        if state.size > recomputed.size:
            problems.append(f"{said}, the file has {recomputed.size} entries: the log was truncated or "
                            "rolled back")
        elif root_at(state.size) != state.root:
            problems.append(f"{said}, the file's entries give root {short(root_at(state.size))} at that "
                            "size: the history was rewritten (a fork)")
    return problems


def all_problems(recomputed: Recomputed, checkpoints: Sequence[StoredCheckpoint], file_vkey: str | None,
                 anchors: TrustAnchors, states: tuple[Mapping[str, WitnessState], list[str]] | None = None
                 ) -> tuple[Witnessed | None, list[str]]:
    """Every disagreement of the recomputed log with the anchors (keys, quorum, witness states).

    ``states`` (from :meth:`TrustAnchors.load_states`) should be read *before* the ledger: a
    witness cosigns a size only once the file has it, so states read first never run ahead of
    an honest file that is still growing.
    """
    root_at = _roots(recomputed)
    problems = key_problems(file_vkey, anchors)
    try:
        policy = anchors.quorum() if anchors.witnesses else None  # no witness pinned: no quorum to ask
        anchors.log_verifier()
    except (CheckpointError, ValueError) as exc:
        return None, [*problems, f"the keys pinned in {anchors.source} are unusable: {exc}"]
    witnessed, found = checkpoint_problems(recomputed, checkpoints, policy, anchors.source, root_at)
    loaded, unreadable = states if states is not None else anchors.load_states()
    return witnessed, problems + found + unreadable + state_problems(recomputed, loaded, root_at)

"""The append-only log: typed entries in SQLite, an incremental RFC 9162 tree, proofs,
signed checkpoints.

Storage (``<workspace>/ledger.sqlite``, WAL, ``synchronous=FULL`` so a commit survives a
crash): ``entries`` (index, kind, canonical JSON body, leaf hash) and ``nodes`` (the hash
of every *perfect* subtree, level 0 being the leaves). Triggers refuse UPDATE and DELETE;
:meth:`Ledger.verify` does not trust them and recomputes everything from the bodies.

Appending leaf i adds one node per trailing one-bit of i + 1 (O(log n), no recompute);
roots and proofs for any size are assembled from O(log n) stored perfect subtrees
(:func:`ledger.merkle.inclusion_path` over :meth:`Ledger._range_hash`).
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import merkle
from .canonical import canonical_json
from .checkpoint import Checkpoint, NoteSigner, NoteVerifier, format_note, open_checkpoint, parse_note

ENTRY_KINDS = ("consent", "model", "validation", "release", "withdrawal", "revocation", "dossier",
               "training", "retrain-due")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL, leaf BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx));
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS nodes_no_update BEFORE UPDATE ON nodes
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS nodes_no_delete BEFORE DELETE ON nodes
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
"""


F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """Run a :class:`Ledger` method holding the ledger's lock (threads share one connection)."""

    @functools.wraps(method)
    def wrapper(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class LedgerError(ValueError):
    """Misuse of the log (unknown entry kind, index out of range, inconsistent checkpoint)."""


def canonical(obj: Any) -> str:
    """Canonical JSON text (:func:`ledger.canonical.canonical_json`)."""
    return canonical_json(obj).decode("utf-8")


def leaf_data(kind: str, body: dict[str, Any]) -> bytes:
    """The bytes a leaf commits to: the canonical JSON of ``{"kind", "body"}``."""
    return canonical({"kind": kind, "body": body}).encode("utf-8")


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

    @property
    def ok(self) -> bool:
        return not self.problems


class Ledger:
    """An append-only, signed transparency log in one SQLite file.

    Parameters
    ----------
    path : Path
        The SQLite file (created with its schema on first use).
    signer : NoteSigner, optional
        The log's checkpoint key; needed to sign checkpoints, not to read or verify.
    origin : str
        The checkpoint origin line (set once, at creation).
    """

    def __init__(self, path: Path, signer: NoteSigner | None = None, origin: str = "fedprog.local/ledger",
                 timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one connection shared by the sites' threads in-process; every use holds self._lock
        self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.signer = signer
        with self._tx():
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('origin', ?)", (origin,))
            if signer is not None:
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('vkey', ?)", (signer.verifier_key(),))
        self.origin = self._meta("origin")

    # ----------------------------------------------------------------- basics
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self) -> sqlite3.Connection:
        """A transaction (``with self._tx():``): BEGIN IMMEDIATE … COMMIT, or ROLLBACK."""
        return _Transaction(self._db)  # type: ignore[return-value]

    def _meta(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise LedgerError(f"ledger {self.path} has no {key!r}")
        return str(row[0])

    @property
    def verifier(self) -> NoteVerifier:
        """The log's public checkpoint key, as recorded in the ledger."""
        return NoteVerifier.from_vkey(self._meta("vkey"))

    @property
    @_locked
    def size(self) -> int:
        # the last index via the primary key: O(log n), unlike COUNT(*)
        row = self._db.execute("SELECT idx FROM entries ORDER BY idx DESC LIMIT 1").fetchone()
        return 0 if row is None else int(row[0]) + 1

    # ----------------------------------------------------------------- append
    def append(self, kind: str, body: dict[str, Any]) -> Receipt:
        """Append one entry durably (committed before returning) and return its receipt."""
        return self.append_many([(kind, body)])[0]

    @_locked
    def append_many(self, items: Iterable[tuple[str, dict[str, Any]]]) -> list[Receipt]:
        """Append entries in one transaction: all are stored, or none."""
        staged = []
        for kind, body in items:
            if kind not in ENTRY_KINDS:
                raise LedgerError(f"unknown entry kind {kind!r} (known: {', '.join(ENTRY_KINDS)})")
            staged.append((kind, canonical(body), merkle.leaf_hash(leaf_data(kind, body))))
        with self._tx():
            start = self.size
            for offset, (kind, text, leaf) in enumerate(staged):
                self._insert(start + offset, kind, text, leaf)
        size = start + len(staged)
        cached = functools.lru_cache(maxsize=None)(self._range_hash)  # proofs of a batch share subtrees
        root = merkle.root_of(cached, size)
        return [Receipt(i, k, leaf, size, root, tuple(merkle.inclusion_path(cached, i, size)))
                for i, (k, _, leaf) in enumerate(staged, start=start)]

    def _insert(self, index: int, kind: str, text: str, leaf: bytes) -> None:
        db = self._db
        db.execute("INSERT INTO entries VALUES (?, ?, ?, ?)", (index, kind, text, leaf))
        db.execute("INSERT INTO nodes VALUES (0, ?, ?)", (index, leaf))
        level, node, h = 0, index, leaf
        while node % 2 == 1:  # completes a perfect subtree at the next level up
            left = db.execute("SELECT hash FROM nodes WHERE level = ? AND idx = ?",
                              (level, node - 1)).fetchone()[0]
            h = merkle.node_hash(left, h)
            level, node = level + 1, node // 2
            db.execute("INSERT INTO nodes VALUES (?, ?, ?)", (level, node, h))

    # ------------------------------------------------------------ tree views
    def _range_hash(self, lo: int, hi: int) -> bytes:
        """MTH of leaves [lo, hi): a stored perfect subtree when aligned, else split (RFC 9162)."""
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            row = self._db.execute("SELECT hash FROM nodes WHERE level = ? AND idx = ?",
                                   (n.bit_length() - 1, lo // n)).fetchone()
            if row is None:
                raise LedgerError(f"missing tree node for leaves [{lo}, {hi})")
            return bytes(row[0])
        k = merkle.largest_power_of_two_below(n)
        return merkle.node_hash(self._range_hash(lo, lo + k), self._range_hash(lo + k, hi))

    def _check_size(self, size: int | None) -> int:
        current = self.size
        if size is None:
            return current
        if not 0 <= size <= current:
            raise LedgerError(f"size {size} is not in 0..{current}")
        return size

    @_locked
    def root(self, size: int | None = None) -> bytes:
        """Root hash of the first ``size`` entries (default: all)."""
        return merkle.root_of(self._range_hash, self._check_size(size))

    @_locked
    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.3 audit path of entry ``index`` in the tree of ``size`` entries."""
        n = self._check_size(size)
        if not 0 <= index < n:
            raise LedgerError(f"index {index} is not in 0..{n - 1}")
        return merkle.inclusion_path(self._range_hash, index, n)

    @_locked
    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.4 proof that the tree of ``size1`` is a prefix of ``size2``."""
        n = self._check_size(size2)
        if not 0 < size1 <= n:
            raise LedgerError(f"size1 {size1} is not in 1..{n}")
        return merkle.consistency_path(self._range_hash, size1, n)

    @_locked
    def entry(self, index: int) -> tuple[str, dict[str, Any]]:
        """Kind and body of entry ``index``."""
        row = self._db.execute("SELECT kind, body FROM entries WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise LedgerError(f"no entry {index} (size {self.size})")
        return str(row[0]), json.loads(row[1])

    @_locked
    def entries(self, kind: str | None = None) -> list[tuple[int, str, dict[str, Any]]]:
        """Every entry (optionally of one kind) as (index, kind, body)."""
        sql = "SELECT idx, kind, body FROM entries" + (" WHERE kind = ?" if kind else "") + " ORDER BY idx"
        return [(int(i), str(k), json.loads(b)) for i, k, b in self._db.execute(sql, (kind,) if kind else ())]

    @_locked
    def receipt(self, index: int, size: int | None = None) -> Receipt:
        n = self._check_size(size)
        kind, body = self.entry(index)
        return Receipt(index, kind, merkle.leaf_hash(leaf_data(kind, body)), n, self.root(n),
                       tuple(self.inclusion_proof(index, n)))

    # ----------------------------------------------------------- checkpoints
    @_locked
    def latest_checkpoint(self) -> tuple[int, str] | None:
        """(size, note) of the newest signed checkpoint, or None."""
        row = self._db.execute("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    @_locked
    def checkpoint(self) -> str:
        """Sign a checkpoint of the current tree (C2SP tlog-checkpoint) and store it.

        Refuses (LedgerError) to sign a tree that is not an extension of the last signed
        checkpoint: the consistency proof between them, computed from storage, must verify.
        """
        if self.signer is None:
            raise LedgerError("no log key: cannot sign checkpoints")
        with self._tx():
            size = self.size
            root = self.root(size)
            last = self.latest_checkpoint()
            if last is not None:
                prev = self._db.execute("SELECT root FROM checkpoints WHERE size = ?",
                                        (last[0],)).fetchone()[0]
                if last[0] == size:
                    if bytes(prev) != root:
                        raise LedgerError(f"refusing to sign: size {size} was signed with another root")
                    return last[1]
                try:
                    proof = self.consistency_proof(last[0], size) if last[0] else []
                    if last[0]:
                        merkle.verify_consistency(last[0], size, proof, bytes(prev), root)
                except (merkle.InvalidProof, LedgerError) as exc:
                    raise LedgerError(f"refusing to sign: tree of size {size} is not consistent with the "
                                      f"checkpoint of size {last[0]} ({exc})") from None
            text = Checkpoint(origin=self.origin, size=size, root=root).body()
            note = format_note(text, [self.signer.sign(text)])
            self._db.execute("INSERT INTO checkpoints VALUES (?, ?, ?)", (size, root, note))
        return note

    @_locked
    def add_cosignatures(self, size: int, note: str) -> None:
        """Replace the stored note of checkpoint ``size`` with ``note`` (same text, more signatures)."""
        row = self._db.execute("SELECT note FROM checkpoints WHERE size = ?", (size,)).fetchone()
        if row is None:
            raise LedgerError(f"no checkpoint of size {size}")
        if parse_note(note)[0] != parse_note(row[0])[0]:
            raise LedgerError("cosigned note does not match the stored checkpoint")
        open_checkpoint(note, self.verifier)
        with self._tx():
            # checkpoints are not covered by the append-only triggers: their text is signed
            self._db.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (note, size))

    # ------------------------------------------------------------- witnesses
    @_locked
    def add_witness(self, name: str, vkey: str) -> None:
        """Register a site witness's public key (once; a different key for the name is refused)."""
        NoteVerifier.from_vkey(vkey)
        with self._tx():
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"witness:{name}",)).fetchone()
            if row is not None and row[0] != vkey:
                raise LedgerError(f"witness {name!r} is registered with another key")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (f"witness:{name}", vkey))

    @_locked
    def witnesses(self) -> dict[str, NoteVerifier]:
        """Registered witnesses by name."""
        rows = self._db.execute("SELECT key, value FROM meta WHERE key LIKE 'witness:%' ORDER BY key")
        return {str(k).split(":", 1)[1]: NoteVerifier.from_vkey(str(v)) for k, v in rows}

    @_locked
    def checkpoints(self) -> list[tuple[int, bytes, str]]:
        return [(int(s), bytes(r), str(n)) for s, r, n in
                self._db.execute("SELECT size, root, note FROM checkpoints ORDER BY size")]


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

"""The append-only log: typed entries in SQLite, an incremental RFC 9162 tree, proofs,
signed checkpoints.

Storage (``<workspace>/ledger.sqlite``, WAL, ``synchronous=FULL`` so a commit survives a
crash): ``entries`` (index, kind, canonical JSON body, leaf hash) and ``nodes`` (the hash
of every *perfect* subtree, level 0 being the leaves). Triggers refuse UPDATE and DELETE of
entries, nodes and ``meta`` (the origin, the log key and the witness keys), and DELETE of a
checkpoint or a change of its size or root (only cosignatures may be added to its note).

The triggers stop mistakes, not the adversary: someone with write access to the file (an
insider, or malware on the coordinator host) can drop them. So nothing that decides what the
log *says* trusts storage: :meth:`Ledger.checkpoint` signs only a root recomputed from the
entries' kinds and bodies (:mod:`ledger.leaves`), the readers act only on entries whose leaves
they recomputed under a root checked against the witnessed checkpoint and the trust anchors
kept outside this file (:mod:`ledger.trusted`), and :func:`ledger.verify.verify_ledger`
recomputes everything.

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
from pathlib import Path
from typing import Any, TypeVar

from . import merkle
from .canonical import canonical_json
from .checkpoint import Checkpoint, NoteSigner, NoteVerifier, format_note, open_checkpoint, parse_note
from .leaves import Row, leaf_data, recompute
from .records import Receipt, Snapshot, Transaction, VerifyReport

ENTRY_KINDS = ("consent", "model", "validation", "release", "withdrawal", "revocation", "dossier",
               "training", "retrain-due", "external-validation", "document-approval")

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
CREATE TRIGGER IF NOT EXISTS meta_no_update BEFORE UPDATE ON meta
    BEGIN SELECT RAISE(ABORT, 'the ledger keys are write-once'); END;
CREATE TRIGGER IF NOT EXISTS meta_no_delete BEFORE DELETE ON meta
    BEGIN SELECT RAISE(ABORT, 'the ledger keys are write-once'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_same_tree BEFORE UPDATE OF size, root ON checkpoints
    WHEN NEW.size IS NOT OLD.size OR NEW.root IS NOT OLD.root
    BEGIN SELECT RAISE(ABORT, 'a signed checkpoint cannot change its tree'); END;
"""


F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """Run a :class:`Ledger` method holding the ledger's lock (threads share one connection);
    a damaged database file becomes a :class:`LedgerError` naming the file."""

    @functools.wraps(method)
    def wrapper(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.DatabaseError as exc:
                raise _damaged(self.path, exc) from None

    return wrapper  # type: ignore[return-value]


class LedgerError(ValueError):
    """Misuse of the log (unknown entry kind, index out of range, inconsistent checkpoint), or a
    ledger file that is damaged or fails its checks."""


def _damaged(path: Path, exc: sqlite3.DatabaseError) -> LedgerError:
    if isinstance(exc, sqlite3.IntegrityError) or "append-only" in str(exc) or "write-once" in str(exc):
        return LedgerError(f"ledger {path}: {exc}")
    return LedgerError(f"ledger {path} is damaged or not a ledger ({exc}); restore it from a copy "
                       "the site witnesses cosigned")


def canonical(obj: Any) -> str:
    """Canonical JSON text (:func:`ledger.canonical.canonical_json`)."""
    return canonical_json(obj).decode("utf-8")


__all__ = ["ENTRY_KINDS", "Ledger", "LedgerError", "Receipt", "Snapshot", "VerifyReport", "canonical",
           "leaf_data"]


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
        self.signer = signer
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            with self._tx():
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('origin', ?)", (origin,))
                if signer is not None:
                    self._db.execute("INSERT OR IGNORE INTO meta VALUES ('vkey', ?)",
                                     (signer.verifier_key(),))
            self.origin = self._meta("origin")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise _damaged(self.path, exc) from None

    # ----------------------------------------------------------------- basics
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self) -> sqlite3.Connection:
        """A transaction (``with self._tx():``): BEGIN IMMEDIATE … COMMIT, or ROLLBACK."""
        return Transaction(self._db)  # type: ignore[return-value]

    def _meta(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise LedgerError(f"ledger {self.path} has no {key!r}")
        return str(row[0])

    @property
    @_locked
    def verifier(self) -> NoteVerifier:
        """The log's public checkpoint key, as recorded in the ledger (a reader that must not be
        fooled by the file compares it with a pinned key: :mod:`ledger.trusted`)."""
        return NoteVerifier.from_vkey(self._meta("vkey"))

    @_locked
    def rows(self) -> list[Row]:
        """Every stored entry as ``(index, kind, body text, stored leaf)``, in index order: the raw
        cells, for readers that recompute the leaves (:func:`ledger.leaves.recompute`)."""
        return [(int(i), str(k), str(b), bytes(h)) for i, k, b, h in
                self._db.execute("SELECT idx, kind, body, leaf FROM entries ORDER BY idx")]

    @_locked
    def snapshot(self) -> Snapshot:
        """Entries, checkpoints, the stored root and the recorded log key, read in one transaction
        (a consistent view even while another connection appends)."""
        self._db.execute("BEGIN")
        try:
            rows = self.rows()
            try:
                root: bytes | None = self.root(len(rows))
            except LedgerError:  # a stored node is missing
                root = None
            row = self._db.execute("SELECT value FROM meta WHERE key = 'vkey'").fetchone()
            return Snapshot(rows, self.checkpoints(), root, None if row is None else str(row[0]))
        finally:
            self._db.execute("COMMIT")

    @_locked
    def change_mark(self) -> tuple[int, int, int]:
        """A cheap token that changes whenever the file may have changed: (size, ``PRAGMA
        data_version`` — bumped by any other connection's commit —, this connection's changes)."""
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        return self.size, version, self._db.total_changes

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

        The root signed is recomputed from every entry's kind and body (RFC 9162 §2.1.1), never
        taken from the stored tree: refuses (LedgerError) when an entry's cells do not give its
        stored leaf, when the stored tree disagrees with the entries, when the file records
        another log key than the signer's, or when the tree is not an extension of the last
        signed checkpoint (the consistency proof between them must verify).
        """
        if self.signer is None:
            raise LedgerError("no log key: cannot sign checkpoints")
        if self._meta("vkey") != self.signer.verifier_key():
            raise LedgerError("refusing to sign: the ledger records another log key than this signer's")
        with self._tx():
            size = self.size
            root = self._recomputed_root(size)
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

    def _recomputed_root(self, size: int) -> bytes:
        """The root of the first ``size`` entries recomputed from their cells, checked against the
        stored leaves and the stored tree (LedgerError naming the first disagreement)."""
        recomputed = recompute(self.rows()[:size])
        if recomputed.problems:
            raise LedgerError(f"refusing to sign: {recomputed.problems[0]}")
        root = recomputed.root()
        if self.root(size) != root:
            raise LedgerError(f"refusing to sign: tree of size {size} is not consistent with its entries "
                              "(the stored tree nodes do not give the root of the recomputed leaves)")
        return root

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

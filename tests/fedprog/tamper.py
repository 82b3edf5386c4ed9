"""Attacks on a workspace's ``ledger.sqlite`` by someone with write access to the file (an insider,
or malware on the coordinator host) who is not the witnesses: they drop the triggers and edit
cells, rebuild the stored tree, re-key and re-sign, but cannot touch a site's witness key or
``witness.json`` (issue 16, H2/H3)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from ledger import merkle
from ledger.checkpoint import Checkpoint, CosignatureSigner, NoteSigner, format_note
from ledger.leaves import entry_leaf


def raw(ws: Path) -> sqlite3.Connection:
    """The ledger file opened directly, every trigger dropped."""
    db = sqlite3.connect(ws / "ledger.sqlite", isolation_level=None)
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f'DROP TRIGGER "{name}"')
    return db


def rebuild_tree(db: sqlite3.Connection) -> None:
    """Recompute every stored leaf from its cells and every tree node, as a careful forger would."""
    leaves = []
    for idx, kind, body in db.execute("SELECT idx, kind, body FROM entries ORDER BY idx").fetchall():
        leaf, _ = entry_leaf(kind, body)
        db.execute("UPDATE entries SET leaf = ? WHERE idx = ?", (leaf, idx))
        leaves.append(leaf)
    db.execute("DELETE FROM nodes")
    level, depth = leaves, 0
    while level:
        db.executemany("INSERT INTO nodes VALUES (?, ?, ?)", [(depth, i, h) for i, h in enumerate(level)])
        level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        depth += 1


def indices(ws: Path, kind: str) -> list[int]:
    db = sqlite3.connect(ws / "ledger.sqlite")
    try:
        return [int(i) for (i,) in db.execute("SELECT idx FROM entries WHERE kind = ? ORDER BY idx", (kind,))]
    finally:
        db.close()


def edit_kind(ws: Path) -> None:
    """H2 exactly: one character appended to the ``kind`` cell of the revocation and withdrawal rows."""
    db = raw(ws)
    db.execute("UPDATE entries SET kind = kind || 'x' WHERE kind IN ('revocation', 'withdrawal')")
    db.close()


def edit_body(ws: Path) -> None:
    """The withdrawal's body now names another model (its leaf left as it was)."""
    db = raw(ws)
    idx = indices(ws, "withdrawal")[-1]
    db.execute("UPDATE entries SET body = replace(body, '\"sha256\":\"', '\"sha256\":\"0') WHERE idx = ?",
               (idx,))
    db.close()


def rekey(ws: Path) -> None:
    """A re-keyed rewrite: a permit turned into a deny and the withdrawal removed from the model,
    the tree rebuilt, the checkpoints replaced by one signed with a new log key and cosigned by
    four new "witness" keys the forger registers in ``meta``."""
    db = raw(ws)
    first = indices(ws, "consent")[5]
    db.execute("UPDATE entries SET body = replace(body, '\"permit\"', '\"deny\"') WHERE idx = ?", (first,))
    db.execute("UPDATE entries SET kind = 'dossier' WHERE kind = 'withdrawal'")
    rebuild_tree(db)
    origin = db.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()[0]
    log_key = NoteSigner.generate(origin)
    db.execute("UPDATE meta SET value = ? WHERE key = 'vkey'", (log_key.verifier_key(),))
    witnesses = []
    for (key,) in db.execute("SELECT key FROM meta WHERE key LIKE 'witness:%'").fetchall():
        signer = CosignatureSigner.generate(key.split(":", 1)[1])
        db.execute("UPDATE meta SET value = ? WHERE key = ?", (signer.verifier_key(), key))
        witnesses.append(signer)
    leaves = [bytes(h) for (h,) in db.execute("SELECT leaf FROM entries ORDER BY idx")]
    text = Checkpoint(origin, len(leaves), merkle.root(leaves)).body()
    note = format_note(text, [log_key.sign(text), *[w.sign(text) for w in witnesses]])
    db.execute("DELETE FROM checkpoints")
    db.execute("INSERT INTO checkpoints VALUES (?, ?, ?)", (len(leaves), merkle.root(leaves), note))
    db.close()


def truncate(ws: Path) -> None:
    """A clean truncation of the last entry: its row, its tree nodes and the checkpoints covering it."""
    db = raw(ws)
    size = int(db.execute("SELECT MAX(idx) FROM entries").fetchone()[0]) + 1
    db.execute("DELETE FROM entries WHERE idx = ?", (size - 1,))
    db.execute("DELETE FROM nodes WHERE (idx + 1) * (1 << level) > ?", (size - 1,))
    db.execute("DELETE FROM checkpoints WHERE size >= ?", (size,))
    db.close()


def reorder(ws: Path) -> None:
    """The withdrawal swapped with the entry before it (whole rows, leaves included), tree rebuilt."""
    db = raw(ws)
    j = indices(ws, "withdrawal")[-1]
    a = db.execute("SELECT kind, body, leaf FROM entries WHERE idx = ?", (j - 1,)).fetchone()
    b = db.execute("SELECT kind, body, leaf FROM entries WHERE idx = ?", (j,)).fetchone()
    db.execute("UPDATE entries SET kind = ?, body = ?, leaf = ? WHERE idx = ?", (*b, j - 1))
    db.execute("UPDATE entries SET kind = ?, body = ?, leaf = ? WHERE idx = ?", (*a, j))
    rebuild_tree(db)
    db.close()


def corrupt(ws: Path) -> None:
    """Garbage bytes over the file (and no write-ahead log left to recover from)."""
    for extra in ("-wal", "-shm"):
        (ws / f"ledger.sqlite{extra}").unlink(missing_ok=True)
    path = ws / "ledger.sqlite"
    data = bytearray(path.read_bytes())
    data[:4096] = bytes((i * 37 + 11) % 256 for i in range(4096))
    path.write_bytes(bytes(data))


ATTACKS: dict[str, Callable[[Path], None]] = {
    "edit-kind": edit_kind, "edit-body": edit_body, "rekey": rekey, "truncate": truncate, "reorder": reorder,
}

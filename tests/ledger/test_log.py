"""The append-only log: incremental tree equals the reference, proofs, checkpoints, tampering."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ledger import merkle
from ledger.checkpoint import NoteSigner, open_checkpoint
from ledger.log import Ledger, LedgerError, leaf_data
from ledger.verify import verify_ledger


@pytest.fixture
def log(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.sqlite", signer=NoteSigner.generate("fedprog.test/log"),
                  origin="fedprog.test/log")


def _fill(log: Ledger, n: int) -> list[bytes]:
    receipts = log.append_many([("model", {"i": i, "name": f"m{i}"}) for i in range(n)])
    return [r.leaf_hash for r in receipts]


@pytest.mark.req("SRS-LEDG-002")
def test_incremental_tree_equals_the_reference_at_every_size(log: Ledger) -> None:
    leaves: list[bytes] = []
    for i in range(70):
        receipt = log.append("consent", {"n": i})
        leaves.append(merkle.leaf_hash(leaf_data("consent", {"n": i})))
        assert receipt.leaf_hash == leaves[-1] and receipt.index == i
        assert log.root() == merkle.root(leaves) == receipt.root
        receipt.verify()
    for size in range(1, 71):
        assert log.root(size) == merkle.root(leaves[:size])
        for index in (0, size // 2, size - 1):
            assert log.inclusion_proof(index, size) == merkle.inclusion_proof(leaves[:size], index)
        for size1 in (1, size // 2 or 1, size):
            assert log.consistency_proof(size1, size) == merkle.consistency_proof(leaves[:size], size1)


@pytest.mark.req("SRS-LEDG-002")
def test_entries_are_canonical_and_typed(log: Ledger) -> None:
    log.append("model", {"b": 2, "a": [1, "é"]})
    assert log.entry(0) == ("model", {"a": [1, "é"], "b": 2})
    with pytest.raises(LedgerError, match="unknown entry kind 'gossip'"):
        log.append("gossip", {})
    with pytest.raises(ValueError):
        log.append("model", {"x": float("nan")})
    assert log.size == 1  # nothing half-written


@pytest.mark.req("SRS-LEDG-002")
def test_batch_is_all_or_nothing(log: Ledger) -> None:
    with pytest.raises(LedgerError):
        log.append_many([("model", {"ok": 1}), ("nope", {})])
    assert log.size == 0


@pytest.mark.req("SRS-LEDG-002")
def test_triggers_refuse_rewrites(log: Ledger, tmp_path: Path) -> None:
    _fill(log, 3)
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE entries SET body = '{}' WHERE idx = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM entries WHERE idx = 2")


@pytest.mark.req("SRS-LEDG-003", "SRS-LEDG-004")
def test_checkpoint_is_signed_and_verify_passes(log: Ledger) -> None:
    _fill(log, 10)
    note = log.checkpoint()
    cp, _ = open_checkpoint(note, log.verifier)
    assert (cp.origin, cp.size, cp.root) == ("fedprog.test/log", 10, log.root())
    assert log.checkpoint() == note  # same tree: the same checkpoint
    _fill(log, 5)
    log.checkpoint()
    report = verify_ledger(log)
    assert report.ok, report.problems
    assert (report.size, report.checkpoints) == (15, 2)


@pytest.mark.req("SRS-LEDG-004", "RC-LEDG-001")
def test_rewritten_entry_is_detected_even_without_triggers(log: Ledger, tmp_path: Path) -> None:
    _fill(log, 8)
    log.checkpoint()
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    db.execute("DROP TRIGGER entries_no_update")
    db.execute("""UPDATE entries SET body = '{"i":3,"name":"forged"}' WHERE idx = 3""")
    db.commit()
    problems = verify_ledger(log).problems
    assert any("entry 3: stored leaf hash does not match its body" in p for p in problems)


@pytest.mark.req("SRS-LEDG-004", "RC-LEDG-001")
def test_rewrite_with_recomputed_hashes_is_caught_by_the_signed_checkpoint(log: Ledger,
                                                                          tmp_path: Path) -> None:
    """A forger who rewrites an entry *and* every stored hash still cannot re-sign the checkpoint."""
    _fill(log, 8)
    log.checkpoint()
    forged = ("model", {"i": 3, "name": "forged"})
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    for t in ("entries_no_update", "nodes_no_update", "nodes_no_delete"):
        db.execute(f"DROP TRIGGER {t}")
    leaf = merkle.leaf_hash(leaf_data(*forged))
    db.execute("UPDATE entries SET body = ?, leaf = ? WHERE idx = 3", ('{"i":3,"name":"forged"}', leaf))
    db.execute("DELETE FROM nodes")
    rows = [r[0] for r in db.execute("SELECT leaf FROM entries ORDER BY idx")]
    level, depth = rows, 0
    while level:
        db.executemany("INSERT INTO nodes VALUES (?, ?, ?)", [(depth, i, h) for i, h in enumerate(level)])
        level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        depth += 1
    db.commit()
    problems = verify_ledger(log).problems
    assert len(problems) == 1 and "checkpoint 8: signed root" in problems[0]


@pytest.mark.req("SRS-LEDG-003", "RC-LEDG-001")
def test_refuses_to_sign_a_tree_inconsistent_with_the_last_checkpoint(log: Ledger, tmp_path: Path) -> None:
    _fill(log, 4)
    log.checkpoint()
    _fill(log, 2)
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    db.execute("DROP TRIGGER nodes_no_update")
    db.execute("UPDATE nodes SET hash = ? WHERE level = 2 AND idx = 0", (b"\x00" * 32,))
    db.commit()
    with pytest.raises(LedgerError, match="refusing to sign: tree of size 6 is not consistent"):
        log.checkpoint()


@pytest.mark.req("SRS-LEDG-007")
def test_out_of_range(log: Ledger) -> None:
    _fill(log, 3)
    with pytest.raises(LedgerError, match="index 3 is not in 0..2"):
        log.inclusion_proof(3)
    with pytest.raises(LedgerError, match="size 4 is not in 0..3"):
        log.root(4)
    with pytest.raises(LedgerError, match="no entry 7"):
        log.entry(7)
    assert log.root(0) == merkle.root([])


@pytest.mark.req("SRS-LEDG-003")
def test_reader_without_key_cannot_sign(log: Ledger, tmp_path: Path) -> None:
    _fill(log, 2)
    log.checkpoint()
    reader = Ledger(tmp_path / "ledger.sqlite")
    assert reader.verifier.verifier_key() == log.verifier.verifier_key()
    assert verify_ledger(reader).ok
    with pytest.raises(LedgerError, match="no log key"):
        reader.checkpoint()

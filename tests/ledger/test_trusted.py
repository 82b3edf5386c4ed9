"""Readers the ledger file alone cannot fool (issue 16, H2/H3): leaves recomputed from the entries,
roots checked against the pinned keys, a quorum of pinned witnesses and the witnesses' own state.

The adversary in every test writes to ``ledger.sqlite`` directly (triggers dropped) but holds no
witness key and cannot write a witness's state file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ledger import merkle
from ledger.anchors import TrustAnchors, checkpoint_problems, key_problems, state_problems
from ledger.checkpoint import CheckpointError, CosignatureSigner, NoteSigner, add_signatures
from ledger.leaves import entry_leaf, leaf_data, recompute
from ledger.log import Ledger, LedgerError
from ledger.trusted import AuditingWitness, UntrustedLedger, audit, read_verified
from ledger.witness import ForkEvidence, QuorumPolicy, WitnessState, save_state

ORIGIN = "fedprog.test/trusted"
SITES = ("site-a", "site-b", "site-c")
World = tuple[Ledger, "TrustAnchors", list[AuditingWitness]]


def rows(n: int, kind: str = "consent") -> list[tuple[int, str, str, bytes]]:
    out = []
    for i in range(n):
        body = f'{{"i":{i}}}'
        out.append((i, kind, body, merkle.leaf_hash(leaf_data(kind, {"i": i}))))
    return out


# --------------------------------------------------------------------------- ledger.leaves (pure)


@pytest.mark.req("SRS-LEDG-008")
@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_recomputed_root_equals_the_reference_at_every_size(n: int) -> None:
    rec = recompute(rows(n))
    assert rec.problems == () and rec.size == n
    for size in range(n + 1):
        assert rec.root(size) == merkle.root([r[3] for r in rows(n)][:size])


@pytest.mark.req("SRS-LEDG-008")
@pytest.mark.parametrize(("edit", "problem", "meaning_changed"), [
    (lambda r: (r[0], r[1] + "x", r[2], r[3]), "entry 2: stored leaf hash does not match its body and kind "
     "'consentx'", True),
    (lambda r: (r[0], r[1], '{"i":99}', r[3]), "entry 2: stored leaf hash does not match its body", True),
    (lambda r: (r[0], r[1], r[2], b"\0" * 32), "entry 2: stored leaf hash does not match", False),
    (lambda r: (r[0], r[1], "{not json", r[3]), "entry 2: body is not canonical JSON", True),
    (lambda r: (7, r[1], r[2], r[3]), "entry indices jump from 1 to 7", False),
])
def test_every_edited_cell_is_named(edit: object, problem: str, meaning_changed: bool) -> None:
    table = rows(5)
    table[2] = edit(table[2])  # type: ignore[operator]
    rec = recompute(table)
    assert any(p.startswith(problem) for p in rec.problems), rec.problems
    # the root is that of what a reader would act on: it moves exactly when the kind or body does
    assert (rec.root() != merkle.root([r[3] for r in rows(5)])) is meaning_changed


@pytest.mark.req("SRS-LEDG-008")
def test_entry_leaf_is_rfc9162_over_canonical_kind_and_body() -> None:
    leaf, body = entry_leaf("model", '{"b":2,"a":1}')
    assert body == {"a": 1, "b": 2}
    assert leaf == merkle.leaf_hash(b'{"body":{"a":1,"b":2},"kind":"model"}')


# --------------------------------------------------------------------------- ledger.anchors (pure)


def state(size: int, root: bytes) -> WitnessState:
    return WitnessState(origin=ORIGIN, size=size, root=root, note=None)


@pytest.mark.req("SRS-LEDG-009")
def test_witness_states_catch_truncation_rollback_and_forks() -> None:
    rec = recompute(rows(6))
    good = state(6, rec.root())
    assert state_problems(rec, {"a": good, "b": state(4, rec.root(4)), "c": WitnessState()}) == []
    short = recompute(rows(5))
    assert state_problems(short, {"a": good}) == [
        f"a's witness cosigned size 6 root {rec.root().hex()[:16]}…, the file has 5 entries: the log was "
        "truncated or rolled back"]
    forked = state_problems(rec, {"b": state(4, b"\1" * 32)})
    assert len(forked) == 1 and forked[0].startswith("b's witness cosigned size 4") and "a fork" in forked[0]
    evidence = ForkEvidence("rollback", 6, rec.root(), None, 5, rec.root(5), "n")
    stopped = state_problems(rec, {"c": WitnessState(ORIGIN, 6, rec.root(), None, evidence)})
    assert stopped == ["c's witness recorded a fork and stopped cosigning: rollback"]


@pytest.mark.req("SRS-LEDG-009")
def test_a_log_key_other_than_the_pinned_one_is_a_rekeying() -> None:
    pinned, other = NoteSigner.generate(ORIGIN), NoteSigner.generate(ORIGIN)
    anchors = TrustAnchors(pinned.verifier_key(), {})
    assert key_problems(pinned.verifier_key(), anchors) == []
    (problem,) = key_problems(other.verifier_key(), anchors)
    assert problem.startswith("the log key differs from the one pinned in workspace.json")
    assert "re-keyed" in problem


def _note(signer: NoteSigner, size: int, root: bytes, cosigners: list[CosignatureSigner]) -> str:
    from ledger.checkpoint import Checkpoint, format_note

    text = Checkpoint(ORIGIN, size, root).body()
    return add_signatures(format_note(text, [signer.sign(text)]), [w.sign(text, 1) for w in cosigners])


@pytest.mark.req("SRS-LEDG-009", "SRS-LEDG-006")
def test_the_latest_quorum_checkpoint_is_found_and_checked() -> None:
    log = NoteSigner.generate(ORIGIN)
    wit = [CosignatureSigner.generate(s) for s in SITES]
    policy = QuorumPolicy({s: w.verifier() for s, w in zip(SITES, wit, strict=True)},
                          log_verifier=log.verifier())
    rec = recompute(rows(8))
    cps = [(4, rec.root(4), _note(log, 4, rec.root(4), wit)),
           (8, rec.root(8), _note(log, 8, rec.root(8), wit[:1]))]
    witnessed, problems = checkpoint_problems(rec, cps, policy, "workspace.json")
    assert problems == [] and witnessed is not None
    assert (witnessed.size, witnessed.cosigners) == (4, tuple(SITES))
    # the same checkpoints over a rewritten entry 2: the quorum checkpoint's root no longer matches
    table = rows(8)
    table[2] = (2, "consent", '{"i":-2}', merkle.leaf_hash(leaf_data("consent", {"i": -2})))
    _, problems = checkpoint_problems(recompute(table), cps, policy, "workspace.json")
    assert any("checkpoint 4 (cosigned by site-a, site-b, site-c) has root" in p for p in problems)
    # a checkpoint signed by another key: named; none with a quorum: named
    forged = [(8, rec.root(8), _note(NoteSigner.generate(ORIGIN), 8, rec.root(8), []))]
    witnessed, problems = checkpoint_problems(rec, forged, policy, "workspace.json")
    assert witnessed is None and problems[0].startswith("checkpoint 8 does not open under the keys pinned")
    assert problems[1].startswith("no checkpoint in the file carries cosignatures of a quorum (2 of 3)")
    _, problems = checkpoint_problems(recompute(rows(3)), cps, policy, "workspace.json")
    assert problems[0] == "checkpoint of size 8 is beyond the file's 3 entries: the log was truncated"


# --------------------------------------------------------------------------- ledger.trusted over SQLite


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.from_seed(ORIGIN, b"K" * 32)


@pytest.fixture
def world(tmp_path: Path, signer: NoteSigner) -> World:
    """A ledger of 10 entries, a checkpoint cosigned by three auditing witnesses, and the anchors."""
    ledger = Ledger(tmp_path / "ledger.sqlite", signer=signer, origin=ORIGIN)
    ledger.append_many([("consent", {"i": i}) for i in range(9)] + [("withdrawal", {"sha256": "ab"})])
    witnesses = [AuditingWitness(s, CosignatureSigner.from_seed(s, s.encode().ljust(32, b"-")),
                                 signer.verifier(), tmp_path / s / "witness.json", ledger) for s in SITES]
    note = ledger.checkpoint()
    ledger.add_cosignatures(10, add_signatures(note, [w.cosign(note) for w in witnesses]))
    anchors = TrustAnchors(signer.verifier_key(), {w.name: w.verifier.verifier_key() for w in witnesses},
                           origin=ORIGIN, states={w.name: w.state_path for w in witnesses})
    return ledger, anchors, witnesses


def _raw(ledger: Ledger) -> sqlite3.Connection:
    db = sqlite3.connect(ledger.path, isolation_level=None)
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f'DROP TRIGGER "{name}"')
    return db


@pytest.mark.req("SRS-LEDG-008", "SRS-LEDG-009")
def test_read_verified_passes_then_refuses_an_edited_kind_and_caches(world: World) -> None:
    ledger, anchors, _ = world
    log = read_verified(ledger, anchors)
    assert log.witnessed is not None and log.witnessed.cosigners == SITES and log.size == 10
    assert read_verified(ledger, anchors) is log  # nothing changed: the cached verdict
    _raw(ledger).execute("UPDATE entries SET kind = kind || 'x' WHERE kind = 'withdrawal'")
    with pytest.raises(UntrustedLedger) as caught:
        read_verified(ledger, anchors)  # another connection wrote: data_version changed
    problems = caught.value.problems
    assert problems[0] == ("entry 9: stored leaf hash does not match its body and kind 'withdrawalx': "
                           "the entry was edited")
    assert any(p.startswith("site-a's witness cosigned size 10 root") for p in problems)
    assert ledger.root() == log.root  # the stored tree still says all is well: nobody asks it
    with pytest.raises(LedgerError, match="refusing to sign: entry 9"):
        ledger.checkpoint()


@pytest.mark.req("SRS-LEDG-010")
def test_an_auditing_witness_recomputes_before_it_cosigns(world: World,
                                                           signer: NoteSigner) -> None:
    ledger, _, witnesses = world
    ledger.append("consent", {"i": 10})
    from ledger.checkpoint import Checkpoint, format_note

    honest = Checkpoint(ORIGIN, 11, ledger.root()).body()
    stale = format_note(honest, [signer.sign(honest)])
    _raw(ledger).execute("UPDATE entries SET body = '{\"i\":-1}' WHERE idx = 10")
    before = witnesses[0].state
    with pytest.raises(CheckpointError, match="refuses to cosign: entry 10: stored leaf hash does not match"):
        witnesses[0].cosign(stale, ledger.consistency_proof(10, 11))
    assert witnesses[0].state == before  # nothing recorded
    lying = Checkpoint(ORIGIN, 11, b"\7" * 32).body()
    _raw(ledger).execute("UPDATE entries SET body = '{\"i\":10}' WHERE idx = 10")
    with pytest.raises(CheckpointError, match="is not the root .* recomputed from the entries"):
        witnesses[1].cosign(format_note(lying, [signer.sign(lying)]), [])
    with pytest.raises(CheckpointError, match="claims 12 entries, the ledger has 11"):
        too_big = Checkpoint(ORIGIN, 12, ledger.root()).body()
        witnesses[2].cosign(format_note(too_big, [signer.sign(too_big)]), [])
    assert witnesses[2].cosign(stale, ledger.consistency_proof(10, 11))  # the honest tree: cosigned


@pytest.mark.req("SRS-LEDG-009")
def test_a_truncated_ledger_fails_against_the_witnesses_state(world: World) -> None:
    ledger, anchors, witnesses = world
    db = _raw(ledger)
    db.execute("DELETE FROM entries WHERE idx = 9")
    db.execute("DELETE FROM nodes WHERE (idx + 1) * (1 << level) > 9")
    db.execute("DELETE FROM checkpoints")
    problems = audit(ledger, anchors).problems
    root = witnesses[0].state.root
    assert root is not None
    assert problems[0] == (f"site-a's witness cosigned size 10 root {root.hex()[:16]}…, the file has 9 "
                           "entries: the log was truncated or rolled back")
    assert audit(ledger).problems == []  # without anchors the file is self-consistent: why anchors exist
    save_state(witnesses[0].state_path, WitnessState())  # (an honest witness state is never reset)


@pytest.mark.req("SRS-LEDG-009")
def test_meta_is_write_once(world: World) -> None:
    ledger, _, _ = world
    db = sqlite3.connect(ledger.path)
    with pytest.raises(sqlite3.DatabaseError, match="write-once"):
        db.execute("UPDATE meta SET value = 'x' WHERE key = 'vkey'")
    with pytest.raises(sqlite3.DatabaseError, match="write-once"):
        db.execute("DELETE FROM meta")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM checkpoints")
    with pytest.raises(sqlite3.DatabaseError, match="cannot change its tree"):
        db.execute("UPDATE checkpoints SET root = zeroblob(32)")
    db.execute("UPDATE checkpoints SET note = note")  # cosignatures may still be added


@pytest.mark.req("SRS-LEDG-012")
@pytest.mark.parametrize("damage", ["garbage", "truncated-file"])
def test_a_damaged_file_is_a_ledger_error(tmp_path: Path, signer: NoteSigner, damage: str) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path, signer=signer, origin=ORIGIN) as ledger:
        ledger.append_many([("consent", {"i": i, "pad": "x" * 200}) for i in range(200)])
    data = path.read_bytes()
    path.write_bytes(bytes(range(256)) * 16 + data[4096:] if damage == "garbage" else data[: len(data) // 3])
    with pytest.raises(LedgerError, match="damaged or not a ledger"):
        opened = Ledger(path)
        opened.rows()

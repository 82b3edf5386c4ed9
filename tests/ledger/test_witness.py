"""Site witnesses and quorum policies (ledger.witness) against a simulated log (ledger.merkle)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ledger import merkle
from ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    CosignatureSigner,
    CosignatureVerifier,
    NoteSignature,
    NoteSigner,
    add_signatures,
    format_note,
    open_checkpoint,
)
from ledger.witness import (
    ForkDetected,
    QuorumNotMet,
    QuorumPolicy,
    Witness,
    WitnessState,
    WitnessStateError,
    fork_reason,
    load_state,
    save_state,
)

ORIGIN = "fedprog.test/ledger"
NOW = 1_700_000_000


class SimLog:
    """An in-memory log: leaf hashes, RFC 9162 roots and proofs, checkpoints signed by ``signer``."""

    def __init__(self, signer: NoteSigner, prefix: bytes = b"entry", origin: str = ORIGIN) -> None:
        self.signer, self.prefix, self.origin = signer, prefix, origin
        self.leaves: list[bytes] = []

    def grow(self, n: int) -> None:
        self.leaves += [merkle.leaf_hash(self.prefix + b"-%d" % i)
                        for i in range(len(self.leaves), len(self.leaves) + n)]

    def checkpoint(self, size: int | None = None) -> Checkpoint:
        n = len(self.leaves) if size is None else size
        return Checkpoint(self.origin, n, merkle.root(self.leaves[:n]))

    def note(self, size: int | None = None) -> str:
        body = self.checkpoint(size).body()
        return format_note(body, [self.signer.sign(body)])

    def proof(self, old: int, new: int | None = None) -> list[bytes]:
        n = len(self.leaves) if new is None else new
        return merkle.consistency_proof(self.leaves[:n], old) if 0 < old < n else []


@pytest.fixture
def log_signer() -> NoteSigner:
    return NoteSigner.from_seed(ORIGIN, b"L" * 32)


@pytest.fixture
def log(log_signer: NoteSigner) -> SimLog:
    return SimLog(log_signer)


def make_witness(path: Path, log_signer: NoteSigner, name: str = "site-a.fedprog/witness") -> Witness:
    signer = CosignatureSigner.from_seed(name, name.encode().ljust(32, b"\0")[:32])
    return Witness(name, signer, log_signer.verifier(), path, clock=lambda: NOW)


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "witness-state.json"


@pytest.fixture
def witness(state_path: Path, log_signer: NoteSigner) -> Witness:
    return make_witness(state_path, log_signer)


# --------------------------------------------------------------------------- honest growth


@pytest.mark.req("SRS-LEDG-005")
def test_cosigns_a_growing_log(witness: Witness, log: SimLog, state_path: Path) -> None:
    assert not state_path.exists() and witness.state == WitnessState()
    old = 0
    for step in (1, 2, 1, 4, 5, 3, 11):
        log.grow(step)
        note = log.note()
        sig = witness.cosign(note, log.proof(old))
        witness.verifier.verify(log.checkpoint().body(), sig)
        assert CosignatureVerifier.timestamp(sig) == NOW
        assert (witness.state.size, witness.state.root) == (len(log.leaves), merkle.root(log.leaves))
        stored = json.loads(state_path.read_text())
        assert (stored["size"], stored["root"], stored["origin"]) == (len(log.leaves),
                                                                      merkle.root(log.leaves).hex(), ORIGIN)
        assert open_checkpoint(add_signatures(note, [sig]), log.signer.verifier(),
                               {"a": witness.verifier})[1] == {"a"}
        old = len(log.leaves)
    # The same checkpoint again is cosigned again (no proof needed, nothing to store).
    witness.cosign(log.note(), [])
    # A new process picks up where this one stopped.
    again = make_witness(state_path, log.signer)
    assert again.state == witness.state
    log.grow(6)
    again.cosign(log.note(), log.proof(old))
    assert again.state.size == old + 6


@pytest.mark.req("SRS-LEDG-005")
def test_first_checkpoint_is_trusted_and_empty_tree_is_fine(witness: Witness, log: SimLog) -> None:
    witness.cosign(log.note(0))
    assert (witness.state.size, witness.state.root) == (0, merkle.EMPTY_ROOT)
    log.grow(3)
    witness.cosign(log.note(), [])  # nothing to prove from the empty tree
    assert witness.state.size == 3


@pytest.mark.req("SRS-LEDG-005")
def test_plain_note_signer_witness(state_path: Path, log: SimLog) -> None:
    signer = NoteSigner.from_seed("site-p.fedprog/witness", b"P" * 32)
    w = Witness(signer.name, signer, log.signer.verifier(), state_path)
    log.grow(2)
    sig = w.cosign(log.note())
    w.verifier.verify(log.checkpoint().body(), sig)
    assert type(w.verifier) is not CosignatureVerifier


# --------------------------------------------------------------------------- forks


def assert_forked_on_disk(path: Path) -> dict[str, object]:
    fork = json.loads(path.read_text())["fork"]
    assert fork is not None
    assert isinstance(fork, dict)
    return fork


@pytest.mark.req("SRS-LEDG-005", "RC-LEDG-001")
def test_rollback_is_a_fork(witness: Witness, log: SimLog, state_path: Path) -> None:
    log.grow(8)
    witness.cosign(log.note())
    old_root = merkle.root(log.leaves).hex()
    new_root = merkle.root(log.leaves[:5]).hex()
    with pytest.raises(ForkDetected, match="rollback") as info:
        witness.cosign(log.note(5), [])
    message = str(info.value)
    assert "size 8" in message and old_root in message and "size 5" in message and new_root in message
    fork = assert_forked_on_disk(state_path)
    assert fork["old"] == {"size": 8, "root": old_root, "note": log.note(8)}
    assert fork["new"] == {"size": 5, "root": new_root, "note": log.note(5)}
    assert info.value.evidence is not None and info.value.evidence.new_size == 5


@pytest.mark.req("SRS-LEDG-005", "RC-LEDG-001")
def test_same_size_other_root_is_a_fork(witness: Witness, log: SimLog, state_path: Path) -> None:
    log.grow(4)
    witness.cosign(log.note())
    fork = SimLog(log.signer, prefix=b"forged")
    fork.grow(4)
    with pytest.raises(ForkDetected, match="two different roots for size 4") as info:
        witness.cosign(fork.note(), [])
    assert merkle.root(log.leaves).hex() in str(info.value)
    assert merkle.root(fork.leaves).hex() in str(info.value)
    assert assert_forked_on_disk(state_path)["reason"] == "two different roots for size 4"


@pytest.mark.req("SRS-LEDG-005", "RC-LEDG-001")
@pytest.mark.parametrize("bad_proof", [
    lambda proof: [],
    lambda proof: proof[:-1],
    lambda proof: proof + [bytes(32)],
    lambda proof: [bytes([proof[0][0] ^ 1]) + proof[0][1:]] + proof[1:],
    lambda proof: list(reversed(proof)),
    lambda proof: [b"short"] + proof[1:],
])
def test_bad_consistency_proof_is_a_fork(witness: Witness, log: SimLog, state_path: Path,
                                         bad_proof: object) -> None:
    log.grow(5)
    witness.cosign(log.note())
    log.grow(6)
    proof = log.proof(5)
    assert len(proof) >= 2
    with pytest.raises(ForkDetected, match="consistency proof from size 5 to 11 does not verify"):
        witness.cosign(log.note(), bad_proof(proof))  # type: ignore[operator]
    assert assert_forked_on_disk(state_path)["proof"] is not None
    assert witness.state.size == 5 and witness.forked


@pytest.mark.req("SRS-LEDG-005", "RC-LEDG-001")
def test_a_rewritten_history_is_a_fork_even_with_its_own_proof(witness: Witness, log: SimLog) -> None:
    log.grow(5)
    witness.cosign(log.note())
    rewritten = SimLog(log.signer, prefix=b"rewritten")
    rewritten.grow(9)
    with pytest.raises(ForkDetected):
        witness.cosign(rewritten.note(), rewritten.proof(5))


@pytest.mark.req("SRS-LEDG-005", "RC-LEDG-001")
def test_refuses_forever_after_a_fork_even_in_a_new_process(witness: Witness, log: SimLog,
                                                            state_path: Path) -> None:
    log.grow(6)
    witness.cosign(log.note())
    with pytest.raises(ForkDetected):
        witness.cosign(log.note(3))
    log.grow(2)  # an honest extension with a valid proof
    with pytest.raises(ForkDetected, match="witness refuses to cosign after a detected fork: rollback"):
        witness.cosign(log.note(), log.proof(6))
    reloaded = make_witness(state_path, log.signer)
    assert reloaded.forked
    with pytest.raises(ForkDetected, match="witness refuses to cosign after a detected fork") as info:
        reloaded.cosign(log.note(), log.proof(6))
    assert info.value.evidence is not None
    assert (info.value.evidence.old_size, info.value.evidence.new_size) == (6, 3)
    with pytest.raises(ForkDetected, match="refuses"):
        reloaded.cosign(log.note(6), [])  # even the checkpoint it already cosigned


# --------------------------------------------------------------------------- not forks


@pytest.mark.req("SRS-LEDG-005")
def test_bad_log_signature_is_not_a_fork_and_changes_nothing(witness: Witness, log: SimLog,
                                                             state_path: Path) -> None:
    log.grow(3)
    witness.cosign(log.note())
    before = state_path.read_bytes()
    log.grow(3)
    tampered = log.note().replace("\n6\n", "\n7\n", 1)
    with pytest.raises(CheckpointError, match="invalid signature"):
        witness.cosign(tampered, log.proof(3))
    impostor = SimLog(NoteSigner.from_seed(ORIGIN, b"X" * 32))
    impostor.grow(2)
    with pytest.raises(CheckpointError, match="not signed by the log key"):
        witness.cosign(impostor.note(), [])
    with pytest.raises(CheckpointError):
        witness.cosign("not a note", [])
    assert state_path.read_bytes() == before and not witness.forked
    witness.cosign(log.note(), log.proof(3))  # and it still works
    assert witness.state.size == 6


@pytest.mark.req("SRS-LEDG-005")
def test_bad_signature_on_a_fresh_witness_creates_no_state(witness: Witness, log: SimLog,
                                                           state_path: Path) -> None:
    log.grow(1)
    with pytest.raises(CheckpointError):
        witness.cosign(log.note().replace("\n1\n", "\n2\n", 1))
    assert not state_path.exists()


@pytest.mark.req("SRS-LEDG-005")
def test_another_origin_is_refused_without_fork(witness: Witness, log: SimLog,
                                                log_signer: NoteSigner) -> None:
    log.grow(2)
    witness.cosign(log.note())
    other = SimLog(log_signer, origin="fedprog.test/other")
    other.grow(3)
    with pytest.raises(CheckpointError, match="not the witnessed log"):
        witness.cosign(other.note(), [])
    assert not witness.forked


@pytest.mark.req("SRS-LEDG-005")
def test_witness_configuration_is_checked(state_path: Path, log_signer: NoteSigner) -> None:
    signer = CosignatureSigner.generate("site-b.fedprog/witness")
    with pytest.raises(ValueError, match="differs from its key name"):
        Witness("site-c", signer, log_signer.verifier(), state_path)
    with pytest.raises(ValueError, match="log's own key"):
        Witness(log_signer.name, log_signer, log_signer.verifier(), state_path)


# --------------------------------------------------------------------------- state file


@pytest.mark.req("SRS-LEDG-005")
def test_state_is_written_atomically(witness: Witness, log: SimLog, state_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    old = 0
    for _ in range(4):
        log.grow(3)
        witness.cosign(log.note(), log.proof(old))
        old = len(log.leaves)
        assert sorted(p.name for p in state_path.parent.iterdir()) == [state_path.name]
    before = state_path.read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    log.grow(3)
    with pytest.raises(OSError, match="simulated crash"):
        witness.cosign(log.note(), log.proof(old))
    monkeypatch.undo()
    assert state_path.read_bytes() == before  # the old state survives intact
    assert sorted(p.name for p in state_path.parent.iterdir()) == [state_path.name]  # no temp file left
    assert load_state(state_path).size == old


@pytest.mark.req("SRS-LEDG-005")
def test_state_round_trip_and_corrupt_files(state_path: Path, log: SimLog) -> None:
    log.grow(2)
    state = WitnessState(origin=ORIGIN, size=2, root=merkle.root(log.leaves), note=log.note())
    save_state(state_path, state)
    assert load_state(state_path) == state
    state_path.write_text("{not json")
    with pytest.raises(WitnessStateError, match="not JSON"):
        load_state(state_path)
    state_path.write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(WitnessStateError, match="format"):
        load_state(state_path)
    broken = state.to_json() | {"size": -1}
    state_path.write_text(json.dumps(broken))
    with pytest.raises(WitnessStateError, match="size"):
        load_state(state_path)
    with pytest.raises(WitnessStateError):
        make_witness(state_path, log.signer)  # a corrupt file is never a fresh witness


@pytest.mark.req("SRS-LEDG-005")
def test_fork_reason_is_pure(log: SimLog) -> None:
    log.grow(7)
    fresh = WitnessState()
    at4 = WitnessState(origin=ORIGIN, size=4, root=merkle.root(log.leaves[:4]))
    assert fork_reason(fresh, log.checkpoint(), []) is None
    assert fork_reason(at4, log.checkpoint(), log.proof(4)) is None
    assert fork_reason(at4, log.checkpoint(4), []) is None
    assert fork_reason(at4, log.checkpoint(3), []) == "rollback: size 3 is smaller than the cosigned size 4"
    assert "does not verify" in (fork_reason(at4, log.checkpoint(), log.proof(3)) or "")


# --------------------------------------------------------------------------- quorum


@pytest.fixture
def sites(tmp_path: Path, log_signer: NoteSigner) -> dict[str, Witness]:
    return {label: make_witness(tmp_path / f"{label}.json", log_signer, f"{label}.fedprog/witness")
            for label in ("site-a", "site-b", "site-c")}


def policy_for(sites: dict[str, Witness], log: SimLog, threshold: int | None = None) -> QuorumPolicy:
    verifiers = {k: w.verifier for k, w in sites.items()}
    return QuorumPolicy(verifiers, threshold, log_verifier=log.signer.verifier())


@pytest.mark.req("SRS-LEDG-006", "RC-LEDG-001")
def test_quorum_of_three(sites: dict[str, Witness], log: SimLog) -> None:
    log.grow(10)
    note = log.note()
    policy = policy_for(sites, log)
    assert policy.required == 2
    assert not policy.counts(note) and policy.missing(note) == ["site-a", "site-b", "site-c"]
    one = add_signatures(note, [sites["site-a"].cosign(note)])
    assert not policy.counts(one)
    assert policy.missing(one) == ["site-b", "site-c"]
    with pytest.raises(QuorumNotMet, match="1 of the 2 required.*site-b, site-c"):
        policy.require(one)
    two = add_signatures(one, [sites["site-c"].cosign(note)])
    assert policy.counts(two) and policy.missing(two) == ["site-b"]
    assert policy.require(two) == log.checkpoint()
    # A cosignature from a witness the policy does not know adds nothing.
    stranger = CosignatureSigner.generate("stranger.example/witness")
    assert not policy.counts(add_signatures(one, [stranger.sign(log.checkpoint().body())]))
    # Duplicate cosignatures from one site count once.
    site_a = sites["site-a"].signer
    assert isinstance(site_a, CosignatureSigner)
    again = add_signatures(one, [site_a.sign(log.checkpoint().body(), timestamp=NOW + 60)])
    assert again != one and not policy.counts(again) and policy.cosigners(again)[1] == {"site-a"}
    assert policy_for(sites, log, threshold=3).counts(two) is False
    assert policy_for(sites, log, threshold=1).counts(one) is True


@pytest.mark.req("SRS-LEDG-006", "RC-LEDG-001")
def test_invalid_cosignature_from_a_known_witness_is_rejected(sites: dict[str, Witness], log: SimLog) -> None:
    log.grow(4)
    note = log.note()
    a, b = sites["site-a"].cosign(note), sites["site-b"].cosign(note)
    forged = NoteSignature(b.name, b.key_id, b.signature[:-1] + bytes([b.signature[-1] ^ 1]))
    bad = add_signatures(note, [a, forged])
    with pytest.raises(CheckpointError, match="witness 'site-b': invalid cosignature"):
        policy_for(sites, log).counts(bad)
    # A cosignature of a different checkpoint pasted onto this one is invalid too.
    log.grow(1)
    c_other = sites["site-c"].cosign(log.note(), log.proof(4))
    with pytest.raises(CheckpointError, match="site-c"):
        policy_for(sites, log).counts(add_signatures(note, [a, b, c_other]))
    with pytest.raises(CheckpointError, match="invalid signature"):
        policy_for(sites, log).counts(add_signatures(note, [a, b]).replace("\n4\n", "\n5\n", 1))


@pytest.mark.req("SRS-LEDG-006")
def test_quorum_policy_validation(sites: dict[str, Witness], log: SimLog) -> None:
    verifiers = {k: w.verifier for k, w in sites.items()}
    for n, required in ((1, 1), (2, 2), (3, 2), (4, 3), (5, 3)):
        extra = {f"w{i}": CosignatureSigner.generate(f"w{i}").verifier() for i in range(n)}
        assert QuorumPolicy(extra, log_verifier=log.signer.verifier()).required == required
    with pytest.raises(ValueError, match="threshold 4"):
        QuorumPolicy(verifiers, 4, log_verifier=log.signer.verifier())
    with pytest.raises(ValueError, match="threshold 0"):
        QuorumPolicy(verifiers, 0, log_verifier=log.signer.verifier())
    with pytest.raises(ValueError, match="at least one witness"):
        QuorumPolicy({}, log_verifier=log.signer.verifier())
    with pytest.raises(ValueError, match="log's key"):
        QuorumPolicy(verifiers | {"log": log.signer.verifier()}, log_verifier=log.signer.verifier())
    with pytest.raises(ValueError, match="share a public key"):
        QuorumPolicy(verifiers | {"dup": verifiers["site-a"]}, log_verifier=log.signer.verifier())
    pinned = QuorumPolicy(verifiers, 1, log_verifier=log.signer.verifier(), origin="fedprog.test/other")
    log.grow(1)
    with pytest.raises(CheckpointError, match="origin"):
        pinned.counts(add_signatures(log.note(), [sites["site-a"].cosign(log.note())]))

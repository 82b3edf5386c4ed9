"""The release gate: states replayed from the ledger, transitions only along the lifecycle,
release only with a passing, intact validation report, and the server's view of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from device.fhir.errors import FhirError
from device.fhir.service import ReleasedModel
from device.registry import ModelRegistry, RegistryError
from ledger.checkpoint import NoteSigner
from ledger.log import Ledger
from tests.conftest import new_approver, signed_release

from .test_model import demo_artifact, reseal

JOB = "demo@1"
#: the approver pinned for the registries of these tests, and their private key
PERSON, KEY = new_approver()
PEOPLE = {PERSON.name: PERSON}


def release(reg: ModelRegistry, r: str, **kw: Any) -> Any:
    """Release ``r`` signed by the pinned approver."""
    return signed_release(reg, r, PERSON, KEY, **kw)


def report(passed: bool) -> dict[str, Any]:
    return {"criteria": [{"id": "calibration-oe-1095", "value": 1.02 if passed else 1.9, "passed": passed}],
            "passed": passed, "verification": {"status": "passed", "tests": 1}}


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    ledger = Ledger(tmp_path / "ledger.sqlite", signer=NoteSigner.generate("test/log"), origin="test/log")
    reg = ModelRegistry(tmp_path / "models", ledger, people=PEOPLE)
    reg.register(demo_artifact(), JOB)
    return reg


def ref(reg: ModelRegistry) -> str:
    return reg.list()[-1].ref


@pytest.mark.req("SRS-REG-001")
def test_a_model_walks_candidate_validated_released_withdrawn(registry: ModelRegistry) -> None:
    r = ref(registry)
    assert registry.get(r).status == "candidate"
    registry.record_validation(r, report(True))
    assert registry.get(r).status == "validated"
    release(registry, r, reason="ok")
    assert registry.get(r).status == "released" and registry.released().ref == r
    registry.withdraw(r, reason="superseded", by="qa")
    entry = registry.get(r)
    assert entry.status == "withdrawn"
    assert [s for _, s in entry.history] == ["candidate", "validated", "released", "withdrawn"]
    kinds = [k for _, k, _ in registry.ledger.entries()]
    assert kinds == ["model", "validation", "release", "withdrawal"]  # every transition in the ledger
    with pytest.raises(RegistryError, match="no released model"):
        registry.released()


@pytest.mark.req("SRS-REG-002", "RC-REG-001", "RC-VAL-001")
def test_release_needs_a_passing_validation(registry: ModelRegistry) -> None:
    r = ref(registry)
    with pytest.raises(RegistryError, match="only a validated model"):
        release(registry, r)
    registry.record_validation(r, report(False))
    assert registry.get(r).status == "candidate"
    with pytest.raises(RegistryError, match="only a validated model"):
        release(registry, r)
    registry.record_validation(r, report(True))
    registry.record_validation(r, report(False))  # a later failing report demotes it again
    assert registry.get(r).status == "candidate"
    with pytest.raises(RegistryError, match="'passed'"):
        registry.record_validation(r, {"passed": "yes"})


@pytest.mark.req("SRS-REG-002", "RC-REG-001")
def test_a_tampered_or_missing_report_blocks_release(registry: ModelRegistry) -> None:
    r = ref(registry)
    registry.record_validation(r, report(True))
    digest = registry.get(r).validation["report_sha256"]  # type: ignore[index]
    path = registry.reports / f"{digest}.json"
    data = json.loads(path.read_text())
    data["criteria"][0]["value"] = 0.5
    path.write_text(json.dumps(data))
    with pytest.raises(RegistryError, match="does not match its ledger hash"):
        release(registry, r)
    path.unlink()
    with pytest.raises(RegistryError, match="missing"):
        release(registry, r)


@pytest.mark.req("SRS-REG-002", "RC-ART-001")
def test_a_tampered_artifact_blocks_release(registry: ModelRegistry) -> None:
    r = ref(registry)
    registry.record_validation(r, report(True))
    path = registry.folder / f"{registry.get(r).sha256}.json"
    art = json.loads(path.read_text())
    art["coefficients"]["age"] += 0.1
    path.write_text(json.dumps(art))
    with pytest.raises(RegistryError, match="does not match its sha256"):
        release(registry, r)


@pytest.mark.req("SRS-REG-003", "SRS-CONS-005", "SRS-CONS-009", "RC-CONS-001")
def test_under_the_immediate_policy_a_revocation_makes_a_model_affected_never_served(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite", signer=NoteSigner.generate("test/log"), origin="test/log")
    registry = ModelRegistry(tmp_path / "models", ledger, people=PEOPLE)
    registry.register(demo_artifact(), JOB, study={"revocation": {"policy": "immediate"}})
    r = ref(registry)
    registry.record_validation(r, report(True))
    release(registry, r)
    server = ReleasedModel(registry)
    assert server.current().sha256 == registry.get(r).sha256
    registry.ledger.append("revocation", {"affects_jobs": [JOB], "commitment": "00" * 32})
    assert registry.get(r).status == "affected" and registry.get(r).lifecycle == "released"
    assert registry.get(r).retrain is None and registry.note_revocations() == []  # no window to open
    with pytest.raises(FhirError) as exc:
        server.current()  # takes effect at once: the ledger grew
    assert exc.value.status == 503 and "no released model" in exc.value.diagnostics
    registry.withdraw(r, reason="trained on revoked consent")
    assert registry.get(r).status == "withdrawn"


@pytest.mark.req("SRS-REG-001", "SRS-REG-003", "RC-REG-001")
def test_the_server_follows_withdrawals_and_newer_releases(registry: ModelRegistry) -> None:
    first = ref(registry)
    registry.record_validation(first, report(True))
    release(registry, first)
    art = demo_artifact()
    art["version"] = "2"
    registry.register(reseal(art), "demo@2", predecessor=first)
    server = ReleasedModel(registry)
    assert server.current().ref == first  # the new version is only a candidate
    second = ref(registry)
    registry.record_validation(second, report(True))
    release(registry, second, significant_change="assessed as a new version (no change control plan here)")
    assert server.current().ref == second
    registry.withdraw(second, reason="field safety notice")
    assert server.current().ref == first
    with pytest.raises(RegistryError, match="already withdrawn"):
        registry.withdraw(second, reason="again")
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.withdraw(first, reason=" ")
    with pytest.raises(RegistryError, match="is withdrawn"):
        registry.record_validation(second, report(True))


@pytest.mark.req("SRS-REG-001", "RC-INPUT-001")
def test_a_model_whose_envelope_exceeds_its_training_data_is_not_released(registry: ModelRegistry) -> None:
    art = demo_artifact()
    age = next(i for i in art["inputs"] if i["name"] == "age")
    age["coverage"]["counts"][-1] = 0  # nobody in the top tenth of the declared age range
    art["version"] = "9"
    registry.register(reseal(art), "demo@9")
    r = ref(registry)
    registry.record_validation(r, report(True))
    with pytest.raises(RegistryError, match=r"'age': no training patient in the highest tenth"):
        release(registry, r)
    assert registry.get(r).status == "validated"


@pytest.mark.req("SRS-REG-001", "RC-INPUT-005")
def test_a_gap_inside_the_envelope_keeps_the_model_from_release(registry: ModelRegistry) -> None:
    """A tenth inside a declared range where no hospital had k training patients (a site sends such a
    cell as 0): the range promises what the data never showed there, so the gate refuses."""
    art = demo_artifact()
    nodes = next(i for i in art["inputs"] if i["name"] == "pnodes")
    assert all(nodes["coverage"]["counts"])  # the demo's range 1-14 is covered throughout
    nodes["coverage"]["counts"][6] = 0
    art["version"] = "8"
    registry.register(reseal(art), "demo@8")
    r = ref(registry)
    registry.record_validation(r, report(True))
    low, high = nodes["coverage"]["edges"][6:8]
    gap = rf"'pnodes': no training patient in the tenth of its declared range \[{low:g}, {high:g}\]"
    with pytest.raises(RegistryError, match=gap):
        release(registry, r)
    assert registry.get(r).status == "validated"


@pytest.mark.req("RC-INPUT-005")
def test_only_tenths_that_can_hold_a_value_are_judged() -> None:
    """An integer range [2, 3] in tenths: only the first (2) and the last (3) can hold a grade; a
    boolean's or a category's empty interior is no gap."""
    from device.registry import check_envelope

    edges = [2 + 0.1 * i for i in range(11)]
    grade = {"name": "grade", "kind": "integer",
             "coverage": {"edges": edges, "counts": [50] + [0] * 8 + [40]}}
    flag = {"name": "ht", "kind": "boolean", "coverage": {"edges": [0.1 * i for i in range(11)],
                                                          "counts": [300] + [0] * 8 + [200]}}
    check_envelope({"inputs": [grade, flag]})
    grade["kind"] = "quantity"  # a quantity can lie anywhere in [2, 3]: the empty tenths are gaps
    with pytest.raises(RegistryError, match=r"'grade': no training patient in the tenth of .* \[2.1, 2.2\]"):
        check_envelope({"inputs": [grade, flag]})


def _edit_kind(ledger: Ledger, kind: str) -> None:
    """Someone with write access to the file (not the witnesses) appends one character to a kind."""
    import sqlite3

    db = sqlite3.connect(ledger.path, isolation_level=None)
    db.execute("DROP TRIGGER entries_no_update")
    db.execute("UPDATE entries SET kind = kind || 'x' WHERE kind = ?", (kind,))
    db.close()


@pytest.mark.req("SRS-LEDG-008", "SRS-LEDG-011", "RC-REG-001")
def test_an_edited_withdrawal_is_not_replayed_nor_served(registry: ModelRegistry) -> None:
    """Issue 16, H2: the withdrawal's kind edited in the file must not put the model back in service."""
    from device.fhir.ledger_guard import GuardedReleasedModel
    from device.registry import LedgerUntrusted

    r = ref(registry)
    registry.record_validation(r, report(True))
    release(registry, r)
    server = GuardedReleasedModel(registry, interval=None)
    assert server.current().ref == r and server.guard.reason is None
    registry.withdraw(r, reason="field safety notice")
    with pytest.raises(FhirError, match="withdrawn|no released model"):
        server.current()
    _edit_kind(registry.ledger, "withdrawal")
    with pytest.raises(LedgerUntrusted, match="refusing to replay the ledger: .* kind 'withdrawalx'"):
        registry.list()
    with pytest.raises(FhirError) as exc:
        server.current()
    assert exc.value.status == 503
    assert "refusing to serve: the ledger fails its consistency check" in exc.value.diagnostics
    assert "entry 3: stored leaf hash does not match its body and kind 'withdrawalx'" in exc.value.diagnostics


@pytest.mark.req("SRS-REG-004")
def test_a_release_entry_without_a_pinned_approvers_signature_is_not_served(registry: ModelRegistry) -> None:
    """Adversary: someone who can append to the ledger (an operator of the coordinator) but holds no
    approver's key writes a ``release`` entry by hand, copying an honest approval of another model or
    signing with their own key: the model is never served."""
    r = ref(registry)
    registry.record_validation(r, report(True))
    entry = registry.get(r)
    body = {"model": entry.ref, "sha256": entry.sha256, "report_sha256": entry.validation["report_sha256"],
            "at": "2026-12-07T00:00:00Z", "reason": "", "verification": {"status": "passed"}}
    registry.ledger.append("release", {**body, "by": "operator"})  # the old free-text release
    mallory, mallory_key = new_approver(PERSON.name)  # same name, a key that is not the pinned one
    from device.release_gate import release_subject
    from ledger.signatures import sign

    subject = release_subject(entry.ref, entry.sha256, body["report_sha256"])
    forged = sign(mallory_key, mallory, "approver", subject, "2026-12-07T00:00:00Z")
    registry.ledger.append("release", {**body, "approval": forged.model_dump(mode="json")})
    other = sign(KEY, PERSON, "approver", {**subject, "sha256": "ab" * 32}, "2026-12-07T00:00:00Z")
    registry.ledger.append("release", {**body, "approval": other.model_dump(mode="json")})  # replayed
    assert registry.get(r).status == "validated"
    with pytest.raises(FhirError, match="no released model"):
        ReleasedModel(registry).current()
    with pytest.raises(RegistryError, match="does not verify under the key pinned"):
        registry.release(r, forged)
    release(registry, r)  # the pinned approver's own signature releases it
    assert registry.get(r).status == "released"
    approval = registry.ledger.entries("release")[-1][2]["approval"]
    assert approval["statement"]["name"] == PERSON.name and approval["statement"]["role"] == "approver"


@pytest.mark.req("SRS-REG-004")
def test_a_person_without_the_approver_role_or_not_pinned_cannot_release(tmp_path: Path) -> None:
    author, author_key = new_approver("Dr. B. Author", roles=("author",))
    ledger = Ledger(tmp_path / "ledger.sqlite", signer=NoteSigner.generate("test/log"), origin="test/log")
    registry = ModelRegistry(tmp_path / "models", ledger, people={**PEOPLE, author.name: author})
    registry.register(demo_artifact(), JOB)
    r = ref(registry)
    registry.record_validation(r, report(True))
    from ledger.signatures import SignatureError

    with pytest.raises(SignatureError, match="does not hold the role 'approver'"):
        signed_release(registry, r, author, author_key)
    stranger, stranger_key = new_approver("Dr. C. Stranger")
    with pytest.raises(RegistryError, match="not a pinned approver"):
        signed_release(registry, r, stranger, stranger_key)
    assert registry.get(r).status == "validated"
    assert [k for _, k, _ in registry.ledger.entries()] == ["model", "validation"]


@pytest.mark.req("SRS-REG-005")
def test_a_release_needs_software_verification_that_passed(tmp_path: Path) -> None:
    """A clinical workspace refuses a release whose validation skipped or failed the software
    verification; a demonstration workspace may release, and the ledger says the verification was
    waived (so the dossier of such a release can never be issued)."""
    for demonstration in (False, True):
        folder = tmp_path / str(demonstration)
        ledger = Ledger(folder / "ledger.sqlite", signer=NoteSigner.generate("test/log"), origin="test/log")
        registry = ModelRegistry(folder / "models", ledger, people=PEOPLE, demonstration=demonstration)
        registry.register(demo_artifact(), JOB)
        r = ref(registry)
        registry.record_validation(r, {**report(True), "verification": {"status": "skipped",
                                                                          "reason": "--skip-verification"}})
        if not demonstration:
            with pytest.raises(RegistryError, match=r"software verification skipped \(--skip-verification\)"):
                release(registry, r)
            for partial, why in (({"selection": True}, "a selection of the suite ran"),
                                 ({"dirty": True}, "the suite ran on a modified checkout")):
                evidence = {"status": "passed", **partial}
                registry.record_validation(r, {**report(True), "verification": evidence})
                with pytest.raises(RegistryError, match=f"not release-grade: {why}"):
                    release(registry, r)
            assert registry.get(r).status == "validated"
            # a release entry claiming a waiver is not honoured outside a demonstration workspace
            signed = ModelRegistry(folder / "models", ledger, people=PEOPLE, demonstration=True)
            release(signed, r)
            assert signed.get(r).status == "released" and registry.get(r).status == "validated"
        else:
            release(registry, r)
            body = registry.ledger.entries("release")[-1][2]
            waiver = body["verification"]
            assert waiver["status"] == "waived" and "demonstration" in waiver["reason"]
            assert registry.get(r).status == "released"


@pytest.mark.req("SRS-REG-004", "RC-REG-001")
def test_a_withdrawn_model_is_not_revived_by_replaying_its_own_entries(registry: ModelRegistry) -> None:
    """Adversary: whoever can append to the ledger re-appends a withdrawn model's ``model``,
    ``validation`` and signed ``release`` entries, hoping the replay starts its history again."""
    r = ref(registry)
    registry.record_validation(r, report(True))
    release(registry, r)
    registry.withdraw(r, reason="field safety notice")
    for kind in ("model", "validation", "release"):
        registry.ledger.append(kind, registry.ledger.entries(kind)[0][2])
    assert registry.get(r).status == "withdrawn"
    with pytest.raises(FhirError, match="no released model"):
        ReleasedModel(registry).current()
    with pytest.raises(RegistryError, match="already registered"):
        registry.register(registry.artifact(r), JOB)


@pytest.mark.req("SRS-REG-004", "SRS-REG-005")
def test_the_signature_covers_the_verification_and_nothing_can_be_added_or_dropped(tmp_path: Path) -> None:
    """Adversary: whoever can append to the ledger copies a signed release entry of a demonstration
    workspace, turning its waived verification into ``passed`` or adding fields, so that the technical
    file would no longer say the verification was waived."""
    ledger = Ledger(tmp_path / "ledger.sqlite", signer=NoteSigner.generate("test/log"), origin="test/log")
    registry = ModelRegistry(tmp_path / "models", ledger, people=PEOPLE, demonstration=True)
    registry.register(demo_artifact(), JOB)
    r = ref(registry)
    registry.record_validation(r, {**report(True), "verification": {"status": "skipped", "reason": "demo"}})
    release(registry, r)
    honest = registry.ledger.entries("release")[-1][2]
    assert honest["approval"]["statement"]["verification"]["status"] == "waived"
    assert registry.release_problems(honest) == []
    passed = {**honest, "verification": {"status": "passed", "tests": 1900}}
    extra = {**honest, "change_control": {"within_plan": True}}
    for forged in (passed, extra):
        assert any("approval is for another" in p for p in registry.release_problems(forged))

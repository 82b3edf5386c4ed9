"""Signed document approvals, the approval block and change history, and when the technical file is
issued (``fedprog dossier approve``; :mod:`dossier.approvals`).

The "issuable" inputs close every other blocker in a controlled way: a complete manufacturer's file
and an approved risk management report (as tests/dossier/test_manufacturer.py does), a small
requirement tree whose one test passed and whose links were reviewed, and a ``release`` entry,
signed by a pinned approver, whose software verification passed. Each test then changes one thing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from dossier.approvals import KIND, subject
from dossier.build import DOCUMENTS, Manifest, build, verify
from dossier.inputs import gather
from dossier.spec import DocumentSpec, DossierInputs
from fedprog import dossier_cmd
from fedprog.workspace import Workspace
from ledger.signatures import ROLES, Approval, load_private_key, new_key, sign
from tests.conftest import copy_workspace
from tests.dossier.conftest import DUMMY
from traceability.links import Link
from traceability.load import Requirements
from traceability.safety import Approval as RiskApproval
from traceability.schema import Item, fingerprint

#: who signs in the tests: one person per role, and one holding every role
AUTHOR, REVIEWER, APPROVER, ALL = "Ann Author", "Rob Reviewer", "Ada Approver", "Sam Allroles"
SIGNERS = {"author": AUTHOR, "reviewer": REVIEWER, "approver": APPROVER}
AT = "2026-12-08T10:00:00Z"
UN, SYS, SRS = "UN-ZZ-001", "SYS-ZZ-001", "SRS-ZZ-001"
NODE = "tests/dossier/test_approvals.py::test_the_linked_test"
TEST_SHA = "ab" * 32
#: the real documents the issuing tests build besides the dummy (they need no requirements)
REAL = ("FP-MC", "FP-IFU")
#: the software verification of the test release
PASSED = {"status": "passed", "tests": 1, "failures": 0}


def unapproved(doc_id: str, roles: Any, content: str) -> str:
    """The blocker line of a document lacking ``roles``."""
    return (f"{doc_id} is not approved by its {', '.join(roles)} (content {content[:16]}…; "
            f"fedprog dossier approve {doc_id} --role ROLE)")


def _junit(outcome: str = "", test_sha: str = TEST_SHA) -> str:
    """One test carrying SYS and SRS, passed unless ``outcome`` is a JUnit element (failure, skipped)."""
    mark = f"<{outcome} message='test'/>" if outcome else ""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="1" timestamp="2026-01-01T00:00:00"><properties>
<property name="commit" value="{'0' * 40}"/><property name="date" value="2026-01-01T00:00:00+00:00"/>
<property name="environment_sha256" value="{'0' * 64}"/></properties>
<testcase classname="tests.dossier.test_approvals" name="test_the_linked_test"><properties>
<property name="nodeid" value="{NODE}"/>
<property name="req" value="{SYS}"/><property name="req" value="{SRS}"/>
<property name="test_sha256" value="{test_sha}"/></properties>{mark}</testcase>
</testsuite></testsuites>
"""


def _requirements(sys_text: str = "The system shall keep a controlled technical file.") -> Requirements:
    """A user need refined by a system requirement refined by a software one, every link reviewed
    against the parents as they are now (``sys_text`` changes the system requirement afterwards)."""
    un = Item(id=UN, type="user-need", title="Controlled file", text="Staff need a controlled file.",
              verification="inspection")
    sys_item = Item(id=SYS, type="system", title="Controlled file", parents=[UN], verification="test",
                    text="The system shall keep a controlled technical file.", reviewed={UN: fingerprint(un)})
    srs = Item(id=SRS, type="software", title="Approved documents", parents=[SYS], verification="test",
               text="Every document shall carry signed approvals.", reviewed={SYS: fingerprint(sys_item)})
    changed = sys_item.model_copy(update={"text": sys_text})
    return Requirements(items={UN: un, SYS: changed, SRS: srs}, source={})


def _links(reqs: Requirements) -> dict[tuple[str, str], Link]:
    """The reviewed baseline of the test's two links, as the requirements were when reviewed."""
    base = _requirements()
    return {(r, NODE): Link(req=r, test=NODE, test_sha256=TEST_SHA, reviewed_by="Rita Reviewer",
                            req_fingerprint=fingerprint(base.items[r]), reviewed_at=dt.date(2026, 1, 2))
            for r in (SYS, SRS)}


class _Decided:
    """A manufacturer's file with every decision taken."""

    def missing_decisions(self) -> list[tuple[str, str]]:
        return []


def issuable(inputs: DossierInputs, **changes: Any) -> DossierInputs:
    """``inputs`` with every blocker but the approvals closed (see the module doc), then ``changes``."""
    assert inputs.safety is not None
    risk = inputs.safety.risk_management
    decision = RiskApproval(name="A. Person", role=risk.approver, date="2026-12-01",
                            decision="residual risk acceptable")
    approved = inputs.safety.model_copy(
        update={"risk_management": risk.model_copy(update={"approval": decision})})
    reqs = _requirements()
    base = dataclasses.replace(inputs, manufacturer=_Decided(), safety=approved, clinical_evaluation=None,
                               requirements=reqs, links=_links(reqs))
    return dataclasses.replace(base, **changes)


def approval_entry(ws: Workspace, keys: dict[str, Path], name: str, role: str, doc: str, content: str) -> int:
    """``name`` approves ``content`` of ``doc`` in ``role`` (what the command appends); its index."""
    model = ws.models.released()
    wanted = subject(doc, content, model.version, model.sha256)
    approval = sign(load_private_key(keys[name]), ws.people()[name], role, wanted, AT)
    return ws.ledger.append(KIND, approval.model_dump(mode="json")).index


def page_text(path: Path, page: int = 0) -> str:
    return PdfReader(path).pages[page].extract_text() or ""


def whole_text(path: Path) -> str:
    return "\n".join(p.extract_text() or "" for p in PdfReader(path).pages)


# ------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    return {n: folder / f"{n.split()[0].lower()}.pem" for n in (AUTHOR, REVIEWER, APPROVER, ALL)}


@pytest.fixture(scope="module")
def signed_ws(demo_workspace: Path, keys: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo workspace with four people pinned and a release of its model, signed by the approver,
    whose software verification passed."""
    from device.registry import release_subject

    ws_dir = copy_workspace(demo_workspace, tmp_path_factory.mktemp("signed") / "ws")
    ws = Workspace(ws_dir)
    for name, roles in ((AUTHOR, ["author"]), (REVIEWER, ["reviewer"]), (APPROVER, ["approver"]),
                        (ALL, list(ROLES))):
        ws.add_person(name, roles, keys[name])  # type: ignore[arg-type]
    model = ws.models.released()
    report = model.validation["report_sha256"] if model.validation else None
    approval = sign(load_private_key(keys[APPROVER]), ws.people()[APPROVER], "approver",
                    release_subject(model.ref, model.sha256, report, PASSED), AT)
    ws.ledger.append("release", {"model": model.ref, "sha256": model.sha256, "at": AT,
                                 "report_sha256": report, "reason": "test: verified",
                                 "approval": approval.model_dump(mode="json"), "verification": PASSED})
    ws.publish_checkpoint()
    return ws_dir


@pytest.fixture(scope="module")
def junit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("runs")
    for name, text in (("passed", _junit()), ("failed", _junit("failure")), ("skipped", _junit("skipped")),
                       ("changed", _junit(test_sha="cd" * 32))):
        (folder / f"{name}.xml").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def dummy_approved(signed_ws: Path, keys: dict[str, Path], junit_dir: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DossierInputs]:
    """A copy of the signed workspace in which the dummy document's issuable content is approved by
    its author and reviewer (not yet its approver); the inputs gathered after."""
    ws_dir = copy_workspace(signed_ws, tmp_path_factory.mktemp("approved") / "ws")
    ws = Workspace(ws_dir)
    content = _build(issuable(gather(ws_dir, junit=junit_dir / "passed.xml")),
                     tmp_path_factory.mktemp("d") / "d").data["documents"][0]["content_sha256"]
    for role in ("author", "reviewer"):
        approval_entry(ws, keys, SIGNERS[role], role, DUMMY.id, content)
    ws.publish_checkpoint()
    return ws_dir, gather(ws_dir, junit=junit_dir / "passed.xml")


def _build(inputs: DossierInputs, out: Path, docs: list[DocumentSpec] | None = None) -> Manifest:
    return build(inputs, out, anchor=None, documents=docs or [DUMMY])


def with_approver(ws_dir: Path, keys: dict[str, Path], junit_dir: Path, tmp_path: Path) -> DossierInputs:
    """A copy of the ``dummy_approved`` workspace in which the approver approved the dummy too: the
    inputs gathered from it (with every blocker closed, they build an issued file)."""
    copy = copy_workspace(ws_dir, tmp_path / "with-approver")
    content = _build(issuable(gather(copy, junit=junit_dir / "passed.xml")), tmp_path / "content")
    approval_entry(Workspace(copy), keys, APPROVER, "approver", DUMMY.id,
                   content.data["documents"][0]["content_sha256"])
    return gather(copy, junit=junit_dir / "passed.xml")


# ------------------------------------------------------------------------- every document shows them
@pytest.mark.req("SRS-DOS-030")
def test_every_document_shows_its_approval_block_and_change_history(built: tuple[Path, Manifest]) -> None:
    out, manifest = built
    assert manifest.data["status"] == "draft"
    for doc in manifest.data["documents"]:
        assert doc["approvals"] == {"author": None, "reviewer": None, "approver": None}
        assert len(doc["content_sha256"]) == 64 and doc["content_sha256"] != doc["sha256"]
        first = page_text(out / doc["file"])
        assert f"Approval of content SHA-256 {doc['content_sha256']}" in first, doc["file"]
        for role in ROLES:
            assert f"{role}\nnot yet approved" in first, (doc["file"], role)
        text = whole_text(out / doc["file"])
        assert "Change history" in text and "Commits of the source checkout that changed" in text
        assert unapproved(doc["id"], ROLES, doc["content_sha256"]) in manifest.data["issue_blockers"]


@pytest.mark.req("SRS-DOS-030")
def test_the_change_history_lists_the_commits_of_the_document_module(built: tuple[Path, Manifest]) -> None:
    from dossier.approvals import history_paths
    from dossier.inputs import checkout, git_log

    source = checkout()
    srs = next(d for d in DOCUMENTS if d.id == "FP-SRS")
    paths = history_paths(srs, source)
    assert paths[:2] == ["dossier/documents/srs.py", "traceability/requirements"]
    commits = git_log(source, 40, paths)
    if not commits:
        pytest.skip("no git history in this checkout")
    text = whole_text(built[0] / srs.file)
    assert commits[0].commit[:12] in text and commits[-1].commit[:12] in text
    assert len(commits) <= 40 and all(len(git_log(source, 40, [p])) <= len(commits) for p in paths)


# ------------------------------------------------------------------------- the done-when
@pytest.mark.req("SRS-DOS-029")
@pytest.mark.req("SRS-DOS-031")
def test_draft_until_each_role_approved_each_document_then_issued(
        signed_ws: Path, keys: dict[str, Path], junit_dir: Path, tmp_path: Path) -> None:
    ws_dir = copy_workspace(signed_ws, tmp_path / "ws")
    docs = [DUMMY, *(d for d in DOCUMENTS if d.id in REAL)]
    out = ws_dir / "dossier"
    ws = Workspace(ws_dir)
    inputs = issuable(gather(ws_dir, junit=junit_dir / "passed.xml"))
    first = build(inputs, out, anchor=ws.ledger, documents=docs)
    ws.publish_checkpoint()
    data = first.data
    assert data["status"] == "draft"
    assert data["issue_blockers"] == [unapproved(d["id"], ROLES, d["content_sha256"])
                                      for d in data["documents"]]
    runner = CliRunner()
    for doc in docs:
        for role, name in SIGNERS.items():
            res = runner.invoke(dossier_cmd.app, ["approve", doc.id, "--role", role, "--name", name, "--key",
                                                  str(keys[name]), "--workspace", str(ws_dir), "--json"])
            assert res.exit_code == 0, res.output
            got = json.loads(res.stdout)
            listed = next(d for d in data["documents"] if d["id"] == doc.id)
            assert (got["document"], got["role"], got["name"]) == (doc.id, role, name)
            assert got["content_sha256"] == listed["content_sha256"] and got["cosigners"]
            kind, body = Workspace(ws_dir).ledger.entry(got["ledger_index"])
            assert kind == KIND and Approval.model_validate(body).statement == {
                **subject(doc.id, listed["content_sha256"], inputs.revision, data["model"]["sha256"]),
                "name": name, "role": role, "at": got["at"]}
    ws = Workspace(ws_dir)  # the commands appended through their own connection
    inputs = issuable(gather(ws_dir, junit=junit_dir / "passed.xml"))
    again = build(inputs, out, anchor=ws.ledger, documents=docs)
    ws.publish_checkpoint()
    assert again.data["status"] == "issued" and again.data["issue_blockers"] == []
    assert verify(out, Workspace(ws_dir).ledger) == []
    for before, after in zip(data["documents"], again.data["documents"], strict=True):
        assert after["content_sha256"] == before["content_sha256"] and after["sha256"] != before["sha256"]
        assert {r: a["name"] for r, a in after["approvals"].items()} == SIGNERS
        first_page = page_text(out / after["file"])
        assert "not yet approved" not in first_page
        for role, name in SIGNERS.items():
            signed = after["approvals"][role]
            assert f"{role}\n{name}\n{signed['at']}\n{signed['key_id']}" in first_page, (after["file"], role)


# ------------------------------------------------------------------------- the command's refusals
@pytest.mark.req("SRS-DOS-029")
def test_approve_refuses_with_one_line_and_writes_nothing(signed_ws: Path, keys: dict[str, Path],
                                                          junit_dir: Path, tmp_path: Path) -> None:
    ws_dir = copy_workspace(signed_ws, tmp_path / "ws")
    ws = Workspace(ws_dir)
    out = tmp_path / "dossier"
    build(issuable(gather(ws_dir, junit=junit_dir / "passed.xml")), out, anchor=ws.ledger, documents=[DUMMY])
    ws.publish_checkpoint()
    runner = CliRunner()

    def approve(name: str, role: str, key: Path, doc: str = DUMMY.id, folder: Path = out) -> Any:
        args = ["approve", doc, "--role", role, "--name", name, "--key", str(key), "--dossier", str(folder)]
        return runner.invoke(dossier_cmd.app, [*args, "--workspace", str(ws_dir)])

    ok = approve(ALL, "author", keys[ALL])
    assert ok.exit_code == 0 and f"{ALL} approved {DUMMY.id} as author" in ok.stdout
    tampered = Path(shutil.copytree(out, tmp_path / "tampered"))
    (tampered / DUMMY.file).write_bytes((out / DUMMY.file).read_bytes() + b"%")
    size = Workspace(ws_dir).ledger.size
    for res, message in (
            (approve("Nobody Here", "author", keys[AUTHOR]), "'Nobody Here' is not a pinned person"),
            (approve(AUTHOR, "reviewer", keys[AUTHOR]), "Ann Author does not hold the role 'reviewer'"),
            (approve(REVIEWER, "reviewer", keys[AUTHOR]), "the key given is not the one pinned for Rob"),
            (approve(ALL, "reviewer", keys[ALL]), "Sam Allroles already approved this content as author"),
            (approve(AUTHOR, "author", keys[AUTHOR]), "the author approval of this content was given"),
            (approve(REVIEWER, "reviewer", keys[REVIEWER], doc="FP-NOPE"), "FP-NOPE is not a document"),
            (approve(REVIEWER, "reviewer", keys[REVIEWER], folder=tampered), "fails verification"),
            (approve(REVIEWER, "boss", keys[REVIEWER]), "unknown role 'boss'")):
        assert res.exit_code == 2, res.output
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fedprog: error: ") and message in lines[0], lines
    assert Workspace(ws_dir).ledger.size == size


# ------------------------------------------------------------------------- what keeps it a draft
@pytest.mark.req("SRS-DOS-031")
def test_with_the_approver_it_is_issued_without_a_missing_role_it_is_not(
        dummy_approved: tuple[Path, DossierInputs], keys: dict[str, Path], junit_dir: Path,
        tmp_path: Path) -> None:
    draft = _build(issuable(dummy_approved[1]), tmp_path / "draft")
    content = draft.data["documents"][0]["content_sha256"]
    assert draft.data["status"] == "draft"
    assert draft.data["issue_blockers"] == [unapproved(DUMMY.id, ["approver"], content)]
    assert "approver\nnot yet approved" in page_text(tmp_path / "draft" / DUMMY.file)
    approved = with_approver(dummy_approved[0], keys, junit_dir, tmp_path)
    issued = _build(issuable(approved), tmp_path / "issued")
    assert issued.data["status"] == "issued" and issued.data["issue_blockers"] == []


@pytest.mark.req("SRS-DOS-031")
def test_a_forged_approval_does_not_approve(dummy_approved: tuple[Path, DossierInputs], junit_dir: Path,
                                           tmp_path: Path) -> None:
    """Adversary: can append to the ledger, holds no pinned person's key. A statement in the approver's
    name signed with another key, and the reviewer's real signature moved onto an approver statement,
    count for nothing and are shown nowhere."""
    ws_dir = copy_workspace(dummy_approved[0], tmp_path / "ws")
    ws = Workspace(ws_dir)
    content = _build(issuable(dummy_approved[1]), tmp_path / "before").data["documents"][0]["content_sha256"]
    model = ws.models.released()
    wanted = subject(DUMMY.id, content, model.version, model.sha256)
    pem, impostor = new_key(APPROVER, ["approver"])
    forged = sign(load_private_key(_write(tmp_path / "impostor.pem", pem)), impostor, "approver", wanted, AT)
    ws.ledger.append(KIND, forged.model_dump(mode="json"))
    real = next(Approval.model_validate(b) for _, _, b in ws.ledger.entries(KIND)
                if b["statement"]["role"] == "reviewer")
    moved = {**real.model_dump(mode="json"),
             "statement": {**real.statement, "name": APPROVER, "role": "approver"}}
    ws.ledger.append(KIND, moved)
    ws.publish_checkpoint()
    inputs = gather(ws_dir, junit=junit_dir / "passed.xml")
    assert len(inputs.approvals) == 4
    manifest = _build(issuable(inputs), tmp_path / "after")
    assert manifest.data["status"] == "draft"
    assert manifest.data["documents"][0]["approvals"]["approver"] is None
    assert manifest.data["issue_blockers"] == [unapproved(DUMMY.id, ["approver"], content)]
    pdf = tmp_path / "after" / DUMMY.file
    assert "approver\nnot yet approved" in page_text(pdf) and APPROVER not in whole_text(pdf)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.req("SRS-DOS-031")
@pytest.mark.parametrize("run,expected", [
    ("failed", [f"test {NODE} ({SYS}, {SRS}) failed", f"trace check: unverified: {SRS}: ",
                f"trace check: unverified: {SYS}: "]),
    ("skipped", [f"test {NODE} ({SYS}, {SRS}) skipped", f"trace check: unverified: {SRS}: ",
                 f"trace check: unverified: {SYS}: "]),
    ("changed", [f"trace check: suspect-test-link: {SRS}: ", f"trace check: suspect-test-link: {SYS}: "]),
])
def test_a_linked_test_failed_skipped_or_changed_keeps_it_a_draft(
        dummy_approved: tuple[Path, DossierInputs], keys: dict[str, Path], junit_dir: Path, tmp_path: Path,
        run: str, expected: list[str]) -> None:
    from dossier.inputs import _read_junit

    approved = with_approver(dummy_approved[0], keys, junit_dir, tmp_path)
    ok = _build(issuable(approved), tmp_path / "ok")
    assert ok.data["status"] == "issued"
    manifest = _build(issuable(approved, test_run=_read_junit(junit_dir / f"{run}.xml")), tmp_path / run)
    blockers = manifest.data["issue_blockers"]
    assert manifest.data["status"] == "draft"
    assert manifest.data["documents"][0]["content_sha256"] == ok.data["documents"][0]["content_sha256"]
    assert len(blockers) == len(expected), blockers
    assert all(any(b.startswith(e) for b in blockers) for e in expected), blockers


@pytest.mark.req("SRS-DOS-031")
def test_a_changed_requirement_or_an_unverified_release_keeps_it_a_draft(
        dummy_approved: tuple[Path, DossierInputs], keys: dict[str, Path], junit_dir: Path,
        tmp_path: Path) -> None:
    approved = with_approver(dummy_approved[0], keys, junit_dir, tmp_path)
    changed = _requirements("The system shall keep a controlled technical file, signed.")
    blockers = _build(issuable(approved, requirements=changed), tmp_path / "req").data["issue_blockers"]
    assert blockers[0].startswith(f"trace check: suspect-link: {SRS}: {SYS} changed since this item was last "
                                  "reviewed against it")
    assert f"trace check: suspect-test-link: {SYS}: " in "\n".join(blockers)
    for verification, line in ((None, "the ledger's release entry of gbsg2-recurrence@1 carries no software "
                                      "verification evidence"),
                               ({"status": "waived", "reason": "demo"}, "the software verification of the "
                                "release of gbsg2-recurrence@1 is waived (demo), not passed")):
        manifest = _build(issuable(approved, release_verification=verification), tmp_path / str(verification))
        assert manifest.data["status"] == "draft" and manifest.data["issue_blockers"] == [line]


@pytest.mark.req("SRS-DOS-031")
def test_gather_reads_the_release_verification_the_registry_honours(signed_ws: Path, keys: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    """A ``release`` entry appended without a pinned approver's signature is not the release's evidence."""
    ws_dir = copy_workspace(signed_ws, tmp_path / "ws")
    assert gather(ws_dir).release_verification == PASSED
    ws = Workspace(ws_dir)
    model = ws.models.released()
    ws.ledger.append("release", {"model": model.ref, "sha256": model.sha256, "at": AT, "reason": "forged",
                                 "verification": {"status": "failed"}})
    assert gather(ws_dir).release_verification == PASSED

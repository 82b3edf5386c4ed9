"""Document control: who approved each document's content, its change history, and when the
technical file may be issued.

ISO 13485 §4.2.4 asks that documents be reviewed and approved for adequacy before issue, that
changes and the current revision status be identified; IEC 62304 §5.8 that what is released be
verified and approved. So each document is rendered once without its approval block and change
history; the SHA-256 of that rendering (``content_sha256``) is what a person signs
(:func:`subject`, :mod:`ledger.signatures`), in the role of author, reviewer or approver — three
different people. An approval counts only when its signature verifies under the key pinned for its
signer in ``workspace.json`` and it names the document's *current* content: the ledger is no
trust anchor (adversary: someone who can append to the ledger but holds no person's key). Approvals
of earlier content are shown as superseded in the change history, beside the git history of the
document's module and data files.

The technical file is *issued* only when nothing blocks it (:func:`issue_blockers`); otherwise it
is a draft whose manifest names every reason.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reportlab.platypus import Flowable

from ledger.signatures import ROLES, Approval, Person, sign, verify

from .inputs import DOCUMENT_APPROVAL, git_log
from .spec import DocumentSpec, DossierError, DossierInputs, Need
from .style import approval_block, esc, heading, para, table

KIND = DOCUMENT_APPROVAL
ACTION = "approve-document"
#: the repository's data files behind each input a document may need (their history is its history)
NEED_FILES: dict[Need, tuple[str, ...]] = {
    "requirements": ("traceability/requirements",), "safety": ("traceability/safety.yaml",),
    "soup": ("traceability/soup.yaml", "traceability/soup_review.yaml", "requirements/runtime.lock",
             "requirements/dev.lock"), "clinical_evaluation": ("regulatory/clinical_evaluation.yaml",)}
#: the most commits a change history lists
HISTORY_LIMIT = 40


def subject(document: str, content_sha256: str, revision: str, model_sha256: str) -> dict[str, Any]:
    """What an approver of a document signs: the document, its content's SHA-256, the revision and
    the model it documents."""
    return {"action": ACTION, "document": document, "content_sha256": content_sha256, "revision": revision,
            "model_sha256": model_sha256}


@dataclass(frozen=True)
class Signed:
    """One approval that verifies: the ledger entry it is in and the approval."""

    index: int
    approval: Approval

    @property
    def content_sha256(self) -> str:
        return str(self.approval.statement.get("content_sha256", ""))

    def summary(self) -> dict[str, Any]:
        return {"name": self.approval.name, "at": self.approval.at, "key_id": self.approval.key_id,
                "ledger_index": self.index}


@dataclass(frozen=True)
class DocumentApprovals:
    """A document's valid approvals: of its current content by role, and of earlier contents."""

    content_sha256: str
    current: dict[str, Signed] = field(default_factory=dict)
    superseded: list[Signed] = field(default_factory=list)

    def missing(self) -> list[str]:
        """The roles without a valid approval of the current content."""
        return [r for r in ROLES if r not in self.current]

    def summary(self) -> dict[str, Any]:
        """The manifest's record: role → signer (None: not yet approved)."""
        return {r: (self.current[r].summary() if r in self.current else None) for r in ROLES}


def _parse(body: Mapping[str, Any]) -> Approval | None:
    try:
        return Approval.model_validate(dict(body))
    except ValueError:
        return None


def collect(entries: Sequence[tuple[int, Mapping[str, Any]]], people: Mapping[str, Person],
            wanted: Mapping[str, Any]) -> DocumentApprovals:
    """The approvals among ``entries`` (``document-approval`` ledger bodies) that verify under
    ``people``'s pinned keys for the document of ``wanted`` (a :func:`subject`): by role for exactly
    that subject — the first per role, and one role per person (author, reviewer and approver are
    three people) — and, for other contents of the document, as superseded. Anything that does not
    verify is left out."""
    current: dict[str, Signed] = {}
    superseded: list[Signed] = []
    document = {"action": ACTION, "document": wanted["document"]}
    for index, body in entries:
        approval = _parse(body)
        if approval is None or verify(approval, people, document):
            continue
        if all(approval.statement.get(k) == v for k, v in wanted.items()):
            taken = {s.approval.name for s in current.values()}
            if approval.role not in current and approval.name not in taken:
                current[approval.role] = Signed(index, approval)
        else:
            superseded.append(Signed(index, approval))
    return DocumentApprovals(str(wanted["content_sha256"]), current, superseded)


def refusal(approvals: DocumentApprovals, name: str, role: str) -> str | None:
    """Why ``name`` may not approve this content in ``role`` now (None: they may)."""
    for held, signed in approvals.current.items():
        if signed.approval.name == name:
            why = "" if held == role else ": author, reviewer and approver must be three different people"
            return f"{name} already approved this content as {held} (ledger entry {signed.index}){why}"
        if held == role:
            return (f"the {role} approval of this content was given already, by {signed.approval.name} "
                    f"(ledger entry {signed.index})")
    return None


def for_document(inputs: DossierInputs, doc_id: str, content_sha256: str) -> DocumentApprovals:
    """The valid approvals of ``doc_id`` whose current rendering hashes to ``content_sha256``."""
    model_sha = inputs.model.sha256 if inputs.model is not None else ""
    wanted = subject(doc_id, content_sha256, inputs.revision, model_sha)
    return collect(inputs.approvals, inputs.people, wanted)


# ---------------------------------------------------------------- rendering
def block(approvals: DocumentApprovals) -> list[Flowable]:
    """The approval block: one row per role, signed or "not yet approved"."""
    rows = []
    for role in ROLES:
        signed = approvals.current.get(role)
        if signed is None:
            rows.append((role, "not yet approved", "", "", ""))
        else:
            a = signed.approval
            rows.append((role, a.name, a.at, a.key_id, f"{a.signature[:16]}…"))
    return [approval_block(f"Approval of content SHA-256 {approvals.content_sha256}", rows)]


def history_paths(doc: DocumentSpec, source: Path | None) -> list[str]:
    """The files whose history is the document's: its module, the data files of its needs, its
    declared ``sources`` (relative to the checkout; the module only when it lies inside it)."""
    paths: list[str] = []
    module = getattr(sys.modules.get(doc.build.__module__), "__file__", None)
    if module is not None and source is not None:
        try:
            paths.append(Path(module).resolve().relative_to(source.resolve()).as_posix())
        except ValueError:
            pass
    for need in doc.needs:
        paths += NEED_FILES.get(need, ())
    return list(dict.fromkeys([*paths, *doc.sources]))


def history(inputs: DossierInputs, doc: DocumentSpec, approvals: DocumentApprovals) -> list[Flowable]:
    """The change history: the commits that changed the document's files, and the approvals of its
    earlier contents (superseded)."""
    paths = history_paths(doc, inputs.source)
    commits = git_log(inputs.source, HISTORY_LIMIT, paths) if paths else []
    story: list[Flowable] = [heading("Change history"), para(
        "Commits of the source checkout that changed " + (", ".join(f"<font face='Courier'>{esc(p)}</font>"
                                                                   for p in paths) or "this document")
        + f" (newest first, at most {HISTORY_LIMIT}); the approvals above are of this rendering's content.")]
    if commits:
        story.append(table([("Date", "Commit", "Change"), *[(c.date[:10], c.commit[:12], c.subject)
                                                            for c in commits]], widths=[18, 20, 112],
                           mono_cols=(1,)))
    else:
        story.append(para("No git history is available for these files (no checkout, or never committed)."))
    if approvals.superseded:
        story += [para("Approvals of earlier contents of this document (superseded):"),
                  table([("Revision", "Content SHA-256", "Role", "Name", "Signed (UTC)"),
                         *[(s.approval.statement.get("revision", ""), s.content_sha256[:16] + "…",
                            s.approval.role, s.approval.name, s.approval.at) for s in approvals.superseded]],
                        widths=[16, 34, 18, 40, 32], mono_cols=(1,))]
    return story


# ---------------------------------------------------------------- issuing
def release_blocker(ref: str, verification: Mapping[str, Any] | None) -> str | None:
    """Why the release entry of model ``ref`` does not show software verification that passed."""
    if verification is None:
        return f"the ledger's release entry of {ref} carries no software verification evidence"
    status = verification.get("status")
    if status == "passed":
        return None
    reason = f" ({verification['reason']})" if verification.get("reason") else ""
    return f"the software verification of the release of {ref} is {status or 'not stated'}{reason}, " \
           "not passed"


def issue_blockers(inputs: DossierInputs, not_issued: Sequence[Mapping[str, Any]],
                   decisions: Sequence[Mapping[str, str]], approvals: Mapping[str, DocumentApprovals]
                   ) -> list[str]:
    """Every reason the technical file cannot be issued, one line each (``[]``: it is issued): a
    document left out, an open manufacturer decision, a linked test not passed, a traceability gap
    (``fedprog trace check``), a release without verification that passed, a document not approved
    by its author, reviewer and approver."""
    from traceability.check import gaps, linked_failures

    out = [f"{d['id']} is left out: it needs {'; '.join(d['missing'])}" for d in not_issued]
    out += [f"open decision: {d['field']}: {d['decision']}" for d in decisions]
    reqs, run = inputs.requirements, inputs.test_run
    if reqs is None:
        out.append("trace check: the traceability requirements are missing")
    else:
        out += [f"test {t.nodeid} ({', '.join(t.reqs)}) {t.outcome}"
                for t in (linked_failures(run, reqs) if run is not None else [])]
        out += [f"trace check: {g}" for g in gaps(reqs, run, tests_root=Path("tests"), links=inputs.links)]
    assert inputs.model is not None  # checked before rendering
    released = release_blocker(inputs.model.ref, inputs.release_verification)
    out += [released] if released else []
    out += [f"{doc_id} is not approved by its {', '.join(a.missing())} (content {a.content_sha256[:16]}…; "
            f"fedprog dossier approve {doc_id} --role ROLE)" for doc_id, a in approvals.items()
            if a.missing()]
    return out


# ---------------------------------------------------------------- signing
def approval_of(manifest: Mapping[str, Any], doc_id: str, role: str, person: Person, key: Any, at: str,
                entries: Sequence[tuple[int, Mapping[str, Any]]], people: Mapping[str, Person]) -> Approval:
    """``person`` approves the content of ``doc_id`` as listed in a built dossier's ``manifest``, in
    ``role``, signing with ``key`` at ``at`` (UTC). :class:`DossierError` (one line) when the
    document is not in the dossier, the person already approved it, the role is taken, or the person
    approved the same content in another role; :class:`ledger.signatures.SignatureError` when the
    person lacks the role or the key is not theirs."""
    listed = next((d for d in manifest.get("documents", []) if d.get("id") == doc_id), None)
    if listed is None:
        ids = ", ".join(str(d.get("id")) for d in manifest.get("documents", []))
        raise DossierError(f"{doc_id} is not a document of this dossier (documents: {ids})")
    content = listed.get("content_sha256")
    if not content:
        raise DossierError(f"{doc_id}: the manifest records no content_sha256 (built before approvals "
                           "existed): rebuild the dossier first")
    wanted = subject(doc_id, str(content), str(manifest.get("revision")), str(manifest["model"]["sha256"]))
    why = refusal(collect(entries, people, wanted), person.name, role)
    if why is not None:
        raise DossierError(f"{doc_id}: {why}")
    return sign(key, person, role, wanted, at)

"""``fedprog dossier build|verify|approve``: the technical file (EU MDR Annex II) as PDFs, a manifest of
their SHA-256 and page counts, the manifest's hash anchored in the workspace ledger, and the signed
approvals of each document's content (ISO 13485 §4.2.4)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import EXIT_CHECK_FAILED, Progress, fail, user_errors, workspace

app = typer.Typer(help="The technical file: build the PDFs and their manifest, verify a built dossier, "
                       "approve its documents.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")]
#: the dossier folder inside the workspace the commands use by default (``fedprog demo`` builds it there)
DOSSIER = "dossier"


@contextmanager
def _errors() -> Iterator[None]:
    """User errors as one line and exit 2 (missing or inconsistent inputs included)."""
    from dossier.spec import DossierError

    with user_errors():
        try:
            yield
        except DossierError as exc:
            raise fail(str(exc)) from None


def build_dossier(ws_dir: Path, out: Path, *, model: str | None = None, junit: Path | None = None,
                  draft: bool = False) -> dict[str, Any]:
    """Gather, build and anchor the dossier of ``ws_dir`` into ``out``; a checkpoint is published
    (and witnessed) before gathering if the ledger has grown since the last one, and after a new
    anchor. Returns the result ``fedprog dossier build --json`` prints (``fedprog demo`` uses it)."""
    from dossier.build import build
    from dossier.inputs import gather

    from .workspace import Workspace

    started = time.perf_counter()
    ws = Workspace(ws_dir)
    ws.manifest  # noqa: B018 - a WorkspaceError unless ws_dir is a workspace
    latest = ws.ledger.latest_checkpoint()
    if latest is None or latest[0] < ws.ledger.size:
        ws.publish_checkpoint()  # so the model's anchors are covered by a witnessed checkpoint
    with Progress("building the technical file") as progress:
        progress.update("gathering the evidence")
        inputs = gather(ws.root, model=model, junit=junit)
        progress.update("writing and checking the PDFs")
        manifest = build(inputs, out, anchor=ws.ledger, draft=draft)
    if manifest.anchored_now:
        ws.publish_checkpoint()
    return {"out": str(manifest.out), "manifest": str(manifest.path), "manifest_sha256": manifest.sha256,
            "model": manifest.data["model"], "date": inputs.date, "commit": inputs.commit,
            "documents": [{**d, "seconds": manifest.timings.get(d["id"])}
                          for d in manifest.data["documents"]],
            "sbom": manifest.data["sbom"], "status": manifest.data["status"],
            "issue_blockers": manifest.data["issue_blockers"],
            "not_issued": manifest.data["not_issued"], "open_decisions": manifest.data["open_decisions"],
            "ledger": {"index": manifest.ledger_index, "new": manifest.anchored_now},
            "seconds": round(time.perf_counter() - started, 2)}


def print_result(result: dict[str, Any]) -> None:
    """The human-readable summary of a build: files, then the status and every reason it is a draft."""
    model = result["model"]
    print(f"dossier of {model['ref']} (sha256 {model['sha256']}), {result['date']}, "
          f"commit {result['commit']}")
    for doc in result["documents"]:
        signed = sum(1 for a in (doc.get("approvals") or {}).values() if a)
        print(f"  {doc['file']:<34} {doc['pages']:>3} pages {doc['seconds']:>6.2f} s  {signed}/3 approvals  "
              f"{doc['title']}")
    print(f"  {result['sbom']['file']:<34} CycloneDX {result['sbom']['spec_version']}, "
          f"{result['sbom']['components']} components")
    print(f"built in {result['seconds']:.2f} s: {result['manifest']} (sha256 {result['manifest_sha256']})")
    blockers = result["issue_blockers"]
    if blockers:
        print(f"DRAFT dossier: {len(blockers)} reason(s) it cannot be issued:")
        for line in blockers:
            print(f"  BLOCKER {line}")
    else:
        print("ISSUED dossier: every input present, no decision open, the linked tests passed, trace check "
              "clean, the release's verification passed, every document approved")
    ledger = result["ledger"]
    how = "anchored in the ledger as" if ledger["new"] else "already anchored (identical dossier) at"
    print(f"manifest {how} entry {ledger['index']}")


@app.command("build")
def build_cmd(
    out: Annotated[Path | None, typer.Option("--out", help="Folder to write the dossier to (new, empty, or "
                                                           "a previous dossier, which is replaced; default "
                                                           "WORKSPACE/dossier).")] = None,
    workspace_dir: WorkspaceOpt = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="model_id@version, model_id or sha256 prefix (default: the newest released)."
    )] = None,
    junit: Annotated[Path | None, typer.Option(
        "--junit", help="JUnit XML of the test run (default: the validation's, else "
                        "build/test-results/junit.xml of the checkout, if present).")] = None,
    draft: Annotated[bool, typer.Option(
        "--draft", help="Leave out (and list) documents whose inputs are missing instead of failing; "
                        "the manifest is marked draft.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write one PDF per document, sbom.cdx.json and manifest.json into --out and anchor the
    manifest's SHA-256 in the ledger. The same workspace and commit give byte-identical files."""
    with _errors():
        ws_dir = workspace(workspace_dir)
        result = build_dossier(ws_dir, out or ws_dir / DOSSIER, model=model, junit=junit, draft=draft)
    if as_json:
        print(json.dumps(result, sort_keys=True, ensure_ascii=False))
    else:
        print_result(result)


@app.command("verify")
def verify_cmd(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A built dossier folder.")],
    workspace_dir: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check every file against manifest.json (sha256, page count, nothing extra) and the manifest
    against its ledger anchor; exit 1 listing the problems."""
    from dossier.build import verify

    from .workspace import Workspace

    with _errors():
        ws = Workspace(workspace(workspace_dir))
        ws.manifest  # noqa: B018 - a WorkspaceError unless it is a workspace
        problems = verify(folder, ws.ledger, ws.anchors())
    if as_json:
        print(json.dumps({"dossier": str(folder), "ok": not problems, "problems": problems},
                         ensure_ascii=False))
    elif problems:
        for problem in problems:
            print(f"FAIL {problem}")
    else:
        print(f"{folder}: every file matches manifest.json, whose sha256 is anchored in the ledger")
    if problems:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command("approve")
def approve_cmd(
    document: Annotated[str, typer.Argument(metavar="DOC", help="The document's id, e.g. FP-SRS.")],
    role: Annotated[str, typer.Option("--role", help="author, reviewer or approver.")],
    name: Annotated[str, typer.Option("--name", help="The approver, as pinned (fedprog person add).")],
    key: Annotated[Path, typer.Option("--key", help="That person's private signing key (PEM).")],
    dossier_dir: Annotated[Path | None, typer.Option(
        "--dossier", help="The built dossier folder (default WORKSPACE/dossier).")] = None,
    workspace_dir: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign the content of DOC, as the built dossier lists it, in --role: the dossier is verified first
    (a changed folder is never signed), the approval is appended to the ledger as a document-approval
    entry and a witnessed checkpoint is published. Rebuild the dossier to show it."""
    from datetime import UTC, datetime

    from dossier.approvals import KIND, approval_of
    from dossier.build import MANIFEST, verify
    from ledger.signatures import ROLES, load_private_key

    from .workspace import Workspace

    if role not in ROLES:
        raise fail(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    with _errors():
        ws = Workspace(workspace(workspace_dir))
        ws.manifest  # noqa: B018 - a WorkspaceError unless it is a workspace
        folder = dossier_dir or ws.root / DOSSIER
        problems = verify(folder, ws.ledger, ws.anchors())
        if problems:
            raise fail(f"{folder} fails verification ({problems[0]}{'; …' if len(problems) > 1 else ''}): "
                       "a changed or unanchored dossier is never signed")
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        people = ws.people()
        if name not in people:
            raise fail(f"{name!r} is not a pinned person (fedprog person add NAME --role {role} "
                       "--key-out FILE)")
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        entries = [(i, b) for i, _, b in ws.ledger.entries(KIND)]
        approval = approval_of(manifest, document, role, people[name], load_private_key(key), at, entries,
                               people)
        index = ws.ledger.append(KIND, approval.model_dump(mode="json")).index
        _, cosigners = ws.publish_checkpoint()
    statement = approval.statement
    result = {"document": document, "role": role, "name": name, "at": at, "key_id": approval.key_id,
              "content_sha256": statement["content_sha256"], "revision": statement["revision"],
              "ledger_index": index, "cosigners": cosigners, "dossier": str(folder)}
    if as_json:
        print(json.dumps(result, sort_keys=True, ensure_ascii=False))
        return
    print(f"{name} approved {document} as {role} at {at}: content sha256 {result['content_sha256']}, "
          f"revision {result['revision']}, key {approval.key_id}; ledger entry {index}, checkpoint cosigned "
          f"by {', '.join(cosigners) or 'no witness'}. Rebuild the dossier to show the approval.")

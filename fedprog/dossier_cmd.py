"""``fedprog dossier build|verify``: the technical file (EU MDR Annex II) as PDFs, a manifest of their
SHA-256 and page counts, and the manifest's hash anchored in the workspace ledger."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import EXIT_CHECK_FAILED, Progress, fail, user_errors, workspace

app = typer.Typer(help="The technical file: build the PDFs and their manifest, verify a built dossier.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")]


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
            "not_issued": manifest.data["not_issued"], "open_decisions": manifest.data["open_decisions"],
            "ledger": {"index": manifest.ledger_index, "new": manifest.anchored_now},
            "seconds": round(time.perf_counter() - started, 2)}


def print_result(result: dict[str, Any]) -> None:
    """The human-readable summary of a build."""
    model = result["model"]
    print(f"dossier of {model['ref']} (sha256 {model['sha256']}), {result['date']}, "
          f"commit {result['commit']}")
    for doc in result["documents"]:
        print(f"  {doc['file']:<34} {doc['pages']:>3} pages {doc['seconds']:>6.2f} s  {doc['title']}")
    print(f"  {result['sbom']['file']:<34} CycloneDX {result['sbom']['spec_version']}, "
          f"{result['sbom']['components']} components")
    print(f"built in {result['seconds']:.2f} s: {result['manifest']} (sha256 {result['manifest_sha256']})")
    for doc in result["not_issued"]:
        print(f"  NOT ISSUED {doc['id']} {doc['title']}: needs {'; '.join(doc['missing'])}")
    for decision in result["open_decisions"]:
        print(f"  OPEN DECISION {decision['field']}: {decision['decision']}")
    if result["not_issued"]:
        print("DRAFT dossier: the documents above are not issued until their inputs exist")
    elif result["status"] == "draft":
        print(f"DRAFT dossier: {len(result['open_decisions'])} decision(s) only the manufacturer can take "
              "are open (above); the file cannot be issued before they are taken")
    ledger = result["ledger"]
    how = "anchored in the ledger as" if ledger["new"] else "already anchored (identical dossier) at"
    print(f"manifest {how} entry {ledger['index']}")


@app.command("build")
def build_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the dossier to (new, empty, or a "
                                                    "previous dossier, which is replaced).")],
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
        result = build_dossier(workspace(workspace_dir), out, model=model, junit=junit, draft=draft)
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
        problems = verify(folder, ws.ledger)
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

"""``fedprog ledger show|verify|prove|witness``: the workspace's tamper-evident log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import EXIT_CHECK_FAILED, user_errors, workspace

app = typer.Typer(help="The tamper-evident ledger every site witnesses.", no_args_is_help=True)
WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")]


def _open(path: Path | None) -> Any:
    from .workspace import Workspace

    return Workspace(workspace(path))


def _emit(data: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        print(json.dumps(data, sort_keys=True))
    else:
        print("\n".join(lines))


@app.command("show")
def show(workspace_dir: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Size, root, the latest checkpoint with its cosigners, and entries by kind."""
    from ledger.checkpoint import open_checkpoint

    with user_errors():
        ws = _open(workspace_dir)
        ledger = ws.ledger
        kinds: dict[str, int] = {}
        for _, kind, _ in ledger.entries():
            kinds[kind] = kinds.get(kind, 0) + 1
        latest = ledger.latest_checkpoint()
        checkpoint = None
        if latest is not None:
            cp, cosigned = open_checkpoint(latest[1], ledger.verifier, ledger.witnesses())
            quorum = ws.quorum()
            checkpoint = {"size": cp.size, "root": cp.root.hex(), "note": latest[1],
                          "cosigned_by": sorted(cosigned), "quorum": len(cosigned) >= quorum.required,
                          "required": quorum.required}
        data = {"size": ledger.size, "root": ledger.root().hex(), "origin": ledger.origin,
                "checkpoint": checkpoint, "entries": kinds, "witnesses": sorted(ledger.witnesses())}
    lines = [f"ledger {ledger.path}: {data['size']} entries, root {data['root']}",
             "entries: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))]
    if checkpoint:
        lines.append(f"latest checkpoint: size {checkpoint['size']}, cosigned by "
                     f"{len(checkpoint['cosigned_by'])} of {len(data['witnesses'])} site witnesses "
                     f"({'quorum reached' if checkpoint['quorum'] else 'NO quorum'})")
    _emit(data, as_json, lines)


@app.command("verify")
def verify(workspace_dir: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Recompute every leaf and root from storage; check every signature. Exit 1 on any mismatch."""
    from ledger.verify import verify_ledger

    with user_errors():
        report = verify_ledger(_open(workspace_dir).ledger)
    data = {"ok": report.ok, "size": report.size, "checkpoints": report.checkpoints,
            "problems": report.problems}
    verdict = "OK" if report.ok else "FAILED"
    _emit(data, as_json, [f"{verdict}: {report.size} entries, {report.checkpoints} checkpoints",
                          *[f"- {p}" for p in report.problems]])
    if not report.ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command("prove")
def prove(index: Annotated[int, typer.Argument(help="Entry index.")],
          size: Annotated[int | None, typer.Option(help="Tree size (default: all).")] = None,
          workspace_dir: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Inclusion proof (receipt) of entry INDEX, verified before it is printed."""
    with user_errors():
        ledger = _open(workspace_dir).ledger
        receipt = ledger.receipt(index, size)
        receipt.verify()
        kind, body = ledger.entry(index)
    data = {**receipt.to_dict(), "entry": {"kind": kind, "body": body}}
    _emit(data, as_json, [f"entry {index} ({kind}) is in the tree of {receipt.size} entries, root "
                          f"{receipt.root.hex()}", *[f"  {p.hex()}" for p in receipt.proof]])


@app.command("witness")
def witness(workspace_dir: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Sign a checkpoint of the log now and have every site's witness verify and cosign it."""
    with user_errors():
        ws = _open(workspace_dir)
        note, cosigners = ws.publish_checkpoint()
        required = ws.quorum().required
    data = {"size": ws.ledger.size, "note": note, "cosigned_by": cosigners,
            "quorum": len(cosigners) >= required}
    _emit(data, as_json, [f"checkpoint of {data['size']} entries cosigned by {', '.join(cosigners)}",
                          note.rstrip("\n")])

"""``fedprog ledger show|verify|prove|witness``: the workspace's tamper-evident log.

``verify`` trusts nothing in ``ledger.sqlite``: the adversary is someone with write access to
that file (an insider, or malware on the coordinator host) who is not the witnesses. It
recomputes every leaf, node and root from the entries, and checks them against trust anchors
kept outside the file: the log key and site witness keys pinned in ``workspace.json`` (a quorum
of those witnesses must have cosigned the latest witnessed checkpoint) and each site's
``witness.json`` (the last size and root that witness cosigned). Each problem names the anchor
that disagreed; a rollback, truncation, re-keying, reordering or fork exits 1.
"""

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
    """Size, root, the latest checkpoint with its cosigners, and entries by kind (from a ledger
    that passes its check against the trust anchors; else exit 2 naming the problem)."""
    from ledger.trusted import read_verified

    with user_errors():
        ws = _open(workspace_dir)
        ledger = ws.ledger
        log = read_verified(ledger, ws.anchors())
        kinds: dict[str, int] = {}
        for _, kind, _ in log.entries():
            kinds[kind] = kinds.get(kind, 0) + 1
        latest = ledger.latest_checkpoint()
        checkpoint = None
        quorum = ws.quorum()  # the witnesses pinned in workspace.json, named by their key names
        names = {site: verifier.name for site, verifier in quorum.witnesses.items()}
        if latest is not None:
            cp, cosigned = quorum.cosigners(latest[1])
            checkpoint = {"size": cp.size, "root": cp.root.hex(), "note": latest[1],
                          "cosigned_by": sorted(names[s] for s in cosigned),
                          "quorum": len(cosigned) >= quorum.required, "required": quorum.required}
        data = {"size": log.size, "root": log.root.hex(), "origin": ledger.origin,
                "checkpoint": checkpoint, "entries": kinds, "witnesses": sorted(names.values())}
    lines = [f"ledger {ledger.path}: {data['size']} entries, root {data['root']}",
             "entries: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))]
    if checkpoint:
        lines.append(f"latest checkpoint: size {checkpoint['size']}, cosigned by "
                     f"{len(checkpoint['cosigned_by'])} of {len(data['witnesses'])} site witnesses "
                     f"({'quorum reached' if checkpoint['quorum'] else 'NO quorum'})")
    _emit(data, as_json, lines)


@app.command("verify")
def verify(workspace_dir: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Recompute every leaf and root from storage; check every signature, the log key and witness
    keys pinned in workspace.json, a quorum of cosignatures, and each site witness's last cosigned
    size and root. Exit 1 on any mismatch, naming the anchor that disagreed."""
    from ledger.verify import verify_ledger

    with user_errors():
        ws = _open(workspace_dir)
        report = verify_ledger(ws.ledger, ws.anchors())
    witnessed = report.witnessed
    data = {"ok": report.ok, "size": report.size, "checkpoints": report.checkpoints,
            "problems": report.problems,
            "witnessed": None if witnessed is None else {"size": witnessed.size, "root": witnessed.root.hex(),
                                                         "cosigned_by": list(witnessed.cosigners)}}
    verdict = "OK" if report.ok else "FAILED"
    seen = ("no witnessed checkpoint" if witnessed is None else
            f"witnessed checkpoint of size {witnessed.size} cosigned by {', '.join(witnessed.cosigners)}")
    _emit(data, as_json, [f"{verdict}: {report.size} entries, {report.checkpoints} checkpoints, {seen}",
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

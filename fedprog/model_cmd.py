"""``fedprog model list|due|show|release|withdraw|retrain``: registered model versions, the release
gate, and the models a consent revocation flagged ``retrain due`` (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import user_errors, workspace

if TYPE_CHECKING:
    from device.registry import ModelEntry

app = typer.Typer(help="Registered models and their versions.", no_args_is_help=True)
WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")]


def _flag(m: ModelEntry) -> str:
    """The consent-revocation qualifier of a model's line: ``retrain due`` (in service, with its
    count and deadline) or ``affected``."""
    if m.retrain is not None and not m.retrain.expired:
        return f"  RETRAIN DUE: {m.retrain.summary()}"
    if m.affected_by_revocation:
        why = f" ({m.retrain.summary()})" if m.retrain is not None else ""
        return f"  AFFECTED BY CONSENT REVOCATION{why}"
    return ""


def _print_models(models: list[ModelEntry], key: str, as_json: bool, empty: str) -> None:
    if as_json:
        print(json.dumps({key: [m.to_dict() for m in models]}, sort_keys=True))
        return
    for m in models:
        succ = f" (successor of {m.predecessor})" if m.predecessor else ""
        print(f"{m.ref}  {m.status}  {m.sha256[:16]}{succ}{_flag(m)}")
    if not models:
        print(empty)


@app.command("list")
def list_(workspace_dir: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Every model version with its status and whether a consent revocation affects it (``retrain
    due``: still served, with the revocations counted and the deadline)."""
    from .workspace import Workspace

    with user_errors():
        models = Workspace(workspace(workspace_dir)).models.list()
    _print_models(models, "models", as_json,
                  "no models registered (fedprog demo, or fedprog train into a workspace)")


@app.command("due")
def due(workspace_dir: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Released models a consent revocation flagged ``retrain due``: revocations of how many
    needed, the deadline, and whether a successor is due now (fedprog model retrain REF)."""
    from .workspace import Workspace

    with user_errors():
        models = Workspace(workspace(workspace_dir)).models.retrain_due()
    _print_models(models, "due", as_json, "no model is due for retraining")


ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded in the ledger).")]
ByOpt = Annotated[str, typer.Option("--by", help="Who decides (recorded in the ledger).")]


def _transition(workspace_dir: Path | None, ref: str, action: str, reason: str, by: str,
                as_json: bool) -> None:
    from .workspace import Workspace

    with user_errors():
        ws = Workspace(workspace(workspace_dir))
        registry = ws.models
        step = registry.release if action == "release" else registry.withdraw
        receipt = step(ref, reason=reason, by=by)
        ws.publish_checkpoint()
        entry = registry.get(ref)
    if as_json:
        print(json.dumps({**entry.to_dict(), "ledger_index": receipt.index}, sort_keys=True))
    else:
        print(f"{entry.ref} {entry.status} (ledger entry {receipt.index}, sha256 {entry.sha256[:16]}…)")


@app.command("release")
def release(ref: Annotated[str, typer.Argument(help="model_id@version, model_id or sha256 prefix.")],
            workspace_dir: WorkspaceOpt = None, reason: ReasonOpt = "", by: ByOpt = "",
            as_json: JsonOpt = False) -> None:
    """Release a validated model for clinical use (needs a passing validation report)."""
    _transition(workspace_dir, ref, "release", reason, by, as_json)


@app.command("withdraw")
def withdraw(ref: Annotated[str, typer.Argument(help="model_id@version, model_id or sha256 prefix.")],
             reason: ReasonOpt, workspace_dir: WorkspaceOpt = None, by: ByOpt = "",
             as_json: JsonOpt = False) -> None:
    """Withdraw a model from use; the FHIR server stops serving it at once."""
    _transition(workspace_dir, ref, "withdraw", reason, by, as_json)


@app.command("show")
def show(ref: Annotated[str, typer.Argument(help="model_id@version, model_id or sha256 prefix.")],
         workspace_dir: WorkspaceOpt = None) -> None:
    """The model artifact (its sha256 checked)."""
    from .workspace import Workspace

    with user_errors():
        artifact = Workspace(workspace(workspace_dir)).models.artifact(ref)
    print(json.dumps(artifact, sort_keys=True, indent=2))


@app.command("retrain")
def retrain(ref: Annotated[str, typer.Argument(help="The model to succeed.")],
            workspace_dir: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Train a successor under today's consent (revoked patients left out), linked to its predecessor."""
    from federated.study import StudySpec

    from .workspace import Workspace, train_in_workspace

    with user_errors():
        ws = Workspace(workspace(workspace_dir))
        entry = ws.models.get(ref)
        artifact = train_in_workspace(ws, StudySpec.model_validate(ws.models.study_of(entry)),
                                      predecessor=entry)[1]
    if as_json:
        print(json.dumps(artifact, sort_keys=True))
    else:
        print(f"{artifact['model_id']}@{artifact['version']} trained under consent checkpoint "
              f"{artifact['training']['consent_checkpoint']['size']} as successor of {entry.ref}; "
              f"sha256 {artifact['sha256']}")

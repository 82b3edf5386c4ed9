"""``fedprog model list|due|show|release|withdraw|retrain|recalibrate``: registered model versions,
the release gate, the models a consent revocation flagged ``retrain due`` (issue 15), and a model
recalibrated at one site (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import Progress, fail, user_errors, workspace

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


def _print_transition(entry: ModelEntry, index: int, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**entry.to_dict(), "ledger_index": index}, sort_keys=True))
    else:
        print(f"{entry.ref} {entry.status} (ledger entry {index}, sha256 {entry.sha256[:16]}…)")


@app.command("release")
def release(ref: Annotated[str, typer.Argument(help="model_id@version, model_id or sha256 prefix.")],
            approver: Annotated[str, typer.Option("--approver", help="The approver's name, as pinned "
                                                                     "(fedprog person add).")],
            key: Annotated[Path, typer.Option("--key", help="The approver's private signing key.")],
            workspace_dir: WorkspaceOpt = None, reason: ReasonOpt = "",
            significant_change: Annotated[str, typer.Option(
                "--significant-change", help="For a successor outside the change control plan: the new "
                "assessment that authorises it (recorded and signed with the release).")] = "",
            as_json: JsonOpt = False) -> None:
    """Release a validated model for clinical use: a passing validation report whose software
    verification passed, and the approver's signature over the model and its report (IEC 62304 §5.8).
    A successor is assessed against the change control plan (FP-PCCP): within it, a routine update;
    outside it, a significant change (MDCG 2020-3) refused without --significant-change."""
    from .registration import release_in_workspace
    from .workspace import Workspace

    with user_errors():
        ws = Workspace(workspace(workspace_dir))
        receipt = release_in_workspace(ws, ref, approver, key, reason=reason,
                                       significant_change=significant_change)
        entry = ws.models.get(ref)
    _print_transition(entry, receipt.index, as_json)


@app.command("withdraw")
def withdraw(ref: Annotated[str, typer.Argument(help="model_id@version, model_id or sha256 prefix.")],
             reason: ReasonOpt, workspace_dir: WorkspaceOpt = None, by: ByOpt = "",
             as_json: JsonOpt = False) -> None:
    """Withdraw a model from use; the FHIR server stops serving it at once (anyone responsible may stop
    a model: a withdrawal names who, and needs no signature)."""
    from .workspace import Workspace

    with user_errors():
        ws = Workspace(workspace(workspace_dir))
        receipt = ws.models.withdraw(ref, reason=reason, by=by)
        ws.publish_checkpoint()
        entry = ws.models.get(ref)
    _print_transition(entry, receipt.index, as_json)


@app.command("show")
def show(ref: Annotated[str, typer.Argument(
             help="model_id@version, model_id, sha256 prefix, or a model artifact file (model.json).")],
         workspace_dir: WorkspaceOpt = None,
         as_json: Annotated[bool, typer.Option("--json", help="The artifact itself on stdout.")] = False
         ) -> None:
    """A model: its status, coefficients as hazard ratios, inputs, horizons and training summary (the
    artifact's sha256 checked); --json prints the artifact."""
    from device.model import ModelError, load_model

    from .workspace import Workspace

    status = "not registered (a file; fedprog train --workspace registers a model)"
    with user_errors():
        path = Path(ref)
        if ref.endswith(".json") and path.is_file():
            try:
                artifact = json.loads(path.read_text(encoding="utf-8"))
                load_model(artifact)
            except (ValueError, ModelError) as exc:
                raise fail(f"{path}: not a fedprog model artifact ({exc})") from None
        else:
            ws = Workspace(workspace(workspace_dir))
            entry = ws.models.get(ref)
            artifact = ws.models.artifact(entry.ref)
            status = entry.status + _flag(entry)
    if as_json:
        print(json.dumps(artifact, sort_keys=True))
        return
    _print_artifact(artifact, status)


def _print_artifact(artifact: dict[str, Any], status: str) -> None:
    """The artifact as a clinician's or statistician's summary: hazard ratios with 95% CIs, inputs."""
    import math

    from rich.console import Console
    from rich.table import Table

    training, outcome = artifact.get("training", {}), artifact.get("outcome", {})
    console = Console()
    console.print(f"[bold]{artifact['model_id']}@{artifact['version']}[/bold]  {status}")
    horizons = ", ".join(f"{h:g}" for h in outcome.get("horizons", []))
    console.print(f"sha256 {artifact['sha256']}; outcome {outcome.get('name', '?')}; risks at "
                  f"{horizons} {outcome.get('time_unit', '')}s")
    table = Table(title=f"Cox PH ({artifact.get('ties', '?')} ties) — {training.get('n', '?')} patients, "
                        f"{training.get('events', '?')} events (multiples of "
                        f"{training.get('release', {}).get('rounded_to_multiple_of', '?')})")
    for col in ("covariate", "HR", "HR 95% CI", "p", "unit", "intended-use range", "reference"):
        table.add_column(col, justify="left" if col in ("covariate", "unit") else "right")
    center = artifact.get("baseline_survival", {}).get("center", [])
    for i, spec in enumerate(artifact.get("inputs", [])):
        name = spec["name"]
        lo, hi = artifact["confidence_intervals"][name]
        table.add_row(name, f"{math.exp(artifact['coefficients'][name]):.3f}",
                      f"{math.exp(lo):.3f}–{math.exp(hi):.3f}", f"{artifact['p_values'][name]:.3g}",
                      str(spec.get("unit", "")), f"{spec.get('min', '?')}–{spec.get('max', '?')}",
                      f"{center[i]:g}" if i < len(center) else "")
    console.print(table)
    cp = training.get("consent_checkpoint") or {}
    console.print(f"trained on {', '.join(training.get('sites', []))}; {training.get('exact_on', '')}"
                  + (f"; consent as of ledger checkpoint {cp['size']}" if cp else ""))


@app.command("retrain")
def retrain(ref: Annotated[str, typer.Argument(help="The model to succeed.")],
            workspace_dir: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Train a successor under today's consent (revoked patients left out), linked to its predecessor."""
    from federated.study import StudySpec

    from .registration import train_in_workspace
    from .workspace import Workspace

    with user_errors():
        ws = Workspace(workspace(workspace_dir))
        entry = ws.models.get(ref)
        with Progress(f"training a successor of {entry.ref}") as progress:
            artifact = train_in_workspace(ws, StudySpec.model_validate(ws.models.study_of(entry)),
                                          predecessor=entry, on_round=progress)[1]
    if as_json:
        print(json.dumps(artifact, sort_keys=True))
    else:
        print(f"{artifact['model_id']}@{artifact['version']} trained under consent checkpoint "
              f"{artifact['training']['consent_checkpoint']['size']} as successor of {entry.ref}; "
              f"sha256 {artifact['sha256']}")


@app.command("example")
def example(ref: Annotated[str, typer.Argument(help="model_id@version, model_id or sha256 prefix.")],
            workspace_dir: WorkspaceOpt = None,
            patient: Annotated[str, typer.Option(
                "--patient", help="The example patient's id.")] = "example-1",
            ) -> None:
    """An example $predict-risk request (FHIR R4 Parameters) for the model: a Patient and one coded
    Observation per input, each at the model's reference value in the model's unit. Edit the values
    and POST it to /fhir/Patient/$predict-risk."""
    import datetime as dt

    from device.fhir.examples import parameters, patient_bundle, typical_values
    from device.model import load_model

    from .workspace import Workspace

    with user_errors():
        ws = Workspace(workspace(workspace_dir))
        model = load_model(ws.models.artifact(ws.models.get(ref).ref))
    bundle = patient_bundle(model.inputs, typical_values(model), patient_id=patient)
    print(json.dumps(parameters(bundle, as_of=dt.date.today().isoformat()), indent=2, sort_keys=True))


@app.command("recalibrate")
def recalibrate(ref: Annotated[str, typer.Argument(help="The model to recalibrate (model_id@version, …).")],
                site: Annotated[str, typer.Option("--site", help="The site whose data recalibrate it.")],
                workspace_dir: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Recalibrate a model at one site — the calibration slope of its linear predictor and a new
    baseline hazard (a logistic model: a new intercept, the calibration intercept and slope), from that
    site's consented patients inside the intended use only (aggregates: baseline steps of at least k
    events, counts rounded to k) — and register it as a new model ``<model_id>-recalibrated-<site>``
    (predecessor: REF), to validate and release like any other."""
    from .recalibration import recalibrate_in_workspace
    from .workspace import Workspace

    with user_errors():
        ws = Workspace(workspace(workspace_dir))
        with Progress(f"recalibrating {ref} at {site}"):
            artifact = recalibrate_in_workspace(ws, ref, site)
    if as_json:
        print(json.dumps(artifact, sort_keys=True))
        return
    rec = artifact["training"]["recalibration"]
    lo, hi = rec["slope_ci"]
    new, old = f"{artifact['model_id']}@{artifact['version']}", rec["predecessor"]
    baseline = artifact.get("baseline_survival")
    k = (baseline or artifact["logistic"])["min_cell_count"]
    updated = (f"{len(baseline['times'])} baseline steps" if baseline else "calibration intercept "
               "{:.3f} (95% CI {:.3f}–{:.3f})".format(rec["intercept"], *rec["intercept_ci"]))
    print(f"{new} recalibrated from {old['model_id']}@{old['version']} at {site}: "
          f"calibration slope {rec['slope']:.3f} (95% CI {lo:.3f}–{hi:.3f}); {rec['n']} patients, "
          f"{rec['events']} events (multiples of {k}); {updated}")
    print(f"registered as a candidate; sha256 {artifact['sha256']}")
    where = f" --workspace {workspace_dir}" if workspace_dir is not None else ""
    print(f"next: fedprog validate {new}{where}  then  fedprog model release {new}{where}")

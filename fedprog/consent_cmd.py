"""``fedprog consent import|grant|revoke|erase|status``: a site's patients' consent."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from ._common import fail, user_errors, workspace

if TYPE_CHECKING:
    from consent.registry import ConsentRegistry

app = typer.Typer(help="Patients' consent, per site; anchored in the ledger as commitments only.",
                  no_args_is_help=True)
WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")]
SiteOpt = Annotated[str, typer.Option("--site", help="The site whose registry to use.")]
PatientOpt = Annotated[str, typer.Option("--patient", help="The site's patient identifier.")]
DateOpt = Annotated[str | None, typer.Option("--date", help="ISO date (default: today).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")]


def _registry(path: Path | None, site: str) -> ConsentRegistry:
    from .workspace import Workspace

    return Workspace(workspace(path)).registry(site)


def _date(value: str | None) -> str:
    if value is None:
        return dt.date.today().isoformat()
    try:
        dt.date.fromisoformat(value[:10])
    except ValueError:
        raise fail(f"--date {value!r}: want an ISO date (YYYY-MM-DD)") from None
    return value


def _done(data: dict[str, object], as_json: bool, line: str) -> None:
    print(json.dumps(data, sort_keys=True) if as_json else line)


@app.command("grant")
def grant(site: SiteOpt, patient: PatientOpt, workspace_dir: WorkspaceOpt = None, date: DateOpt = None,
          deny: Annotated[bool, typer.Option("--deny", help="Record a refusal instead.")] = False,
          fhir: Annotated[str, typer.Option("--fhir", help="R4B or R5.")] = "R4B",
          as_json: JsonOpt = False) -> None:
    """Record a patient's consent (or refusal) as a new FHIR Consent version."""
    if fhir not in ("R4B", "R5"):
        raise fail(f"--fhir {fhir!r}: want R4B or R5")
    decision: Literal["permit", "deny"] = "deny" if deny else "permit"
    version: Literal["R4B", "R5"] = "R5" if fhir == "R5" else "R4B"
    with user_errors():
        receipt = _registry(workspace_dir, site).grant(patient, date=_date(date), decision=decision,
                                                        fhir_version=version)
    _done({"ledger_index": receipt.index, "decision": decision}, as_json,
          f"consent ({decision}) recorded; ledger entry {receipt.index}")


@app.command("revoke")
def revoke(site: SiteOpt, patient: PatientOpt, workspace_dir: WorkspaceOpt = None, date: DateOpt = None,
           as_json: JsonOpt = False) -> None:
    """Withdraw a patient's consent now; models trained on them are flagged as affected, and the
    site witnesses cosign the new checkpoint (the same path as the FHIR Consent API)."""
    with user_errors():
        from .fhir_consent import withdraw_consent
        from .workspace import Workspace

        done = withdraw_consent(Workspace(workspace(workspace_dir)), patient, date=_date(date), sites=[site])
    receipt, affected = done.receipts[site], done.affected_models
    _done({"ledger_index": receipt.index, "affected_models": affected}, as_json,
          f"consent revoked; ledger entry {receipt.index}; affected models: {', '.join(affected) or 'none'}")


@app.command("erase")
def erase(site: SiteOpt, patient: PatientOpt, workspace_dir: WorkspaceOpt = None,
          as_json: JsonOpt = False) -> None:
    """Erase a patient (GDPR Art. 17): delete her salts and records; ledger proofs still verify."""
    with user_errors():
        removed = _registry(workspace_dir, site).erase(patient)
    _done({"erased": True, "rows": removed}, as_json, f"erased ({removed} records); ledger untouched")


@app.command("import")
def import_(file: Annotated[Path, typer.Argument(help="FHIR Consent JSON, Bundle or ndjson.")],
            site: SiteOpt, workspace_dir: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Import FHIR Consent resources (R4B or R5) into a site's registry."""
    from consent.fhir import from_bundle

    with user_errors():
        records = from_bundle(file.read_text(encoding="utf-8"))
        receipts = _registry(workspace_dir, site).import_resources(records)
    _done({"imported": len(receipts), "ledger_indices": [r.index for r in receipts]}, as_json,
          f"imported {len(receipts)} Consent resource(s)")


@app.command("export")
def export(site: SiteOpt, patient: PatientOpt, workspace_dir: WorkspaceOpt = None) -> None:
    """Every Consent version of a patient, as a FHIR Bundle."""
    from consent.fhir import to_bundle

    with user_errors():
        history = _registry(workspace_dir, site).history(patient)
        if not history:
            raise fail("no consent recorded for that patient at this site")
        bundle = to_bundle(history)
    print(json.dumps(bundle, sort_keys=True))


@app.command("status")
def status(workspace_dir: WorkspaceOpt = None,
           site: Annotated[str | None, typer.Option("--site", help="Only this site.")] = None,
           as_json: JsonOpt = False) -> None:
    """Each patient's latest consent, per site (local view: identifiers never leave the site)."""
    from .workspace import Workspace

    with user_errors():
        ws = Workspace(workspace(workspace_dir))
        rows = [{"site": name, "patient": s.patient, "status": "active" if s.active else
                 ("declined" if s.decision == "deny" else s.status)}
                for name in ([site] if site else ws.sites) for s in ws.registry(name).statuses()]
    if as_json:
        print(json.dumps({"patients": rows}, sort_keys=True))
        return
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[(r["site"], r["status"])] = counts.get((r["site"], r["status"]), 0) + 1
    for (name, state), n in sorted(counts.items()):
        print(f"{name}: {n} {state}")

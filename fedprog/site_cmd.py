"""``fedprog site …``: what a hospital's operator decides — its identity key and the studies it
approved (the rules its site holds, DESIGN.md "Threat model")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import DecimalOpt, DelimiterOpt, EncodingOpt, table_format, user_errors, workspace

app = typer.Typer(help="A site's identity key and the studies its operator approved.", no_args_is_help=True)

SiteOpt = Annotated[str, typer.Option("--site", help="The site (hospital) whose operator acts.")]
WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")]


@app.command("approve")
def approve(
    site: SiteOpt,
    study_file: Annotated[Path | None, typer.Argument(
        help="The study (study.toml, or a workspace .study.json; default the workspace's own).")] = None,
    workspace_dir: WorkspaceOpt = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="Approve the study this registered model (model_id@version) was trained "
                        "under, e.g. at an external site before it validates the model.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a study at a site: pin its SHA-256 (cohorts, covariates, ranges, grid, horizons, rules,
    peers and their identity keys). The site answers nothing else, under the stricter of the study's
    rules and its own floors. An external site (``site add --external``) approves the study with
    itself as the only peer: it evaluates models, it never trains with the others."""
    from federated.study import load_study

    from .registration import registered_study
    from .workspace import Workspace, WorkspaceError

    with user_errors():
        ws = Workspace(workspace(workspace_dir))
        if model is not None and study_file is not None:
            raise WorkspaceError("give the study file or --model, not both")
        if model is not None:
            study = registered_study(ws, ws.models.get(model))
        else:
            study = ws.study_spec(load_study(study_file)) if study_file is not None else ws.study_settings()
        protocol = ws.protocol(study, [site] if site in ws.external_sites else None)
        path = ws.approve(site, protocol)
    if as_json:
        print(json.dumps({"site": site, "study": protocol.sha256, "file": str(path),
                          "peers": sorted(protocol.peers)}, sort_keys=True))
    else:
        print(f"{site} approved study {protocol.study_id!r} (sha256 {protocol.sha256}) with peers "
              f"{', '.join(sorted(protocol.peers))}; kept in {path}")


@app.command("show")
def show(site: SiteOpt, workspace_dir: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """The site's public identity key and the studies it approved."""
    from .workspace import Workspace

    with user_errors():
        ws = Workspace(workspace(workspace_dir))
        identity = ws.identity(site).public
        approved = ws.approvals(site)
    if as_json:
        studies = [{"study_id": p.study_id, "sha256": p.sha256, "secure": p.secure,
                    "grids": sorted({c.time_grid for c in p.cohorts}), "peers": sorted(p.peers)}
                   for p in approved]
        print(json.dumps({"site": site, "identity": identity, "approved": studies}, sort_keys=True))
        return
    print(f"{site}: identity key (Ed25519) {identity}")
    for p in approved:
        print(f"  approved {p.study_id!r} sha256 {p.sha256} grids {sorted({c.time_grid for c in p.cohorts})} "
              f"peers {', '.join(sorted(p.peers))}")
    if not approved:
        print("  no approved study: the site answers nothing")


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The site's name (letters, digits, '.', '_', '-').")],
    data: Annotated[Path, typer.Option("--data", help="The site's table (CSV or Parquet), as exported.")],
    workspace_dir: WorkspaceOpt = None,
    consent: Annotated[Path | None, typer.Option(
        "--consent",
        help="The patients' consent as FHIR Consent resources (JSON, Bundle or ndjson).")] = None,
    legal_basis: Annotated[str | None, typer.Option(
        "--legal-basis", help="The legal basis other than consent under which this site uses the data, in "
                              "words (e.g. 'GDPR Art. 9(2)(j) and national research law'); recorded for "
                              "every patient, who can still object.")] = None,
    basis_date: Annotated[str | None, typer.Option(
        "--basis-date", help="ISO date from which the legal basis applies (default: today).")] = None,
    patient_column: Annotated[str, typer.Option(
        "--patient-column", help="The table's column of patient identifiers.")] = "patient_id",
    delimiter: DelimiterOpt = None,
    decimal: DecimalOpt = None,
    encoding: EncodingOpt = None,
    external: Annotated[bool, typer.Option(
        "--external", help="A hospital that does not train: it only validates (fedprog validate "
                           "--external-site) and recalibrates released models on its own data.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a hospital to the workspace: its table (checked against the study's columns), its witness
    and identity keys, and how its patients' data may be used — their FHIR Consent resources, or a
    legal basis the site declares. One of the two is required: consent is never assumed."""
    from .site_setup import add_site

    with user_errors():
        result = add_site(workspace(workspace_dir), name, data, consent=consent, legal_basis=legal_basis,
                          basis_date=basis_date, patient_column=patient_column,
                          table_format=table_format(delimiter, decimal, encoding), external=external)
    if as_json:
        print(json.dumps(result, sort_keys=True))
        return
    counts = result["consent"]
    print(f"{name} added: {result['patients']} patients in {result['data']}; "
          f"{counts['permit']} may be used ({result['basis']}), {counts['deny']} refused, "
          f"{counts['none']} without a recorded decision (left out)")
    if external:
        print(f"next: its operator approves the study of the model to validate (fedprog site approve "
              f"--site {name} --model MODEL@VERSION), then fedprog validate MODEL@VERSION "
              f"--external-site {name}")
    else:
        print(f"next: each site's operator approves the study (fedprog site approve --site {name}), "
              "once every site is added")

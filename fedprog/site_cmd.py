"""``fedprog site …``: what a hospital's operator decides — its identity key and the studies it
approved (the rules its site holds, DESIGN.md "Threat model")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import user_errors, workspace

app = typer.Typer(help="A site's identity key and the studies its operator approved.", no_args_is_help=True)

SiteOpt = Annotated[str, typer.Option("--site", help="The site (hospital) whose operator acts.")]
WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")]


@app.command("approve")
def approve(
    study_file: Annotated[Path, typer.Argument(help="The study (study.toml, or a workspace .study.json).")],
    site: SiteOpt,
    workspace_dir: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a study at a site: pin its SHA-256 (cohorts, covariates, ranges, grid, horizons, rules,
    peers and their identity keys). The site answers nothing else, under the stricter of the study's
    rules and its own floors."""
    from federated.study import load_study

    from .workspace import Workspace

    with user_errors():
        ws = Workspace(workspace(workspace_dir))
        study = ws.study_spec(load_study(study_file))
        protocol = ws.protocol(study)
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

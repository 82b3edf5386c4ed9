"""``fedprog init``: a workspace for one's own study — its ledger, its log key pinned as a trust
anchor, and the study settings (columns, declared inputs, horizons, rules) kept inside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import fail, user_errors, workspace


def init(
    study: Annotated[Path, typer.Option("--study", help="The study file (study.toml): columns, declared "
                                                        "inputs, horizons and rules.")],
    workspace_dir: Annotated[Path | None, typer.Option(
        "--workspace", help="Workspace folder (default $FEDPROG_WORKSPACE or ./fedprog-workspace).")] = None,
    study_id: Annotated[str | None, typer.Option(
        "--study-id", help="The study's identifier in patients' consent (a URI; default "
                           "urn:fedprog:study:<model_id>).")] = None,
    demonstration: Annotated[bool, typer.Option(
        "--demonstration", help="A trial workspace, not for clinical use: a release may waive the software "
        "verification (the ledger says so) and its technical file is never issued.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")] = False,
) -> None:
    """Create a workspace for a study: the shared ledger, the log's signing key (pinned in
    workspace.json, outside the ledger) and a copy of the study file. Then add each hospital with
    fedprog site add."""
    from federated.study import load_study
    from ledger.files import write_text_atomic

    from .workspace import MANIFEST, Workspace

    ws_dir = workspace(workspace_dir)
    with user_errors():
        spec = load_study(study)
        if (ws_dir / MANIFEST).exists():
            raise fail(f"{ws_dir} is already a fedprog workspace (give another --workspace)")
        name = "study.json" if study.suffix == ".json" else "study.toml"
        sid = study_id or f"urn:fedprog:study:{spec.model_id}"
        ws_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(ws_dir / name, study.read_text(encoding="utf-8"))
        ws = Workspace.init(ws_dir, sid, study_file=name)
        if demonstration:
            ws.mark_demonstration()
    ignored = [s.name for s in spec.sites]
    result = {"workspace": str(ws_dir), "study": sid, "study_file": str(ws_dir / name),
              "model_id": spec.model_id, "ledger": str(ws.root / "ledger.sqlite"),
              "ignored_sites": ignored, "demonstration": demonstration}
    if as_json:
        print(json.dumps(result, sort_keys=True))
        return
    print(f"workspace {ws_dir} for study {sid} (model {spec.model_id}); study settings kept in "
          f"{ws_dir / name}; ledger {ws.root / 'ledger.sqlite'}, its key pinned in {ws_dir / MANIFEST}")
    if demonstration:
        print("a demonstration workspace: not for clinical use (a release may waive the software "
              "verification and says so; its technical file is never issued)")
    if ignored:
        print(f"note: the study file lists sites ({', '.join(ignored)}); a workspace takes its sites from "
              "fedprog site add")
    print(f"next: fedprog site add NAME --data PATH (--consent consents.ndjson | --legal-basis TEXT) "
          f"--workspace {ws_dir}")

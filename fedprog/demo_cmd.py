"""``fedprog demo``: the bundled GBSG2 study, end to end, in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import user_errors, workspace


def demo(
    workspace_dir: Annotated[Path | None, typer.Option(
        "--workspace", help="Workspace folder (default $FEDPROG_WORKSPACE or ./fedprog-workspace).")] = None,
) -> None:
    """Train the demo model on GBSG2 split into four hospitals and print its summary."""
    from rich.console import Console

    from federated.artifact import write_json_atomic
    from federated.demo_study import write_demo_study
    from federated.runner import make_sites
    from federated.runner import train as run_train

    from .train_cmd import local_counts, print_cox_summary

    console = Console()
    ws = workspace(workspace_dir)
    with user_errors():
        study = write_demo_study(ws)
        console.print(f"[bold]fedprog demo[/bold] — workspace {ws}")
        console.print("GBSG2 (686 women, node-positive breast cancer) split into "
                      + ", ".join(f"{s.name}" for s in study.sites) + "; each site keeps its rows.")
        sites = make_sites(study, ws / "transcripts")
        fit, artifact = run_train(study, sites=sites)
        out = ws / "models" / f"{study.model_id}-v{study.version}.json"
        write_json_atomic(out, artifact)
    print_cox_summary(fit, out, artifact["sha256"], local_counts(sites))
    console.print(f"outbound transcripts (what each site sent): {ws / 'transcripts'}")

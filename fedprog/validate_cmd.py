"""``fedprog validate MODEL``: validate a registered model and record the verdict at the release gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import EXIT_CHECK_FAILED, user_errors, workspace

RefArg = Annotated[str, typer.Argument(help="model_id@version, model_id or sha256 prefix.")]
WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")]


def validate(ref: RefArg, workspace_dir: WorkspaceOpt = None,
             as_json: Annotated[bool, typer.Option("--json", help="The report on stdout.")] = False) -> None:
    """Apparent calibration-in-the-large at the sites against the acceptance band; a passing
    report makes the model ``validated`` (exit 0), a failing one exits 1."""
    from .workspace import OE_BAND, Workspace, validate_in_workspace

    with user_errors():
        report = validate_in_workspace(Workspace(workspace(workspace_dir)), ref)
    if as_json:
        print(json.dumps(report, sort_keys=True))
    else:
        for c in report["criteria"]:
            print(f"{c['id']}: O/E {c['value']:.3f} (band {OE_BAND[0]}–{OE_BAND[1]}) "
                  f"{'PASS' if c['passed'] else 'FAIL'}")
        print(f"{report['model']}: {'validated' if report['passed'] else 'validation FAILED'}")
    if not report["passed"]:
        raise typer.Exit(EXIT_CHECK_FAILED)

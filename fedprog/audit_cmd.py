"""``fedprog audit …``: check what left the sites."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import EXIT_CHECK_FAILED, user_errors

app = typer.Typer(help="Audit what left the sites.", no_args_is_help=True)


@app.command("transcript")
def transcript(
    folder: Annotated[Path, typer.Argument(help="The --transcript-dir of a train or km run.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")] = False,
) -> None:
    """Check that every message was masked and no payload's size depends on a site's patients.

    Exit code 0 when both rules hold, 1 when a rule is broken, 2 for unreadable input.
    """
    from federated.disclosure.audit import audit_transcripts

    with user_errors():
        report = audit_transcripts(folder)
    if as_json:
        print(json.dumps(report.to_dict(), sort_keys=True))
    else:
        verdict = "PASS" if report.ok else "FAIL"
        print(f"{verdict}: {report.messages} messages from {len(report.sites)} sites "
              f"({', '.join(report.sites)})")
        for problem in report.problems:
            print(f"- {problem}")
    if not report.ok:
        raise typer.Exit(EXIT_CHECK_FAILED)

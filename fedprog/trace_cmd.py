"""``fedprog trace check|matrix|impact|review``: requirements ↔ tests traceability (IEC 62304 §5.1.1)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, fail

if TYPE_CHECKING:
    from traceability.results import TestRun

app = typer.Typer(help="Requirements, hazards and risk controls traced to tests: gaps, matrix, impact, "
                       "review.", no_args_is_help=True)

DEFAULT_JUNIT = Path("build/test-results/junit.xml")
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")]
ReqOpt = Annotated[Path | None, typer.Option(
    "--requirements", help="Requirements folder (default: the package's traceability/requirements).")]
JunitOpt = Annotated[Path | None, typer.Option(
    "--junit", help=f"JUnit XML of the last test run (default: {DEFAULT_JUNIT}, if present).")]


class Format(StrEnum):
    csv = "csv"
    html = "html"
    json = "json"


@contextmanager
def _trace_errors() -> Iterator[None]:
    """Requirement and result errors → one line on stderr, exit 2 (never a traceback)."""
    from traceability.load import RequirementsError
    from traceability.results import ResultsError

    try:
        yield
    except (RequirementsError, ResultsError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from None


def _run(junit: Path | None) -> TestRun | None:
    """The test run at ``--junit`` (which must exist), else at the default path if it exists."""
    from traceability.results import read_junit

    if junit is None and not DEFAULT_JUNIT.exists():
        return None
    return read_junit(junit if junit is not None else DEFAULT_JUNIT)


@app.command("check")
def check(junit: JunitOpt = None, requirements: ReqOpt = None, as_json: JsonOpt = False) -> None:
    """Name every traceability gap (untested, unmarked test, suspect link, …); exit 1 if any.

    Reads the requirements and the last test run (JUnit XML written by pytest with the
    traceability plugin); prints one gap a line, or a one-line summary when there is none.
    """
    from traceability.check import gaps
    from traceability.load import load_requirements

    with _trace_errors():
        reqs = load_requirements(requirements)
        run = _run(junit)
        found = gaps(reqs, run)
    n_tests = len(run.tests) if run is not None else 0
    summary = f"{len(reqs)} requirements, {n_tests} tests, " + (f"{len(found)} gaps" if found else "no gaps")
    if as_json:
        print(json.dumps({"requirements": len(reqs), "tests": n_tests, "ok": not found,
                          "commit": run.commit if run else None,
                          "gaps": [g.to_dict() for g in found]}, sort_keys=True))
    else:
        for gap in found:
            print(gap)
        print(summary, file=sys.stderr if found else sys.stdout)
    if found:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command("matrix")
def matrix(fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.html,
           out: Annotated[Path | None, typer.Option("--out", help="Write to this file (default: stdout).")]
           = None,
           junit: JunitOpt = None, requirements: ReqOpt = None) -> None:
    """The trace matrix: user need → system → software → hazard → risk control → test → last result."""
    from traceability import matrix as mx
    from traceability.load import load_requirements
    from traceability.review import write_text

    render = {Format.csv: mx.to_csv, Format.html: mx.to_html, Format.json: mx.to_json}[fmt]
    with _trace_errors():
        reqs = load_requirements(requirements)
        text = render(reqs, _run(junit))
        if out is None:
            sys.stdout.write(text)
        else:
            write_text(out, text)
            print(f"trace matrix ({fmt.value}) written to {out}", file=sys.stderr)


@app.command("impact")
def impact(item_id: Annotated[str, typer.Argument(metavar="ID", help="Requirement, hazard or risk control.")],
           junit: JunitOpt = None, requirements: ReqOpt = None, as_json: JsonOpt = False) -> None:
    """Everything downstream of a requirement (and the tests verifying it), to analyse a change."""
    from traceability.load import load_requirements
    from traceability.matrix import impact as impact_of

    with _trace_errors():
        reqs = load_requirements(requirements)
        result = impact_of(reqs, item_id, _run(junit))
    if as_json:
        items = [{"id": i.id, "type": i.type, "title": i.title, "file": str(reqs.source[i.id])}
                 for i in result.items]
        tests = [{"nodeid": t.nodeid, "outcome": t.outcome, "reqs": list(t.reqs)} for t in result.tests]
        print(json.dumps({"id": item_id, "items": items, "tests": tests}, sort_keys=True))
        return
    print(f"{item_id} ({result.item.type}): {result.item.title}")
    for item in result.items:
        print(f"  {item.id}  {item.type}  {item.title}")
    for test in result.tests:
        print(f"  test {test.nodeid}  {test.outcome}")
    if not result.items and not result.tests:
        print("  nothing downstream")


@app.command("review")
def review(item_id: Annotated[str | None, typer.Argument(metavar="ID", help="The item reviewed.")] = None,
           all_items: Annotated[bool, typer.Option("--all", help="Review every item (first baseline).")]
           = False,
           requirements: ReqOpt = None) -> None:
    """Record that ID was re-read against its parents as they are now (clears its suspect links)."""
    from traceability import review as rv

    if all_items and item_id is None:
        with _trace_errors():
            changed = rv.review_all(requirements)
        print(f"{len(changed)} items reviewed" + (": " + ", ".join(changed) if changed else ""))
    elif item_id is not None and not all_items:
        with _trace_errors():
            stored = rv.review(item_id, requirements)
        print(f"{item_id} reviewed against " + (", ".join(stored) if stored else "no parents"))
    else:
        raise fail("give exactly one of ID or --all", EXIT_BAD_INPUT)

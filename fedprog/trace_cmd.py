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

from ._common import EXIT_CHECK_FAILED, fail

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
LinksOpt = Annotated[Path | None, typer.Option(
    "--links", help="Reviewed test-link baseline (default: traceability/links.yaml).")]


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
def check(junit: JunitOpt = None, requirements: ReqOpt = None, links: LinksOpt = None,
          as_json: JsonOpt = False) -> None:
    """Name every traceability gap (untested, unverified, no evidence, suspect link, …); exit 1 if any.

    Reads the requirements, the reviewed test-link baseline and the last test run (JUnit XML
    written by pytest with the traceability plugin); prints one gap a line, or a one-line
    summary when there is none.
    """
    from traceability.check import gaps
    from traceability.links import DEFAULT_LINKS, load_links
    from traceability.load import load_requirements

    with _trace_errors():
        if links is not None and not links.is_file():
            raise fail(f"{links}: no such link baseline")
        reqs = load_requirements(requirements)
        run = _run(junit)
        found = gaps(reqs, run, links=load_links(links or DEFAULT_LINKS))
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
def review(item_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="The items reviewed.")],
           by: Annotated[str, typer.Option("--by", help="Who reviewed (recorded with the date).")],
           junit: Annotated[Path | None, typer.Option(
               "--junit", help="Take the tests' fingerprints from this JUnit run instead of collecting "
                               "the tests (pytest --collect-only).")] = None,
           requirements: ReqOpt = None, links: LinksOpt = None) -> None:
    """Record that NAME re-read each ID against its parents and its tests as they are now.

    Clears the item's suspect links: parent fingerprints go into the item's YAML, the linked
    tests' source SHA-256 and the item's fingerprint into the link baseline, each with the
    reviewer and the UTC date. Every item is named: there is no blanket re-approval.
    """
    from traceability import links as lk
    from traceability import review as rv
    from traceability.load import load_requirements
    from traceability.results import read_junit

    path = links or lk.DEFAULT_LINKS
    if len(by.strip()) < 3:
        raise fail("--by names the reviewer (at least 3 characters)")
    with _trace_errors():
        reqs = load_requirements(requirements)
        for item_id in item_ids:
            reqs.get(item_id)
        current = lk.run_links(read_junit(junit)) if junit is not None else lk.collect_links(requirements)
        at = rv.today()
        baseline, tests = lk.review_links(lk.load_links(path), reqs, item_ids, current, by.strip(), at)
        stored = rv.review(item_ids, by, requirements, at=at)
        rv.write_text(path, lk.dump_links(baseline))
    for item_id in item_ids:
        parents = ", ".join(stored[item_id]) or "no parents"
        n = len(tests[item_id])
        print(f"{item_id} reviewed by {by.strip()} against {parents}; {n} test{'s' * (n != 1)}")

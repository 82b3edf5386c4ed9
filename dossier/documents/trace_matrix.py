"""FP-TM Traceability matrix (IEC 62304 §5.1.1, §5.7.4, §7.3.3; ISO 14971 §7).

The matrix is :func:`traceability.matrix.rows` — one row per path from a user need down the
links (system requirement, software requirement, hazard, risk control) to an item and its tests —
and the open gaps are :func:`traceability.check.gaps`; nothing is re-derived here. The document
shows the paths (with the number of tests at the end of each and their last result), then every
requirement with its verification status, then each requirement's tests. Parametrised cases of a
test function are counted on one line; FP-VER lists every case.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from reportlab.platypus import Flowable

from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, heading, para, table
from traceability.check import TESTED_TYPES, gaps
from traceability.links import DEFAULT_LINKS, load_links
from traceability.matrix import COLUMNS, Row, rows

from .model_card import present

#: the requirement types in trace order, and how they are called
TYPES = {"user-need": "User needs", "system": "System requirements", "software": "Software requirements",
         "hazard": "Hazards", "risk-control": "Risk controls"}
_CELLS = tuple(COLUMNS.values())


def leaf(row: Row) -> str:
    """The item a matrix row ends at: its right-most filled requirement column."""
    return next(getattr(row, c) for c in reversed(_CELLS) if getattr(row, c))


def results(counts: Counter[str]) -> str:
    """``12 passed`` or ``10 passed, 1 failed, 1 skipped`` — worst last, never hidden."""
    order = ("passed", "skipped", "error", "failed")
    return ", ".join(f"{counts[o]} {o}" for o in order if counts[o])


def item_tests(matrix: list[Row]) -> dict[str, dict[str, str]]:
    """Requirement id → {test node id: outcome}, from the matrix rows ending at it."""
    out: dict[str, dict[str, str]] = {}
    for r in matrix:
        if r.test:
            out.setdefault(leaf(r), {})[r.test] = r.outcome
    return out


def status(item: Any, tests: dict[str, str]) -> str:
    """The verification status of one requirement as the index shows it."""
    if tests:
        return results(Counter(tests.values()))
    if item.verification != "test":
        return f"by {item.verification}"
    return "NO TEST" if item.type in TESTED_TYPES else "through its children"


def _paths(matrix: list[Row]) -> list[list[object]]:
    """The matrix with one line per path: its items, number of tests and their results."""
    grouped: dict[tuple[str, ...], list[Row]] = {}
    for r in matrix:
        grouped.setdefault(tuple(getattr(r, c) for c in _CELLS), []).append(r)
    out: list[list[object]] = [["User need", "System", "Software", "Hazard", "Risk control", "Tests",
                                "Result"]]
    for cells, group in grouped.items():
        tested = [r for r in group if r.test]
        shown = results(Counter(r.outcome for r in tested)) if tested else group[0].outcome
        out.append([*cells, len(tested), shown])
    return out


def function(nodeid: str) -> str:
    """A test's function: its node id without the parameters of a parametrised case."""
    return re.sub(r"\[.*\]$", "", nodeid)


def _tests_by_requirement(reqs: Any, tests: dict[str, dict[str, str]]) -> list[list[object]]:
    out: list[list[object]] = [["Requirement", "Test (parametrised cases counted)", "Result"]]
    for item_id in sorted(tests):
        functions: dict[str, Counter[str]] = {}
        for nodeid, outcome in tests[item_id].items():
            functions.setdefault(function(nodeid), Counter())[outcome] += 1
        for fn, counts in sorted(functions.items()):
            n = sum(counts.values())
            out.append([item_id, fn + (f" (×{n})" if n > 1 else ""), results(counts)])
    return out


def category(item: Any, tests: dict[str, str]) -> str:
    """passing, failing, skipped (some skipped, none failing), untested, or other (not by test)."""
    outcomes = set(tests.values())
    if outcomes & {"failed", "error"}:
        return "failing"
    if outcomes:
        return "passing" if outcomes == {"passed"} else "skipped"
    return "untested" if status(item, tests) == "NO TEST" else "other"


def _summary(reqs: Any, tests: dict[str, dict[str, str]]) -> list[list[object]]:
    out: list[list[object]] = [["Type", "Items", "All tests pass", "A test fails", "Tests skipped", "No test",
                                "By inspection, analysis or children"]]
    for kind, name in TYPES.items():
        items = reqs.of_type(kind)
        count = Counter(category(i, tests.get(i.id, {})) for i in items)
        cells = [count[c] for c in ("passing", "failing", "skipped", "untested", "other")]
        out.append([name, len(items), *cells])
    return out


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    reqs, run = present(inputs.requirements), present(inputs.test_run)
    matrix = rows(reqs, run)
    tests = item_tests(matrix)
    index: list[list[object]] = [["Id", "Title", "Verification", "Parents", "Result"]]
    for kind in TYPES:
        index += [[i.id, i.title, i.verification, ", ".join(i.parents) or "—", status(i, tests.get(i.id, {}))]
                  for i in reqs.of_type(kind)]
    found = gaps(reqs, run, links=load_links(DEFAULT_LINKS))
    gap_rows: list[list[object]] = [["Gap", "Item or test", "Finding"]]
    gap_rows += [[g.kind, g.id, g.message] for g in found]
    intro = (f"This matrix traces each of the {len(reqs)} requirement items of fedprog "
             f"{esc(inputs.device_version)} from the user needs through the system and software requirements "
             "and the hazards to the risk controls, and each item to the tests verifying it with their last "
             "result (IEC 62304 §5.1.1 c, §5.7.4, §7.3.3; ISO 14971 §7.2). Test run: commit "
             f"{esc(run.commit)}, {esc(run.date)}, environment SHA-256 {esc(run.environment_sha256)}, "
             f"{len(run.tests)} tests; the full record is FP-VER.")
    paths = _paths(matrix)
    return [
        heading("1 Purpose and scope"), para(intro),
        heading("2 Summary"),
        table(_summary(reqs, tests), widths=[36, 14, 22, 20, 20, 16, 42]),
        para("A software requirement or risk control whose verification is <i>test</i> counts as verified "
             "only with a passing test carrying its id; system requirements are verified through their "
             "software requirements, user needs by inspection of the whole chain."),
        heading("3 Open traceability gaps"),
        para(f"{len(found)} gap(s) found by the traceability check (fedprog trace check) on these "
             "requirements and this test run" + ("." if found else ": every item is traced and verified.")),
        *([table(gap_rows, widths=[22, 88, 60])] if found else []),
        heading("4 Trace matrix"),
        para(f"{len(matrix)} matrix rows (one per path and test) shown as {len(paths) - 1} paths: the items "
             "on the path, the number of tests of its last item and their results."),
        table(paths, widths=[22, 22, 24, 22, 22, 12, 26]),
        heading("5 Requirement index"),
        para("Every requirement, hazard and risk control with its verification method and status."),
        table(index, widths=[24, 66, 18, 36, 26]),
        heading("6 Tests of each requirement"),
        table(_tests_by_requirement(reqs, tests), widths=[24, 120, 26]),
    ]


SPEC = DocumentSpec(id="FP-TM", title="Traceability matrix", file="FP-TM-traceability-matrix.pdf",
                    needs=("requirements", "test_run"), build=build, toc=True)

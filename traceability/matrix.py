"""The trace matrix and impact analysis.

The matrix is the traceability record of IEC 62304 §5.1.1 and ISO 14971 §7 (hazard → risk control
→ verification): one row per path from a top item (an item without parents, normally a user need)
down the links to an item, and one of the tests verifying that item — columns user need, system
requirement, software requirement, hazard, risk control, test, and the test's last result
(outcome, commit, date). An item with tests gets a row per test; a leaf without tests gets one
row with no test, so every item appears at least once.

:func:`impact` answers IEC 62304 §6.2.3/§7.4 (analysis of a change): everything downstream of an
item, and the tests to re-run.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .load import Requirements
from .results import TestResult, TestRun
from .schema import Item

#: item type → matrix column, in column order
COLUMNS: dict[str, str] = {"user-need": "user_need", "system": "system", "software": "software",
                           "hazard": "hazard", "risk-control": "risk_control"}
FIELDS = (*COLUMNS.values(), "test", "outcome", "commit", "date")
NOT_RUN = "not run"


@dataclass(frozen=True)
class Row:
    """One matrix row; an empty string where a path has no item of that type (or no test)."""

    user_need: str = ""
    system: str = ""
    software: str = ""
    hazard: str = ""
    risk_control: str = ""
    test: str = ""
    outcome: str = ""
    commit: str = ""
    date: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Impact:
    """What a change to ``item`` reaches: the items downstream and the tests verifying any of them
    (or the item itself)."""

    item: Item
    items: list[Item]
    tests: list[TestResult] = field(default_factory=list)


def _paths(reqs: Requirements, item: Item, prefix: tuple[Item, ...]) -> Iterator[tuple[Item, ...]]:
    path = (*prefix, item)
    yield path
    for child in reqs.children(item.id):
        yield from _paths(reqs, child, path)


def _untested_outcome(item: Item, run: TestRun | None) -> str:
    if item.verification != "test":
        return f"by {item.verification}"
    return NOT_RUN if run is None else "no test"


def _all_paths(reqs: Requirements) -> list[tuple[Item, ...]]:
    """Every path from a top item down, except one whose items all lie on a longer path to the
    same item (a risk control naming both a hazard and the requirement above that hazard is shown
    once, under the hazard)."""
    paths = [p for _, top in sorted(reqs.items.items()) if not top.parents for p in _paths(reqs, top, ())]
    by_end: dict[str, list[frozenset[str]]] = {}
    for path in paths:
        by_end.setdefault(path[-1].id, []).append(frozenset(i.id for i in path))
    return [p for p in paths
            if not any(frozenset(i.id for i in p) < other for other in by_end[p[-1].id])]


def rows(reqs: Requirements, run: TestRun | None) -> list[Row]:
    """Every matrix row (top items by id, then depth first by id)."""
    by_req = run.by_requirement() if run is not None else {}
    commit, date = (run.commit, run.date) if run is not None else ("", "")
    out: list[Row] = []
    for path in _all_paths(reqs):
        last = path[-1]
        cells = {COLUMNS[it.type]: it.id for it in path}
        tests = by_req.get(last.id, [])
        out += [Row(**cells, test=t.nodeid, outcome=t.outcome, commit=commit, date=date) for t in tests]
        if not tests and not reqs.children(last.id):
            out.append(Row(**cells, outcome=_untested_outcome(last, run)))
    return out


def to_csv(reqs: Requirements, run: TestRun | None) -> str:
    """The matrix as CSV with a header row (:data:`FIELDS`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(r.to_dict() for r in rows(reqs, run))
    return buf.getvalue()


def to_json(reqs: Requirements, run: TestRun | None) -> str:
    """The matrix as JSON: the run's provenance, each requirement's summary, and the rows."""
    doc: dict[str, Any] = {
        "run": None if run is None else {"commit": run.commit, "date": run.date,
                                         "environment_sha256": run.environment_sha256,
                                         "python": run.python, "platform": run.platform},
        "requirements": {i: {"type": it.type, "title": it.title, "verification": it.verification,
                             "parents": it.parents, "file": reqs.source[i].name}
                         for i, it in sorted(reqs.items.items())},
        "rows": [r.to_dict() for r in rows(reqs, run)],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #1a1a1a; }
h1 { font-size: 1.4em; } p.meta { color: #555; font-size: .9em; }
table { border-collapse: collapse; width: 100%; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .35em .5em; text-align: left; vertical-align: top; }
th { background: #eef1f5; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fafafa; }
td small { color: #555; display: block; }
td.passed { color: #0a6b2d; font-weight: 600; } td.failed, td.error { color: #b00020; font-weight: 600; }
td.skipped, td.no-test, td.not-run { color: #8a5a00; font-weight: 600; }
td.by-inspection, td.by-analysis { color: #555; font-style: italic; }
code { font-size: .95em; }
"""


def _cell(reqs: Requirements, value: str, column: str) -> str:
    if not value:
        return "<td></td>"
    if column in COLUMNS.values():
        title = html.escape(reqs.items[value].title)
        return f"<td><code>{html.escape(value)}</code><small>{title}</small></td>"
    if column == "outcome":
        return f'<td class="{html.escape(value.replace(" ", "-"))}">{html.escape(value)}</td>'
    if column == "test":
        return f"<td><code>{html.escape(value)}</code></td>"
    return f"<td>{html.escape(value)}</td>"


def to_html(reqs: Requirements, run: TestRun | None) -> str:
    """The matrix as one self-contained HTML page (inline CSS, no scripts or external resources)."""
    head = "".join(f"<th>{html.escape(f.replace('_', ' '))}</th>" for f in FIELDS)
    body = "\n".join("<tr>" + "".join(_cell(reqs, getattr(r, f), f) for f in FIELDS) + "</tr>"
                     for r in rows(reqs, run))
    meta = ("no test results" if run is None else
            f"test run: commit {run.commit}, {run.date}, environment {run.environment_sha256[:16]}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Trace matrix</title><style>{_CSS}</style></head><body>\n"
            f"<h1>Trace matrix</h1>\n<p class=\"meta\">{len(reqs)} requirements. {html.escape(meta)}</p>\n"
            f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n</body></html>\n")


def downstream(reqs: Requirements, item_id: str) -> list[Item]:
    """Everything downstream of ``item_id``: its children transitively (a hazard's risk controls,
    a software requirement's hazards and their risk controls, …), by id."""
    return reqs.descendants(item_id)


def impact(reqs: Requirements, item_id: str, run: TestRun | None = None) -> Impact:
    """:func:`downstream` plus, when a run is given, the tests verifying the item or any of those."""
    item = reqs.get(item_id)
    items = downstream(reqs, item_id)
    tests: list[TestResult] = []
    if run is not None:
        ids = {item_id, *(i.id for i in items)}
        tests = [t for t in run.tests if ids.intersection(t.reqs)]
    return Impact(item=item, items=items, tests=tests)

"""Traceability gaps: what ``fedprog trace check`` reports (and fails on).

Rules, each citing what it enforces:

* ``no-test-run`` – no JUnit results: nothing is verified (run ``make test``).
* ``untested`` – a ``software`` requirement or ``risk-control`` with ``verification: test`` and no
  *passing* test carrying its id (IEC 62304 §5.7.4/§5.7.5; ISO 14971 §7.2 verification of risk
  control implementation and effectiveness). Skipped tests do not count.
* ``uncontrolled-hazard`` – a hazard with no ``risk-control`` child (ISO 14971 §7.1).
* ``unrefined`` – a ``user-need`` without a ``system`` child, a ``system`` requirement without a
  ``software`` child (IEC 62304 §5.2.1, §5.1.1).
* ``orphan`` – a ``system`` requirement without a ``user-need`` parent, a ``software`` one without
  a ``system`` parent, a ``risk-control`` without a ``hazard`` parent (§5.1.1; ISO 14971 §7.1).
* ``unmarked-test`` – a test in the run with no ``req`` property: every test in this repository
  verifies something, so it must say what (§5.1.1 c)).
* ``unknown-requirement`` – a test in the run names an id the requirements no longer have (the
  results are older than the YAML).
* ``suspect-link`` – an item whose ``reviewed`` fingerprint of a parent differs from the parent's
  current :func:`~traceability.schema.fingerprint`, or is missing (never reviewed); cleared by
  ``fedprog trace review ID`` (IEC 62304 §5.1.1 traceability kept current; §6.2.3 change analysis).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .load import Requirements
from .results import TestRun
from .schema import fingerprint

#: report order of the gap kinds
KINDS = ("no-test-run", "untested", "uncontrolled-hazard", "unrefined", "orphan", "suspect-link",
         "unknown-requirement", "unmarked-test")
#: an item of this type must have a child of that type (and a parent of that type)
_NEEDS_CHILD = {"user-need": "system", "system": "software", "hazard": "risk-control"}
_NEEDS_PARENT = {"system": "user-need", "software": "system", "risk-control": "hazard"}
TESTED_TYPES = frozenset({"software", "risk-control"})


@dataclass(frozen=True)
class Gap:
    """One traceability gap: its kind, the requirement id or test node id, and one line."""

    kind: str
    id: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.id}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _untested(reqs: Requirements, run: TestRun) -> Iterator[Gap]:
    by_req = run.by_requirement()
    for item in sorted(reqs.items.values(), key=lambda i: i.id):
        if item.type not in TESTED_TYPES or item.verification != "test":
            continue
        tests = by_req.get(item.id, [])
        if not tests:
            yield Gap("untested", item.id, f"{item.type} with verification: test has no test "
                      f"(mark one with @pytest.mark.req({item.id!r}))")
        elif not any(t.outcome == "passed" for t in tests):
            outcomes = ", ".join(f"{t.nodeid} {t.outcome}" for t in tests)
            yield Gap("untested", item.id, f"has tests but none passed ({outcomes})")


def _structure(reqs: Requirements) -> Iterator[Gap]:
    for item in sorted(reqs.items.values(), key=lambda i: i.id):
        want = _NEEDS_CHILD.get(item.type)
        if want and not any(c.type == want for c in reqs.children(item.id)):
            kind = "uncontrolled-hazard" if item.type == "hazard" else "unrefined"
            what = "is controlled by no risk-control" if item.type == "hazard" else f"has no {want} child"
            yield Gap(kind, item.id, f"{item.type} {what}")
        up = _NEEDS_PARENT.get(item.type)
        if up and not any(reqs.items[p].type == up for p in item.parents):
            yield Gap("orphan", item.id, f"{item.type} traces to no {up} parent")


def _suspect(reqs: Requirements) -> Iterator[Gap]:
    for item in sorted(reqs.items.values(), key=lambda i: i.id):
        for parent in item.parents:
            stored = item.reviewed.get(parent)
            if stored is None:
                why = f"never reviewed against {parent}"
            elif stored != fingerprint(reqs.items[parent]):
                why = f"{parent} changed since this item was last reviewed against it"
            else:
                continue
            yield Gap("suspect-link", item.id, f"{why} (re-read both, then `fedprog trace review {item.id}`)")


def _under(nodeid: str, root: Path | None) -> bool:
    if root is None:
        return True
    prefix = PurePosixPath(root.as_posix())
    return PurePosixPath(nodeid.split("::", 1)[0]).is_relative_to(prefix)


def _tests(reqs: Requirements, run: TestRun, tests_root: Path | None) -> Iterator[Gap]:
    for test in run.tests:
        if not _under(test.nodeid, tests_root):
            continue
        if not test.reqs:
            yield Gap("unmarked-test", test.nodeid, "verifies no requirement (add @pytest.mark.req(...))")
        for req in test.reqs:
            if req not in reqs:
                yield Gap("unknown-requirement", test.nodeid, f"names {req}, which is not a requirement "
                          "(results older than the requirements? re-run `make test`)")


def gaps(reqs: Requirements, run: TestRun | None, *, tests_root: Path | None = None) -> list[Gap]:
    """Every traceability gap, ordered by :data:`KINDS` then id.

    ``run`` is the last test run (``None``: no results, itself a gap). ``tests_root`` limits the
    test rules (``unmarked-test``, ``unknown-requirement``) to node ids under that folder
    (relative to the pytest root, e.g. ``Path("tests")``); ``None`` applies them to every test.
    """
    found: list[Gap] = [*_structure(reqs), *_suspect(reqs)]
    if run is None:
        found.append(Gap("no-test-run", "junit",
                         "no test results: run `make test` (pytest --junitxml) first"))
    else:
        found += [*_untested(reqs, run), *_tests(reqs, run, tests_root)]
    order = {k: n for n, k in enumerate(KINDS)}
    return sorted(found, key=lambda g: (order[g.kind], g.id, g.message))

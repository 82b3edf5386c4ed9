"""Traceability gaps: what ``fedprog trace check`` reports (and fails on).

Rules, each citing what it enforces:

* ``no-test-run`` – no JUnit results: nothing is verified (run ``make test``).
* ``untested`` – a ``system`` or ``software`` requirement or a ``risk-control`` with
  ``verification: test`` and no test in the run carrying its id (IEC 62304 §5.7.4/§5.7.5;
  ISO 14971 §7.2 verification of risk control implementation and effectiveness).
* ``unverified`` – such an item with linked tests of which at least one did not pass (failed,
  error or skipped): an item is *verified* only if every test carrying its id ran and passed
  (:func:`verification_status`); a skipped test verifies nothing, and one passing test does not
  outweigh a failing one.
* ``no-evidence`` – a ``system``, ``software``, ``risk-control`` or ``hazard`` with
  ``verification: inspection`` or ``analysis`` and no ``evidence`` record, or whose latest record
  names a file absent from the repository or says ``fail`` (IEC 62304 §5.7.5 records of
  verification; ISO 14971 §5 and §7.2 records of risk analysis and of risk control verification).
  A ``planned`` record is accepted only for a risk control whose rationale says it earns *no
  reduction of probability* (the risk management file then lists it as open, not as verified).
  Hazards are *analysed* (the record shows where the analysis is). User needs are exempt: they
  are *validated* (the clinical validation and the usability file, IEC 62366-1 §5.9) through the
  system requirements refining them, which are themselves verified here.
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
  ``fedprog trace review ID --by NAME`` (IEC 62304 §5.1.1 traceability kept current; §6.2.3
  change analysis).
* ``suspect-test-link`` – a test → requirement link in the run that is not in the reviewed-links
  baseline (:mod:`traceability.links`), or whose test source or requirement fingerprint changed
  since it was reviewed; cleared by ``fedprog trace review ID --by NAME`` (§5.7.4, §6.2.3,
  §7.4.1: a changed test or requirement invalidates the earlier verification).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from .links import REPO_ROOT, Link, function_id
from .load import Requirements
from .results import TestResult, TestRun
from .schema import Item, fingerprint

#: report order of the gap kinds
KINDS = ("no-test-run", "untested", "unverified", "no-evidence", "uncontrolled-hazard", "unrefined",
         "orphan", "suspect-link", "suspect-test-link", "unknown-requirement", "unmarked-test")
#: an item of this type must have a child of that type (and a parent of that type)
_NEEDS_CHILD = {"user-need": "system", "system": "software", "hazard": "risk-control"}
_NEEDS_PARENT = {"system": "user-need", "software": "system", "risk-control": "hazard"}
#: types verified by tests when their ``verification`` is ``test``
TESTED_TYPES = frozenset({"system", "software", "risk-control"})
#: types that need an evidence record when their ``verification`` is inspection or analysis
EVIDENCE_TYPES = frozenset({"system", "software", "risk-control", "hazard"})
Status = Literal["verified", "unverified", "untested"]


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


def _test_verified(reqs: Requirements) -> list[Item]:
    return [it for _, it in sorted(reqs.items.items())
            if it.type in TESTED_TYPES and it.verification == "test"]


def verification_status(reqs: Requirements, run: TestRun) -> dict[str, Status]:
    """Each test-verified item (:data:`TESTED_TYPES`, ``verification: test``) → ``verified``
    (at least one linked test, and every linked test passed), ``unverified`` (a linked test
    failed, errored or was skipped) or ``untested`` (no linked test in the run)."""
    by_req = run.by_requirement()
    out: dict[str, Status] = {}
    for item in _test_verified(reqs):
        tests = by_req.get(item.id, [])
        out[item.id] = ("untested" if not tests else
                        "verified" if all(t.outcome == "passed" for t in tests) else "unverified")
    return out


def linked_failures(run: TestRun, reqs: Requirements) -> list[TestResult]:
    """The tests in ``run`` that did not pass (failed, error, skipped) and carry the id of an
    item in ``reqs``, in run order: each keeps some requirement from being verified."""
    return [t for t in run.tests if t.outcome != "passed" and any(r in reqs for r in t.reqs)]


def _untested(reqs: Requirements, run: TestRun) -> Iterator[Gap]:
    by_req = run.by_requirement()
    for req_id, status in verification_status(reqs, run).items():
        item = reqs.items[req_id]
        if status == "untested":
            yield Gap("untested", req_id, f"{item.type} with verification: test has no test "
                      f"(mark one with @pytest.mark.req({req_id!r}))")
        elif status == "unverified":
            bad = ", ".join(f"{t.nodeid} {t.outcome}" for t in by_req[req_id] if t.outcome != "passed")
            yield Gap("unverified", req_id, f"not every linked test passed ({bad})")


def _claims_no_reduction(item: Item) -> bool:
    """A risk control whose rationale says it earns no reduction of probability (planned, or only
    partly implemented), as the risk management file reads it."""
    rationale = " ".join((item.rationale or "").split())
    return item.type == "risk-control" and "no reduction of probability" in rationale


def _evidence(reqs: Requirements, root: Path) -> Iterator[Gap]:
    for _, item in sorted(reqs.items.items()):
        if item.type not in EVIDENCE_TYPES or item.verification == "test":
            continue
        if not item.evidence:
            yield Gap("no-evidence", item.id, f"{item.type} verified by {item.verification} has no "
                      "evidence record (add evidence: [{file, reviewer, date, result}])")
            continue
        for record in item.evidence:
            path = PurePosixPath(record.file)
            if path.is_absolute() or ".." in path.parts or not (root / path).is_file():
                yield Gap("no-evidence", item.id,
                          f"evidence file {record.file} does not exist in the repository")
        last = max(e.date for e in item.evidence)
        for record in (e for e in item.evidence if e.date == last):
            if record.result == "fail":
                yield Gap("no-evidence", item.id, f"the latest {item.verification} ({record.date}, "
                          f"{record.reviewer}) says fail")
            elif record.result == "planned" and not _claims_no_reduction(item):
                yield Gap("no-evidence", item.id, "evidence says planned, but only a risk control whose "
                          "rationale claims no reduction of probability may rest on a planned record")


def _suspect_tests(reqs: Requirements, run: TestRun, links: Mapping[tuple[str, str], Link]) -> Iterator[Gap]:
    seen: set[tuple[str, str]] = set()
    for test in run.tests:
        fid = function_id(test.nodeid)
        for req in test.reqs:
            if req not in reqs or (req, fid) in seen:
                continue
            seen.add((req, fid))
            link = links.get((req, fid))
            if not test.test_sha256:
                why = f"the run records no source fingerprint for {fid}"
            elif link is None:
                why = f"link to {fid} was never reviewed"
            elif link.test_sha256 != test.test_sha256:
                why = f"{fid} changed since its link was reviewed ({link.reviewed_by}, {link.reviewed_at})"
            elif link.req_fingerprint != fingerprint(reqs.items[req]):
                why = (f"{req} changed since its link to {fid} was reviewed "
                       f"({link.reviewed_by}, {link.reviewed_at})")
            else:
                continue
            yield Gap("suspect-test-link", req, f"{why} (re-read both, then "
                      f"`fedprog trace review {req} --by NAME`)")


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
            yield Gap("suspect-link", item.id, f"{why} (re-read both, then "
                      f"`fedprog trace review {item.id} --by NAME`)")


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


def gaps(reqs: Requirements, run: TestRun | None, *, tests_root: Path | None = None,
         links: Mapping[tuple[str, str], Link] | None = None, repo_root: Path = REPO_ROOT) -> list[Gap]:
    """Every traceability gap, ordered by :data:`KINDS` then id.

    ``run`` is the last test run (``None``: no results, itself a gap). ``tests_root`` limits the
    test rules (``unmarked-test``, ``unknown-requirement``) to node ids under that folder
    (relative to the pytest root, e.g. ``Path("tests")``); ``None`` applies them to every test.
    ``links`` is the reviewed-links baseline (:func:`traceability.links.load_links`); ``None``
    leaves out the ``suspect-test-link`` rule. Evidence files are looked up under ``repo_root``.
    """
    found: list[Gap] = [*_structure(reqs), *_suspect(reqs), *_evidence(reqs, repo_root)]
    if run is None:
        found.append(Gap("no-test-run", "junit",
                         "no test results: run `make test` (pytest --junitxml) first"))
    else:
        found += [*_untested(reqs, run), *_tests(reqs, run, tests_root)]
        if links is not None:
            found += _suspect_tests(reqs, run, links)
    order = {k: n for n, k in enumerate(KINDS)}
    return sorted(found, key=lambda g: (order[g.kind], g.id, g.message))

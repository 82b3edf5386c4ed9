"""The test run read as evidence by FP-REL, FP-CYB and FP-TVAL: tests selected by requirement family or
by test file, counted by outcome, and the open anomalies grouped by requirement (IEC 62304 §5.7.5,
§5.8.2; ISO 13485 §4.1.6).

Counts come only from :class:`traceability.results.TestRun` (the JUnit file the project's pytest
plugin wrote); a selection the run holds no test of is reported as "no evidence", never as passed.
Outcome names and their printing are :mod:`dossier.documents.verification_report`'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reportlab.platypus import Flowable

from dossier.style import esc, para

from .verification_report import OUTCOMES, shown

#: the key under which tests that name no requirement are grouped
UNLINKED = "(no requirement)"


def family(req_id: str) -> str:
    """The family of a requirement id: ``SRS-AUTH-003`` → ``SRS-AUTH``."""
    return req_id.rsplit("-", 1)[0] if req_id.count("-") >= 2 else req_id


@dataclass(frozen=True)
class Tally:
    """Tests of one selection, counted by outcome."""

    passed: int = 0
    failed: int = 0
    error: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.error + self.skipped

    @property
    def verdict(self) -> str:
        """NO EVIDENCE (no test), NOT PASSED (a failure or error), INCOMPLETE (a skip), else PASSED."""
        if not self.total:
            return "NO EVIDENCE"
        if self.failed or self.error:
            return "NOT PASSED"
        return "INCOMPLETE" if self.skipped else "PASSED"

    def cells(self) -> list[object]:
        """The counts in :data:`OUTCOMES` order, then the total and the verdict (a table row's tail)."""
        return [self.passed, self.failed, self.error, self.skipped, self.total, self.verdict]

    def text(self) -> str:
        return (f"{self.total} tests: {self.passed} passed, {self.failed} failed, {self.error} erred, "
                f"{self.skipped} skipped")


#: the header cells matching :meth:`Tally.cells`
TALLY_HEAD: tuple[str, ...] = (*OUTCOMES, "Total", "Verdict")


def tally(tests: Iterable[Any]) -> Tally:
    """Count ``tests`` (:class:`traceability.results.TestResult`) by outcome."""
    c = Counter(t.outcome for t in tests)
    return Tally(c["passed"], c["failed"], c["error"], c["skipped"])


def of_families(run: Any, families: Iterable[str]) -> list[Any]:
    """Tests of ``run`` carrying a requirement of any of ``families`` (``SRS-AUTH``, ``RC-PRIV`` …), in run
    order, each once."""
    wanted = set(families)
    return [t for t in run.tests if any(family(r) in wanted for r in t.reqs)]


def by_family(run: Any, families: Sequence[str]) -> dict[str, list[Any]]:
    """Family → the tests of ``run`` carrying one of its requirements (a test may count in several)."""
    return {f: of_families(run, (f,)) for f in families}


def of_files(run: Any, prefixes: Iterable[str]) -> list[Any]:
    """Tests of ``run`` whose node id starts with any of ``prefixes`` (a file or a folder of tests)."""
    heads = tuple(prefixes)
    return [t for t in run.tests if t.nodeid.startswith(heads)]


def open_tests(run: Any) -> list[Any]:
    """Every test of ``run`` that did not pass (failed, erred or skipped), in run order."""
    return [t for t in run.tests if t.outcome != "passed"]


def by_requirement(tests: Iterable[Any]) -> dict[str, list[Any]]:
    """Requirement id → its tests among ``tests`` (sorted by id; tests naming none under :data:`UNLINKED`,
    last)."""
    out: dict[str, list[Any]] = {}
    for t in tests:
        for req in t.reqs or (UNLINKED,):
            out.setdefault(req, []).append(t)
    return dict(sorted(out.items(), key=lambda kv: (kv[0] == UNLINKED, kv[0])))


def listed(tests: Iterable[Any]) -> Flowable:
    """A table cell: ``node id (OUTCOME)`` of each test, one per line."""
    return para("<br/>".join(f"{esc(t.nodeid)} ({shown(t.outcome)})" for t in tests) or "\u2014", "small")

"""Verified means every linked test ran and passed (traceability.check, issue 19).

The adversary: a developer whose test for a requirement now fails or is skipped, and who hopes
another passing test carrying the same id, or the skip, lets the requirement count as verified.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from tests.traceability import PASSING, baseline, junit_xml, write_folder
from traceability.check import gaps, linked_failures, verification_status
from traceability.load import Requirements, load_requirements
from traceability.results import Outcome, TestResult, TestRun, read_junit

pytestmark = pytest.mark.req("SRS-TRACE-006")
Cases = dict[str, tuple[str, tuple[str, ...]]]


def run_of(cases: Cases) -> TestRun:
    tests = [TestResult(n, cast(Outcome, o), r) for n, (o, r) in cases.items()]
    return TestRun(commit="c", date="d", environment_sha256="e", tests=tests)


@pytest.fixture
def reqs(tmp_path: Path) -> Requirements:
    return load_requirements(write_folder(tmp_path, baseline()))


def test_the_baseline_run_verifies_every_tested_item(reqs: Requirements) -> None:
    assert verification_status(reqs, run_of(PASSING)) == {
        "RC-DEMO-001": "verified", "SRS-DEMO-001": "verified", "SRS-DEMO-002": "verified",
        "SYS-DEMO-001": "verified"}
    assert linked_failures(run_of(PASSING), reqs) == []


def test_one_failing_test_linked_to_three_requirements_leaves_all_three_unverified(
        reqs: Requirements) -> None:
    cases: Cases = {**PASSING,
                    "tests/t.py::test_shared": ("failed", ("SRS-DEMO-001", "SRS-DEMO-002", "RC-DEMO-001"))}
    status = verification_status(reqs, run_of(cases))
    assert status == {"RC-DEMO-001": "unverified", "SRS-DEMO-001": "unverified",
                      "SRS-DEMO-002": "unverified", "SYS-DEMO-001": "verified"}
    found = [(g.kind, g.id) for g in gaps(reqs, run_of(cases))]
    assert found == [("unverified", "RC-DEMO-001"), ("unverified", "SRS-DEMO-001"),
                     ("unverified", "SRS-DEMO-002")]
    assert all("tests/t.py::test_shared failed" in g.message for g in gaps(reqs, run_of(cases)))


@pytest.mark.parametrize("outcome", ["skipped", "error", "failed"])
def test_a_linked_test_that_did_not_pass_keeps_the_item_unverified(reqs: Requirements, outcome: str) -> None:
    cases: Cases = {**PASSING, "tests/t.py::test_extra[x]": (outcome, ("SRS-DEMO-002",))}
    assert verification_status(reqs, run_of(cases))["SRS-DEMO-002"] == "unverified"
    (gap,) = gaps(reqs, run_of(cases))
    assert (gap.kind, gap.id) == ("unverified", "SRS-DEMO-002")
    assert gap.message == f"not every linked test passed (tests/t.py::test_extra[x] {outcome})"


def test_a_system_requirement_needs_its_own_passing_tests(reqs: Requirements) -> None:
    cases: Cases = {n: (o, tuple(r for r in rs if r != "SYS-DEMO-001")) for n, (o, rs) in PASSING.items()}
    assert verification_status(reqs, run_of(cases))["SYS-DEMO-001"] == "untested"
    (gap,) = gaps(reqs, run_of(cases))
    assert (gap.kind, gap.id) == ("untested", "SYS-DEMO-001")
    assert "@pytest.mark.req('SYS-DEMO-001')" in gap.message


def test_linked_failures_lists_the_tests_that_keep_requirements_unverified(reqs: Requirements,
                                                                           tmp_path: Path) -> None:
    cases: Cases = {**PASSING,
                    "tests/t.py::test_a": ("skipped", ("SRS-DEMO-001",)),
                    "tests/t.py::test_b": ("error", ("RC-DEMO-001", "SRS-GONE-001")),
                    "tests/t.py::test_c": ("failed", ()),  # carries no requirement: not listed
                    "tests/t.py::test_d": ("failed", ("SRS-GONE-001",))}  # no such requirement
    run = read_junit(junit_xml(tmp_path / "junit.xml", cases))  # as the dossier reads it
    assert [(t.nodeid, t.outcome) for t in linked_failures(run, reqs)] == [
        ("tests/t.py::test_a", "skipped"), ("tests/t.py::test_b", "error")]

"""Software verification evidence: the suite run with JUnit XML, the commit and the environment."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from validation import verification
from validation.exceptions import VerificationError
from validation.run import Options, _verify

pytestmark = pytest.mark.req("SRS-VAL-005")

SELECTION = ["tests/validation/test_pooling.py"]


def test_a_passing_selection_records_junit_evidence(tmp_path: Path) -> None:
    out = verification.run_suite(tmp_path, SELECTION, timeout=300)
    junit = tmp_path / "junit.xml"
    assert out["status"] == "passed" and out["returncode"] == 0
    assert out["tests"] == 4 and out["failures"] == out["errors"] == 0
    assert out["junit"] == "junit.xml"
    assert out["junit_sha256"] == hashlib.sha256(junit.read_bytes()).hexdigest()
    assert len(out["environment_sha256"]) == 64 and out["distributions"] > 10
    assert out["commit"] is None or len(out["commit"]) == 40
    assert out["command"][-1] == SELECTION[-1]


def test_a_selection_that_runs_nothing_or_times_out_fails(tmp_path: Path) -> None:
    out = verification.run_suite(tmp_path, [*SELECTION, "-k", "no_such_test"], timeout=300)
    assert out["status"] == "failed" and out["returncode"] == 5 and out["tests"] == 0
    slow = verification.run_suite(tmp_path, SELECTION, timeout=0.01)
    assert slow["status"] == "failed" and slow["returncode"] is None and "timed out" in slow["summary"]


def test_junit_counts_sum_the_test_suites(tmp_path: Path) -> None:
    path = tmp_path / "j.xml"
    path.write_text('<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1"/>'
                    '<testsuite tests="2" failures="0" errors="1" skipped="0"/></testsuites>')
    assert verification.junit_counts(path) == {"tests": 5, "failures": 1, "errors": 1, "skipped": 1}
    path.write_text("<testsuites")
    with pytest.raises(VerificationError, match="not a readable JUnit XML"):
        verification.junit_counts(path)


def test_without_a_checkout_the_user_is_told_to_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verification, "checkout", lambda: None)
    with pytest.raises(VerificationError, match="--skip-verification"):
        verification.run_suite(tmp_path)


def test_the_suite_is_not_run_again_from_inside_a_test_session(tmp_path: Path) -> None:
    """A test that calls ``fedprog validate`` must not start the whole suite (it would recurse)."""
    out = _verify(tmp_path, Options())
    assert out["status"] == "skipped" and "PYTEST_CURRENT_TEST" in out["reason"]
    assert _verify(tmp_path, Options(skip_verification=True))["reason"] == "--skip-verification"
    assert not (tmp_path / "junit.xml").exists()

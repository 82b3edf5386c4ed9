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


def _junit(path: Path, commit: str, env: str, cases: str) -> Path:
    path.write_text(f"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="2" failures="0" errors="0" skipped="0"><properties>
<property name="commit" value="{commit}"/><property name="date" value="2026-12-07T00:00:00+00:00"/>
<property name="environment_sha256" value="{env}"/></properties>{cases}</testsuite></testsuites>
""", encoding="utf-8")
    return path


def _case(name: str, req: str | None, inner: str = "") -> str:
    props = f'<property name="nodeid" value="tests/x.py::{name}"/>' + (
        f'<property name="req" value="{req}"/>' if req else "")
    return f'<testcase classname="tests.x" name="{name}"><properties>{props}</properties>{inner}</testcase>'


@pytest.mark.req("SRS-VAL-011")
def test_an_existing_run_counts_only_for_the_same_clean_commit_and_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Adversary: a developer who offers yesterday's green run, or a run on a modified checkout or in
    another environment, as the verification of today's software."""
    head = "a" * 40
    env = verification.environment()["environment_sha256"]
    monkeypatch.setattr(verification, "commit", lambda root=None: {"commit": head, "dirty": False})
    monkeypatch.setattr(verification, "trace_gaps", lambda run: [])  # a two-test run verifies nothing real
    ok = _junit(tmp_path / "ok.xml", head, env, _case("t1", "SRS-A-001") + _case("t2", None))
    out = verification.from_junit(ok, tmp_path / "report")
    assert out["status"] == "passed" and out["problems"] == [] and out["tests"] == 2
    assert (tmp_path / "report" / "junit.xml").read_bytes() == ok.read_bytes()
    assert out["junit_sha256"] == hashlib.sha256(ok.read_bytes()).hexdigest()
    for commit, environment, why in ((("b" * 40), env, "the run was of commit bbbbbbbbbbbb"),
                                     (head + "-dirty", env, "modified or unknown checkout"),
                                     (head, "0" * 64, "another environment")):
        bad = _junit(tmp_path / "bad.xml", commit, environment, _case("t1", "SRS-A-001"))
        refused = verification.from_junit(bad, tmp_path / "r2")
        assert refused["status"] == "failed" and why in refused["summary"]
    monkeypatch.setattr(verification, "commit", lambda root=None: {"commit": head, "dirty": True})
    assert "this software is aaaaaaaaaaaa" in verification.from_junit(ok, tmp_path / "r3")["summary"]


@pytest.mark.req("SRS-VAL-011")
def test_a_skipped_or_failed_linked_test_fails_the_verification(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    head = "c" * 40
    env = verification.environment()["environment_sha256"]
    monkeypatch.setattr(verification, "commit", lambda root=None: {"commit": head, "dirty": False})
    monkeypatch.setattr(verification, "trace_gaps", lambda run: [])
    unlinked_skip = _junit(tmp_path / "u.xml", head, env, _case("t1", "SRS-A-001")
                           + _case("t2", None, '<skipped message="x"/>'))
    assert verification.from_junit(unlinked_skip, tmp_path / "u")["status"] == "passed"
    for inner in ('<skipped message="no browser"/>', '<failure message="boom"/>'):
        run = _junit(tmp_path / "l.xml", head, env, _case("t1", "SRS-A-001", inner) + _case("t2", None))
        out = verification.from_junit(run, tmp_path / "l")
        assert out["status"] == "failed" and out["linked_not_passed"][0].startswith("tests/x.py::t1 ")
    assert verification.linked_not_passed(run) == ["tests/x.py::t1 failed"]


@pytest.mark.req("SRS-VAL-011")
def test_counts_come_from_the_test_cases_and_the_run_must_trace_cleanly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Adversary: a hand-edited JUnit whose suite attributes say 0 failures over a failing case, or a
    run of two trivial tests offered as the verification of the whole device."""
    head = "d" * 40
    env = verification.environment()["environment_sha256"]
    monkeypatch.setattr(verification, "commit", lambda root=None: {"commit": head, "dirty": False})
    hidden = _junit(tmp_path / "h.xml", head, env, _case("t1", None, '<failure message="boom"/>')
                    + _case("t2", "SRS-FED-001"))  # the suite element still says failures="0"
    out = verification.from_junit(hidden, tmp_path / "h")
    assert out["failures"] == 1 and out["status"] == "failed"
    assert any("1 failures" in p for p in out["problems"])
    # the real trace check of this two-test run: nearly every requirement is untested
    assert any("`fedprog trace check` finds" in p and "untested" in p for p in out["problems"])

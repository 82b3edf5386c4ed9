"""Software verification evidence: the test suite run with JUnit XML, the commit and the environment.

:func:`run_suite` runs ``python -m pytest -q --junitxml=<folder>/junit.xml`` in the project's
source checkout (the folder above the installed packages holding ``pyproject.toml`` and
``tests/``) and records what QA needs to reproduce and trust it (IEC 62304 §5.7, software
system testing; the evidence a validation report links to):

* the commit (``git rev-parse HEAD``) and whether the working tree was dirty;
* the environment: SHA-256 over the sorted ``name==version`` lines of every installed
  distribution, and the Python version;
* the counts from the JUnit file (tests, failures, errors, skipped) and its SHA-256.

A suite that fails, errors, collects nothing or times out fails the verification.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ledger.files import sha256_file

from .exceptions import VerificationError

#: seconds the whole suite may take before the verification fails
DEFAULT_TIMEOUT = 3600.0


def checkout() -> Path | None:
    """The source checkout the running packages come from (``pyproject.toml`` and ``tests/``)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "tests").is_dir() else None


def environment() -> dict[str, Any]:
    """Python version and the SHA-256 of the sorted ``name==version`` of installed distributions (names
    lower-cased, ``_`` and ``.`` as ``-``: the same digest the test run's JUnit records, so a run and the
    environment it is offered in can be compared)."""
    from importlib.metadata import distributions

    lines = sorted({f"{(d.metadata['Name'] or '?').lower().replace('_', '-').replace('.', '-')}=={d.version}"
                    for d in distributions() if d.metadata["Name"]})
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
    return {"python": platform.python_version(), "distributions": len(lines), "environment_sha256": digest}


def commit(root: Path | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout (``None`` without git)."""
    root = root if root is not None else checkout()
    if root is None:
        return {"commit": None, "dirty": None}
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=30)
        status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0
            else None}


def junit_counts(path: Path) -> dict[str, int]:
    """tests, failures, errors and skipped summed over the ``testsuite`` elements of a JUnit file."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise VerificationError(f"{path}: not a readable JUnit XML file ({exc})") from None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    return {k: sum(int(s.get(k, "0")) for s in suites) for k in ("tests", "failures", "errors", "skipped")}


def run_suite(folder: Path, extra_args: list[str] | None = None, timeout: float = DEFAULT_TIMEOUT
              ) -> dict[str, Any]:
    """Run the test suite, writing ``folder/junit.xml``; return the evidence summary.

    ``extra_args`` are passed to pytest (e.g. ``["-k", "test_units"]`` to run a selection).
    ``passed`` is true only when pytest exits 0 and the JUnit file reports no failure or error.

    Raises
    ------
    VerificationError
        No source checkout (pass ``--skip-verification`` or run from a checkout), or the suite
        could not be started.
    """
    root = checkout()
    if root is None:
        raise VerificationError("no source checkout (pyproject.toml and tests/) above the installed "
                                "fedprog: run from a checkout or pass --skip-verification")
    junit = Path(folder) / "junit.xml"
    args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *(extra_args or [])]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    started = time.monotonic()
    try:
        res = subprocess.run([sys.executable, *args], cwd=root, capture_output=True, text=True,
                             timeout=timeout, env=env)
        returncode: int | None = res.returncode
        tail = res.stdout.strip().splitlines()[-1:] if res.stdout.strip() else []
    except subprocess.TimeoutExpired:
        returncode, tail = None, [f"timed out after {timeout:g} s"]
    except OSError as exc:
        raise VerificationError(f"cannot start the test suite: {exc}") from None
    out: dict[str, Any] = {"status": "failed", "command": ["python", *args], "returncode": returncode,
                           "selection": bool(extra_args),
                           "duration_s": round(time.monotonic() - started, 1), "summary": " ".join(tail),
                           **commit(root), **environment()}
    if junit.is_file():
        out.update(junit="junit.xml", junit_sha256=sha256_file(junit),
                   **junit_counts(junit))
    ok = returncode == 0 and junit.is_file() and out.get("tests", 0) > 0 \
        and out.get("failures", 1) == 0 and out.get("errors", 1) == 0
    if junit.is_file():
        out["linked_not_passed"] = linked_not_passed(junit)
        ok = ok and not out["linked_not_passed"]
    out["status"] = "passed" if ok else "failed"
    return out


def linked_not_passed(junit: Path) -> list[str]:
    """Tests of a run that carry a requirement id and did not pass (failed, errored or skipped): a
    requirement is verified only when every test linked to it ran and passed (IEC 62304 §5.7.5)."""
    from traceability.results import ResultsError, read_junit

    try:
        run = read_junit(junit)
    except ResultsError as exc:
        raise VerificationError(str(exc)) from None
    return [f"{t.nodeid} {t.outcome}" for t in run.tests if t.reqs and t.outcome != "passed"]


def trace_gaps(run: Any) -> list[str]:
    """The traceability gaps of a run (:func:`traceability.check.gaps` with the reviewed test links):
    an untested or unverified requirement, a test or requirement changed since its link was reviewed."""
    from traceability.check import gaps
    from traceability.links import DEFAULT_LINKS, load_links
    from traceability.load import load_requirements

    return [str(g) for g in gaps(load_requirements(None), run, tests_root=Path("tests"),
                                 links=load_links(DEFAULT_LINKS))]


def from_junit(junit: Path, folder: Path) -> dict[str, Any]:
    """Evidence from a run of the suite that already happened (``make test``'s JUnit), copied into
    ``folder`` as ``junit.xml``. It passes only when that run is of this very software: the same clean
    commit (a run on a modified checkout proves nothing about a commit), the same environment digest,
    tests collected, no failure or error, and no linked test failed or skipped. Every reason it does not
    is listed under ``problems``."""
    from traceability.results import ResultsError, read_junit

    try:
        run = read_junit(Path(junit))
    except ResultsError as exc:
        raise VerificationError(str(exc)) from None
    here, env = commit(), environment()
    outcomes = [t.outcome for t in run.tests]  # from the test cases, not the suite's own attributes
    counts = {"tests": len(outcomes), "failures": outcomes.count("failed"), "errors": outcomes.count("error"),
              "skipped": outcomes.count("skipped")}
    problems = []
    if run.commit.endswith("-dirty") or run.commit == "unknown":
        problems.append(f"the run was on a modified or unknown checkout ({run.commit})")
    elif here["commit"] is None or here["dirty"] or run.commit != here["commit"]:
        now = "unknown" if here["commit"] is None else here["commit"] + ("-dirty" if here["dirty"] else "")
        problems.append(f"the run was of commit {run.commit[:12]}, this software is {now[:18]}")
    if run.environment_sha256 != env["environment_sha256"]:
        problems.append("the run was in another environment (its environment SHA-256 differs)")
    if counts["tests"] == 0:
        problems.append("the run holds no test")
    if counts["failures"] or counts["errors"]:
        problems.append(f"{counts['failures']} failures and {counts['errors']} errors")
    linked = linked_not_passed(Path(junit))
    if linked:
        problems.append(f"{len(linked)} tests linked to requirements did not pass (first: {linked[0]})")
    gaps = trace_gaps(run)
    if gaps:
        problems.append(f"`fedprog trace check` finds {len(gaps)} gaps in this run (first: {gaps[0]})")
    Path(folder).mkdir(parents=True, exist_ok=True)
    copy = Path(folder) / "junit.xml"
    copy.write_bytes(Path(junit).read_bytes())
    return {"status": "failed" if problems else "passed", "source": "junit", "problems": problems,
            "summary": "; ".join(problems) or f"{counts['tests']} tests of {run.commit[:12]} on {run.date}",
            "run_commit": run.commit, "run_date": run.date, "linked_not_passed": linked,
            "junit": "junit.xml", "junit_sha256": sha256_file(copy), **counts, **here, **env}


def skipped(reason: str) -> dict[str, Any]:
    """The evidence summary of a verification that did not run, with the reason."""
    return {"status": "skipped", "reason": reason, **commit(), **environment()}

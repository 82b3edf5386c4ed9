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
    """Python version and the SHA-256 of the sorted ``name==version`` of installed distributions."""
    from importlib.metadata import distributions

    lines = sorted({f"{(d.metadata['Name'] or '?').lower().replace('_', '-')}=={d.version}"
                    for d in distributions()})
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
                           "duration_s": round(time.monotonic() - started, 1), "summary": " ".join(tail),
                           **commit(root), **environment()}
    if junit.is_file():
        out.update(junit="junit.xml", junit_sha256=sha256_file(junit),
                   **junit_counts(junit))
    ok = returncode == 0 and junit.is_file() and out.get("tests", 0) > 0 \
        and out.get("failures", 1) == 0 and out.get("errors", 1) == 0
    out["status"] = "passed" if ok else "failed"
    return out


def skipped(reason: str) -> dict[str, Any]:
    """The evidence summary of a verification that did not run, with the reason."""
    return {"status": "skipped", "reason": reason, **commit(), **environment()}

"""Read the JUnit XML that pytest writes with :mod:`traceability.pytest_plugin` loaded.

The test run is the verification record of IEC 62304 §5.7.5 (and §5.5.5 for unit tests): which
test verified which requirement, its outcome, and the commit, date and environment it ran in.

Outcome comes from the XML structure, as JUnit defines it: a ``<failure>`` child → ``failed``,
an ``<error>`` child → ``error``, a ``<skipped>`` child (also pytest's xfail) → ``skipped``,
none of them → ``passed``. The ``test_sha256`` property (the test function's source hash,
:mod:`traceability.links`) is kept with each test. A node id given twice (rare: some pytest
versions split a call failure and a teardown error) keeps its worst outcome and the union of its requirements.

Node ids: the plugin records each test's exact node id as a ``nodeid`` property, which is used
when present. Without it the node id is rebuilt from what pytest writes: ``classname`` is the
test file's path with ``/`` turned into ``.`` and ``.py`` dropped, followed by the test classes
(``tests.pkg.test_mod.TestClass``), and ``name`` is the function with its parameters
(``test_x[a-1]``). The rebuild takes trailing components that start with an upper-case letter as
classes (the ``Test*`` convention) and the rest as the path, giving
``tests/pkg/test_mod.py::TestClass::test_x[a-1]``; it cannot tell a dotted folder name from a
sub-folder, which is why the property is preferred.

The file is parsed with :mod:`xml.etree.ElementTree`: it is a local file our own test run
wrote, not untrusted input (defusedxml is not a dependency).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

Outcome = Literal["passed", "failed", "error", "skipped"]
#: worse outcomes win when one node id appears twice
_RANK: dict[str, int] = {"passed": 0, "skipped": 1, "error": 2, "failed": 3}


class ResultsError(ValueError):
    """The JUnit file is missing, unreadable or not JUnit XML (one line)."""


@dataclass(frozen=True)
class TestResult:
    """One test case of the run."""

    __test__: ClassVar[bool] = False  # not a pytest test class
    nodeid: str
    outcome: Outcome
    reqs: tuple[str, ...] = ()
    #: SHA-256 of the test function's source (``test_sha256`` property; empty if not recorded)
    test_sha256: str = ""


@dataclass(frozen=True)
class TestRun:
    """A whole run: where and when it ran, and every test case in it (in file order)."""

    __test__: ClassVar[bool] = False  # not a pytest test class
    commit: str
    date: str
    environment_sha256: str
    tests: list[TestResult] = field(default_factory=list)
    python: str = ""
    platform: str = ""
    source: Path | None = None

    def by_requirement(self) -> dict[str, list[TestResult]]:
        """Requirement id → the tests carrying it, in run order."""
        out: dict[str, list[TestResult]] = {}
        for test in self.tests:
            for req in test.reqs:
                out.setdefault(req, []).append(test)
        return out


def nodeid_from_junit(classname: str, name: str) -> str:
    """Rebuild a pytest node id from JUnit ``classname`` and ``name`` (see the module doc)."""
    if not classname:
        return name
    parts = classname.split(".")
    split = len(parts)
    while split > 1 and parts[split - 1][:1].isupper():
        split -= 1
    path = "/".join(parts[:split]) + ".py"
    return "::".join([path, *parts[split:], name])


def _properties(element: ET.Element) -> list[tuple[str, str]]:
    props = element.find("properties")
    if props is None:
        return []
    return [(p.get("name", ""), p.get("value", "")) for p in props.findall("property")]


def _outcome(case: ET.Element) -> Outcome:
    if case.find("failure") is not None:
        return "failed"
    if case.find("error") is not None:
        return "error"
    if case.find("skipped") is not None:
        return "skipped"
    return "passed"


def _merge(results: dict[str, TestResult], new: TestResult) -> None:
    old = results.get(new.nodeid)
    if old is None:
        results[new.nodeid] = new
        return
    worst = old.outcome if _RANK[old.outcome] >= _RANK[new.outcome] else new.outcome
    reqs = tuple(dict.fromkeys(old.reqs + new.reqs))
    results[new.nodeid] = TestResult(new.nodeid, worst, reqs, old.test_sha256 or new.test_sha256)


def read_junit(path: Path) -> TestRun:
    """Parse the JUnit XML at ``path``; :class:`ResultsError` (one line) if it is not one."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such JUnit file (run `make test` first)") from None
    except OSError as exc:
        raise ResultsError(f"{path}: {exc.strerror or exc}") from None
    except ET.ParseError as exc:
        raise ResultsError(f"{path}: not XML ({exc})") from None
    if root.tag == "testsuites":
        suites = root.findall("testsuite")
    elif root.tag == "testsuite":
        suites = [root]
    else:
        raise ResultsError(f"{path}: not JUnit XML (root element <{root.tag}>, expected <testsuites>)")
    if not suites:
        raise ResultsError(f"{path}: not JUnit XML (no <testsuite> element)")
    glob: dict[str, str] = {}
    results: dict[str, TestResult] = {}
    for suite in suites:
        glob.update(_properties(suite))
        for case in suite.iter("testcase"):
            props = _properties(case)
            named = [v for k, v in props if k == "nodeid"]
            nodeid = named[0] if named else nodeid_from_junit(case.get("classname", ""), case.get("name", ""))
            reqs = tuple(dict.fromkeys(v for k, v in props if k == "req"))
            sha = next((v for k, v in props if k == "test_sha256"), "")
            _merge(results, TestResult(nodeid, _outcome(case), reqs, sha))
    date = glob.get("date", suites[0].get("timestamp", ""))
    return TestRun(commit=glob.get("commit", "unknown"), date=date,
                   environment_sha256=glob.get("environment_sha256", ""), tests=list(results.values()),
                   python=glob.get("python", ""), platform=glob.get("platform", ""), source=path)

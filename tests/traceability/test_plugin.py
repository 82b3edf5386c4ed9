"""The pytest plugin (traceability.pytest_plugin) and the JUnit reader (traceability.results)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.traceability import baseline, write_folder
from traceability.pytest_plugin import environment_sha256, git_commit
from traceability.results import ResultsError, nodeid_from_junit, read_junit

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.req("SRS-TRACE-002")

TESTS = '''
import pytest

pytestmark = pytest.mark.req("SRS-DEMO-001")

@pytest.fixture
def broken():
    raise RuntimeError("fixture fails")

@pytest.mark.req("SRS-DEMO-002", "RC-DEMO-001")
def test_passes():
    pass

def test_fails():
    assert False

def test_errors(broken):
    pass

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass

@pytest.mark.req("RC-DEMO-001")
class TestGroup:
    @pytest.mark.parametrize("x", ["a", "b::c"])
    def test_param(self, x):
        pass
'''


def run(pytester: pytest.Pytester, tests: str, *args: str) -> tuple[pytest.RunResult, Path]:
    """Run ``tests`` (as sub/test_demo.py) with the plugin against the baseline requirements."""
    folder = write_folder(pytester.path / "reqs", baseline())
    pytester.mkpydir("sub")
    (pytester.path / "sub" / "test_demo.py").write_text(tests)
    junit = pytester.path / "out" / "junit.xml"
    result = pytester.runpytest("-p", "traceability.pytest_plugin", f"--requirements={folder}",
                                f"--junitxml={junit}", "-p", "no:cacheprovider", *args)
    return result, junit


def test_junit_carries_requirements_nodeid_outcome_and_provenance(pytester: pytest.Pytester) -> None:
    result, junit = run(pytester, TESTS)
    result.assert_outcomes(passed=3, failed=1, errors=1, skipped=1)
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert set(props) == {"commit", "date", "python", "platform", "environment_sha256"}
    assert props["commit"] == "unknown"  # pytester's folder is not a git repository
    assert props["environment_sha256"] == environment_sha256()
    case = suite.find("testcase[@name='test_passes']")
    assert case is not None
    source = '@pytest.mark.req("SRS-DEMO-002", "RC-DEMO-001")\ndef test_passes():\n    pass\n'
    assert [(p.get("name"), p.get("value")) for p in case.findall("properties/property")] == [
        ("nodeid", "sub/test_demo.py::test_passes"), ("req", "SRS-DEMO-002"), ("req", "RC-DEMO-001"),
        ("req", "SRS-DEMO-001"), ("test_sha256", hashlib.sha256(source.encode()).hexdigest())]

    test_run = read_junit(junit)
    assert test_run.commit == "unknown" and test_run.date == props["date"] and test_run.python
    got = {t.nodeid: (t.outcome, t.reqs) for t in test_run.tests}
    assert got == {
        "sub/test_demo.py::test_passes": ("passed", ("SRS-DEMO-002", "RC-DEMO-001", "SRS-DEMO-001")),
        "sub/test_demo.py::test_fails": ("failed", ("SRS-DEMO-001",)),
        "sub/test_demo.py::test_errors": ("error", ("SRS-DEMO-001",)),
        "sub/test_demo.py::test_skipped": ("skipped", ("SRS-DEMO-001",)),
        "sub/test_demo.py::TestGroup::test_param[a]": ("passed", ("RC-DEMO-001", "SRS-DEMO-001")),
        "sub/test_demo.py::TestGroup::test_param[b::c]": ("passed", ("RC-DEMO-001", "SRS-DEMO-001")),
    }


def test_nodeid_rebuilt_without_the_property(pytester: pytest.Pytester) -> None:
    _, junit = run(pytester, TESTS)
    cases = ET.parse(junit).getroot().iter("testcase")
    rebuilt = {nodeid_from_junit(c.get("classname", ""), c.get("name", "")) for c in cases}
    assert "sub/test_demo.py::test_passes" in rebuilt
    assert "sub/test_demo.py::TestGroup::test_param[a]" in rebuilt
    stripped = pytester.path / "stripped.xml"
    stripped.write_text(junit.read_text().replace('<property name="nodeid"', '<property name="other"'))
    assert {t.nodeid for t in read_junit(stripped).tests} == rebuilt


@pytest.mark.parametrize("args", [(), ("-k", "test_passes")])
def test_unknown_id_fails_the_run(pytester: pytest.Pytester, args: tuple[str, ...]) -> None:
    tests = TESTS.replace('@pytest.mark.req("RC-DEMO-001")\nclass', '@pytest.mark.req("RC-NOPE-001")\nclass')
    result, _ = run(pytester, tests, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*@pytest.mark.req names requirements that do not exist*",
                                 "*sub/test_demo.py::TestGroup::test_param[[]a[]]: unknown requirement id "
                                 "'RC-NOPE-001'*"])
    assert "passed" not in result.stdout.str()


@pytest.mark.parametrize(("mark", "expected"), [
    ("@pytest.mark.req()", "takes one or more requirement ids"),
    ("@pytest.mark.req(42)", "id 42 is not a string"),
])
def test_malformed_marker_fails_the_run(pytester: pytest.Pytester, mark: str, expected: str) -> None:
    result, _ = run(pytester, f"import pytest\n\n{mark}\ndef test_x():\n    pass\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*sub/test_demo.py::test_x: *{expected}*"])


def test_broken_requirements_fail_the_run(pytester: pytest.Pytester) -> None:
    folder = write_folder(pytester.path / "reqs", baseline())
    (folder / "broken.yaml").write_text("- id: [\n")
    pytester.makepyfile(test_x='import pytest\n\n@pytest.mark.req("SRS-DEMO-001")\ndef test_x():\n    pass\n')
    result = pytester.runpytest("-p", "traceability.pytest_plugin", f"--requirements={folder}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*requirements do not load: *broken.yaml: line 2 not valid YAML*"])


def test_unmarked_tests_need_no_requirements(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest("-p", "traceability.pytest_plugin", "--requirements=/nonexistent",
                                "--strict-markers")
    result.assert_outcomes(passed=1)


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_commit_names_head_and_dirty(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                              cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()

    assert git_commit(tmp_path) == "unknown"
    git("init", "-q")
    (tmp_path / "a.txt").write_text("a")
    git("add", "a.txt")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "HEAD")
    assert git_commit(tmp_path) == head
    (tmp_path / "a.txt").write_text("b")
    assert git_commit(tmp_path) == f"{head}-dirty"


def test_environment_hash_recipe() -> None:
    pins = {f"{d.metadata['Name'].lower().replace('_', '-').replace('.', '-')}=={d.version}"
            for d in importlib.metadata.distributions()}
    assert environment_sha256() == hashlib.sha256("\n".join(sorted(pins)).encode()).hexdigest()
    assert any(p.startswith("pytest==") for p in pins)


@pytest.mark.parametrize(("content", "expected"), [
    (None, "no such JUnit file"),
    ("not xml at all", "not XML"),
    ("<html/>", "not JUnit XML (root element <html>"),
    ("<testsuites/>", "no <testsuite> element"),
])
def test_reader_refuses_what_is_not_junit(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "junit.xml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ResultsError) as info:
        read_junit(path)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_reader_accepts_a_bare_testsuite_and_merges_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text('<testsuite timestamp="2026-01-01T00:00:00">'
                    '<testcase classname="tests.test_a.TestB" name="test_c[1]" />'
                    '<testcase classname="tests.test_a.TestB" name="test_c[1]"><error message="teardown" />'
                    '<properties><property name="req" value="SRS-DEMO-001" /></properties></testcase>'
                    '</testsuite>')
    test_run = read_junit(path)
    assert test_run.commit == "unknown" and test_run.date == "2026-01-01T00:00:00"
    assert [(t.nodeid, t.outcome, t.reqs) for t in test_run.tests] == [
        ("tests/test_a.py::TestB::test_c[1]", "error", ("SRS-DEMO-001",))]

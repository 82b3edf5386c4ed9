"""Fingerprinted test → requirement links (traceability.links, the plugin's ``test_sha256``).

The adversary: a developer who rewrites a test, moves a marker, or changes a requirement's text
or tolerance, and hopes the old verification still counts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.traceability import baseline, item, write_folder
from traceability.check import Gap, gaps
from traceability.links import (
    Link,
    LinksError,
    collect_links,
    dump_links,
    function_id,
    load_links,
    review_links,
    run_links,
)
from traceability.load import load_requirements
from traceability.results import read_junit
from traceability.schema import Item, fingerprint

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.req("SRS-TRACE-007")
DAY = dt.date(2026, 1, 2)

TESTS = '''import pytest


@pytest.mark.req("SRS-DEMO-001", "SYS-DEMO-001")
def test_one():
    assert 1 + 1 == 2


@pytest.mark.req("SRS-DEMO-002", "RC-DEMO-001")
@pytest.mark.parametrize("x", ["a", "b"])
def test_two(x):
    assert x in "ab"
'''


def with_acceptance(threshold: float) -> dict[str, list[dict[str, object]]]:
    files = baseline()
    files["software.yaml"][1]["acceptance"] = [{"metric": "harrell_c", "op": ">=", "threshold": threshold}]
    return files


class Project:
    """A small project on disk: requirements, a test file, a JUnit run of it and a link baseline."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.reqs = pytester.path / "reqs"
        self.links = pytester.path / "links.yaml"
        self.junit = pytester.path / "junit.xml"
        write_folder(self.reqs, with_acceptance(0.6))
        pytester.mkdir("tests")
        self.write_tests(TESTS)

    def write_tests(self, text: str) -> None:
        (self.pytester.path / "tests" / "test_demo.py").write_text(text, encoding="utf-8")

    def run(self) -> list[Gap]:
        """Run the tests with the plugin, then the check with the baseline; the test-link gaps."""
        result = self.pytester.runpytest(
            "-p", "traceability.pytest_plugin", f"--requirements={self.reqs}", f"--junitxml={self.junit}",
            "-p", "no:cacheprovider", "tests")
        assert result.ret == 0, result.outlines[-5:]
        run = read_junit(self.junit)
        found = gaps(load_requirements(self.reqs), run, links=load_links(self.links))
        return [g for g in found if g.kind in ("suspect-test-link", "untested", "unverified")]

    def review_all_links(self) -> None:
        reqs = load_requirements(self.reqs)
        ids = sorted({r for t in read_junit(self.junit).tests for r in t.reqs})
        new, _ = review_links(load_links(self.links), reqs, ids, run_links(read_junit(self.junit)),
                              "A. Reviewer", DAY)
        self.links.write_text(dump_links(new), encoding="utf-8")


@pytest.fixture
def project(pytester: pytest.Pytester) -> Project:
    return Project(pytester)


def test_the_plugin_records_the_source_hash_with_decorators_shared_by_parameters(project: Project) -> None:
    assert [g.kind for g in project.run()] == ["suspect-test-link"] * 4  # nothing reviewed yet
    run = read_junit(project.junit)
    shas = {t.nodeid: t.test_sha256 for t in run.tests}
    source = TESTS.split("\n\n\n")
    want_one = hashlib.sha256((source[1] + "\n").encode()).hexdigest()
    want_two = hashlib.sha256(source[2].encode()).hexdigest()
    assert shas == {"tests/test_demo.py::test_one": want_one, "tests/test_demo.py::test_two[a]": want_two,
                    "tests/test_demo.py::test_two[b]": want_two}


def test_a_reviewed_run_has_no_suspect_link_and_a_changed_test_source_is_suspect(project: Project) -> None:
    project.run()
    project.review_all_links()
    assert project.run() == []
    project.write_tests(TESTS.replace('assert x in "ab"', 'assert x in "abc"'))  # weakened, still passes
    found = project.run()
    assert [(g.kind, g.id) for g in found] == [("suspect-test-link", "RC-DEMO-001"),
                                               ("suspect-test-link", "SRS-DEMO-002")]
    assert found[0].message == ("tests/test_demo.py::test_two changed since its link was reviewed "
                                "(A. Reviewer, 2026-01-02) (re-read both, then "
                                "`fedprog trace review RC-DEMO-001 --by NAME`)")


def test_a_marker_moved_onto_another_test_is_a_link_never_reviewed(project: Project) -> None:
    project.run()
    project.review_all_links()
    project.write_tests(TESTS + '\n\n@pytest.mark.req("SRS-DEMO-001")\ndef test_three():\n    pass\n')
    (gap,) = project.run()
    assert (gap.kind, gap.id) == ("suspect-test-link", "SRS-DEMO-001")
    assert gap.message.startswith("link to tests/test_demo.py::test_three was never reviewed")


@pytest.mark.parametrize(("change", "suspect_ids"), [
    ("tolerance", ["SRS-DEMO-002"]),
    ("text", ["SRS-DEMO-001"]),
])
def test_a_changed_requirement_makes_its_test_links_suspect(project: Project, change: str,
                                                            suspect_ids: list[str]) -> None:
    project.run()
    project.review_all_links()
    files = with_acceptance(0.55 if change == "tolerance" else 0.6)
    if change == "text":
        files["software.yaml"][0]["text"] = "The software now promises something weaker."
    write_folder(project.reqs, files)
    found = project.run()
    assert [(g.kind, g.id) for g in found] == [("suspect-test-link", i) for i in suspect_ids]
    assert "changed since its link to tests/test_demo.py::" in found[0].message


def test_a_run_without_source_hashes_is_suspect(tmp_path: Path) -> None:
    from tests.traceability import PASSING, junit_xml

    folder = write_folder(tmp_path / "reqs", baseline())
    run = read_junit(junit_xml(tmp_path / "j.xml", PASSING, shas={n: "" for n in PASSING}))
    found = gaps(load_requirements(folder), run, links={})
    assert {g.kind for g in found} == {"suspect-test-link"}
    assert all("records no source fingerprint" in g.message for g in found)


def test_the_fingerprint_covers_acceptance_criteria_but_keeps_old_reviews_valid() -> None:
    plain = Item.model_validate(item("SRS-DEMO-001", "software", ["SYS-DEMO-001"]))
    old_recipe = json.dumps({"id": plain.id, "text": " ".join(plain.text.split()), "parents": plain.parents},
                            sort_keys=True, separators=(",", ":"))
    assert fingerprint(plain) == hashlib.sha256(old_recipe.encode()).hexdigest()

    def with_criterion(threshold: float, horizon: float) -> str:
        criterion = {"metric": "brier", "op": "<=", "threshold": threshold, "horizon": horizon}
        return fingerprint(Item.model_validate(item("SRS-DEMO-001", "software", ["SYS-DEMO-001"],
                                                    acceptance=[criterion])))

    hashes = {with_criterion(0.25, 5.0), with_criterion(0.25, 3.0), with_criterion(0.2, 5.0)}
    assert len(hashes) == 3 and fingerprint(plain) not in hashes


def test_the_baseline_file_is_sorted_deterministic_and_checked(tmp_path: Path) -> None:
    reqs = load_requirements(write_folder(tmp_path / "reqs", baseline()))
    current = {"tests/b.py::test_b": ("b" * 64, ("SRS-DEMO-002", "RC-DEMO-001")),
               "tests/a.py::test_a": ("a" * 64, ("SRS-DEMO-001",))}
    forward, tests = review_links({}, reqs, ["SRS-DEMO-002", "RC-DEMO-001", "SRS-DEMO-001"], current,
                                  "A. Reviewer", DAY)
    backward, _ = review_links({}, reqs, ["SRS-DEMO-001", "RC-DEMO-001", "SRS-DEMO-002"],
                               dict(reversed(current.items())), "A. Reviewer", DAY)
    text = dump_links(forward)
    assert text == dump_links(backward)
    assert [line.split(": ")[1] for line in text.splitlines() if line.startswith("- req:")] == [
        "RC-DEMO-001", "SRS-DEMO-001", "SRS-DEMO-002"]
    assert tests == {"RC-DEMO-001": ["tests/b.py::test_b"], "SRS-DEMO-001": ["tests/a.py::test_a"],
                     "SRS-DEMO-002": ["tests/b.py::test_b"]}
    path = tmp_path / "links.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_links(path) == forward
    assert load_links(tmp_path / "absent.yaml") == {}
    path.write_text(text + text, encoding="utf-8")
    with pytest.raises(LinksError, match=r"link #3: RC-DEMO-001 → tests/b.py::test_b given twice"):
        load_links(path)
    assert isinstance(next(iter(forward.values())), Link)


def test_function_id_drops_only_the_parameters() -> None:
    assert function_id("tests/a.py::TestX::test_y[p-1::x]") == "tests/a.py::TestX::test_y"
    assert function_id("tests/a.py::test_y") == "tests/a.py::test_y"


def test_links_are_collected_without_running_a_test(project: Project) -> None:
    """What ``fedprog trace review`` uses instead of the whole suite: ``pytest --collect-only``."""
    project.write_tests(TESTS.replace("assert 1 + 1 == 2", "raise SystemExit('must not run')"))
    collected = collect_links(project.reqs, root=project.pytester.path)
    assert set(collected) == {"tests/test_demo.py::test_one", "tests/test_demo.py::test_two"}
    assert collected["tests/test_demo.py::test_two"][1] == ("SRS-DEMO-002", "RC-DEMO-001")
    result = project.pytester.runpytest(
        "-p", "traceability.pytest_plugin", f"--requirements={project.reqs}", f"--junitxml={project.junit}",
        "-p", "no:cacheprovider", "tests")
    assert result.ret == 1  # test_one now fails when run: it was not run by the collection
    assert run_links(read_junit(project.junit)) == collected
    project.write_tests("import pytest\n\ndef test_broken(:\n    pass\n")
    with pytest.raises(LinksError, match="collecting the tests failed"):
        collect_links(project.reqs, root=project.pytester.path)


# --- end to end: pytest, then the command, as make test runs them --------------------------------


def fedprog(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedprog", "trace", *map(str, args)], cwd=cwd, text=True,
                          capture_output=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})


@pytest.mark.req("SYS-TRACE-001", "SRS-TRACE-006", "SRS-TRACE-008")
def test_end_to_end_a_rewritten_test_fails_the_check_until_someone_reviews_it(project: Project) -> None:
    """The real command line: pytest with the plugin writes JUnit, ``fedprog trace check`` reads it."""
    root = project.pytester.path
    write_folder(project.reqs, with_acceptance(0.6))
    project.run()
    project.links.write_text("[]\n", encoding="utf-8")  # nothing reviewed yet
    common = ("--requirements", project.reqs, "--links", project.links)
    first = fedprog("check", "--junit", project.junit, *common, cwd=root)
    assert first.returncode == 1 and first.stdout.count("suspect-test-link: ") == 4, first.stdout
    denied = fedprog("review", "SRS-DEMO-001", "--junit", project.junit, *common, cwd=root)
    assert denied.returncode == 2 and "Missing option '--by'" in denied.stderr
    ids = ("SRS-DEMO-001", "SYS-DEMO-001", "SRS-DEMO-002", "RC-DEMO-001")
    ok = fedprog("review", *ids, "--by", "A. Reviewer", "--junit", project.junit, *common, cwd=root)
    assert ok.returncode == 0, ok.stderr
    clean = fedprog("check", "--junit", project.junit, *common, cwd=root)
    assert clean.returncode == 0 and clean.stdout.strip() == "6 requirements, 3 tests, no gaps", clean.stdout
    # the developer weakens a test and skips another; both still "pass" as far as pytest's exit code goes
    project.write_tests(TESTS.replace('assert x in "ab"', 'assert x')
                        .replace("def test_one():", '@pytest.mark.skip(reason="later")\ndef test_one():'))
    project.run()
    dirty = fedprog("check", "--junit", project.junit, *common, "--json", cwd=root)
    assert dirty.returncode == 1
    got = {(g["kind"], g["id"]) for g in json.loads(dirty.stdout)["gaps"]}
    assert got == {("unverified", "SRS-DEMO-001"), ("unverified", "SYS-DEMO-001"),
                   ("suspect-test-link", "SRS-DEMO-001"), ("suspect-test-link", "SYS-DEMO-001"),
                   ("suspect-test-link", "SRS-DEMO-002"), ("suspect-test-link", "RC-DEMO-001")}

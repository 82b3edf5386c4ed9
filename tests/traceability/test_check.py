"""Traceability gaps (traceability.check) and ``fedprog trace check``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from typer.testing import CliRunner

from fedprog import trace_cmd
from tests.traceability import PASSING, baseline, fill_reviewed, item, junit_xml, links_file, write_folder
from traceability.check import Gap, gaps
from traceability.load import load_requirements
from traceability.results import Outcome, TestResult, TestRun

Files = dict[str, list[dict[str, Any]]]
pytestmark = pytest.mark.req("SRS-TRACE-003")


def run_of(cases: dict[str, tuple[str, tuple[str, ...]]]) -> TestRun:
    tests = [TestResult(n, cast(Outcome, o), r) for n, (o, r) in cases.items()]
    return TestRun(commit="abc", date="2026-01-01T00:00:00+00:00", environment_sha256="e", tests=tests)


def found(tmp_path: Path, files: Files, cases: dict[str, tuple[str, tuple[str, ...]]] | None = None,
          **kw: Any) -> list[Gap]:
    reqs = load_requirements(write_folder(tmp_path, files))
    return gaps(reqs, run_of(PASSING if cases is None else cases), **kw)


def ids(gap_list: list[Gap], kind: str) -> list[str]:
    return [g.id for g in gap_list if g.kind == kind]


def test_complete_set_has_no_gaps(tmp_path: Path) -> None:
    assert found(tmp_path, baseline()) == []


def test_no_run_is_one_gap(tmp_path: Path) -> None:
    reqs = load_requirements(write_folder(tmp_path, baseline()))
    (gap,) = gaps(reqs, None)
    assert gap.kind == "no-test-run" and "make test" in gap.message


def test_untested_no_test_vs_unverified(tmp_path: Path) -> None:
    cases = {"tests/t.py::test_one": ("skipped", ("SRS-DEMO-001",)),
             "tests/t.py::test_two": ("failed", ("SRS-DEMO-001", "RC-DEMO-001")),
             "tests/t.py::test_three": ("error", ("RC-DEMO-001",)),
             "tests/t.py::test_sys": ("passed", ("SYS-DEMO-001",))}
    result = found(tmp_path, baseline(), cases)
    assert ids(result, "untested") == ["SRS-DEMO-002"]
    assert "has no test" in result[0].message
    messages = {g.id: g.message for g in result if g.kind == "unverified"}
    assert set(messages) == {"SRS-DEMO-001", "RC-DEMO-001"}
    assert messages["SRS-DEMO-001"] == ("not every linked test passed (tests/t.py::test_one skipped, "
                                        "tests/t.py::test_two failed)")
    # a passing test beside the failing ones does not make them verified
    cases["tests/t.py::test_four"] = ("passed", ("SRS-DEMO-001", "SRS-DEMO-002", "RC-DEMO-001"))
    assert {(g.kind, g.id) for g in found(tmp_path, baseline(), cases)} == {
        ("unverified", "SRS-DEMO-001"), ("unverified", "RC-DEMO-001")}
    # fixed: every linked test passes
    for nodeid in ("tests/t.py::test_one", "tests/t.py::test_two", "tests/t.py::test_three"):
        cases[nodeid] = ("passed", cases[nodeid][1])
    assert found(tmp_path, baseline(), cases) == []


def test_inspection_needs_no_test_but_evidence(tmp_path: Path) -> None:
    files = baseline()
    files["software.yaml"][1]["verification"] = "inspection"
    cases = {k: v for k, v in PASSING.items() if "SRS-DEMO-002" not in v[1]}
    cases["tests/t.py::test_rc"] = ("passed", ("RC-DEMO-001",))
    assert [(g.kind, g.id) for g in found(tmp_path / "a", files, cases)] == [("no-evidence", "SRS-DEMO-002")]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "review.md").write_text("inspected", encoding="utf-8")
    files["software.yaml"][1]["evidence"] = [{"file": "docs/review.md", "reviewer": "A. Reviewer",
                                              "date": "2026-01-02", "result": "pass"}]
    assert found(tmp_path / "b", files, cases, repo_root=tmp_path) == []


def _hazard_without_control(files: Files) -> None:
    files["risk.yaml"].append(item("HAZ-DEMO-002", "hazard", ["SRS-DEMO-002"]))


def _need_without_system(files: Files) -> None:
    files["needs.yaml"].append(item("UN-DEMO-002", "user-need"))


def _system_without_software(files: Files) -> None:
    files["needs.yaml"].append(item("SYS-DEMO-002", "system", ["UN-DEMO-001"], verification="analysis",
                                    evidence=[{"file": "README.md", "reviewer": "A. Reviewer",
                                               "date": "2026-01-02", "result": "pass"}]))


def _control_without_hazard(files: Files) -> None:
    files["risk.yaml"].append(item("RC-DEMO-002", "risk-control", ["SRS-DEMO-002"], verification="analysis",
                                   evidence=[{"file": "README.md", "reviewer": "A. Reviewer",
                                              "date": "2026-01-02", "result": "pass"}]))


@pytest.mark.parametrize(("breakage", "kind", "gap_id"), [
    (_hazard_without_control, "uncontrolled-hazard", "HAZ-DEMO-002"),
    (_need_without_system, "unrefined", "UN-DEMO-002"),
    (_system_without_software, "unrefined", "SYS-DEMO-002"),
    (_control_without_hazard, "orphan", "RC-DEMO-002"),
])
def test_structural_gaps(tmp_path: Path, breakage: Callable[[Files], None], kind: str, gap_id: str) -> None:
    files = baseline()
    breakage(files)
    (tmp_path / "README.md").write_text("evidence", encoding="utf-8")
    result = found(tmp_path / "reqs", fill_reviewed(files), repo_root=tmp_path)
    assert [(g.kind, g.id) for g in result] == [(kind, gap_id)]


def test_unmarked_and_unknown_tests(tmp_path: Path) -> None:
    cases = {**PASSING, "tests/t.py::test_bare": ("passed", ()), "other/t.py::test_bare": ("passed", ()),
             "tests/t.py::test_old": ("passed", ("SRS-GONE-001",))}
    result = found(tmp_path, baseline(), cases)
    assert ids(result, "unmarked-test") == ["other/t.py::test_bare", "tests/t.py::test_bare"]
    assert ids(result, "unknown-requirement") == ["tests/t.py::test_old"]
    limited = found(tmp_path, baseline(), cases, tests_root=Path("other"))
    assert [(g.kind, g.id) for g in limited] == [("unmarked-test", "other/t.py::test_bare")]
    assert found(tmp_path, baseline(), PASSING) == []


def test_suspect_link_when_parent_text_changes_or_never_reviewed(tmp_path: Path) -> None:
    files = baseline()
    files["needs.yaml"][1]["text"] = "The system now does something else entirely."
    del files["risk.yaml"][1]["reviewed"]
    result = found(tmp_path, files)
    suspects = {(g.id, g.message.split(" (")[0]) for g in result if g.kind == "suspect-link"}
    assert suspects == {
        ("SRS-DEMO-001", "SYS-DEMO-001 changed since this item was last reviewed against it"),
        ("SRS-DEMO-002", "SYS-DEMO-001 changed since this item was last reviewed against it"),
        ("RC-DEMO-001", "never reviewed against HAZ-DEMO-001"),
        ("RC-DEMO-001", "never reviewed against SRS-DEMO-001"),
    }
    assert all("fedprog trace review" in g.message and "--by NAME" in g.message for g in result)
    # a title edit is not a change of substance; whitespace in the text neither
    files = baseline()
    files["needs.yaml"][1]["title"] = "A new title"
    files["needs.yaml"][1]["text"] = "  The text that   SYS-DEMO-001 states,\n at length. "
    assert found(tmp_path, files) == []


# --- the command ---------------------------------------------------------------------------


def invoke(*args: str | Path) -> Any:
    return CliRunner().invoke(trace_cmd.app, [str(a) for a in args])


def test_cli_check_passes_with_summary(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "reqs", baseline())
    junit = junit_xml(tmp_path / "junit.xml", PASSING)
    links = links_file(tmp_path / "links.yaml", folder, PASSING)
    result = invoke("check", "--requirements", folder, "--junit", junit, "--links", links)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "6 requirements, 2 tests, no gaps"


def test_cli_check_fails_naming_every_gap(tmp_path: Path) -> None:
    files = baseline()
    _hazard_without_control(files)
    files["needs.yaml"][1]["text"] = "The system now does something else entirely."
    folder = write_folder(tmp_path / "reqs", files)
    junit = junit_xml(tmp_path / "junit.xml", {"tests/t.py::test_bare": ("passed", ())})
    links = links_file(tmp_path / "links.yaml", folder, {})
    result = invoke("check", "--requirements", folder, "--junit", junit, "--links", links)
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    kinds = {line.split(":")[0] for line in lines}
    assert kinds == {"untested", "uncontrolled-hazard", "suspect-link", "unmarked-test"}
    assert "untested: SRS-DEMO-002: software with verification: test has no test" in result.stdout
    assert "7 requirements, 1 tests, " in result.stderr
    as_json = json.loads(invoke("check", "--requirements", folder, "--junit", junit, "--links", links,
                                "--json").stdout)
    assert as_json["ok"] is False and len(as_json["gaps"]) == len(lines)


def test_cli_check_without_results_names_make_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_folder(tmp_path / "reqs", baseline())
    monkeypatch.chdir(tmp_path)  # no build/test-results/junit.xml here
    result = invoke("check", "--requirements", folder)
    assert result.exit_code == 1 and "no-test-run" in result.stdout and "make test" in result.stdout


@pytest.mark.parametrize(("setup", "expected"), [
    ("missing-junit", "no such JUnit file"),
    ("not-junit", "not JUnit XML (root element <html>"),
    ("not-xml", "not XML"),
    ("bad-yaml", "not valid YAML"),
    ("missing-links", "no such link baseline"),
    ("bad-links", "link #0: test_sha256"),
])
def test_cli_check_bad_input_exits_2_one_line(tmp_path: Path, setup: str, expected: str) -> None:
    folder = write_folder(tmp_path / "reqs", baseline())
    junit = junit_xml(tmp_path / "junit.xml", PASSING)
    links = links_file(tmp_path / "links.yaml", folder, PASSING)
    if setup == "missing-links":
        links = tmp_path / "none.yaml"
    elif setup == "bad-links":
        links.write_text(links.read_text().replace("test_sha256: ", "test_sha256: x", 1))
    if setup == "missing-junit":
        junit = tmp_path / "nope.xml"
    elif setup == "not-junit":
        junit.write_text("<html><body/></html>")
    elif setup == "not-xml":
        junit.write_text("this is not xml")
    elif setup == "bad-yaml":
        (folder / "broken.yaml").write_text("- id: [\n")
    result = invoke("check", "--requirements", folder, "--junit", junit, "--links", links)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and result.stderr.count("\n") == 1
    assert result.stderr.startswith("fedprog: error: ") and "Traceback" not in result.output

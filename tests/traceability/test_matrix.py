"""Trace matrix (csv/html/json) and impact analysis (traceability.matrix, ``fedprog trace``)."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedprog import trace_cmd
from tests.traceability import PASSING, baseline, fill_reviewed, item, junit_xml, write_folder
from traceability import matrix as mx
from traceability.load import Requirements, load_requirements
from traceability.results import TestRun, read_junit

pytestmark = pytest.mark.req("SRS-TRACE-004")

CASES = {**PASSING, "tests/test_demo.py::test_fails": ("failed", ("SRS-DEMO-001",))}


@pytest.fixture
def reqs(tmp_path: Path) -> Requirements:
    files = baseline()
    files["needs.yaml"].append(item("UN-DEMO-002", "user-need"))
    files["software.yaml"].append(item("SRS-DEMO-003", "software", ["SYS-DEMO-001"], verification="analysis",
                                       title='Escaping <b>"&"</b>'))
    return load_requirements(write_folder(tmp_path / "reqs", fill_reviewed(files)))


@pytest.fixture
def run(tmp_path: Path) -> TestRun:
    return read_junit(junit_xml(tmp_path / "junit.xml", CASES, commit="c0ffee"))


def test_rows_follow_every_path_to_its_tests(reqs: Requirements, run: TestRun) -> None:
    got = {(r.software, r.hazard, r.risk_control, r.test, r.outcome) for r in mx.rows(reqs, run)}
    two = "tests/test_demo.py::TestTwo::test_two[a]"
    assert got == {
        ("SRS-DEMO-001", "", "", "tests/test_demo.py::test_one", "passed"),
        ("", "", "", "tests/test_demo.py::test_one", "passed"),  # SYS-DEMO-001's own test
        ("SRS-DEMO-001", "", "", "tests/test_demo.py::test_fails", "failed"),
        # the risk control names the hazard and SRS-DEMO-001: shown once, under the hazard
        ("SRS-DEMO-001", "HAZ-DEMO-001", "RC-DEMO-001", two, "passed"),
        ("SRS-DEMO-002", "", "", two, "passed"),
        ("SRS-DEMO-003", "", "", "", "by analysis"),
        ("", "", "", "", "by inspection"),  # UN-DEMO-002, not refined yet
    }
    assert all(r.commit == "c0ffee" and r.date.startswith("2026-") for r in mx.rows(reqs, run) if r.test)
    untested = [r for r in mx.rows(reqs, None)
                if r.software != "SRS-DEMO-003" and r.user_need != "UN-DEMO-002"]
    assert {r.outcome for r in untested} == {"not run"}


def test_csv_parses(reqs: Requirements, run: TestRun) -> None:
    table = list(csv.DictReader(io.StringIO(mx.to_csv(reqs, run))))
    assert len(table) == len(mx.rows(reqs, run)) and tuple(table[0]) == mx.FIELDS
    assert {r["test"] for r in table} >= set(CASES)


def test_json_parses(reqs: Requirements, run: TestRun) -> None:
    doc = json.loads(mx.to_json(reqs, run))
    assert doc["run"]["commit"] == "c0ffee" and doc["run"]["environment_sha256"] == "e5"
    assert set(doc["requirements"]) == set(reqs.items)
    assert doc["requirements"]["RC-DEMO-001"]["file"] == "risk.yaml"
    assert doc["rows"] == [r.to_dict() for r in mx.rows(reqs, run)]
    assert json.loads(mx.to_json(reqs, None))["run"] is None


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_self_contained_and_escaped(reqs: Requirements, run: TestRun) -> None:
    page = mx.to_html(reqs, run)
    parser = _Cells()
    parser.feed(page)
    text = " ".join(parser.text)
    assert all(i in text for i in reqs.items)
    assert 'Escaping <b>"&"</b>' in text and "<b>" not in page
    assert "script" not in parser.tags and "link" not in parser.tags and "http" not in page
    assert page.count("<tr>") == len(mx.rows(reqs, run)) + 1 and "c0ffee" in text


def test_impact_is_everything_downstream_with_tests(reqs: Requirements, run: TestRun) -> None:
    assert [i.id for i in mx.downstream(reqs, "HAZ-DEMO-001")] == ["RC-DEMO-001"]
    result = mx.impact(reqs, "SRS-DEMO-001", run)
    assert [i.id for i in result.items] == ["HAZ-DEMO-001", "RC-DEMO-001"]
    assert {t.nodeid for t in result.tests} == {"tests/test_demo.py::test_one",
                                                "tests/test_demo.py::test_fails",
                                                "tests/test_demo.py::TestTwo::test_two[a]"}
    top = mx.impact(reqs, "UN-DEMO-001")
    assert {i.id for i in top.items} == set(reqs.items) - {"UN-DEMO-001", "UN-DEMO-002"} and top.tests == []


@pytest.fixture(autouse=True)
def _no_default_junit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the CLI reads build/test-results/junit.xml from the current folder


def test_cli_matrix_formats_and_out(tmp_path: Path, reqs: Requirements) -> None:
    folder = tmp_path / "reqs"
    junit = junit_xml(tmp_path / "j.xml", CASES)
    runner = CliRunner()
    for fmt in ("csv", "json", "html"):
        result = runner.invoke(trace_cmd.app, ["matrix", "--format", fmt, "--requirements", str(folder),
                                               "--junit", str(junit)])
        assert result.exit_code == 0, result.output
        assert "RC-DEMO-001" in result.stdout
    out = tmp_path / "m" / "matrix.csv"
    out.parent.mkdir()
    result = runner.invoke(trace_cmd.app, ["matrix", "--format", "csv", "--out", str(out), "--requirements",
                                           str(folder)])
    assert result.exit_code == 0 and out.read_text().splitlines()[0] == ",".join(mx.FIELDS)
    bad = runner.invoke(trace_cmd.app, ["matrix", "--format", "pdf", "--requirements", str(folder)])
    assert bad.exit_code == 2


def test_cli_impact(tmp_path: Path, reqs: Requirements) -> None:
    folder = tmp_path / "reqs"
    junit = junit_xml(tmp_path / "j.xml", CASES)
    runner = CliRunner()
    result = runner.invoke(trace_cmd.app, ["impact", "HAZ-DEMO-001", "--requirements", str(folder),
                                           "--junit", str(junit), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [i["id"] for i in doc["items"]] == ["RC-DEMO-001"]
    assert [t["nodeid"] for t in doc["tests"]] == ["tests/test_demo.py::TestTwo::test_two[a]"]
    text = runner.invoke(trace_cmd.app, ["impact", "SRS-DEMO-002", "--requirements", str(folder)])
    assert text.exit_code == 0 and "nothing downstream" in text.stdout
    unknown = runner.invoke(trace_cmd.app, ["impact", "SRS-NOPE-001", "--requirements", str(folder)])
    assert unknown.exit_code == 2 and "unknown requirement id 'SRS-NOPE-001'" in unknown.stderr

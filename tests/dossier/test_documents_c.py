"""FP-SDP, FP-REL, FP-CYB and FP-TVAL without filler: every clause answered with what implements it (and
that exists), every anomaly evaluated, every threat scored, every test count taken from the run."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import click
import pytest
import typer
from pypdf import PdfReader

from dossier.build import DOCUMENTS, Manifest, control
from dossier.documents import _threats, cybersecurity, release_notes, sdp, tool_validation
from dossier.documents._tests import Tally, by_requirement, family
from dossier.inputs import gather
from dossier.spec import DocumentSpec, DossierError, DossierInputs
from dossier.style import render
from fedprog.cli import app
from traceability.results import TestResult, TestRun

ROOT = Path(__file__).resolve().parents[2]
FOOTER = re.compile(r"^(FP-[A-Z]+ {2}.*|fedprog \S+ · rev .*|model \S+ · sha256 [0-9a-f]{64}"
                    r"|Page \d+ of \d+)$")


def flat(pages: list[str]) -> str:
    """All pages' text without the running footer and without whitespace."""
    body = ["\n".join(line for line in p.splitlines() if not FOOTER.match(line.strip())) for p in pages]
    return re.sub(r"\s+", "", "".join(body))


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def read(path: Path) -> list[str]:
    return [p.extract_text() or "" for p in PdfReader(path).pages]


def built_text(built: tuple[Path, Manifest], spec: DocumentSpec) -> str:
    return flat(read(built[0] / spec.file))


def rendered(inputs: DossierInputs, spec: DocumentSpec, folder: Path) -> str:
    path = folder / spec.file
    render(path, control(inputs, spec), spec.build(inputs), toc=spec.toc)
    return flat(read(path))


@pytest.fixture(scope="module")
def inputs(dossier_ws: Path, junit: Path) -> DossierInputs:
    return gather(dossier_ws, junit=junit)


def commands() -> set[str]:
    """Every ``fedprog …`` command path of the CLI (``fedprog trace check`` …)."""
    out: set[str] = set()

    def walk(cmd: click.Command, path: str) -> None:
        out.add(path)
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, f"{path} {name}")
    walk(typer.main.get_command(app), "fedprog")
    return out


@pytest.mark.req("SRS-DOS-024")
def test_every_applicable_clause_is_answered_with_what_exists(inputs: DossierInputs,
                                                              built: tuple[Path, Manifest]) -> None:
    safety = inputs.safety
    assert safety is not None
    known_docs, cli = {d.id for d in DOCUMENTS}, commands()
    cited: set[str] = set()
    for clause in safety.clauses_for():
        process, items = sdp.rule(clause)
        assert process and items and process != "This plan.", clause
        cited |= set(items)
    for item in sorted(cited):
        if item in sdp.PENDING:
            continue
        if item.startswith("FP-"):
            assert item in known_docs or item in sdp.OPTIONAL_DOCS, item
        elif item.startswith("fedprog "):
            assert item in cli, item
        else:
            assert list(ROOT.glob(item)), f"FP-SDP cites {item}, which is not in the repository"
    text = built_text(built, sdp.SPEC)
    assert "Thisplan." not in text and "DESIGN.md" not in text and "docs/architecture.md" in text
    for item in cited - sdp.OPTIONAL_DOCS:
        assert squeeze(item) in text, item
    assert set(re.findall(r"\bFP-[A-Z]+\b", " ".join(read(built[0] / sdp.SPEC.file)))) <= known_docs


@pytest.mark.req("SRS-DOS-024")
def test_a_clause_without_a_stated_process_stops_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdp, "IMPLEMENTED_BY", {k: v for k, v in sdp.IMPLEMENTED_BY.items() if k != "9"})
    with pytest.raises(Exception, match="clause 9.1"):
        sdp.rule("9.1")


@pytest.mark.req("SRS-DOS-025")
def test_release_notes_evaluate_the_skipped_test_the_interval_defect_and_security_risks(
        inputs: DossierInputs, built: tuple[Path, Manifest]) -> None:
    text = built_text(built, release_notes.SPEC)
    assert "tests/dossier/test_build.py::test_skipped(skipped)" in text
    assert squeeze("1 test(s) not passed: (no requirement)") in text
    assert squeeze("no: it verifies no requirement") in text
    reqs = inputs.requirements
    assert reqs is not None
    assert squeeze("Interval defect HAZ-DEV-001: " + reqs.get("HAZ-DEV-001").text) in text
    assert squeeze("Resolved for this model: its artifact carries the baseline hazard's variance") in text
    for n, threat in _threats.high_residual():
        assert squeeze(f"Threat T{n} ({threat.category})") in text
    assert squeeze("yes until the manufacturer accepts it") in text
    for n, _ in enumerate(_threats.residual_risks(), start=1):
        assert f"ResidualriskR{n}:" in text
    assert squeeze("First version of the model: there is no change to assess") in text


def _run(*tests: TestResult) -> TestRun:
    return TestRun(commit="c" * 40, date="2026-01-02T00:00:00+00:00", environment_sha256="e" * 64,
                   tests=list(tests))


@pytest.mark.req("SRS-DOS-025")
def test_a_failed_test_of_a_requirement_blocks_release_and_change_control_is_cited(
        inputs: DossierInputs, tmp_path: Path) -> None:
    run = _run(TestResult("tests/device/fhir/test_auth.py::test_forged", "failed", ("SRS-AUTH-001",)),
               TestResult("tests/device/fhir/test_auth.py::test_ok", "passed", ("SRS-AUTH-001",)))
    assert inputs.ledger is not None and inputs.model is not None
    # the change-control record of the honoured (approver-signed) release
    changed = dataclasses.replace(inputs, test_run=run, release_change_control={
        "plan_id": "FP-PCCP", "within_plan": True, "checks": {"coefficients": "passed"}})
    text = rendered(changed, release_notes.SPEC, tmp_path)
    assert squeeze("1 test(s) not passed: SRS-AUTH-001") in text
    assert "tests/device/fhir/test_auth.py::test_forged(FAILED)" in text
    assert "test_ok" not in text
    assert squeeze("yes: a requirement without passing verification") in text
    assert re.search(r"\d+of\d+anomaliesblockrelease", text)
    assert squeeze("under plan FP-PCCP (FP-PCCP): within the plan. Checks: coefficients: passed.") in text
    registry_form = {"plan": "FP-PCCP", "within_plan": False, "passed": ["PCCP-1"],
                     "failed": [{"id": "PCCP-2", "detail": "C-index fell"}]}
    text = rendered(dataclasses.replace(inputs, release_change_control=registry_form), release_notes.SPEC,
                    tmp_path)
    assert squeeze("NOT within the plan. Checks: PCCP-1 passed; PCCP-2 FAILED (C-index fell).") in text
    successor = dataclasses.replace(inputs.model, predecessor=f"{inputs.model.model_id}@0")
    text = rendered(dataclasses.replace(inputs, model=successor), release_notes.SPEC, tmp_path)
    assert squeeze("the change was not assessed under a plan") in text


@pytest.mark.req("SRS-DOS-026")
@pytest.mark.parametrize(("vector", "score"), [
    ("AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8), ("AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
    ("AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5), ("AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
    ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4), ("AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
    ("AV:P/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:N", 0.0)])
def test_cvss_scores_follow_the_specification(vector: str, score: float) -> None:
    assert _threats.cvss_score(vector) == score
    with pytest.raises(ValueError, match="not a CVSS"):
        _threats.parse(vector.replace("AC:", "XX:"))


@pytest.mark.req("SRS-DOS-026")
def test_cybersecurity_scores_every_threat_and_lists_open_decisions(built: tuple[Path, Manifest]) -> None:
    text = built_text(built, cybersecurity.SPEC)
    for n, threat in enumerate(cybersecurity.THREATS, start=1):
        for vector in _threats.vectors(threat):
            score = _threats.cvss_score(vector)
            assert f"{vector}{score:.1f}{_threats.rating(score)}" in text, (n, vector)
    for name in ("security_contact", "advisory_channel", "response_times", "support_end"):
        assert squeeze(f"open decision (regulatory/manufacturer.yaml cybersecurity.{name})") in text
    decisions = {d["field"] for d in built[1].data["open_decisions"]}
    assert "regulatory/manufacturer.yaml: cybersecurity.security_contact" in decisions
    assert built[1].data["status"] == "draft"
    for words in ("6 Vulnerability handling and coordinated disclosure", "8 IT security for the hospital",
                  "Key custody", "witness.key", "fedprog token revoke", "fedprog trace sbom"):
        assert squeeze(words) in text, words
    # the fixture's run holds no security test: no evidence, never a pass
    assert squeeze("Token verification") in text and "NOEVIDENCE" in text
    assert squeeze("Security and privacy tests of the run: 0 tests") in text


@pytest.mark.req("SRS-DOS-026")
def test_security_test_report_counts_the_run(inputs: DossierInputs, tmp_path: Path) -> None:
    run = _run(*[TestResult(f"tests/device/fhir/test_auth.py::test_{i}", "passed", ("SRS-AUTH-001",))
                 for i in range(3)],
               TestResult("tests/privacy/test_malicious_coordinator.py::test_x", "failed", ("SRS-PRIV-011",)),
               TestResult("tests/privacy/test_malicious_coordinator.py::test_y", "skipped", ("RC-PRIV-003",)),
               TestResult("tests/ledger/test_log.py::test_z", "passed", ("SRS-LEDG-001",)))
    text = rendered(dataclasses.replace(inputs, test_run=run), cybersecurity.SPEC, tmp_path)
    assert squeeze("Token verification") in text and "3000" + "3PASSED" in text
    assert "01012NOTPASSED" in text  # privacy attacks: 0 passed, 1 failed, 0 erred, 1 skipped, 2 in all
    assert "SRS-AUTH30003PASSED" in text and "SRS-LEDG10001PASSED" in text
    assert "SRS-SEC00000NOEVIDENCE" in text
    assert squeeze("Security and privacy tests of the run: 6 tests: 4 passed, 1 failed, 0 erred, "
                   "1 skipped") in text
    assert "tests/privacy/test_malicious_coordinator.py::test_x(FAILED)" in text


@pytest.mark.req("SRS-DOS-026")
def test_every_security_campaign_and_tool_names_files_that_exist() -> None:
    for _, _, files in cybersecurity.CAMPAIGNS:
        for f in files:
            assert (ROOT / f).exists(), f
    for name, *_, code, tests in tool_validation.TOOLS:
        for f in (*code, *tests):
            assert (ROOT / f).exists(), (name, f)


@pytest.mark.req("SRS-DOS-027")
def test_tool_validation_reports_each_tools_tests_from_the_run(built: tuple[Path, Manifest]) -> None:
    text = built_text(built, tool_validation.SPEC)
    assert [d["id"] for d in built[1].data["documents"]].count("FP-TVAL") == 1
    for name, *_ in tool_validation.TOOLS:
        assert squeeze(name) in text, name
    # the fixture's run: tests/dossier/test_build.py has 2 passed and 1 skipped test; traceability none
    assert squeeze("fedprog dossier build / verify") + "20013INCOMPLETE" in text
    assert squeeze("fedprog trace check / matrix / impact / review") + "00000NOEVIDENCE" in text
    assert squeeze("All tool tests: 3 tests: 2 passed, 0 failed, 0 erred, 1 skipped; "
                   "verdict INCOMPLETE") in text


@pytest.mark.req("SRS-DOS-027")
def test_test_helpers_group_and_count() -> None:
    run = _run(TestResult("a::t1", "passed", ("SRS-AUTH-001", "RC-PRIV-003")),
               TestResult("a::t2", "error", ()), TestResult("a::t3", "skipped", ("SRS-AUTH-002",)))
    assert family("SRS-AUTH-001") == "SRS-AUTH" and family("RC-PRIV-003") == "RC-PRIV"
    assert Tally().verdict == "NO EVIDENCE" and Tally(passed=1, skipped=1).verdict == "INCOMPLETE"
    assert list(by_requirement(run.tests)) == ["RC-PRIV-003", "SRS-AUTH-001", "SRS-AUTH-002",
                                               "(no requirement)"]


@pytest.mark.req("SRS-DOS-026")
def test_a_threat_without_a_score_stops_the_build(inputs: DossierInputs,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    unscored = _threats.Threat("Spoofing", "an unscored threat", "a", "c", ("SRS-AUTH-001",))
    monkeypatch.setattr(cybersecurity, "THREATS", (*cybersecurity.THREATS, unscored))
    with pytest.raises(DossierError, match="has no CVSS vectors"):
        cybersecurity.build(inputs)

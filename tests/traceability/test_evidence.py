"""Inspection and analysis leave an evidence record (traceability.check ``no-evidence``).

The adversary: a developer who switches an item to ``verification: inspection`` so that no test
is needed, or points its record at a file that does not exist, or keeps a failed record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.traceability import PASSING, baseline, item, write_folder
from traceability.check import EVIDENCE_TYPES, gaps
from traceability.links import REPO_ROOT
from traceability.load import RequirementsError, load_requirements
from traceability.results import TestResult, TestRun

pytestmark = pytest.mark.req("SRS-TRACE-009")
RUN = TestRun(commit="c", date="d", environment_sha256="e",
              tests=[TestResult(n, "passed", r) for n, (_, r) in PASSING.items()])


def record(file: str = "docs/review.md", result: str = "pass", date: str = "2026-01-02") -> dict[str, str]:
    return {"file": file, "reviewer": "A. Reviewer", "date": date, "result": result}


def evidence_gaps(tmp_path: Path, rc_extra: dict[str, Any]) -> list[str]:
    """The no-evidence messages for RC-DEMO-001 switched to analysis with ``rc_extra``."""
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "docs" / "review.md").write_text("the analysis", encoding="utf-8")
    files = baseline()
    files["risk.yaml"][1].update({"verification": "analysis", **rc_extra})
    reqs = load_requirements(write_folder(tmp_path / "reqs", files))
    found = gaps(reqs, RUN, repo_root=tmp_path)
    assert all(g.id == "RC-DEMO-001" and g.kind == "no-evidence" for g in found), found
    return [g.message for g in found]


def test_switching_to_analysis_without_a_record_is_a_gap(tmp_path: Path) -> None:
    assert evidence_gaps(tmp_path, {}) == [
        "risk-control verified by analysis has no evidence record "
        "(add evidence: [{file, reviewer, date, result}])"]
    assert evidence_gaps(tmp_path, {"evidence": [record()]}) == []


@pytest.mark.parametrize(("records", "expected"), [
    ([record("docs/nowhere.md")], "evidence file docs/nowhere.md does not exist in the repository"),
    ([record("../outside.md")], "evidence file ../outside.md does not exist in the repository"),
    ([record("docs")], "evidence file docs does not exist in the repository"),
    ([record(result="fail")], "the latest analysis (2026-01-02, A. Reviewer) says fail"),
    ([record(), record(result="fail", date="2026-02-01")],
     "the latest analysis (2026-02-01, A. Reviewer) says fail"),
    ([record(result="planned")], "evidence says planned, but only a risk control whose rationale claims no "
                                 "reduction of probability may rest on a planned record"),
])
def test_a_record_that_shows_nothing_is_a_gap(tmp_path: Path, records: list[dict[str, str]],
                                              expected: str) -> None:
    (tmp_path.parent / "outside.md").write_text("not in the repository", encoding="utf-8")
    assert evidence_gaps(tmp_path, {"evidence": records}) == [expected]


def test_a_later_pass_supersedes_a_fail_and_planned_needs_no_reduction_claimed(tmp_path: Path) -> None:
    assert evidence_gaps(tmp_path, {"evidence": [record(result="fail"), record(date="2026-03-01")]}) == []
    planned = {"evidence": [record(result="planned")],
               "rationale": "PLANNED, not implemented: no reduction of probability is claimed for it."}
    assert evidence_gaps(tmp_path, planned) == []


def test_which_types_need_evidence(tmp_path: Path) -> None:
    """Hazards are analysed and need a record; user needs are validated through their system
    requirements and need none."""
    assert EVIDENCE_TYPES == {"system", "software", "risk-control", "hazard"}
    files = baseline()
    files["risk.yaml"][0]["verification"] = "analysis"  # HAZ-DEMO-001
    reqs = load_requirements(write_folder(tmp_path / "reqs", files))
    assert reqs.items["UN-DEMO-001"].verification == "inspection" and not reqs.items["UN-DEMO-001"].evidence
    assert [(g.kind, g.id) for g in gaps(reqs, RUN, repo_root=tmp_path)] == [("no-evidence", "HAZ-DEMO-001")]


@pytest.mark.parametrize(("bad", "expected"), [
    ({"file": "x.md", "reviewer": "A. Reviewer", "date": "2026-01-02", "result": "ok"}, "evidence.0.result"),
    ({"file": "x.md", "reviewer": "A. Reviewer", "date": "someday", "result": "pass"}, "evidence.0.date"),
    ({"file": "x.md", "date": "2026-01-02", "result": "pass"}, "evidence.0.reviewer"),
])
def test_a_malformed_record_is_one_line(tmp_path: Path, bad: dict[str, str], expected: str) -> None:
    files = baseline()
    files["risk.yaml"].append(item("RC-DEMO-009", "risk-control", ["HAZ-DEMO-001"], evidence=[bad]))
    with pytest.raises(RequirementsError, match=rf"item RC-DEMO-009: {expected}"):
        load_requirements(write_folder(tmp_path / "reqs", files))


def test_every_inspected_or_analysed_item_of_this_repository_has_a_record_of_a_real_file() -> None:
    reqs = load_requirements()
    needing = [i for i in reqs.items.values() if i.type in EVIDENCE_TYPES and i.verification != "test"]
    assert len(needing) >= 50
    assert [g.id for g in gaps(reqs, RUN, repo_root=REPO_ROOT) if g.kind == "no-evidence"] == []
    assert all((REPO_ROOT / e.file).is_file() for i in needing for e in i.evidence)

"""The risk management plan (FP-RMP), report (FP-RMR) and usability engineering file (FP-UEF), and the
risk file's acceptability matrix read from data: they build, the matrix follows safety.yaml, every
use-related hazard has its use scenario, the scenario → browser-test mapping stays true, severity takes
no credit for clinician oversight, and the report stays a draft until a named person approves it."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from pypdf import PdfReader

from dossier.build import DOCUMENTS, ORDER, control
from dossier.documents import risk_management, risk_plan, risk_report, usability
from dossier.inputs import gather
from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import render
from tests.dossier.test_documents_b import (
    assert_each_missing_input_is_named,
    assert_renders_identically_naming_the_model,
    synthetic_run,
)
from traceability.load import Requirements, load_requirements
from traceability.safety import SAFETY_FILE, Approval, SafetyError, load_safety
from traceability.schema import Item

ROOT = Path(__file__).resolve().parents[2]
SPECS = [risk_plan.SPEC, risk_report.SPEC, usability.SPEC]
#: phrases by which a severity rating takes credit for a clinician catching the error
CREDIT = ("oversight being", "corrected at clinical review", "external risk control", "would be caught",
          "clinician would notice")


@pytest.fixture(scope="module")
def reqs(request: pytest.FixtureRequest) -> Requirements:
    """The requirements the run checks markers against (``--requirements``, else the package's)."""
    folder = request.config.getoption("requirements_folder")
    return load_requirements(Path(folder) if folder else None)


@pytest.fixture(scope="module")
def inputs(demo_workspace: Path, reqs: Requirements) -> DossierInputs:
    found = gather(demo_workspace)
    return dataclasses.replace(found, requirements=reqs, test_run=synthetic_run(reqs, found.commit))


def text_of(spec: DocumentSpec, inputs: DossierInputs, folder: Path) -> str:
    path = folder / spec.file
    render(path, control(inputs, spec), spec.build(inputs), toc=spec.toc)
    return " ".join(" ".join((p.extract_text() or "") for p in PdfReader(path).pages).split())


def with_safety(inputs: DossierInputs, **update: Any) -> DossierInputs:
    assert inputs.safety is not None
    return dataclasses.replace(inputs, safety=inputs.safety.model_copy(update=update))


@pytest.mark.req("SRS-DOS-001")
def test_the_new_documents_are_registered_in_annex_ii_order() -> None:
    ids = [d.id for d in DOCUMENTS]
    for spec in SPECS:
        assert spec.id in ids
    assert ORDER.index("FP-RMP") < ORDER.index("FP-RMF") < ORDER.index("FP-RMR") < ORDER.index("FP-UEF")


@pytest.mark.req("SRS-DOS-003")
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_the_documents_build_byte_identical_naming_the_model(spec: DocumentSpec, inputs: DossierInputs,
                                                             tmp_path: Path) -> None:
    assert assert_renders_identically_naming_the_model(spec, inputs, tmp_path) >= 2


@pytest.mark.req("SRS-DOS-001")
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_a_missing_input_is_named(spec: DocumentSpec, inputs: DossierInputs) -> None:
    assert_each_missing_input_is_named(spec, inputs)


@pytest.mark.req("SRS-DOS-002")
def test_the_acceptability_matrix_comes_from_safety_yaml(inputs: DossierInputs, tmp_path: Path) -> None:
    assert not hasattr(risk_management, "REGIONS")  # no policy constant left in code
    assert inputs.safety is not None
    shipped = inputs.safety.acceptability
    assert risk_management.region(4, 1) == shipped.region(4, 1) == "acceptable"
    assert inputs.requirements is not None
    hazard = next(h for h in inputs.requirements.of_type("hazard")
                  if (h.severity, h.residual_probability) == (4, 1))
    before = text_of(risk_management.SPEC, inputs, tmp_path)
    assert f"{hazard.id} 4 1 4 (acceptable)" in before
    # the manufacturer makes S4 × P1 a risk to justify and rewords a region: both documents follow the data
    matrix = {**shipped.matrix, 4: ("justify", *shipped.matrix[4][1:])}
    regions = tuple(r.model_copy(update={"meaning": "acceptable after the quarterly risk review"})
                    if r.name == "acceptable" else r for r in shipped.regions)
    policy = shipped.model_copy(update={"matrix": matrix, "regions": regions})
    changed = with_safety(inputs, acceptability=policy)
    after = text_of(risk_management.SPEC, changed, tmp_path)
    assert f"{hazard.id} 4 1 4 (justify)" in after and f"{hazard.id} 4 1 4 (acceptable)" not in after
    assert hazard.id in after.split("Residual risks needing justification")[-1]
    plan = text_of(risk_plan.SPEC, changed, tmp_path)
    assert "acceptable after the quarterly risk review" in plan
    assert "acceptable after the quarterly risk review" not in text_of(risk_plan.SPEC, inputs, tmp_path)


@pytest.mark.req("SRS-DOS-002")
@pytest.mark.parametrize("row, why", [
    (["justify", "acceptable", "justify", "unacceptable", "unacceptable"], "probability 2 is more"),
    (["acceptable", "acceptable", "justify", "unacceptable", "unacceptable"], "severity 5 is more"),
    (["justify", "unacceptable", "unacceptable", "unacceptable", "tolerable"], "'tolerable' is not one of")])
def test_an_incoherent_matrix_is_refused_naming_the_cell(row: list[str], why: str, tmp_path: Path) -> None:
    data = yaml.safe_load(SAFETY_FILE.read_text(encoding="utf-8"))
    data["acceptability"]["matrix"][5] = row
    path = tmp_path / "safety.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(SafetyError, match=why):
        load_safety(path)


@pytest.mark.req("SRS-DOS-002")
def test_every_use_related_hazard_has_a_scenario_in_the_usability_file(
        inputs: DossierInputs, reqs: Requirements, tmp_path: Path) -> None:
    use = [h.id for h in reqs.of_type("hazard") if h.id.startswith("HAZ-USE-")]
    assert len(use) >= 6
    text = text_of(usability.SPEC, inputs, tmp_path)
    scenarios = text.split("3 Known use errors and hazard-related use scenarios")[-1].split("4 Formative")[0]
    for hazard in use:
        assert hazard in {s.hazard for s in usability.SCENARIOS}, hazard
        assert hazard in scenarios, hazard
    for s in usability.SCENARIOS:
        assert s.hazard in reqs and reqs.get(s.hazard).type == "hazard", s.hazard
        assert s.id in scenarios
    assert "NOT IN hazards.yaml" not in text and "5 Summative evaluation protocol (NOT YET RUN)" in text
    assert "not an evaluation with users" in text and "Record template" in text


def _functions(source: str) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)}


def _text(source: str, fn: ast.FunctionDef) -> str:
    """A function's source with its decorators (a parametrised case is part of the test)."""
    first = min([fn.lineno, *(d.lineno for d in fn.decorator_list)])
    return "\n".join(source.splitlines()[first - 1:fn.end_lineno])


@pytest.mark.req("SRS-DOS-002")
def test_the_scenario_to_browser_test_mapping_stays_true() -> None:
    """Each test the usability file cites exists in the browser tests, and the phrase the claim rests on is
    in that test or in a helper it calls."""
    source = (ROOT / usability.BROWSER_TESTS).read_text(encoding="utf-8")
    defs = _functions(source)
    for s in usability.SCENARIOS:
        for e in s.evidence:
            assert e.test.startswith("test_") and e.test in defs, f"{s.id}: {e.test} is not a browser test"
            fn = defs[e.test]
            called = {n.func.id for n in ast.walk(fn)
                      if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in defs}
            bodies = [_text(source, f) for f in (fn, *(defs[c] for c in called))]
            assert any(e.checks in body for body in bodies), f"{s.id}: {e.test} no longer checks {e.checks!r}"


@pytest.mark.req("SRS-DOS-002")
def test_severity_takes_no_credit_for_clinician_oversight(reqs: Requirements) -> None:
    safety = load_safety()
    assert not any("clinical review" in level for level in safety.severity_scale.values())
    for h in reqs.of_type("hazard"):
        said = (h.rationale or "").lower()
        assert not any(phrase in said for phrase in CREDIT), f"{h.id} takes credit for oversight: {said}"
    # every hazard whose harm is a wrong adjuvant treatment decision is rated a serious injury
    for hid in safety.hazards:
        assert reqs.get(hid).severity >= 4, hid
    for h in reqs.of_type("hazard"):
        if h.id.startswith(("HAZ-USE-", "HAZ-SHIFT-")):
            assert h.severity >= 4, h.id


@pytest.mark.req("SRS-DOS-002")
def test_the_named_missing_hazards_are_covered_and_controlled(reqs: Requirements) -> None:
    titles = {h.id: f"{h.title} {h.text}".lower() for h in reqs.of_type("hazard")}
    for needle in ("automation bias", "'critical'", "hormone therapy", "latest observation", "1984-1989",
                   "man in the middle", "substitutes a key", "declared input range"):
        assert any(needle in t for t in titles.values()), needle
    for h in reqs.of_type("hazard"):
        assert any(c.type == "risk-control" for c in reqs.children(h.id)), h.id
    for rc in reqs.of_type("risk-control"):
        if risk_report.planned(rc):  # a planned control earns no reduction
            for p in (p for p in rc.parents if reqs.get(p).type == "hazard"):
                controls = [c for c in reqs.children(p) if c.type == "risk-control"]
                if all(risk_report.planned(c) or c.verification != "test" for c in controls):
                    assert reqs.get(p).residual_probability == reqs.get(p).probability, p


@pytest.mark.req("SRS-DOS-002")
def test_the_report_is_a_draft_until_the_approver_approves(inputs: DossierInputs, tmp_path: Path) -> None:
    text = text_of(risk_report.SPEC, inputs, tmp_path)
    assert text.startswith("Risk management report")
    assert "Status: DRAFT - not approved" in text.split("1 Scope")[0]  # on the first page, before the body
    block = text.split("7 Approval")[-1]
    assert "Role Name Decision Date Signature Top management's delegate for risk management" in block
    plan = text_of(risk_plan.SPEC, inputs, tmp_path)
    assert "Status: DRAFT - not approved" in plan and "not named: a decision of the manufacturer" in plan
    assert inputs.safety is not None
    rm = inputs.safety.risk_management
    approval = Approval(name="Dr A. Example", role=rm.approver, date="2027-01-15",
                        decision="overall residual risk accepted for the stated intended purpose")
    approved = with_safety(inputs, risk_management=rm.model_copy(update={"approval": approval}))
    text = text_of(risk_report.SPEC, approved, tmp_path)
    assert "DRAFT" not in text and "Approved by Dr A. Example" in text and "2027-01-15" in text
    with pytest.raises(ValueError, match="not the approver"):
        type(rm).model_validate({**rm.model_dump(), "approval": {**approval.model_dump(), "role": "Nobody"}})


@pytest.mark.req("SRS-DOS-002")
def test_the_report_does_not_conclude_from_test_outcomes_alone(inputs: DossierInputs, reqs: Requirements,
                                                               tmp_path: Path) -> None:
    run = synthetic_run(reqs, inputs.commit)
    passing = dataclasses.replace(run, tests=[t for t in run.tests if t.outcome == "passed"])
    text = text_of(risk_report.SPEC, dataclasses.replace(inputs, test_run=passing), tmp_path)
    assert "overall residual risk is NOT acceptable in this state" in text
    opened = text.split("4 Open items")[-1].split("5 Decisions")[0]
    for rc in reqs.of_type("risk-control"):
        if risk_report.planned(rc):
            assert f"{rc.id} {rc.title}: planned, not implemented" in opened, rc.id
    failing = synthetic_run(reqs, inputs.commit, failing="RC-INPUT-001")
    text = text_of(risk_report.SPEC, dataclasses.replace(inputs, test_run=failing), tmp_path)
    assert "RC-INPUT-001: not verified in the test run" in text
    # with nothing open the team only proposes: the report is still a draft until approved
    policy = load_safety().acceptability
    keep: dict[str, Item] = {}
    for i in reqs.items.values():
        if i.type == "hazard" and policy.region(i.severity or 5, i.residual_probability) == "unacceptable":
            continue
        if i.type == "risk-control" and risk_report.planned(i):
            continue
        keep[i.id] = i
    closed = Requirements(items=keep, source={i: Path("x.yaml") for i in keep})
    run = synthetic_run(closed, inputs.commit)
    nothing_open = dataclasses.replace(inputs, requirements=closed, test_run=run)
    text = text_of(risk_report.SPEC, nothing_open, tmp_path)
    assert "Evaluation proposed to the approver" in text and "NOT acceptable" not in text
    assert "Status: DRAFT - not approved" in text

"""The dossier's risk, verification, traceability, clinical, model-card, release, PMS and GSPR
documents, built from the demo workspace: their key content, byte-identical output, the model's
SHA-256 on every page, and a missing input named instead of an empty section."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from device.registry import ModelEntry
from device.revocation import RetrainDue
from dossier.build import DOCUMENTS, control
from dossier.documents import (
    _privacy,
    _revocation,
    clinical_validation,
    gspr,
    model_card,
    pms_plan,
    release_notes,
    risk_management,
    trace_matrix,
    verification_report,
)
from dossier.inputs import gather
from dossier.spec import DocumentSpec, DossierError, DossierInputs
from dossier.style import render
from traceability.results import TestResult, TestRun

SPECS = [risk_management.SPEC, verification_report.SPEC, trace_matrix.SPEC, clinical_validation.SPEC,
         model_card.SPEC, release_notes.SPEC, pms_plan.SPEC, gspr.SPEC]
#: what each input looks like when it is missing
EMPTY: dict[str, Any] = {"model": None, "validation": None, "ledger": None, "requirements": None,
                         "test_run": None, "safety": None, "history": [], "git": []}


def synthetic_run(reqs: Any, commit: str, failing: str | None = None) -> TestRun:
    """One passing test per requirement verified by test, one failing test (``failing``'s, if given,
    else a software requirement's), one skipped and one erroneous test without a requirement."""
    tested = [i.id for i in reqs.items.values()
              if i.verification == "test" and i.type in ("software", "risk-control")]
    tests = [TestResult(f"tests/{i.split('-')[1].lower()}/test_x.py::test_{i.lower()}", "passed", (i,))
             for i in tested]
    tests += [TestResult(f"tests/fed/test_x.py::test_broken[{failing or 'SRS-FED-001'}]", "failed",
                         (failing or "SRS-FED-001",)),
              TestResult("tests/fed/test_x.py::test_skipped", "skipped", ("SRS-FED-002",)),
              TestResult("tests/misc/test_x.py::test_erred", "error", ())]
    return TestRun(commit=commit, date="2026-01-02T03:04:05+00:00", environment_sha256="e" * 64, tests=tests,
                   python="3.11.7", platform="Linux-test")


@pytest.fixture(scope="module")
def inputs(demo_workspace: Path) -> DossierInputs:
    """The demo workspace's inputs with a synthetic test run (the demo skips the suite)."""
    found = gather(demo_workspace)
    assert found.requirements is not None
    return dataclasses.replace(found, test_run=synthetic_run(found.requirements, found.commit))


Render = Callable[[DocumentSpec, DossierInputs], list[str]]


@pytest.fixture
def rendered(tmp_path: Path) -> Render:
    """Render a document and return the text of each page."""
    def run(spec: DocumentSpec, inputs: DossierInputs) -> list[str]:
        path = tmp_path / spec.file
        render(path, control(inputs, spec), spec.build(inputs), toc=spec.toc)
        return [p.extract_text() or "" for p in PdfReader(path).pages]
    return run


def flat(pages: list[str]) -> str:
    return "\n".join(pages)


def words(text: str) -> str:
    """The text with every run of white space made one space (table cells come out one per line)."""
    return " ".join(text.split())


@pytest.mark.req("SRS-DOS-003")
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_rendering_is_byte_identical_and_every_page_names_the_model(spec: DocumentSpec, inputs: DossierInputs,
                                                                     tmp_path: Path) -> None:
    assert_renders_identically_naming_the_model(spec, inputs, tmp_path)


def assert_renders_identically_naming_the_model(spec: DocumentSpec, inputs: DossierInputs,
                                                folder: Path) -> int:
    """``spec`` rendered twice gives the same bytes, and every page names the model, the software and
    its page number; the number of pages."""
    a, b = folder / "a.pdf", folder / "b.pdf"
    pages = render(a, control(inputs, spec), spec.build(inputs), toc=spec.toc)
    render(b, control(inputs, spec), spec.build(inputs), toc=spec.toc)
    assert a.read_bytes() == b.read_bytes()
    texts = [p.extract_text() or "" for p in PdfReader(a).pages]
    assert pages == len(texts) >= 1
    assert inputs.model is not None
    for n, text in enumerate(texts, start=1):
        assert inputs.model.sha256 in text and f"Page {n} of {pages}" in text
        assert f"{inputs.device} {inputs.device_version}" in text
    return pages


@pytest.mark.req("SRS-DOS-001")
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_a_missing_input_is_named(spec: DocumentSpec, inputs: DossierInputs) -> None:
    assert_each_missing_input_is_named(spec, inputs)


def assert_each_missing_input_is_named(spec: DocumentSpec, inputs: DossierInputs) -> None:
    """``spec`` refuses, naming itself, inputs lacking any one of the inputs it needs."""
    for need in spec.needs:
        with pytest.raises(DossierError, match=f"{spec.id} needs"):
            spec.build(dataclasses.replace(inputs, **{need: EMPTY[need]}))


@pytest.mark.req("SRS-DOS-001")
def test_documents_are_discovered_with_unique_ids() -> None:
    ids = {d.id for d in DOCUMENTS}
    assert {s.id for s in SPECS} <= ids
    assert len({s.file for s in SPECS}) == len(SPECS)


@pytest.mark.req("SRS-DOS-002")
def test_trace_matrix_names_every_requirement_with_its_result(inputs: DossierInputs,
                                                              rendered: Render) -> None:
    text = flat(rendered(trace_matrix.SPEC, inputs))
    assert inputs.requirements is not None
    missing = [i for i in inputs.requirements.items if i not in text]
    assert not missing
    assert "tests/fed/test_x.py::test_broken" in text and "1 failed" in text
    assert "by analysis" in text and "by inspection" in text
    assert inputs.test_run is not None and inputs.test_run.commit in text


@pytest.mark.req("SRS-DOS-002")
def test_risk_file_lists_hazards_controls_verification_and_residual_risk(inputs: DossierInputs,
                                                                          rendered: Render) -> None:
    text = flat(rendered(risk_management.SPEC, inputs))
    assert inputs.requirements is not None
    for item in [*inputs.requirements.of_type("hazard"), *inputs.requirements.of_type("risk-control")]:
        assert item.id in text
    for h in inputs.requirements.of_type("hazard"):
        assert risk_management.risk(h.severity, h.residual_probability) in text
    # the file states the evidence and leaves the overall evaluation to the report (FP-RMR): no conclusion
    # computed from test outcomes, "NOT acceptable" exactly when a residual risk is in the unacceptable region
    assert "Residual risk evaluation" in text and "Conclusion:" not in text
    assert "this file computes no conclusion from test outcomes" in " ".join(text.split())
    unacceptable = [h.id for h in inputs.requirements.of_type("hazard")
                    if risk_management.region(h.severity, h.residual_probability) == "unacceptable"]
    assert ("NOT acceptable" in text) == bool(unacceptable)
    assert "HAZ-VAL-001" in text.split("Residual risks needing justification")[-1]


@pytest.mark.req("SRS-DOS-002")
def test_risk_file_does_not_accept_residual_risk_when_a_control_fails(inputs: DossierInputs,
                                                                      rendered: Render) -> None:
    assert inputs.requirements is not None
    run = synthetic_run(inputs.requirements, inputs.commit, failing="RC-INPUT-001")
    text = flat(rendered(risk_management.SPEC, dataclasses.replace(inputs, test_run=run)))
    assert "overall residual risk is NOT acceptable" in text
    assert "RC-INPUT-001 FAILED" in text


@pytest.mark.req("SRS-DOS-002")
def test_risk_regions_follow_the_policy() -> None:
    assert risk_management.region(3, 1) == "acceptable"
    assert risk_management.region(2, 2) == "acceptable"
    assert risk_management.region(3, 2) == "justify"
    assert risk_management.region(3, 4) == "unacceptable"
    assert risk_management.region(3, None) == "unknown"


@pytest.mark.req("SRS-DOS-002")
def test_verification_report_lists_every_test_with_outcome_and_requirements(inputs: DossierInputs,
                                                                            rendered: Render) -> None:
    text = flat(rendered(verification_report.SPEC, inputs))
    run = inputs.test_run
    assert run is not None
    for t in run.tests:
        assert t.nodeid in text
    assert run.environment_sha256 in text and run.date in text and run.commit in text
    assert "Verdict: NOT PASSED" in text and "FAILED" in text and "ERROR" in text
    counts = [len([t for t in run.tests if t.outcome == o]) for o in verification_report.OUTCOMES]
    assert f"All tests {' '.join(map(str, counts))} {len(run.tests)}" in words(text)


@pytest.mark.req("SRS-DOS-002")
def test_clinical_validation_report_states_verdicts_model_and_figures(
        inputs: DossierInputs, rendered: Render, tmp_path: Path) -> None:
    pages = rendered(clinical_validation.SPEC, inputs)
    text = flat(pages)
    assert inputs.validation is not None and inputs.artifact is not None
    for c in inputs.validation["criteria"]:
        assert c["id"] in text
    verdicts = sum(len(c["checks"]) for c in inputs.validation["criteria"])
    assert text.count("PASS") >= verdicts and "FAIL" not in text.replace("NOT PASSED", "")
    for name in inputs.artifact["coefficients"]:
        assert name in text
    assert "suppressed: refused by rule" in text and "Leave-one-site-out" in text
    assert "Annex A Baseline survival" in text
    reader = PdfReader(tmp_path / clinical_validation.SPEC.file)
    images = sum(len(p.images) for p in reader.pages)
    assert images == len(inputs.validation["plots"])


@pytest.mark.req("SRS-DOS-002")
def test_a_failed_criterion_is_reported_as_fail(inputs: DossierInputs, rendered: Render) -> None:
    assert inputs.validation is not None
    report = copy.deepcopy(inputs.validation)
    report["criteria"][0]["passed"] = report["criteria"][0]["checks"][0]["passed"] = False
    report["passed"] = False
    text = flat(rendered(clinical_validation.SPEC, dataclasses.replace(inputs, validation=report)))
    assert "NOT PASSED" in text and "FAIL" in text.replace("NOT PASSED", "")


@pytest.mark.req("SRS-DOS-002")
def test_model_card_names_every_coefficient_and_the_intended_use(inputs: DossierInputs,
                                                                 rendered: Render) -> None:
    text = flat(rendered(model_card.SPEC, inputs))
    assert inputs.artifact is not None
    for name in inputs.artifact["coefficients"]:
        assert name in text
    assert "Intended use:" in text and "Ethical considerations" in text and "Caveats" in text
    assert str(inputs.artifact["training"]["n"]) in text


@pytest.mark.req("SRS-DOS-002")
def test_release_notes_give_every_version_anchor_and_commit(inputs: DossierInputs, rendered: Render) -> None:
    entry = inputs.model
    assert entry is not None and inputs.ledger is not None
    successor = ModelEntry(entry.model_id, "2", "ab" * 32, "job-2", "candidate", 9999, None, entry.ref, False,
                           ((9999, "candidate"),))
    history = [*inputs.history, successor]
    text = flat(rendered(release_notes.SPEC, dataclasses.replace(inputs, history=history)))
    assert entry.ref in text and f"{entry.model_id}@2" in text and "ab" * 32 in text
    for anchor in inputs.ledger.anchors:
        assert str(anchor["index"]) in text
    assert inputs.ledger.root in text
    assert inputs.git and inputs.git[0].commit[:12] in text


@pytest.mark.req("SRS-DOS-002")
def test_pms_plan_takes_its_thresholds_from_the_requirements(inputs: DossierInputs, rendered: Render) -> None:
    text = flat(rendered(pms_plan.SPEC, inputs))
    assert inputs.requirements is not None
    for item in inputs.requirements.items.values():
        for k, _ in enumerate(item.acceptance, start=1):
            assert f"{item.id}#{k}" in text
    assert "[0.8, 1.25]" in text and "[0.5, 2]" in text and "Art. 87" in text
    said = words(text)
    assert inputs.revocation is not None and inputs.revocation.policy == "window"
    assert _revocation.policy(inputs.revocation) in said and "fedprog model due" in said
    assert "At this release the model is not affected" in said


DEADLINE = datetime(2026, 7, 1, 12, tzinfo=UTC)


def flagged(entry: ModelEntry, *, expired: bool = False, recorded: bool = True) -> ModelEntry:
    """``entry`` as the registry shows a released model a revocation named under the window policy:
    2 of 5 revocations, deadline :data:`DEADLINE` (passed when ``expired``; ``recorded``: the window's
    ledger entry exists)."""
    flag = RetrainDue(2, 5, 30.0, 90, DEADLINE - timedelta(days=30) if recorded else None, DEADLINE,
                      expired, expired, 91 if recorded else None)
    return dataclasses.replace(entry, affected_by_revocation=True, retrain=flag)


@pytest.mark.req("SRS-DOS-002")
@pytest.mark.parametrize("expired", [False, True], ids=["in-window", "deadline-passed"])
def test_pms_release_notes_and_model_card_state_the_revocation_flag(inputs: DossierInputs, rendered: Render,
                                                                     expired: bool) -> None:
    assert inputs.model is not None
    entry = flagged(inputs.model, expired=expired)
    history = [entry if m.sha256 == entry.sha256 else m for m in inputs.history]
    changed = dataclasses.replace(inputs, model=entry, history=history)
    for spec in (pms_plan.SPEC, release_notes.SPEC, model_card.SPEC):
        text = words(flat(rendered(spec, changed)))
        if expired:
            assert "AFFECTED and not served: the deadline of its revocation window (2026-07-01 12:00 UTC) " \
                   "passed without a released successor" in text, spec.id
            assert "RETRAIN DUE" not in text, spec.id
        else:
            assert "flagged RETRAIN DUE and still served: 2 of 5 revocations name its training job, " \
                   "deadline 2026-07-01 12:00 UTC" in text, spec.id
            assert "AFFECTED" not in text, spec.id
    notes = words(flat(rendered(release_notes.SPEC, changed)))
    assert ("AFFECTED; not served" if expired else "retrain due (2 of 5); served") in notes


@pytest.mark.req("SRS-DOS-002")
def test_revocation_state_follows_the_registry_entry(inputs: DossierInputs) -> None:
    entry = inputs.model
    assert entry is not None and entry.lifecycle == "released"
    state = _revocation.state
    assert state(entry, []).startswith("not affected")
    assert "deadline not yet recorded" in state(flagged(entry, recorded=False), [])
    immediate = dataclasses.replace(entry, affected_by_revocation=True)
    assert "immediate revocation policy" in state(immediate, [])
    successor = ModelEntry(entry.model_id, "2", "cd" * 32, "job-2", "released", 9999, None, entry.ref, False,
                           ((9998, "candidate"), (9999, "released")))
    assert "a released successor" in state(immediate, [successor])
    withdrawn = dataclasses.replace(immediate, lifecycle="withdrawn")
    assert state(withdrawn, []).startswith("withdrawn") and _revocation.short(withdrawn) == "named; withdrawn"
    validated = dataclasses.replace(immediate, lifecycle="validated")
    assert "can be neither released nor served" in state(validated, [])
    assert _revocation.policy(None).startswith("not recorded")


@pytest.mark.req("SRS-DOS-002")
def test_risk_file_weighs_the_revocation_policies_as_a_draft(inputs: DossierInputs, rendered: Render) -> None:
    text = words(flat(rendered(risk_management.SPEC, inputs)))
    section = text.split("6 Consent revocation policy: a decision for the manufacturer (draft)")[-1]
    section = section.split("7 Differential privacy")[0]
    for hazard in risk_management.POLICY_HAZARDS:
        assert hazard in section
    for said in ("Under window (default)", "Under immediate", "GDPR Art. 7(3)", "Art. 17",
                 "data-protection officer", "Decision (DRAFT). The choice of revocation policy is the "
                 "manufacturer's", "takes the device out of service for every clinician"):
        assert said in section, said
    assert "the manufacturer's decision on the revocation policy (section 6, draft)" in text


@pytest.mark.req("SRS-DOS-002")
def test_gspr_checklist_cites_existing_requirements_and_documents(inputs: DossierInputs,
                                                                   rendered: Render) -> None:
    rows = gspr.CHAPTER_I + gspr.CHAPTER_II + gspr.CHAPTER_III
    for row in rows:
        assert gspr.resolve(row.reqs, inputs.requirements)[1] == [], row.ref
        assert set(row.docs) <= {d.id for d in DOCUMENTS}, row.ref
        assert row.applies or not row.reqs
    text = flat(rendered(gspr.SPEC, inputs))
    for ref in ("17.1", "17.2", "17.3", "17.4", "14.2 (d)", "23.4"):
        assert ref in text
    assert "N/A" in text and "NOT IN THE REQUIREMENTS" not in text and "not in this dossier" not in text


@pytest.mark.req("SRS-DOS-002")
def test_risk_file_states_the_dp_option_its_guarantee_utility_and_who_decides(inputs: DossierInputs,
                                                                             rendered: Render) -> None:
    text = words(flat(rendered(risk_management.SPEC, inputs)))
    title = "7 Differential privacy: an option of the study (a decision for the manufacturer)"
    section = text.split(title)[-1]
    section = section.split("8 Overall residual risk")[0]
    assert section != text
    for hazard in risk_management.PRIVACY_HAZARDS:
        assert hazard in section
    for said in ("the default is off (enabled = false)", "before masking", "SRS-PRIV-016", "SRS-PRIV-017",
                 "SRS-PRIV-018", "honest-but-curious or malicious coordinator",
                 "every reader of the releases",
                 "adding or removing one patient at one site", "Not covered.", "Refusals at the source",
                 "colluding with the coordinator", "What it costs: the utility measured",
                 "Decision (open). Whether a study enables differential privacy, and with which \u03b5 and "
                 "\u03b4, is the manufacturer's and the study's decision", "This file chooses no \u03b5",
                 words(_privacy.budget_sentence()), "the residual estimates of section 5 do not rely on "
                 "differential privacy"):
        assert said in section, said
    for data, grid, *errors in _privacy.UTILITY:
        assert " ".join((data, grid, *errors)) in section, (data, grid)
    assert words(_privacy.cox_short().split(":")[0]) in section
    assert _privacy.cox_private()
    for row, exact in zip(_privacy.COX_UTILITY, _privacy.COX_EXACT_C, strict=True):
        assert " ".join((*row, exact)) in section, row
    for said in ("epsilon and delta of one fit (a Kaplan\u2013Meier fit, or the 1 + T releases of a Cox fit",
                 "The guarantee below holds for Kaplan\u2013Meier fits and for Cox models",
                 "A Cox study with differential privacy has the same guarantee", "SRS-PRIV-023",
                 "A private Cox model. A private Cox model is not the exact (pooled) Cox fit",
                 "include the variance the privacy noise adds", "Limitations:", "close to useless",
                 "no coverage histogram", "has nothing to check", "converged means only",
                 "Clinical risk of a private Cox model.", "is a clinical hazard if released",
                 "RC-VAL-001", "pooled Harrell's C with a lower 95% limit of at least 0.60",
                 "What it costs a Cox model: the utility measured", "0.13 on GBSG2",
                 "Whether a clinical Cox model is trained with differential privacy, and at which \u03b5, is "
                 "the manufacturer's decision (the default is off)"):
        assert said in section, said
    assert "a private Cox model's artifact records its \u03b5, \u03b4, T and bound" in text
    assert "sample-and-aggregate" not in text and "noise at the source" not in text
    assert "9 Information for safety" in text and "FP-IFU section 7" in text


@pytest.mark.req("SRS-DOS-002")
def test_model_card_states_the_differential_privacy_the_artifact_records(inputs: DossierInputs,
                                                                          rendered: Render) -> None:
    assert inputs.artifact is not None
    recorded = _privacy.cox_record(inputs.artifact["training"])
    assert inputs.artifact["training"].get("differential_privacy") is None and recorded.startswith("off")
    text = words(flat(rendered(model_card.SPEC, inputs)))
    assert f"Differential privacy {recorded}" in text and f"differential privacy {recorded}." in text
    private = copy.deepcopy(inputs.artifact)
    private["training"]["differential_privacy"] = {"mechanism": "skellam", "epsilon": 3.0, "delta": 1e-6}
    summary = dict(model_card.training_summary(private))
    assert summary["Differential privacy"].startswith("on: mechanism skellam, \u03b5 3, \u03b4 1e-06")
    assert "not the exact Cox fit" in summary["Differential privacy"]


@pytest.mark.req("SRS-DOS-002")
def test_the_risk_file_describes_no_private_cox_model_while_the_code_refuses_one(
        inputs: DossierInputs, rendered: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    from federated.analyses import runner

    monkeypatch.setattr(runner, "DP_COX_UNAVAILABLE", "differential privacy for Cox models is not available",
                        raising=False)
    text = words(flat(rendered(risk_management.SPEC, inputs)))
    assert "differential privacy for Cox models is not available in this version" in text
    assert "epsilon and delta of one Kaplan\u2013Meier fit" in text
    for said in ("A private Cox model.", "Clinical risk of a private Cox model", _privacy.COX_UTILITY[0][1],
                 "sums of a private Cox fit", "a private Cox model's artifact"):
        assert said not in text, said

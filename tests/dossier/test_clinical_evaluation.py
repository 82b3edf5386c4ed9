"""The clinical evaluation plan and report (FP-CEP, FP-CER) and the PMCF plan (FP-PMCF), built from the
demo workspace and regulatory/clinical_evaluation.yaml: honest literature, the clinical association of
every input, external validation and its absence, subgroups with their discussions, the benefit-risk
left to the manufacturer, and drift thresholds read from data (issue 18)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dossier.build import DOCUMENTS, ORDER, control
from dossier.clinical import UNCONFIRMED, load_clinical_evaluation
from dossier.documents import clinical_evaluation_plan, clinical_evaluation_report, pmcf_plan
from dossier.evidence import EXTERNAL, setting
from dossier.inputs import gather, open_decisions
from dossier.spec import DocumentSpec, DossierError, DossierInputs
from dossier.style import render
from fedprog.workspace import Workspace
from tests.conftest import copy_workspace
from tests.device.test_model import reseal
from tests.dossier.test_documents_b import assert_renders_identically_naming_the_model, synthetic_run

SPECS = [clinical_evaluation_plan.SPEC, clinical_evaluation_report.SPEC, pmcf_plan.SPEC]
SITE = "ext-test-hospital"


def words(path: Path) -> str:
    from pypdf import PdfReader

    return " ".join(" ".join(p.extract_text() or "" for p in PdfReader(path).pages).split())


def text_of(spec: DocumentSpec, inputs: DossierInputs, folder: Path) -> str:
    path = folder / spec.file
    render(path, control(inputs, spec), spec.build(inputs), toc=spec.toc)
    return words(path)


def fields(inputs: DossierInputs) -> list[str]:
    return [d["field"] for d in open_decisions(inputs)]


@pytest.fixture(scope="module")
def inputs(demo_workspace: Path) -> DossierInputs:
    found = gather(demo_workspace)
    assert found.requirements is not None
    return dataclasses.replace(found, test_run=synthetic_run(found.requirements, found.commit))


def external_report(internal: dict[str, Any], *, passed: bool) -> dict[str, Any]:
    """A ``setting: external`` report at :data:`SITE` shaped as the lead's contract says: the sites are
    the external ones only, no leave-one-site-out, criteria judged with scope external."""
    rep = copy.deepcopy(internal)
    site = copy.deepcopy(next(iter(rep["sites"].values())))
    site["name"], site["subgroups"] = SITE, []
    value = keyed_c(site)
    rep.update(setting=EXTERNAL, sites={SITE: site}, pooled={"metrics": []}, plots=[], subgroups={},
               passed=passed, folder=None)
    rep.pop("leave_one_site_out")
    rep["criteria"] = [{"id": "SRS-VAL-009#1", "requirement": "SRS-VAL-009", "title": "Acceptance: external",
                        "metric": "harrell_c", "statistic": "estimate", "op": ">=",
                        "threshold": value + (-0.01 if passed else 0.01), "horizon": None,
                        "scope": "external",
                        "checks": [{"where": SITE, "horizon": None, "value": value, "passed": passed}],
                        "passed": passed}]
    return rep


def keyed_c(site: dict[str, Any]) -> float:
    return float(next(m["estimate"] for m in site["metrics"] if m["metric"] == "harrell_c"))


@pytest.fixture(scope="module")
def external_ws(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo workspace with a failing external validation of the released model and a recalibrated
    successor (``<model>-recalibrated-rotterdam``) whose external validation passes."""
    root = copy_workspace(demo_workspace, tmp_path_factory.mktemp("cer") / "ws")
    ws = Workspace(root)
    registry = ws.models
    entry = registry.released()
    internal = registry.report(entry)
    registry.record_external(entry.ref, external_report(internal, passed=False))
    art = copy.deepcopy(registry.artifact(entry.ref))
    art["model_id"] = f"{entry.model_id}-recalibrated-{SITE}"
    art["training"]["recalibration"] = {"site": SITE, "method": "baseline and slope", "slope": 0.91}
    art = reseal(art)
    registry.register(art, "recalibrate@1", predecessor=entry.ref)
    successor = registry.list()[-1]
    assert successor.model_id == art["model_id"]
    registry.record_external(successor.ref, external_report(internal, passed=True))
    ws.publish_checkpoint()
    return root


@pytest.mark.req("SRS-DOS-020", "SRS-DOS-003")
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_rendering_is_byte_identical_and_every_page_names_the_model(spec: DocumentSpec, inputs: DossierInputs,
                                                                     tmp_path: Path) -> None:
    assert_renders_identically_naming_the_model(spec, inputs, tmp_path)


@pytest.mark.req("SRS-DOS-020", "SRS-DOS-001")
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_a_missing_input_is_named(spec: DocumentSpec, inputs: DossierInputs) -> None:
    empty: dict[str, Any] = {"model": None, "validation": None, "requirements": None, "safety": None,
                             "clinical_evaluation": None}
    for need in spec.needs:
        with pytest.raises(DossierError, match=f"{spec.id} needs"):
            spec.build(dataclasses.replace(inputs, **{need: empty[need]}))


@pytest.mark.req("SRS-DOS-020")
def test_the_documents_are_in_the_dossier_in_annex_order() -> None:
    ids = [d.id for d in DOCUMENTS]
    for spec in SPECS:
        assert spec.id in ids and spec.id in ORDER
    assert ids.index("FP-CVR") < ids.index("FP-CEP") < ids.index("FP-CER") < ids.index("FP-PMS") < ids.index(
        "FP-PMCF")


@pytest.mark.req("SRS-DOS-020")
def test_the_plan_states_the_intended_purpose_questions_and_every_criterion(inputs: DossierInputs,
                                                                            tmp_path: Path) -> None:
    text = text_of(clinical_evaluation_plan.SPEC, inputs, tmp_path)
    assert inputs.manufacturer is not None and inputs.requirements is not None
    ind = inputs.manufacturer.intended_purpose.indication
    first = inputs.manufacturer.intended_purpose.contraindications[0]
    for said in (ind.condition, ind.stage.split(",")[0], first):
        assert " ".join(said.split()) in text, said
    cef = load_clinical_evaluation()
    for q in cef.questions:
        assert q.id in text
    for item in inputs.requirements.items.values():
        for k, _ in enumerate(item.acceptance, start=1):
            assert f"{item.id}#{k}" in text
    scopes = {str(a.scope) for i in inputs.requirements.items.values() for a in i.acceptance}
    assert ("No requirement states a criterion of scope external" in text) == ("external" not in scopes)
    assert "Status: DRAFT" in text and "6 Open items" in text


@pytest.mark.req("SRS-DOS-020")
def test_the_report_prints_only_confirmed_literature_figures(inputs: DossierInputs, tmp_path: Path) -> None:
    text = text_of(clinical_evaluation_report.SPEC, inputs, tmp_path)
    cef = load_clinical_evaluation()
    flat = text.replace(" ", "")
    for tool in cef.state_of_the_art:
        for fig in tool.figures:
            if fig.confirmed:
                assert fig.value and fig.value.replace(" ", "") in flat, fig.what
    # once in the table of section 2, once among the open items
    assert text.count(UNCONFIRMED) == 2 * len(cef.unconfirmed()) >= 2
    for name in ("Nottingham Prognostic Index", "PREDICT", "Adjuvant! Online", "Royston"):
        assert name in text


@pytest.mark.req("SRS-DOS-020")
def test_the_loader_refuses_unconfirmed_values_and_figures_without_source(tmp_path: Path) -> None:
    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "regulatory" / "clinical_evaluation.yaml")
                         .read_text(encoding="utf-8"))
    bad = copy.deepcopy(raw)
    fig = next(f for t in bad["state_of_the_art"] for f in t["figures"] if not f["confirmed"])
    fig["value"] = "0.70"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(DossierError, match=r"bad.yaml: state_of_the_art\.\d+\.figures\.\d+: value '0.70' "
                                           "is not confirmed"):
        load_clinical_evaluation(path)
    bad = copy.deepcopy(raw)
    fig = next(f for t in bad["state_of_the_art"] for f in t["figures"] if f["confirmed"])
    fig["source"] = None
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(DossierError, match="a confirmed figure needs its value and the source"):
        load_clinical_evaluation(path)
    bad = copy.deepcopy(raw)
    bad["pmcf"]["calibration"]["e_o_ratio"] = [1.1, 1.25]
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(DossierError, match=r"pmcf.calibration: .*e_o_ratio: \[1.1, 1.25\] must hold 1"):
        load_clinical_evaluation(path)
    bad = copy.deepcopy(raw)
    bad["surprise"] = 1
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(DossierError, match="surprise: Extra inputs are not permitted"):
        load_clinical_evaluation(path)


@pytest.mark.req("SRS-DOS-020")
def test_every_input_is_matched_to_a_prognostic_factor_or_listed(inputs: DossierInputs,
                                                                 tmp_path: Path) -> None:
    assert inputs.artifact is not None and inputs.clinical_evaluation is not None
    text = text_of(clinical_evaluation_report.SPEC, inputs, tmp_path)
    for spec in inputs.artifact["inputs"]:
        assert f"({spec['name']})" in text.replace("( ", "(")
    assert "NO ASSOCIATION STATED" not in text
    assert not [f for f in fields(inputs) if f.endswith("clinical_association.factors")]
    art = copy.deepcopy(inputs.artifact)
    art["inputs"].append({**art["inputs"][0], "name": "ki67", "title": "Ki-67 index",
                          "code": {"system": "x", "code": "y", "display": "Ki-67"}})
    changed = dataclasses.replace(inputs, artifact=art)
    assert "NO ASSOCIATION STATED (open item)" in text_of(clinical_evaluation_report.SPEC, changed, tmp_path)
    decisions = open_decisions(changed)
    assert any(d["decision"].startswith("the clinical association of the input ki67") for d in decisions)


@pytest.mark.req("SRS-DOS-021")
def test_without_external_validation_the_report_says_so_and_the_file_stays_a_draft(inputs: DossierInputs,
                                                                                   tmp_path: Path) -> None:
    assert inputs.evidence is not None
    evidence = dataclasses.replace(inputs.evidence, reports=inputs.evidence.internal, recalibrated=[])
    inputs = dataclasses.replace(inputs, evidence=evidence)
    text = text_of(clinical_evaluation_report.SPEC, inputs, tmp_path)
    assert "No external validation has been performed" in text and "Status: DRAFT" in text
    assert "clinical evidence: external validation" in fields(inputs)
    assert "No recalibrated version of the model is registered" in text


@pytest.mark.req("SRS-DOS-021")
def test_an_external_validation_and_the_recalibrated_successor_are_reported(external_ws: Path,
                                                                            tmp_path: Path) -> None:
    found = gather(external_ws)
    assert found.evidence is not None
    ext = [r for r in found.evidence.external if SITE in r.sites]
    assert len(ext) == 1 and ext[0].sites == [SITE] and ext[0].failed() == ["SRS-VAL-009#1"]
    assert found.evidence.external[-1] is ext[0]  # the newest
    # FP-CVR keeps the internal report
    assert found.validation is not None and setting(found.validation) == "internal"
    (recal,) = [m for m in found.evidence.recalibrated if m.site == SITE]
    assert recal.site == SITE and recal.recalibration == {"site": SITE, "method": "baseline and slope",
                                                          "slope": 0.91}
    text = text_of(clinical_evaluation_report.SPEC, found, tmp_path)
    assert "No external validation has been performed" not in text
    assert f"Released model at {SITE}" in text and "NOT PASSED (SRS-VAL-009#1)" in text
    assert f"Recalibrated model at {SITE}" in text and recal.entry.ref in text
    assert f"method: baseline and slope; site: {SITE}; slope: 0.91" in text
    assert f"{keyed_c(ext[0].report['sites'][SITE]):.3f}" in text
    decided = fields(found)
    assert "clinical evidence: external validation" not in decided
    assert f"external validation report {ext[0].sha256[:16]}…: criterion SRS-VAL-009#1" in decided
    assert "External, at release" in text_of(pmcf_plan.SPEC, found, tmp_path)


@pytest.mark.req("SRS-DOS-021")
def test_a_passing_external_validation_closes_its_gap(external_ws: Path) -> None:
    found = gather(external_ws)
    assert found.evidence is not None
    assert [f for f in fields(found) if "external" in f]  # before: a failed external criterion
    passing = []
    for r in found.evidence.external:
        rep = copy.deepcopy(r.report)
        for c in rep["criteria"]:
            c["passed"] = True
        passing.append(dataclasses.replace(r, report=rep))
    evidence = dataclasses.replace(found.evidence, reports=[*found.evidence.internal, *passing])
    assert not [f for f in fields(dataclasses.replace(found, evidence=evidence)) if "external" in f]


@pytest.mark.req("SRS-DOS-021")
def test_a_subgroup_without_discussion_is_an_open_item(inputs: DossierInputs, tmp_path: Path) -> None:
    assert inputs.validation is not None and inputs.clinical_evaluation is not None
    cef = inputs.clinical_evaluation
    groups = list(inputs.validation["subgroups"])
    assert groups
    undiscussed = [g for g in groups if g not in cef.subgroups]
    listed = [f.split("subgroups.", 1)[1] for f in fields(inputs) if "subgroups." in f]
    assert set(undiscussed) <= set(listed)
    text = text_of(clinical_evaluation_report.SPEC, inputs, tmp_path)
    assert text.count("NO DISCUSSION (open item)") == len(listed)
    every = cef.model_copy(update={"subgroups": {g: "Discussed." for g in listed + list(cef.subgroups)}})
    closed = dataclasses.replace(inputs, clinical_evaluation=every)
    assert not [f for f in fields(closed) if "subgroups." in f]
    assert "NO DISCUSSION" not in text_of(clinical_evaluation_report.SPEC, closed, tmp_path)


@pytest.mark.req("SRS-DOS-021")
def test_the_benefit_risk_conclusion_is_the_manufacturers(inputs: DossierInputs, tmp_path: Path) -> None:
    assert inputs.clinical_evaluation is not None and inputs.requirements is not None
    text = text_of(clinical_evaluation_report.SPEC, inputs, tmp_path)
    assert "Conclusion. TO BE DECIDED BY THE MANUFACTURER" in text
    assert "regulatory/clinical_evaluation.yaml: benefit_risk.conclusion" in fields(inputs)
    for h in inputs.requirements.of_type("hazard"):
        if h.severity >= 4 and h.residual_probability and h.residual_probability >= 3:
            assert h.id in text  # a heavy residual risk is weighed
    br = inputs.clinical_evaluation.benefit_risk.model_copy(update={"conclusion": "Benefit outweighs risk.",
                                                                    "evaluator": "Dr A. Evaluator"})
    decided = dataclasses.replace(inputs, clinical_evaluation=inputs.clinical_evaluation.model_copy(
        update={"benefit_risk": br}))
    assert "regulatory/clinical_evaluation.yaml: benefit_risk.conclusion" not in fields(decided)
    said = text_of(clinical_evaluation_report.SPEC, decided, tmp_path)
    assert "Conclusion. Benefit outweighs risk." in said


@pytest.mark.req("SRS-DOS-021")
def test_era_shift_is_discussed_from_the_data_file(inputs: DossierInputs, tmp_path: Path) -> None:
    assert inputs.clinical_evaluation is not None
    text = text_of(clinical_evaluation_report.SPEC, inputs, tmp_path)
    for cohort in inputs.clinical_evaluation.era.cohorts:
        assert cohort.period in text
    assert "over-estimate" in text and "HER2" in text


@pytest.mark.req("SRS-DOS-022")
def test_pmcf_thresholds_come_from_the_data_file(inputs: DossierInputs, tmp_path: Path) -> None:
    assert inputs.clinical_evaluation is not None
    text = text_of(pmcf_plan.SPEC, inputs, tmp_path)
    pm = inputs.clinical_evaluation.pmcf
    assert f"more than {pm.input_drift.refused_share_per_month:.0%} of a site's requests" in text
    assert f"more than {pm.input_drift.mean_shift_sd:g} SD from its training mean" in text
    assert "[0.8, 1.25]" in text and "[0.8, 1.2]" in text
    for said in ("FHIR AuditEvents", "Who receives", "Art. 87", "fedprog model recalibrate",
                 "fedprog model withdraw"):
        assert said in text, said
    drift = pm.input_drift.model_copy(update={"refused_share_per_month": 0.12, "mean_shift_sd": 0.75})
    cal = pm.calibration.model_copy(update={"calibration_slope": (0.85, 1.15)})
    changed = inputs.clinical_evaluation.model_copy(update={"pmcf": pm.model_copy(update={
        "input_drift": drift, "calibration": cal})})
    text = text_of(pmcf_plan.SPEC, dataclasses.replace(inputs, clinical_evaluation=changed), tmp_path)
    assert "more than 12% of a site's requests" in text and "more than 0.75 SD" in text
    assert "[0.85, 1.15]" in text
    pms = text_of(pms_plan_spec(), dataclasses.replace(inputs, clinical_evaluation=changed), tmp_path)
    assert "more than 12% of a site's requests in a month refused" in pms


def pms_plan_spec() -> DocumentSpec:
    from dossier.documents import pms_plan

    return pms_plan.SPEC


@pytest.mark.req("SRS-DOS-022")
def test_training_moments_from_the_histogram_match_numpy() -> None:
    # a continuous input: midpoints weighted by counts, against numpy on the expanded sample
    edges, counts = [0.0, 10.0, 20.0, 30.0], [3, None, 5]
    mean, sd = pmcf_plan.histogram_moments(edges, counts)  # type: ignore[misc]
    sample = np.repeat([5.0, 25.0], [3, 5])
    assert mean == pytest.approx(sample.mean(), abs=1e-12)
    assert sd == pytest.approx(sample.std(ddof=1), abs=1e-12)
    # a boolean on ten bins: the first bin is 0, the last (closed) is 1
    edges = [round(0.1 * i, 10) for i in range(11)]
    counts = [365, 0, 0, 0, 0, 0, 0, 0, 0, 200]
    mean, sd = pmcf_plan.histogram_moments(edges, counts, discrete=True)  # type: ignore[misc]
    sample = np.repeat([0.0, 1.0], [365, 200])
    assert mean == pytest.approx(sample.mean(), abs=1e-12)
    assert sd == pytest.approx(sample.std(ddof=1), abs=1e-12)
    assert pmcf_plan.histogram_moments([0.0, 1.0], [1]) is None

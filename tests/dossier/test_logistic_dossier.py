"""The technical file of a logistic model: every document builds and says what is true of the model.

The fixture trains the demo's logistic model (:func:`federated.demo_study.logistic_study`, a grade 3
tumour at surgery) in a private copy of the demo workspace, validates it at the sites as the demo does
(1000 bootstrap resamples per site, the acceptance minimum) and releases it signed by the demo's
approver, as ``fedprog demo`` releases its Cox model: the dossier documents the released logistic
model. Every expected number is read from the sealed artifact and the sealed validation report, never
from the documents' own code.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from dossier.build import DOCUMENTS, build, control
from dossier.inputs import gather
from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import render
from federated.demo_study import logistic_study, write_demo_study
from fedprog.demo_cmd import DEMO_BOOTSTRAP
from fedprog.registration import release_in_workspace, train_in_workspace, validate_in_workspace
from fedprog.workspace import Workspace
from prognosis.logistic import expit
from tests.conftest import DEMO_APPROVER, copy_workspace

INTERCEPT = "(intercept)"


@pytest.fixture(scope="module")
def logistic(demo_workspace: Path, junit: Path, tmp_path_factory: pytest.TempPathFactory) -> DossierInputs:
    """The dossier inputs of the demo's logistic model, trained, validated and released in a copy of the
    demo workspace (the newest released model, so the dossier's default)."""
    from validation.run import Options

    ws_dir = copy_workspace(demo_workspace, tmp_path_factory.mktemp("logistic-dossier") / "ws")
    ws = Workspace(ws_dir)
    study = logistic_study(ws.study_spec(write_demo_study(tmp_path_factory.mktemp("logistic-study"))))
    for site in ws.sites:
        ws.approve(site, ws.protocol(study))
    _, artifact = train_in_workspace(ws, study)
    ref = f"{artifact['model_id']}@{artifact['version']}"
    report = validate_in_workspace(ws, ref, Options(n_boot=DEMO_BOOTSTRAP, skip_verification=True))
    failed = [c["id"] for c in report["criteria"] if not all(k["passed"] for k in c["checks"])]
    assert report["passed"], failed
    release_in_workspace(ws, ref, DEMO_APPROVER, ws_dir / "demo-keys" / "release-approver.pem",
                         reason="logistic model of the dossier tests")
    inputs = gather(ws_dir, junit=junit)
    assert inputs.model is not None and inputs.model.ref == ref and inputs.model.status == "released"
    return inputs


def text(spec: DocumentSpec, inputs: DossierInputs, folder: Path) -> str:
    """The document's text, whitespace collapsed to single spaces (a cell may wrap)."""
    path = folder / spec.file
    render(path, control(inputs, spec), spec.build(inputs), toc=spec.toc)
    return " ".join(" ".join(p.extract_text() or "" for p in PdfReader(path).pages).split())


def squashed(value: str) -> str:
    return re.sub(r"\s+", "", value)


def spec_of(doc_id: str) -> DocumentSpec:
    return next(s for s in DOCUMENTS if s.id == doc_id)


@pytest.fixture(scope="module")
def card(logistic: DossierInputs, tmp_path_factory: pytest.TempPathFactory) -> str:
    return text(spec_of("FP-MC"), logistic, tmp_path_factory.mktemp("mc"))


@pytest.fixture(scope="module")
def cvr(logistic: DossierInputs, tmp_path_factory: pytest.TempPathFactory) -> str:
    return text(spec_of("FP-CVR"), logistic, tmp_path_factory.mktemp("cvr"))


def f3(v: float) -> str:
    """A number to three decimals, as the documents print it (no negative zero)."""
    s = f"{v:.3f}"
    return s[1:] if s.startswith("-") and not s.strip("-0.") else s


def interval(entry: dict[str, Any]) -> str:
    return f"({f3(entry['ci_lower'])}–{f3(entry['ci_upper'])})"


def ci(entry: dict[str, Any]) -> str:
    """A metric entry as a one-line cell prints it: estimate (lower–upper)."""
    return f"{f3(entry['estimate'])}{interval(entry)}"


@pytest.mark.req("SRS-DOS-017")
@pytest.mark.parametrize("doc", ["card", "cvr"])
def test_odds_ratios_are_exp_of_the_artifacts_coefficients(doc: str, logistic: DossierInputs,
                                                            request: pytest.FixtureRequest) -> None:
    page = squashed(request.getfixturevalue(doc))
    art = logistic.artifact or {}
    assert art["kind"] == "logistic"
    slopes = [n for n in art["coefficients"] if n != INTERCEPT]
    for name in slopes:
        low, high = art["confidence_intervals"][name]
        row = (f"{name}{art['coefficients'][name]:.4g}{art['standard_errors'][name]:.4g}"
               f"{math.exp(art['coefficients'][name]):#.4g}{math.exp(low):#.4g}–{math.exp(high):#.4g}")
        assert row in page, name
    assert "β(logOR)SEOROR95%CI" in page
    alpha = art["coefficients"][INTERCEPT]
    a_low, a_high = art["confidence_intervals"][INTERCEPT]
    assert (f"Interceptα={alpha:.4g}(95%CI{a_low:.4g}to{a_high:.4g}):thelog-oddsoftheoutcomeforthe"
            f"referencepatientx=c;herpredictedprobabilityexpit(α)={expit(alpha):.3f}(95%CI"
            f"{expit(a_low):.3f}–{expit(a_high):.3f})") in page


@pytest.mark.req("SRS-DOS-017")
def test_the_card_states_the_reports_binary_metrics_and_no_hazard(card: str, logistic: DossierInputs) -> None:
    rep, art = logistic.validation or {}, logistic.artifact or {}
    pooled = {e["metric"]: e for e in rep["pooled"]["metrics"]}
    loso = {e["metric"]: e for e in rep["leave_one_site_out"]["pooled"]}
    page = squashed(card)
    for metric, label in (("c_statistic", "Cstatistic(ROCAUC)"), ("e_o_ratio", "E/Oratio"),
                          ("brier", "Brierscore"), ("calibration_slope", "Calibrationslope(logit)"),
                          ("calibration_intercept", "Calibrationintercept(logit,slope1)")):
        assert f"{label}{ci(pooled[metric])}{ci(loso[metric])}" in page, metric
    h = art["outcome"]["horizons"][0]
    assert squashed(f"{art['outcome']['name']}: a binary outcome recorded at {h:g} day") in page
    for word in ("hazard", "harrell's c", "baseline survival", "time-dependent auc", "uno's c"):
        assert word not in card.lower(), re.findall(f".{{80}}{word}.{{40}}", card.lower())


@pytest.mark.req("SRS-DOS-017")
def test_the_validation_report_shows_each_sites_binary_metrics(cvr: str, logistic: DossierInputs) -> None:
    rep = logistic.validation or {}
    page = squashed(cvr)
    for block in (rep["sites"], rep["leave_one_site_out"]["sites"]):
        for name, site in block.items():
            shown = {e["metric"]: e for e in site["metrics"]}
            assert set(shown) == {"c_statistic", "e_o_ratio", "calibration_slope", "calibration_intercept",
                                  "brier"}, name
            for entry in shown.values():  # a two-line cell: the estimate above its interval
                assert f3(entry["estimate"]) in page and interval(entry) in page, (name, entry["metric"])
    for entry in rep["pooled"]["metrics"]:  # the heterogeneity table: fixed effect on one line
        assert ci(entry) in page, entry["metric"]
    assert "optimisminCstatistic(ROCAUC)" in page


@pytest.mark.req("SRS-DOS-018")
def test_every_document_builds_and_none_claims_a_time_dependent_metric(
        logistic: DossierInputs, tmp_path_factory: pytest.TempPathFactory) -> None:
    out = tmp_path_factory.mktemp("logistic-built") / "dossier"
    manifest = build(logistic, out, anchor=None)
    assert {d["id"] for d in manifest.data["documents"]} == {s.id for s in DOCUMENTS}
    # what the model's own documents would claim of a Cox model (FP-IFU section 7 describes private Cox
    # studies to study operators, whatever the model: its metrics are not claims about this one)
    model_claims = ("Time-dependent AUC", "Integrated Brier", "S0(t)", "event-free survival curve",
                    "the hazard ratio against", "The hazard ratio of this patient")
    for doc_id, claims in (("FP-MC", ("Harrell's C", "Uno's C", "hazard ratio", *model_claims)),
                           ("FP-CVR", ("Harrell's C", "Uno's C", "hazard ratio", *model_claims)),
                           ("FP-DD", ("Harrell's C", "Uno's C", "hazard ratio", *model_claims)),
                           ("FP-IFU", model_claims)):
        file = out / spec_of(doc_id).file
        words = " ".join(" ".join(p.extract_text() or "" for p in PdfReader(file).pages).split())
        for claim in claims:
            assert claim not in words, (doc_id, re.findall(f".{{200}}{re.escape(claim)}.{{60}}", words))
    card = " ".join(" ".join(p.extract_text() or "" for p in PdfReader(out / spec_of("FP-MC").file).pages)
                    .split())
    assert "no claim about when an event occurs" in card and "any horizon but its one" in card
    dd = " ".join(" ".join(p.extract_text() or "" for p in PdfReader(out / spec_of("FP-DD").file).pages)
                  .split())
    assert "the risk ratio π(x)/π(c)" in dd and "not the odds ratio" in dd


@pytest.mark.req("SRS-DOS-019")
@pytest.mark.parametrize("doc", ["card", "cvr"])
def test_the_binary_calibration_by_risk_group_is_the_reports(doc: str, logistic: DossierInputs,
                                                             request: pytest.FixtureRequest) -> None:
    page = squashed(request.getfixturevalue(doc))
    rows = [(name, g) for name, s in (logistic.validation or {})["sites"].items() for g in s["risk_groups"]]
    assert rows
    for name, g in rows:
        assert (f"{name}{g['group']}{g['n']}{g['events']}{g['predicted'][0]:.3f}{g['observed'][0]:.3f}"
                f"({g['observed_lower'][0]:.3f}–{g['observed_upper'][0]:.3f})") in page, (name, g["group"])


@pytest.mark.req("SRS-DOS-018")
def test_the_clinical_evaluation_of_another_model_leaves_the_file_a_draft(logistic: DossierInputs,
                                                                          tmp_path: Path) -> None:
    """The clinical evaluation on file concerns the demo's recurrence-free survival models: for the logistic
    model of another outcome it is an open item (its clinical association, state of the art and
    benefit-risk are the manufacturer's to write), FP-CER lists it, and the technical file stays a draft."""
    from dossier.inputs import open_decisions

    assert logistic.artifact is not None and logistic.clinical_evaluation is not None
    assert logistic.artifact["model_id"] not in logistic.clinical_evaluation.models
    opened = {d["field"]: d["decision"] for d in open_decisions(logistic)}
    assert "regulatory/clinical_evaluation.yaml: models" in opened
    assert logistic.artifact["outcome"]["name"] in opened["regulatory/clinical_evaluation.yaml: models"]
    cer = squashed(text(spec_of("FP-CER"), logistic, tmp_path))
    assert squashed("regulatory/clinical_evaluation.yaml: models") in cer
    assert squashed(f"the clinical evaluation of {logistic.artifact['model_id']}") in cer

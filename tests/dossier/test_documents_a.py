"""Documents FP-DD, FP-SDP, FP-SRS, FP-ARCH, FP-SOUP, FP-CYB and FP-IFU rendered from the demo
workspace: the content each must carry, the model on every page, byte-identical output, and a
refusal naming the missing input."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from device.fhir.resources import RETRAIN_DUE_URL
from dossier.build import DOCUMENTS
from dossier.documents import (
    _privacy,
    _threats,
    architecture,
    cybersecurity,
    device_description,
    ifu,
    risk_management,
    sdp,
    soup,
    srs,
)
from dossier.inputs import gather
from dossier.spec import DocumentSpec, DossierError, DossierInputs
from dossier.style import Control, render
from federated.analyses import runner
from federated.disclosure import dp_cox
from tests.conftest import copy_workspace

SPECS: list[DocumentSpec] = [m.SPEC for m in (device_description, sdp, srs, architecture, soup, cybersecurity,
                                              ifu)]
#: what a document's ``needs`` name → the DossierInputs field that carries it, and its empty value
_FIELDS: dict[str, tuple[str, Any]] = {
    "model": ("model", None), "requirements": ("requirements", None), "safety": ("safety", None),
    "soup": ("soup", []), "sbom": ("sbom", None), "validation": ("validation", None),
    "ledger": ("ledger", None), "test_run": ("test_run", None), "git": ("git", []),
    "history": ("history", [])}


@pytest.fixture(scope="module")
def inputs(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> DossierInputs:
    """Everything the documents read, gathered from a private copy of the demo workspace."""
    return gather(copy_workspace(demo_workspace, tmp_path_factory.mktemp("docs-a") / "ws"))


def control(inputs: DossierInputs, spec: DocumentSpec) -> Control:
    model = inputs.model
    assert model is not None
    return Control(doc_id=spec.id, title=spec.title, revision=inputs.revision, date=inputs.date,
                   device=inputs.device, device_version=inputs.device_version, model=model.ref,
                   model_sha256=model.sha256, commit=inputs.commit)


def render_doc(inputs: DossierInputs, spec: DocumentSpec, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.file
    render(path, control(inputs, spec), spec.build(inputs), toc=spec.toc)
    return path


def pages(path: Path) -> list[str]:
    return [page.extract_text() or "" for page in PdfReader(path).pages]


#: the running footer's lines (checked on every page by test_every_page_states_model_and_software)
FOOTER = re.compile(r"^(FP-[A-Z]+ {2}.*|fedprog \S+ · rev .*|model \S+ · sha256 [0-9a-f]{64}"
                    r"|Page \d+ of \d+)$")


def flat(texts: list[str]) -> str:
    """All pages' text without the running footer and without any whitespace (a sentence may run
    across a page break; table cells may wrap a long identifier)."""
    body = ["\n".join(line for line in page.splitlines() if not FOOTER.match(line.strip())) for page in texts]
    return re.sub(r"\s+", "", "".join(body))


@pytest.fixture(scope="module")
def rendered(inputs: DossierInputs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Each document rendered once: its pages' text by document id."""
    folder = tmp_path_factory.mktemp("docs-a-pdf")
    return {spec.id: pages(render_doc(inputs, spec, folder)) for spec in SPECS}


@pytest.mark.req("SRS-DOS-003")
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_every_page_states_model_and_software(spec: DocumentSpec, inputs: DossierInputs,
                                              rendered: dict[str, list[str]]) -> None:
    assert inputs.model is not None
    texts = rendered[spec.id]
    assert texts, f"{spec.id} rendered no page"
    for n, text in enumerate(texts, start=1):
        assert inputs.model.sha256 in text, f"{spec.id} page {n} lacks the model sha256"
        assert f"{inputs.device} {inputs.device_version}" in text, f"{spec.id} page {n} lacks the version"
    assert inputs.commit in texts[0]


@pytest.mark.req("SRS-DOS-003")
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_rendering_twice_gives_identical_bytes(spec: DocumentSpec, inputs: DossierInputs,
                                               tmp_path: Path) -> None:
    first = render_doc(inputs, spec, tmp_path / "a").read_bytes()
    second = render_doc(inputs, spec, tmp_path / "b").read_bytes()
    assert first == second


@pytest.mark.req("SRS-DOS-001")
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_missing_input_is_refused_naming_it(spec: DocumentSpec, inputs: DossierInputs) -> None:
    assert spec.needs, f"{spec.id} declares no inputs"
    inputs.require(spec.needs, spec.id)
    for need in spec.needs:
        name, empty = _FIELDS[need]
        lacking = dataclasses.replace(inputs, **{name: empty})
        with pytest.raises(DossierError, match=spec.id):
            lacking.require(spec.needs, spec.id)
        with pytest.raises(DossierError, match=spec.id):
            spec.build(lacking)


@pytest.mark.req("SRS-DOS-002")
def test_device_description_and_ifu_carry_every_input(inputs: DossierInputs,
                                                      rendered: dict[str, list[str]]) -> None:
    assert inputs.artifact is not None
    for doc in ("FP-DD", "FP-IFU"):
        text = flat(rendered[doc])
        for spec in inputs.artifact["inputs"]:
            assert f"{spec['code']['system']}|{spec['code']['code']}" in text, (doc, spec["name"])
            assert spec["name"] in text and spec["unit"] in text
            if spec["kind"] == "quantity":
                assert f"{spec['min']:g}to{spec['max']:g}" in text, (doc, spec["name"])
        for h in inputs.artifact["outcome"]["horizons"]:
            assert f"{h:g}days" in text
    dd = " ".join(rendered["FP-DD"])
    assert "Rule 11" in dd and "class IIa" in dd and "must confirm" in dd
    ifu_text = " ".join(rendered["FP-IFU"])
    assert "503" in ifu_text and "fedprog token" in ifu_text
    # the demo model carries the baseline hazard's variance, and the IFU says what its interval includes
    words = " ".join(ifu_text.split())
    assert "includes the uncertainty of the coefficients and of the baseline hazard" in words


@pytest.mark.req("SRS-DOS-002")
def test_ifu_states_the_retrain_due_notice_and_when_the_device_answers_503(
        rendered: dict[str, list[str]]) -> None:
    title, notice = ifu.retrain_notice()
    assert "[deadline, UTC]" in notice and "withdrawn consent" in notice
    text = flat(rendered["FP-IFU"])
    assert flat([title]) in text and flat([notice]) in text
    for words in ("3.4 The retraining-due notice", "remains valid for use", "is due to replace it",
                  "A version flagged retrain due (section 3.4) is still served",
                  "revocation policy is immediate",
                  "deadline of its revocation window has passed", "fedprog model due", RETRAIN_DUE_URL,
                  "the CDS card and the RiskAssessment do not carry it"):
        assert flat([words]) in text, words


@pytest.mark.req("SRS-DOS-002")
def test_srs_lists_every_requirement_with_its_parents(inputs: DossierInputs,
                                                      rendered: dict[str, list[str]]) -> None:
    reqs = inputs.requirements
    assert reqs is not None
    text = flat(rendered["FP-SRS"])
    items = [*reqs.of_type("user-need"), *reqs.of_type("system"), *reqs.of_type("software")]
    assert len(items) > 50
    for item in items:
        assert item.id in text, item.id
    contents = " ".join(rendered["FP-SRS"][:3])
    assert re.search(r"5\.1 Federated analysis \(SRS-FED, \d+\)[\s.]*\d", contents)  # the contents are filled


@pytest.mark.req("SRS-DOS-002")
def test_sdp_states_the_class_and_its_clauses(inputs: DossierInputs, rendered: dict[str, list[str]]) -> None:
    safety = inputs.safety
    assert safety is not None
    text = " ".join(rendered["FP-SDP"])
    assert f"Software safety class: {safety.safety_class}" in text
    squeezed = flat(rendered["FP-SDP"])
    applicable = [c for c in safety.clauses if c.clause in safety.clauses_for()]
    assert 0 < len(applicable) < len(safety.clauses)
    for clause in applicable:
        assert re.sub(r"\s+", "", clause.title) in squeezed, clause.clause
    assert f"apply to class {safety.safety_class}" in text
    for phase in ("Requirements", "Verification", "Configuration management", "Problem resolution"):
        assert phase in text


@pytest.mark.req("SRS-DOS-002")
def test_soup_list_names_every_item_and_the_sbom(inputs: DossierInputs,
                                                 rendered: dict[str, list[str]]) -> None:
    assert inputs.sbom is not None
    text = flat(rendered["FP-SOUP"])
    assert len(inputs.soup) > 20
    for item in inputs.soup:
        assert item.name in text, item.name
    assert inputs.sbom["sha256"] in text
    assert f"CycloneDX{inputs.sbom['spec_version']}" in text
    assert "equalsthenumberofSOUPitems" in text


@pytest.mark.req("SRS-DOS-002")
def test_architecture_draws_the_flow_and_lists_runtime_soup(inputs: DossierInputs,
                                                            rendered: dict[str, list[str]]) -> None:
    text = " ".join(rendered["FP-ARCH"])
    for box in ("Secure aggregation", "Coordinator", "Model artifact", "Model registry", "Validation",
                "Release gate", "FHIR R4 server", "Clinician", "Consent registry", "Witness"):
        assert box in text, box
    squeezed = flat(rendered["FP-ARCH"])
    for item in inputs.soup:
        if item.kind == "runtime":
            assert item.name in squeezed and all(r in squeezed for r in item.requirements), item.name
    assert "Segregation" in text


@pytest.mark.req("SRS-DOS-002")
def test_cybersecurity_cites_existing_requirements_and_states_residual_risks(
        inputs: DossierInputs, rendered: dict[str, list[str]]) -> None:
    reqs = inputs.requirements
    assert reqs is not None
    text = flat(rendered["FP-CYB"])
    cited = {i for t in cybersecurity.THREATS for i in t[4]}
    assert cited and all(i in reqs for i in cited)
    assert all(i in text for i in cited)
    for words in ("Spoofing", "Tampering", "Repudiation", "Information disclosure", "Denial of service",
                  "Elevation of privilege", "double masking", "session state", "baseline hazard",
                  "malicious coordinator", "k-cells at the source", "differences two artifacts",
                  "declared reference patient", "fresh salt per consent event", "proves linkage"):
        assert words.replace(" ", "") in text, words


@pytest.mark.req("SRS-DOS-002")
def test_cybersecurity_refuses_a_stale_reference(inputs: DossierInputs,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    stale = (*cybersecurity.THREATS, _threats.Threat("Spoofing", "t", "a", "c", ("SRS-NOPE-999",)))
    monkeypatch.setattr(cybersecurity, "THREATS", stale)
    with pytest.raises(DossierError, match="SRS-NOPE-999"):
        cybersecurity.build(inputs)


@pytest.mark.req("SRS-DOS-002")
def test_cross_references_name_documents_of_the_file(rendered: dict[str, list[str]]) -> None:
    known = {d.id for d in DOCUMENTS}
    for doc, texts in rendered.items():
        cited = set(re.findall(r"\bFP-[A-Z]+\b", " ".join(texts)))
        assert cited - known == set(), f"{doc} cites {sorted(cited - known)}"


ROOT = Path(__file__).resolve().parents[2]
#: what the dossier once said of differential privacy and no longer may (coordinator-side noise, planned
#: noise, sample-and-aggregate Cox)
RETIRED_DP = ("issue 15", "sample-and-aggregate", "noise at the source", "the Cox coefficients only")


@pytest.mark.req("SRS-DOS-002")
def test_cybersecurity_states_the_dp_guarantee_against_whom_and_what_it_does_not_cover(
        rendered: dict[str, list[str]]) -> None:
    threat = [t for t in cybersecurity.THREATS if "SRS-PRIV-016" in t[4]]
    assert len(threat) == 1 and threat[0][0] == "Information disclosure"
    assert {"SRS-PRIV-016", "SRS-PRIV-017", "SRS-PRIV-018"} <= set(threat[0][4])
    assert "coordinator" in threat[0][1] and "reader of releases" in threat[0][1]
    text = flat(rendered["FP-CYB"])
    for words in ("4.7 Differential privacy (optional, off by default)", "before masking",
                  "adding or removing one patient at one site",
                  "honest-but-curious or malicious coordinator", "every reader of the releases",
                  "refusals at the source", "plaintext evaluations of validation",
                  "colluding with the coordinator",
                  "Poisson sampler", "exact only up to floating-point arithmetic", "refuses (budget)",
                  "dp_epsilon, dp_delta; defaults 10 and 1e-05", "choosing \u03b5 is the study's decision"):
        assert flat([words]) in text, words
    for words in RETIRED_DP:
        assert flat([words]).lower() not in text.lower(), words
    risks = cybersecurity.residual_risks()
    assert "dropout" in risks[0][0] and "|beta·x|" in risks[1][0]  # R1, R2 as section 4.7 cites them
    assert "covers the Kaplan-Meier counts and the sums of a private Cox fit" in risks[7][0]  # R8
    assert "not the accuracy of a private Cox model" in risks[7][0] and "colluding" in risks[8][0]  # R8, R9


@pytest.mark.req("SRS-DOS-002")
def test_cybersecurity_describes_the_private_cox_fit_the_code_performs(
        rendered: dict[str, list[str]]) -> None:
    """The training code fits Cox with differential privacy (SRS-PRIV-023): FP-CYB states its guarantee,
    its model, its standard errors and its limits, and no longer calls it undescribed."""
    assert _privacy.cox_private()
    threat = [t for t in cybersecurity.THREATS if "SRS-PRIV-016" in t[4]]
    assert "SRS-PRIV-023" in threat[0][4]
    text = flat(rendered["FP-CYB"])
    for words in ("Private Cox models (SRS-PRIV-023).", "A Cox study with differential privacy has the same "
                  "guarantee", "chooses every \u03b2 it asks about", "refuse (bound) a round",
                  f"\u03b3 = {dp_cox.SCALE}",
                  "the 1 + T releases together cost the study's \u03b5 and \u03b4",
                  "is not the exact (pooled) Cox fit", "piecewise-exponential likelihood",
                  "include the variance the privacy noise adds", "parametric bootstrap",
                  "no more than 1.5 times the mean released standard error", "close to useless",
                  "only 3 of 10 fits completed", "converged means only that the last noisy step",
                  "no coverage histogram", "has nothing to check",
                  "is the manufacturer's decision (the default is off)", "epsilon, delta of one fit"):
        assert flat([words]) in text, words
    assert "notyetdescribed" not in text
    assert flat(["differential privacy for Cox models is not available"]) not in text


@pytest.mark.req("SRS-DOS-002")
def test_the_cox_statement_follows_the_training_code(monkeypatch: pytest.MonkeyPatch) -> None:
    refusal = "differential privacy for Cox models is not available yet"
    monkeypatch.setattr(runner, "DP_COX_UNAVAILABLE", refusal, raising=False)
    assert "not available in this version" in _privacy.cox_short()
    assert "not available yet" in _privacy.cox_quoted()
    assert _privacy.cox_record({"differential_privacy": None}).startswith("off (not available")
    record = {"mechanism": "skellam", "epsilon": 2.0, "delta": 1e-6, "iterations": 4,
              "bound_sum_abs_beta_standardised": 3.0}
    refused_on = _privacy.cox_record({"differential_privacy": record})
    assert "not available" in refused_on and "not the exact Cox fit" not in refused_on
    assert not _privacy.cox_private() and _privacy.fit_cost() == "one Kaplan\u2013Meier fit"
    assert "covers the Kaplan-Meier counts only" in cybersecurity.residual_risks()[7][0]
    assert "every Cox model" in _privacy.sentence(_privacy.not_covered())
    assert "private Cox fit" not in risk_management.with_dp()["HAZ-PRIV-002"][0]
    monkeypatch.delattr(runner, "DP_COX_UNAVAILABLE")
    assert _privacy.cox_refusal() is None and _privacy.cox_private()
    for said in (_privacy.cox_short(), _privacy.cox_brief()):
        assert "not available" not in said and "not yet described" not in said and "SRS-PRIV-023" in said
    assert "not the exact Cox fit" in _privacy.cox_short()
    assert _privacy.cox_record({"differential_privacy": None}) == "off"
    on = _privacy.cox_record({"differential_privacy": record})
    assert on.startswith("on: mechanism skellam, \u03b5 2, \u03b4 1e-06, T 4, bound 3")
    for words in ("not the exact Cox fit", "standard errors include the privacy noise",
                  "\u201cconverged\u201d means only that the last noisy step was small",
                  "FP-CYB section 4.7"):
        assert words in on, words
    assert "Cox" not in _privacy.sentence(_privacy.not_covered())
    assert "every sum of a private Cox fit" in risk_management.with_dp()["HAZ-PRIV-002"][0]


@pytest.mark.req("SRS-DOS-002")
def test_a_refusal_coming_back_takes_the_private_cox_text_out_of_the_documents(
        inputs: DossierInputs, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Should the training code refuse Cox with differential privacy again, FP-CYB and FP-IFU say it is
    not available and describe no private Cox model."""
    monkeypatch.setattr(runner, "DP_COX_UNAVAILABLE", "differential privacy for Cox models is not available",
                        raising=False)
    for spec in (cybersecurity.SPEC, ifu.SPEC):
        text = flat(pages(render_doc(inputs, spec, tmp_path)))
        assert flat(["differential privacy for Cox models is not available in this version"]) in text
        for words in ("Private Cox models", "Cox models with differential privacy.", "parametric bootstrap",
                      _privacy.COX_UTILITY[0][1]):
            assert flat([words]) not in text, (spec.id, words)


@pytest.mark.req("SRS-DOS-002")
def test_the_dp_utility_table_is_the_readmes() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8").split("**Differential privacy**", 1)[1]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in readme.splitlines() if line.startswith("| ") and not line.startswith("| data")]
    assert [tuple(r) for r in rows[:len(_privacy.UTILITY)]] == list(_privacy.UTILITY)
    assert "4 sites, 20 fits" in readme and "δ = 1e-6" in readme and "5 years" in readme
    cox = [tuple(r) for r in rows if "mean abs. error / C" in r[0]]
    assert cox == list(_privacy.COX_UTILITY)
    gbsg2, synthetic = _privacy.COX_EXACT_C
    assert f"{gbsg2} on GBSG2, {synthetic} on the synthetic cohort" in " ".join(readme.split())
    for words in ("4 sites, 10 fits per cell, 8 inputs", "yearly grid to 5 years", "against the noise-free "
                  "fit with the same T and bound"):
        assert words in " ".join(readme.split()), words
    assert _privacy.DPSettings().cox_iterations == 4 and _privacy.DPSettings().cox_bound == 3.0


@pytest.mark.req("SRS-DOS-002")
def test_a_sites_default_budget_is_computed_from_the_accounting() -> None:
    fits = [_privacy.fits_within_budget(e) for e in _privacy.EPSILONS]
    assert fits[0] > fits[1] >= fits[2] >= 1
    assert f"{fits[0]} Kaplan\u2013Meier fits at \u03b5 = 1" in _privacy.budget_sentence()
    sd = [_privacy.noise_sd(e) for e in _privacy.EPSILONS]
    assert 5 < sd[0] < 6 and sd[2] < sd[1] < sd[0]


@pytest.mark.req("SRS-DOS-002")
def test_ifu_tells_study_operators_what_dp_does_to_curves_counts_and_budgets(
        rendered: dict[str, list[str]]) -> None:
    text = flat(rendered["FP-IFU"])
    section = text.split(flat(["7 For study operators and statisticians: differential privacy"]))[-1]
    assert section != text
    for row in _privacy.UTILITY:
        assert flat([" ".join(row)]) in section, row
    for words in ("it is off unless the study enables it",
                  "The counts shown beside a private curve are noisy",
                  "Do not report them as exact counts", "Each hospital's budget can be spent",
                  "refuses, with the code budget", "Spent budget is not restored", _privacy.budget_sentence(),
                  "evaluations of validation"):
        assert flat([words]) in section, words
    assert flat(["Section 6 addresses integrators, section 7 the staff who run federated studies"]) in text


@pytest.mark.req("SRS-DOS-002")
def test_ifu_tells_study_operators_what_a_private_cox_model_is_and_costs(
        rendered: dict[str, list[str]]) -> None:
    text = flat(rendered["FP-IFU"])
    section = text.split(flat(["7 For study operators and statisticians: differential privacy"]))[-1]
    parts = section.split(flat(["Cox models with differential privacy."]))
    assert len(parts) == 2
    cox = parts[1]
    for row, exact in zip(_privacy.COX_UTILITY, _privacy.COX_EXACT_C, strict=True):
        assert flat([" ".join((*row, exact))]) in cox, row
    for words in ("the \u03b5 and \u03b4 are the cost of the whole fit", "is not the exact (pooled) Cox fit",
                  "dp.cox_iterations, default 4", "dp.cox_bound, default 3",
                  "include the variance the privacy noise adds", "close to useless",
                  "no coverage histogram", "converged means only", "RC-VAL-001", "at least 0.60",
                  "is a clinical hazard if released", "is the manufacturer's decision (the default is off)",
                  "expect discrimination close to chance", "0.13 on GBSG2"):
        assert flat([words]) in cox, words


@pytest.mark.req("SRS-DOS-002")
def test_no_document_repeats_a_retired_dp_statement(rendered: dict[str, list[str]]) -> None:
    """FP-SRS prints the requirements verbatim (SRS-PRIV-019 names sample-and-aggregate as removed)."""
    for doc, texts in rendered.items():
        if doc == "FP-SRS":
            continue
        text = flat(texts).lower()
        for words in RETIRED_DP:
            assert flat([words]).lower() not in text, (doc, words)

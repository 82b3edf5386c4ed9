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
from dossier.documents import architecture, cybersecurity, device_description, ifu, sdp, soup, srs
from dossier.inputs import gather
from dossier.spec import DocumentSpec, DossierError, DossierInputs
from dossier.style import Control, render
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


def flat(texts: list[str]) -> str:
    """All pages' text without any whitespace (table cells may wrap a long identifier)."""
    return re.sub(r"\s+", "", "".join(texts))


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
    assert "503" in ifu_text and "lower bound" in ifu_text and "fedprog token" in ifu_text


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
    stale = (*cybersecurity.THREATS, ("Spoofing", "t", "a", "c", ("SRS-NOPE-999",)))
    monkeypatch.setattr(cybersecurity, "THREATS", stale)
    with pytest.raises(DossierError, match="SRS-NOPE-999"):
        cybersecurity.build(inputs)


@pytest.mark.req("SRS-DOS-002")
def test_cross_references_name_documents_of_the_file(rendered: dict[str, list[str]]) -> None:
    known = {d.id for d in DOCUMENTS}
    for doc, texts in rendered.items():
        cited = set(re.findall(r"\bFP-[A-Z]+\b", " ".join(texts)))
        assert cited - known == set(), f"{doc} cites {sorted(cited - known)}"

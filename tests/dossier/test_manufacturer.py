"""The manufacturer's file (regulatory/manufacturer.yaml): the intended purpose as checked data and the
decisions only the manufacturer can take, listed while they are open."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dossier.manufacturer import MARKER, load_manufacturer
from dossier.spec import DossierError
from federated.demo_study import DEMO_INTENDED_USE

pytestmark = pytest.mark.req("SRS-DOS-004")

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "regulatory" / "manufacturer.yaml"
#: every decision the shipped file leaves to the manufacturer, in file order
OPEN = ["device.software_version", "device.basic_udi_di", "manufacturer.name", "manufacturer.address",
        "manufacturer.srn", "manufacturer.person_responsible_for_regulatory_compliance",
        "manufacturer.authorised_representative", "classification.decided_class",
        "classification.conformity_assessment_route", "label.udi_carrier", "label.manufacturer",
        "label.ce_marking", "declaration_of_conformity.signatory", "declaration_of_conformity.date",
        "cybersecurity.security_contact", "cybersecurity.advisory_channel", "cybersecurity.response_times",
        "cybersecurity.support_end", "cybersecurity.residual_risk_acceptance"]


def raw() -> dict:
    return dict(yaml.safe_load(SHIPPED.read_text(encoding="utf-8")))


def written(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "manufacturer.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_the_shipped_file_states_the_indication_and_lists_every_open_decision() -> None:
    mf = load_manufacturer(source=ROOT)
    assert load_manufacturer() == mf  # found from the checkout this package runs from
    ind = mf.intended_purpose.indication
    assert (ind.population, ind.sex) == ("adult women", "female")
    assert ind.condition == "primary invasive breast cancer"
    assert ind.stage.startswith("non-metastatic (M0), node-positive")
    assert "men (the model was developed on women only)" in mf.intended_purpose.contraindications
    assert "node-negative disease (0 positive lymph nodes)" in mf.intended_purpose.contraindications
    assert mf.classification.rule == "MDR Annex VIII, Rule 11"
    assert mf.classification.candidate_classes == ["IIa", "IIb"] and mf.classification.decided_class is None
    assert [path for path, _ in mf.missing_decisions()] == OPEN
    assert dict(mf.missing_decisions())["device.basic_udi_di"] == ("the Basic UDI-DI (MDR Art. 27, Annex VI "
                                                                   "Part C)")
    assert mf.is_draft


def test_the_file_agrees_with_what_the_demo_model_enforces() -> None:
    mf = load_manufacturer(SHIPPED)
    assert mf.disagreements(DEMO_INTENDED_USE) == []
    assert mf.disagreements(DEMO_INTENDED_USE.model_copy(update={"sex": None})) == [
        "sex: the model enforces no sex, the indication says female"]
    assert mf.disagreements(None) == [
        "the model carries no intended_use block, so the device enforces none of the indication"]


def test_a_decided_file_is_no_longer_a_draft(tmp_path: Path) -> None:
    data = raw()
    data["device"].update(software_version="1.0.0", basic_udi_di="++G123FEDPROG1A")
    data["manufacturer"] = {k: f"decided {k}" for k in data["manufacturer"]}
    data["classification"].update(decided_class="IIb", conformity_assessment_route="Annex IX")
    data["label"].update(udi_carrier="(01)0123(8012)1.0.0", manufacturer="Example Med GmbH",
                         ce_marking="CE 0123")
    data["declaration_of_conformity"] = {"signatory": "A. Person, CEO", "date": "2027-01-31"}
    data["cybersecurity"] = {k: f"decided {k}" for k in data["cybersecurity"]}
    mf = load_manufacturer(written(tmp_path, data))
    assert mf.missing_decisions() == [] and not mf.is_draft
    data["label"]["statements"].append(MARKER)  # the marker anywhere is an open decision
    data["manufacturer"]["name"] = None
    assert load_manufacturer(written(tmp_path, data)).missing_decisions() == [
        ("manufacturer.name", "the legal manufacturer's name"),
        ("label.statements[4]", "a value the manufacturer must state")]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["classification"].update(decided_class="III"),
     "classification: decided_class: III is not one of the candidate classes IIa, IIb"),
    (lambda d: d["intended_purpose"]["indication"].update(sex="woman"), "intended_purpose.indication.sex: "),
    (lambda d: d["device"].update(colour="blue"), "device.colour: Extra inputs are not permitted"),
    (lambda d: d.pop("label"), "label: Field required"),
    (lambda d: d["intended_purpose"].update(contraindications=[]), "intended_purpose.contraindications: ")])
def test_a_file_outside_the_contract_is_refused_naming_the_field(tmp_path: Path, edit: object, message: str
                                                                 ) -> None:
    data = raw()
    edit(data)  # type: ignore[operator]
    path = written(tmp_path, data)
    with pytest.raises(DossierError) as info:
        load_manufacturer(path)
    assert str(info.value).startswith(f"{path}: {message}")
    assert "\n" not in str(info.value)


def test_a_missing_or_broken_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DossierError, match=r"manufacturer.yaml: the manufacturer's file is missing$"):
        load_manufacturer(source=tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: [unclosed\n", encoding="utf-8")
    with pytest.raises(DossierError, match=r"bad.yaml: not valid YAML \("):
        load_manufacturer(bad)


@pytest.mark.req("SRS-DOS-004")
def test_open_decisions_keep_the_technical_file_a_draft(dossier_ws: Path, tmp_path: Path,
                                                        junit: Path) -> None:
    """Every input present: the file is still a draft while the manufacturer's decisions (the file's
    open fields, the risk management report's approval) are open; with them taken it is issued."""
    import dataclasses

    from dossier.build import build
    from dossier.inputs import gather, open_decisions
    from tests.dossier.conftest import DUMMY
    from traceability.safety import Approval

    inputs = gather(dossier_ws, junit=junit)
    open_now = open_decisions(inputs)
    fields = [d["field"] for d in open_now]
    assert "traceability/safety.yaml: risk_management.approval" in fields
    assert "regulatory/manufacturer.yaml: device.basic_udi_di" in fields
    from dossier.clinical_gaps import clinical_gaps

    gaps = clinical_gaps(inputs.clinical_evaluation, inputs.evidence, inputs.validation, inputs.artifact)
    assert [where for where, _ in gaps] == fields[-len(gaps):] if gaps else True  # the clinical gaps last
    assert len(fields) == len(inputs.manufacturer.missing_decisions()) + 1 + len(gaps)
    manifest = build(inputs, tmp_path / "draft", anchor=None, documents=[DUMMY])
    assert manifest.data["status"] == "draft" and manifest.data["not_issued"] == []
    assert manifest.data["open_decisions"] == open_now

    class Decided:
        def missing_decisions(self) -> list[tuple[str, str]]:
            return []

    risk = inputs.safety.risk_management
    approval = Approval(name="A. Person", role=risk.approver, date="2026-12-01",
                        decision="overall residual risk acceptable, benefit outweighs it")
    approved = inputs.safety.model_copy(update={"risk_management": risk.model_copy(
        update={"approval": approval})})
    decided = dataclasses.replace(inputs, manufacturer=Decided(), safety=approved, clinical_evaluation=None)
    assert open_decisions(decided) == []
    manifest = build(decided, tmp_path / "decided", anchor=None, documents=[DUMMY])
    assert manifest.data["open_decisions"] == []  # issuing also needs approvals etc. (test_approvals.py)
    assert not any(b.startswith("open decision: ") for b in manifest.data["issue_blockers"])

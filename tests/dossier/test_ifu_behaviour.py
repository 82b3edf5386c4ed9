"""The instructions for use say what the device does: each behavioural statement of FP-IFU checked
against the code that does it (issue 18: the IFU contradicted the code on withdrawals, on the user
interfaces and on old results)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pypdf import PdfReader

from device.fhir.errors import FhirError
from device.fhir.service import ReleasedModel
from device.registry import ModelRegistry
from dossier.build import control
from dossier.documents import ifu
from dossier.inputs import gather
from dossier.spec import DossierInputs
from dossier.style import render
from ledger.checkpoint import NoteSigner
from ledger.log import Ledger
from tests.conftest import copy_workspace
from tests.device.test_model import demo_artifact, reseal
from tests.device.test_registry import PEOPLE, release, report


@pytest.fixture(scope="module")
def inputs(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> DossierInputs:
    return gather(copy_workspace(demo_workspace, tmp_path_factory.mktemp("ifu") / "ws"))


@pytest.fixture(scope="module")
def text(inputs: DossierInputs, tmp_path_factory: pytest.TempPathFactory) -> str:
    """FP-IFU of the demo model as rendered, whitespace collapsed."""
    path = tmp_path_factory.mktemp("ifu-pdf") / ifu.SPEC.file
    render(path, control(inputs, ifu.SPEC), ifu.SPEC.build(inputs), toc=ifu.SPEC.toc)
    return " ".join(" ".join(page.extract_text() or "" for page in PdfReader(path).pages).split())


@pytest.mark.req("SRS-REG-003", "SRS-DOS-003")
def test_what_the_ifu_says_of_a_withdrawal_is_what_the_server_does(text: str, tmp_path: Path) -> None:
    assert ("It then serves the newest remaining released version that no revocation affects (normally the "
            "version the withdrawn one succeeded") in text
    assert "answers 503 when there is none" in text
    ledger = Ledger(tmp_path / "ledger.sqlite", signer=NoteSigner.generate("test/log"), origin="test/log")
    registry = ModelRegistry(tmp_path / "models", ledger, people=PEOPLE)
    registry.register(demo_artifact(), "demo@1")
    first = registry.list()[-1].ref
    registry.record_validation(first, report(True))
    release(registry, first)
    second_art = demo_artifact()
    second_art["version"] = "2"
    registry.register(reseal(second_art), "demo@2", predecessor=first)
    second = registry.list()[-1].ref
    registry.record_validation(second, report(True))
    release(registry, second, significant_change="assessed as a new version (no plan here)")
    server = ReleasedModel(registry)
    assert server.current().ref == second
    registry.withdraw(second, reason="field safety notice")
    assert server.current().ref == first  # the version the withdrawn one succeeded
    registry.withdraw(first, reason="field safety notice")
    with pytest.raises(FhirError) as exc:  # none left: 503
        server.current()
    assert exc.value.status == 503


@pytest.mark.req("SRS-DEV-011", "SRS-DEV-013", "SRS-DOS-003")
def test_the_ifu_states_the_intended_use_checks_the_model_makes(text: str, inputs: DossierInputs) -> None:
    use = (inputs.artifact or {})["intended_use"]
    days = use["max_observation_age_days"]
    assert f"it is refused when it is more than {days} days old on the day of the assessment" in text
    assert f"whose recorded sex (Patient.gender) is not {use['sex']}, or is not recorded, is refused" in text
    # the behaviour itself: tests/device/fhir/test_intended_use.py sends such patients to the server


@pytest.mark.req("SRS-PAGE-006", "SRS-DOS-003")
def test_the_ifu_names_every_user_interface(text: str) -> None:
    assert "no other user interface" not in text
    assert re.search(r"on the risk page the EHR launches as a SMART app", text)
    page = Path(__file__).resolve().parents[2] / "device" / "fhir" / "static" / "app" / "index.html"
    assert page.is_file()  # the risk page the IFU names is the one the server serves at /app/


@pytest.mark.req("SRS-DEV-014", "SRS-DOS-003")
def test_the_ifu_names_each_input_by_the_label_the_device_uses(text: str, inputs: DossierInputs) -> None:
    titled = [(i["title"], i["code"]["display"]) for i in (inputs.artifact or {})["inputs"] if i.get("title")]
    assert titled, "the demo model labels its inputs"
    flat = text.replace(" ", "")
    for title, display in titled:  # the table: the label the page and refusals use, then the code's
        assert f"{title}({display})".replace(" ", "") in flat, title

"""The intended use travels with the model: declared by the study, written into the artifact only when
declared (other studies' artifacts keep their bytes), validated on reading, and the clinical wording of
each input released with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from device.model import ModelError, load_model
from federated.analyses.runner import train
from federated.demo_study import DEMO_INPUTS, DEMO_INTENDED_USE, write_demo_study
from federated.study import InputSpec, load_study
from tests.device.test_model import demo_artifact, reseal

pytestmark = pytest.mark.req("SRS-DEV-011")


def test_the_demo_artifact_carries_the_declared_intended_use_and_clinical_labels() -> None:
    art = demo_artifact()
    assert art["intended_use"] == {
        "population": "adult women with primary, non-metastatic, node-positive invasive breast cancer after "
                      "surgery",
        "sex": "female", "max_observation_age_days": 365, "event": "recurrence or death"}
    model = load_model(art)
    assert model.artifact.intended_use == DEMO_INTENDED_USE
    by_name = {i["name"]: i for i in art["inputs"]}
    assert by_name["pnodes"]["title"] == "Positive lymph nodes"
    assert by_name["pnodes"]["below"] == ("this model was developed for node-positive patients; {value} "
                                          "positive nodes is outside it")
    assert "below" not in by_name["tsize"] and by_name["tsize"]["title"] == "Tumour size"


@pytest.mark.req("SRS-DEV-014")
def test_a_study_without_them_releases_the_same_artifact_minus_the_new_fields(tmp_path: Path) -> None:
    """Purely additive: without intended_use and titles the artifact is the demo's with those fields removed
    (same canonical bytes, same sha256), so artifacts of studies that declare none keep their bytes."""
    plain = {n: InputSpec.model_validate(s.model_dump(exclude={"title", "below"}))
             for n, s in DEMO_INPUTS.items()}
    study = write_demo_study(tmp_path).model_copy(update={"intended_use": None, "inputs": plain})
    art = train(study)[1]
    assert "intended_use" not in art and not any({"title", "below"} & set(i) for i in art["inputs"])
    demo = demo_artifact()
    del demo["intended_use"]
    for item in demo["inputs"]:
        item.pop("title", None)
        item.pop("below", None)
    assert reseal(demo)["sha256"] == art["sha256"]
    assert json.dumps(reseal(demo), sort_keys=True) == json.dumps(art, sort_keys=True)


@pytest.mark.parametrize(("edit", "field"), [
    (lambda u: u.update(sex="woman"), "intended_use.sex"),
    (lambda u: u.update(max_observation_age_days=0), "intended_use.max_observation_age_days"),
    (lambda u: u.update(population=""), "intended_use.population"),
    (lambda u: u.update(colour="blue"), "intended_use.colour")])
def test_an_artifact_with_a_malformed_intended_use_is_refused_naming_the_field(edit: Any, field: str) -> None:
    art = demo_artifact()
    edit(art["intended_use"])
    with pytest.raises(ModelError, match=rf"^artifact gbsg2-recurrence@1: {field}: "):
        load_model(reseal(art))


def test_a_study_file_declares_it(tmp_path: Path) -> None:
    path = tmp_path / "study.toml"
    path.write_text('time = "t"\nevent = "e"\n[intended_use]\npopulation = "adult men with X"\nsex = "male"\n'
                    "max_observation_age_days = 90\n", encoding="utf-8")
    use = load_study(path).intended_use
    assert use is not None and (use.population, use.sex, use.max_observation_age_days, use.event) == (
        "adult men with X", "male", 90, None)

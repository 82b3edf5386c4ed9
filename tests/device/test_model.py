"""The device reads the model artifact: hash-checked, validated field by field, never trusted."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device.model import InputSpec, ModelError, PrognosticModel, load_model
from device.scoring import ScoringError, score, survival_curve

#: The example artifact handed over with the contract (not part of the repository).


def reseal(art: dict[str, Any]) -> dict[str, Any]:
    """Recompute ``sha256`` as the contract states it (an implementation independent of the device)."""
    rest = {k: v for k, v in art.items() if k != "sha256"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return {**rest, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


@functools.cache
def _trained(stratified: bool) -> str:
    """The demo study's artifact, trained once per session by the federated pipeline (the producer)."""
    from federated.analyses.runner import train
    from federated.demo_study import write_demo_study

    with tempfile.TemporaryDirectory() as folder:
        study = write_demo_study(Path(folder))
        if stratified:
            study = study.model_copy(update={"strata_by_site": True})
        return json.dumps(train(study)[1])


def demo_artifact(stratified: bool = False) -> dict[str, Any]:
    """A fresh copy of a real, sealed ``fedprog.model/v1`` artifact (GBSG2 demo study)."""
    art: dict[str, Any] = json.loads(_trained(stratified))
    return art


def write(tmp_path: Path, art: dict[str, Any], name: str = "model.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(art, indent=2, sort_keys=True, allow_nan=True) + "\n", encoding="utf-8")
    return path


# --- loading real artifacts -------------------------------------------------------------


@pytest.mark.req("SRS-DEV-002")
def test_the_demo_artifact_loads_with_everything_scoring_needs(tmp_path: Path) -> None:
    raw = demo_artifact()
    model = load_model(write(tmp_path, raw))
    assert isinstance(model, PrognosticModel) and model.ref == "gbsg2-recurrence@1"
    names = [i["name"] for i in raw["inputs"]]
    assert model.names == tuple(names) and all(isinstance(i, InputSpec) for i in model.inputs)
    assert model.outcome == "recurrence-free survival" and model.horizons == (1095.75, 1826.25)
    np.testing.assert_array_equal(model.beta, [raw["coefficients"][n] for n in names])
    np.testing.assert_array_equal(model.covariance, raw["covariance"])
    np.testing.assert_array_equal(model.center, raw["baseline_survival"]["center"])
    np.testing.assert_array_equal(model.baseline_times, raw["baseline_survival"]["times"])
    np.testing.assert_array_equal(model.baseline_survival, raw["baseline_survival"]["survival"])
    assert model.inputs[0].code.code == "30525-0" and model.inputs[0].unit == "a"
    assert model.inputs[0].coverage is not None and model.artifact.p_values is not None
    with pytest.raises(ValueError, match="read-only"):
        model.beta[0] = 1.0
    assert load_model(raw).sha256 == model.sha256  # the parsed JSON is accepted too


# --- integrity --------------------------------------------------------------------------


@pytest.mark.req("SRS-DEV-001", "RC-ART-001")
def test_a_one_character_edit_of_a_coefficient_is_refused(tmp_path: Path) -> None:
    raw = demo_artifact()
    path = write(tmp_path, raw)
    text = path.read_text(encoding="utf-8")
    literal = json.dumps(raw["coefficients"]["pnodes"])
    start = text.index(f'"pnodes": {literal}', text.index('"coefficients"')) + len('"pnodes": ') + 3
    edited = text[:start] + ("1" if text[start] != "1" else "2") + text[start + 1:]
    assert sum(a != b for a, b in zip(text, edited, strict=True)) == 1
    path.write_text(edited, encoding="utf-8")
    actual = reseal(json.loads(edited))["sha256"]
    msg = f"{path}: sha256 mismatch: file says {raw['sha256']}, content hashes to {actual}"
    with pytest.raises(ModelError, match=re.escape(msg)):
        load_model(path)


@pytest.mark.req("SRS-DEV-001", "RC-ART-001")
def test_a_forged_hash_is_refused() -> None:
    raw = demo_artifact()
    raw["sha256"] = "0" * 64
    with pytest.raises(ModelError, match="sha256 mismatch"):
        load_model(raw)


@pytest.mark.req("SRS-DEV-001")
def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        load_model(tmp_path / "absent.json")
    with pytest.raises(ModelError, match="cannot read the model file"):
        load_model(tmp_path)
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(ModelError, match="bad.json: not valid JSON"):
        load_model(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ModelError, match="not a JSON object"):
        load_model(tmp_path / "list.json")
    (tmp_path / "dup.json").write_text('{"ties": "efron", "ties": "breslow"}', encoding="utf-8")
    with pytest.raises(ModelError, match="appears twice"):
        load_model(tmp_path / "dup.json")


# --- the contract, field by field -------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(art: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = art
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value
    return mutate


def _pop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(art: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = art
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node.pop(int(last) if isinstance(node, list) else last)
    return mutate


def _swap_times(art: dict[str, Any]) -> None:
    t = art["baseline_survival"]["times"]
    t[3], t[4] = t[4], t[3]


def _repeat_time(art: dict[str, Any]) -> None:
    t = art["baseline_survival"]["times"]
    t[1] = t[0]


def _asymmetric(art: dict[str, Any]) -> None:
    art["covariance"][0][1] += 1e-3


BS = r"baseline_survival\."
NUM = "Input should be a valid number"
MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "covariance wrong shape": (_pop("covariance.7"), r"covariance: expected 8×8 .*got 7×8"),
    "covariance ragged": (_pop("covariance.2.7"), r"covariance: expected 8×8 .*got 8×7"),
    "covariance asymmetric": (_asymmetric, "covariance: not symmetric"),
    "times not increasing": (_swap_times, BS + r"times: .*strictly increasing"),
    "times repeated": (_repeat_time, BS + r"times: .*strictly increasing"),
    "survival above 1": (_set("baseline_survival.survival.0", 1.5), BS + r"survival: .*\(0, 1\]"),
    "survival increasing": (_set("baseline_survival.survival.3", 0.999), BS + r"survival: .*non-increasing"),
    "survival shorter": (_pop("baseline_survival.survival.0"), "baseline_survival: times and survival"),
    "center length": (_pop("baseline_survival.center.0"), BS + "center: 7 values for 8 inputs"),
    "unknown schema": (_set("schema", "fedprog.model/v2"), "schema: Input should be 'fedprog.model/v1'"),
    "unknown kind": (_set("kind", "aft"), "kind: Input should be 'cox-ph'"),
    "missing field": (_pop("ties"), "ties: Field required"),
    "missing input field": (_pop("inputs.1.unit"), r"inputs\.1\.unit \(input 'tsize'\): Field required"),
    "extra top-level field": (_set("comment", "hello"), "comment: Extra inputs are not permitted"),
    "coefficient as text": (_set("coefficients.age", "-0.007"), r"coefficients\.age: " + NUM),
    "coefficient as bool": (_set("coefficients.age", True), r"coefficients\.age: " + NUM),
    "input without coefficient": (_pop("coefficients.age"), "coefficients: no entry for input 'age'"),
    "coefficient without input": (_set("coefficients.grade", 0.1), "coefficients: 'grade' is not an input"),
    "standard error off": (_set("standard_errors.age", 1.0), "standard_errors: 'age'"),
    "negative standard error": (_set("standard_errors.age", -1.0), r"standard_errors\.age: .*greater"),
    "min above max": (_set("inputs.0.min", 100.0), r"inputs\.0 \(input 'age'\): min 100 > max 79"),
    "unknown input kind": (_set("inputs.0.kind", "text"), r"inputs\.0\.kind"),
    "bad time unit": (_set("outcome.time_unit", "fortnight"), r"outcome\.time_unit"),
    "non-positive horizon": (_set("outcome.horizons.0", 0.0), r"outcome\.horizons\.0: .*greater than 0"),
    "unknown ties": (_set("ties", "exact"), "ties: Input should be 'efron' or 'breslow'"),
    "missing sha256": (_pop("sha256"), "sha256: Field required"),
    "coverage counts": (_pop("inputs.0.coverage.counts.0"),
                        r"inputs\.0\.coverage \(input 'age'\): counts has 9"),
}


@pytest.mark.req("SRS-DEV-002")
@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_artifacts_are_refused_naming_the_field(case: str, tmp_path: Path) -> None:
    mutate, expected = MALFORMED[case]
    art = demo_artifact()
    mutate(art)
    art = reseal(art) if case != "missing sha256" else art  # sealed: only the contract can object
    path = write(tmp_path, art)
    with pytest.raises(ModelError, match=f"^{re.escape(str(path))}: {expected}") as info:
        load_model(path)
    assert "\n" not in str(info.value)


@pytest.mark.req("SRS-DEV-002")
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_coefficients_are_refused_naming_the_field(value: float, tmp_path: Path) -> None:
    art = demo_artifact()
    art["coefficients"]["tsize"] = value  # cannot be sealed: canonical JSON has no NaN/Infinity
    path = write(tmp_path, art)
    assert ("NaN" if math.isnan(value) else "Infinity") in path.read_text(encoding="utf-8")
    with pytest.raises(ModelError, match=r"coefficients\.tsize: Input should be a finite number"):
        load_model(path)
    with pytest.raises(ModelError, match=r"coefficients\.tsize: Input should be a finite number"):
        load_model(art)


@pytest.mark.req("SRS-DEV-002")
def test_nan_in_the_opaque_training_block_is_refused(tmp_path: Path) -> None:
    art = demo_artifact()
    art["training"]["loglik"] = math.nan
    with pytest.raises(ModelError, match="training: not canonical JSON"):
        load_model(write(tmp_path, art))


@pytest.mark.req("SRS-DEV-002")
def test_optional_documented_fields_may_be_absent() -> None:
    art = demo_artifact()
    for key in ("confidence_intervals", "p_values", "penalty"):
        del art[key]
    del art["inputs"][0]["coverage"]
    model = load_model(reseal(art))
    assert model.artifact.p_values is None and model.inputs[0].coverage is None


# --- the intended-use envelope ----------------------------------------------------------


@pytest.mark.req("SRS-DEV-005", "RC-INPUT-001")
def test_input_spec_accepts_inside_and_explains_outside() -> None:
    model = load_model(demo_artifact())
    age, progrec, hormone = model.inputs[0], model.inputs[4], model.inputs[6]
    assert age.accepts(27) is None and age.accepts(79.0) is None and age.accepts(np.float64(50)) is None
    assert age.accepts(79.5) == ("Age: 79.5 years is outside the range this model was developed and "
                                 "validated for (27 to 79 years)")
    assert progrec.accepts(435.5) == ("Progesterone receptor: 435.5 fmol/mg is outside the range this model "
                                      "was developed and validated for (0 to 435 fmol/mg)")
    assert age.accepts(math.nan) == "Age: nan is not a finite number"
    assert age.accepts("fifty") == "Age: 'fifty' is not a number"
    assert hormone.accepts(1) is None and hormone.accepts(True) is None and hormone.accepts(0.0) is None
    assert hormone.accepts(0.5) == "Hormone therapy: 0.5 is not a boolean (0 = false, 1 = true)"
    assert hormone.accepts(2) is not None
    np.testing.assert_array_equal(age.accepts_array(np.array([26.9, 27, 50, 79, 79.1, np.nan])),
                                  [False, True, True, True, False, False])


@pytest.mark.req("SRS-DEV-005")
def test_category_inputs_accept_listed_codes_or_their_index() -> None:
    spec = InputSpec.model_validate({
        "name": "stage", "code": {"system": "urn:x", "code": "stage", "display": "Stage"}, "unit": "1",
        "kind": "category", "min": None, "max": None,
        "categories": [{"system": "urn:x", "code": c, "display": c} for c in ("I", "II", "III")]})
    assert spec.accepts("II") is None and spec.accepts(2) is None
    assert spec.accepts("IV") == "stage: 'IV' is not a listed category (I, II, III)"
    assert spec.accepts(3) == "stage: 3 is not the index of a listed category (0…2)"
    assert spec.accepts(1.5) is not None
    with pytest.raises(ValueError, match="distinct category codes"):
        InputSpec.model_validate({**spec.model_dump(), "categories": []})


# --- stratified models ------------------------------------------------------------------


@pytest.mark.req("SRS-DEV-002")
def test_a_stratified_model_loads_but_is_refused_for_scoring() -> None:
    model = load_model(demo_artifact(stratified=True))
    assert model.stratified and model.baseline_times.size == 0
    strata = model.artifact.baseline_survival.strata
    # hospital-d has a cell of 1..k-1 women on every time grid up to the year: it refuses at the source
    assert strata is not None and [s.label for s in strata] == ["hospital-a", "hospital-b", "hospital-c"]
    assert [d["site"] for d in model.artifact.training["dropped"]] == ["hospital-d"]
    x = np.where([i.kind == "boolean" for i in model.inputs], 1.0, model.center)
    with pytest.raises(ScoringError, match="stratified model.*not supported yet"):
        score(model, x[None, :])
    with pytest.raises(ScoringError, match="stratified"):
        survival_curve(model, x)


@pytest.mark.req("SRS-DEV-002")
def test_a_stratified_model_must_not_also_carry_a_shared_baseline() -> None:
    art = demo_artifact(stratified=True)
    art["baseline_survival"]["times"] = [1.0]
    art["baseline_survival"]["survival"] = [0.9]
    with pytest.raises(ModelError, match="baseline_survival: strata: a stratified model has empty times"):
        load_model(reseal(art))
    plain = copy.deepcopy(demo_artifact())
    plain["baseline_survival"]["times"], plain["baseline_survival"]["survival"] = [], []
    with pytest.raises(ModelError, match="needs a released baseline"):
        load_model(reseal(plain))

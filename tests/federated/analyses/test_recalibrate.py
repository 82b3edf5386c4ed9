"""The coordinator recalibrates a released model at one site and seals the updated model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from device.model import load_model
from federated import Site
from federated.analyses.recalibrate import (
    RecalibrationError,
    SiteUpdate,
    ask_site,
    check_reply,
    recalibrate,
    recalibrated_artifact,
)
from federated.analyses.runner import train
from federated.demo_study import write_demo_study
from federated.exceptions import SiteError
from federated.protocol.arrays import WireArray
from federated.study import StudySpec
from prognosis import Z95, CoxModel, seal, verify_sha256

pytestmark = pytest.mark.req("SRS-VAL-010")

Demo = tuple[StudySpec, list[pd.DataFrame], dict[str, Any]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    study = write_demo_study(tmp_path_factory.mktemp("recal-coord"))
    tables = [pd.read_csv(s.path).drop(columns="patient_id") for s in study.sites]
    _, artifact = train(study, sites=[Site(s.name, t) for s, t in zip(study.sites, tables, strict=True)])
    return study, tables, artifact


@pytest.fixture(scope="module")
def update(demo: Demo) -> SiteUpdate:
    study, tables, artifact = demo
    return ask_site(Site("external", tables[0]), artifact, study)


def test_the_new_model_is_the_old_one_scaled_with_the_sites_baseline(demo: Demo, update: SiteUpdate) -> None:
    study, _, artifact = demo
    new = recalibrated_artifact(artifact, study, update, model_id="m-recalibrated-external")
    old, model = CoxModel.from_artifact(artifact), CoxModel.from_artifact(new)
    assert verify_sha256(new) and model.ref == "m-recalibrated-external@1"
    s, r = update.reply.slope, update.reply
    np.testing.assert_array_equal(model.beta, s * old.beta)
    np.testing.assert_allclose(model.covariance, s * s * old.covariance, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(model.center, old.center)
    for name in ("inputs", "outcome", "intended_use", "ties", "penalty"):
        assert new[name] == artifact[name], name
    base = new["baseline_survival"]
    np.testing.assert_array_equal(base["times"], r.times.to_numpy())
    np.testing.assert_allclose(base["survival"], np.exp(-r.cumulative_hazard.to_numpy()), rtol=1e-15)
    np.testing.assert_array_equal(base["variance_increments"], r.variance_increments.to_numpy())
    np.testing.assert_array_equal(base["xbar_increments"], r.xbar_increments.to_numpy())
    assert base["min_cell_count"] == r.min_cell_count and model.interval_includes_baseline
    training = new["training"]
    assert training["sites"] == ["external"] and training["n"] == r.n and training["events"] == r.events
    assert training["time_grid"] == r.time_grid == artifact["training"]["time_grid"]
    assert training["secure_aggregation"] is False and training["loglik"] == r.loglik
    rec = training["recalibration"]
    assert rec["predecessor"] == {"model_id": old.model_id, "version": old.version, "sha256": old.sha256}
    assert rec["site"] == "external" and rec["slope"] == s and rec["slope_se"] == r.slope_se
    assert rec["slope_ci"] == pytest.approx([s - Z95 * r.slope_se, s + Z95 * r.slope_se], rel=1e-15)
    assert "not propagated" in rec["covariance"]
    # the device reads it, and its risk at the centre is 1 − exp(−H0) at the site's released step
    device = load_model(new)
    h = model.horizons[0]
    H0 = r.cumulative_hazard.to_numpy()[np.searchsorted(r.times.to_numpy(), h, side="right") - 1]
    np.testing.assert_allclose(model.predict_risk(old.center[None, :], [h])[0, 0], -np.expm1(-H0), rtol=1e-14)
    assert device.sha256 == new["sha256"]


def test_the_same_inputs_give_the_same_artifact(demo: Demo) -> None:
    study, tables, artifact = demo
    a = recalibrate(Site("external", tables[0]), artifact, study, model_id="m")
    b = recalibrate(Site("external", tables[0]), artifact, study, model_id="m")
    assert a["sha256"] == b["sha256"]


def test_a_site_that_refuses_the_models_grid_is_asked_the_next_coarser_rung(demo: Demo) -> None:
    study, tables, artifact = demo
    on_quarters = seal({**artifact, "training": {**artifact["training"], "time_grid": "quarter"}})
    got = ask_site(Site("external", tables[0]), on_quarters, study)
    assert got.reply.time_grid == "year" and got.rounds == 2  # quarters refused (a cell < k), then years


def test_a_refusal_on_the_last_rung_is_the_sites_one_line(demo: Demo) -> None:
    study, tables, artifact = demo
    with pytest.raises(SiteError, match="site 'small': a cell of the year grid"):
        ask_site(Site("small", tables[3]), artifact, study)


def test_exactly_one_site_is_asked(demo: Demo) -> None:
    study, tables, artifact = demo
    with pytest.raises(RecalibrationError, match="exactly one site, got 2"):
        ask_site([Site("a", tables[0]), Site("b", tables[1])], artifact, study)


def test_a_study_with_other_inputs_is_refused(demo: Demo, update: SiteUpdate) -> None:
    study, _, artifact = demo
    name = study.covariates[0]
    other = study.model_copy(update={"inputs": {**study.inputs, name: study.inputs[name].model_copy(
        update={"unit": "d"})}})
    with pytest.raises(RecalibrationError, match="inputs: the study's differ"):
        recalibrated_artifact(artifact, other, update, model_id="m")


@pytest.mark.parametrize("field, value, message", [
    ("times", [365.25, 365.25, 730.5, 1095.75, 1461.0], "not positive and increasing"),
    ("cumulative_hazard", [0.1, 0.05, 0.2, 0.3, 0.4], "not positive and non-decreasing"),
    ("xbar_increments", [[0.0]] * 5, "xbar_increments: shape"),
    ("variance_increments", [1.0, -1.0, 1.0, 1.0, 1.0], "negative"),
    ("time_grid", "month", "time_grid 'month'"),
    ("events", 7, "not multiples"),
])
def test_an_inconsistent_reply_is_refused_before_any_arithmetic(
        demo: Demo, update: SiteUpdate, field: str, value: Any, message: str) -> None:
    _, _, artifact = demo
    reply = update.reply
    assert reply.times.shape == (5,)
    bad = value if isinstance(value, (str, int)) else WireArray.from_numpy(np.array(value, dtype=float))
    with pytest.raises(RecalibrationError, match=message):
        check_reply(reply.model_copy(update={field: bad}), CoxModel.from_artifact(artifact), "year", "x")


def test_a_stratified_model_is_refused(demo: Demo) -> None:
    study, tables, _ = demo
    stratified = train(study.model_copy(update={"strata_by_site": True}),
                       sites=[Site(s.name, t) for s, t in zip(study.sites, tables, strict=True)])[1]
    with pytest.raises(RecalibrationError, match="stratified"):
        ask_site(Site("external", tables[0]), stratified, study)

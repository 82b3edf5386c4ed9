"""The one Cox model object: predictions pinned to lifelines, artifacts read and written byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from ledger.canonical import canonical_json, sealed_sha256
from prognosis import CoxModel, ModelError, seal, verify_sha256, wald
from tests.device.test_model import demo_artifact

pytestmark = pytest.mark.req("SRS-DEV-010")

ROSSI = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


@pytest.fixture(scope="module")
def fitted(rossi: pd.DataFrame) -> tuple[Any, CoxModel]:
    """lifelines' Cox fit of the Rossi data (Efron ties) and the same model as a CoxModel: its
    coefficients, covariance, centre (lifelines' covariate means) and baseline survival."""
    from lifelines import CoxPHFitter

    ref = CoxPHFitter().fit(rossi, "week", "arrest")
    base = ref.baseline_survival_.iloc[:, 0]
    model = CoxModel.from_arrays(ROSSI, ref.params_[ROSSI].to_numpy(), ref._norm_mean[ROSSI].to_numpy(),
                                 base.index.to_numpy(float), base.to_numpy(), [26.0, 52.0],
                                 covariance=ref.variance_matrix_.loc[ROSSI, ROSSI].to_numpy(),
                                 time_unit="week")
    return ref, model


def test_linear_predictor_survival_and_risk_equal_lifelines(fitted: tuple[Any, CoxModel],
                                                            rossi: pd.DataFrame) -> None:
    ref, model = fitted
    X = rossi[ROSSI].to_numpy(float)
    theirs_lp = ref.predict_log_partial_hazard(rossi).to_numpy()
    np.testing.assert_allclose(model.lp(X), theirs_lp, rtol=0, atol=1e-8)
    times = model.baseline_times
    theirs = ref.predict_survival_function(rossi, times=times).to_numpy().T  # (n, K)
    np.testing.assert_allclose(model.predict_survival(X, times), theirs, rtol=0, atol=1e-8)
    np.testing.assert_allclose(model.predict_risk(X, times), 1.0 - theirs, rtol=0, atol=1e-8)
    np.testing.assert_allclose(model.survival_at(model.lp(X), times), theirs, rtol=0, atol=1e-8)


def test_between_released_times_the_step_holds(fitted: tuple[Any, CoxModel], rossi: pd.DataFrame) -> None:
    """lifelines interpolates linearly between its times; the released model is a step function:
    between two released times it equals lifelines at the earlier one, before the first it is 1."""
    ref, model = fitted
    X = rossi[ROSSI].to_numpy(float)[:40]
    times = model.baseline_times
    mids = (times[:-1] + times[1:]) / 2
    at_left = ref.predict_survival_function(rossi.iloc[:40], times=times[:-1]).to_numpy().T
    np.testing.assert_allclose(model.predict_survival(X, mids), at_left, rtol=0, atol=1e-8)
    before = model.predict_survival(X, [0.0, times[0] / 2])
    np.testing.assert_array_equal(before, np.ones_like(before))
    np.testing.assert_array_equal(model.predict_risk(X, [0.0]), np.zeros((40, 1)))


def test_intervals_are_the_delta_method_on_the_log_log_scale(fitted: tuple[Any, CoxModel],
                                                            rossi: pd.DataFrame) -> None:
    """An independent computation of SRS-DEV-004's interval from lifelines' fit and covariance."""
    ref, model = fitted
    X = rossi[ROSSI].to_numpy(float)
    times = np.array([10.0, 26.0, 52.0])
    Z = X - ref._norm_mean[ROSSI].to_numpy()
    cov = ref.variance_matrix_.loc[ROSSI, ROSSI].to_numpy()
    sd = np.sqrt(np.einsum("ij,jk,ik->i", Z, cov, Z))
    H0 = ref.baseline_cumulative_hazard_.iloc[:, 0]
    h0 = np.array([H0[H0.index <= t].iloc[-1] for t in times])
    loglog = np.log(h0)[None, :] + ref.predict_log_partial_hazard(rossi).to_numpy()[:, None]
    z = norm.ppf(0.975)
    want_risk = 1 - np.exp(-np.exp(loglog))
    want_lo, want_hi = (1 - np.exp(-np.exp(loglog + s * z * sd[:, None])) for s in (-1, 1))
    lp, se = model.lp(X), model.se_lp(X)
    np.testing.assert_allclose(se, sd, rtol=1e-10, atol=1e-12)
    risk, lo, hi = model.risk_with_interval(lp, se, times)
    for got, want in ((risk, want_risk), (lo, want_lo), (hi, want_hi)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-8)
    surv, s_lo, s_hi = model.survival_with_interval(lp, se, times)
    np.testing.assert_allclose(surv, 1 - want_risk, rtol=0, atol=1e-8)
    np.testing.assert_allclose(s_lo, 1 - want_hi, rtol=0, atol=1e-8)
    np.testing.assert_allclose(s_hi, 1 - want_lo, rtol=0, atol=1e-8)
    np.testing.assert_allclose(model.contributions(X).sum(axis=1), lp, rtol=0, atol=1e-12)


def test_wald_statistics_equal_lifelines(fitted: tuple[Any, CoxModel]) -> None:
    ref, model = fitted
    se, ci, p = wald(model.beta, model.covariance)
    summary = ref.summary.loc[ROSSI]
    np.testing.assert_allclose(se, summary["se(coef)"], rtol=1e-12)
    np.testing.assert_allclose(ci[:, 0], summary["coef lower 95%"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(ci[:, 1], summary["coef upper 95%"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(p, summary["p"], rtol=1e-8, atol=1e-300)


def test_horizons_in_words(fitted: tuple[Any, CoxModel]) -> None:
    _, weekly = fitted
    assert weekly.horizon_text(26) == "26 weeks" and weekly.horizon_text(52) == "52 weeks"
    assert weekly.horizon_text(104) == "2 years" and weekly.horizon_text(1) == "1 week"
    assert weekly.horizon_text(78.3) == "1.5 years"  # 548 days


# --- reading and writing fedprog.model/v1 ------------------------------------------------


@pytest.mark.parametrize("stratified", [False, True])
def test_an_artifact_round_trips_byte_for_byte(stratified: bool, tmp_path: Path) -> None:
    raw = demo_artifact(stratified)
    path = tmp_path / "model.json"
    text = json.dumps(raw, indent=2, sort_keys=True) + "\n"
    path.write_text(text, encoding="utf-8")
    model = CoxModel.from_artifact(path)
    out = model.to_artifact()
    assert canonical_json(out) == canonical_json(raw)
    assert json.dumps(out, indent=2, sort_keys=True) + "\n" == text
    assert model.sha256 == raw["sha256"] == sealed_sha256(out) and verify_sha256(out)
    out["coefficients"][model.names[0]] += 1.0  # a copy: the model is unchanged
    assert model.to_artifact() == raw


def test_numbers_are_written_back_as_they_were_read() -> None:
    """An integer where the contract has a float (``"min": 27``) is kept as written: the file's
    hash is the model's identity, so the model never re-serialises its fields."""
    raw = demo_artifact()
    raw["inputs"][0]["min"] = 27
    sealed = seal(raw)
    model = CoxModel.from_artifact(sealed)
    assert model.inputs[0].min == 27.0 and canonical_json(model.to_artifact()) == canonical_json(sealed)


def test_a_stratified_model_has_one_baseline_per_stratum() -> None:
    raw = demo_artifact(stratified=True)
    model = CoxModel.from_artifact(raw)
    strata = raw["baseline_survival"]["strata"]
    assert [s.label for s in model.strata] == [s["label"] for s in strata]
    first = strata[0]
    t = np.array([0.0, first["times"][0], first["times"][3] + 0.5, 1e6])
    want = [1.0, first["survival"][0], first["survival"][3], first["survival"][-1]]
    np.testing.assert_array_equal(model.baseline_at(t, first["label"]), want)
    with pytest.raises(ValueError, match="is stratified: name one of its strata"):
        model.baseline_at(t)
    with pytest.raises(ValueError, match="has no stratum 'nowhere'"):
        model.baseline_at(t, "nowhere")


def test_from_arrays_is_sealed_and_checked() -> None:
    model = CoxModel.from_arrays(["a", "b"], [0.5, -0.2], [1.0, 2.0], [1.0, 3.0], [0.9, 0.8], [2.0])
    art = model.to_artifact()
    assert verify_sha256(art) and CoxModel.from_artifact(art).names == ("a", "b")
    with pytest.raises(ModelError, match="baseline_survival.survival: must be non-increasing"):
        CoxModel.from_arrays(["a"], [0.5], [1.0], [1.0, 3.0], [0.8, 0.9], [2.0])

"""The released logistic model: probabilities and 95% intervals pinned to statsmodels' GLM predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.special import expit as scipy_expit

from prognosis.logistic import LogisticModel, expit, logit

pytestmark = pytest.mark.req("SRS-MOD-013")

COLS = ["age", "tsize", "pnodes", "progrec", "estrec", "hormone_therapy", "postmenopausal"]


@pytest.fixture(scope="module")
def fitted(gbsg2_raw: pd.DataFrame) -> tuple[Any, np.ndarray, np.ndarray]:
    """statsmodels' logistic fit of tumour grade III on GBSG2, its design (n, p) and a reference
    patient (a 55-year-old postmenopausal woman, 25 mm tumour, 3 nodes, receptors 30/40, no therapy)."""
    x = gbsg2_raw[COLS].to_numpy(float)
    y = (gbsg2_raw["tgrade"] == 3).astype(int).to_numpy()
    res = sm.GLM(y, sm.add_constant(x), family=sm.families.Binomial()).fit(tol=1e-14, maxiter=200)
    return res, x, np.array([55.0, 25.0, 3.0, 30.0, 40.0, 0.0, 1.0])


def _centred_model(res: Any, center: np.ndarray) -> LogisticModel:
    """The same model given directly in its centred parametrisation: statsmodels refitted on x − c,
    whose intercept is the log-odds at c and whose covariance is that of (α, β)."""
    x = res.model.exog[:, 1:] - center
    ref = sm.GLM(res.model.endog, sm.add_constant(x), family=sm.families.Binomial()).fit(tol=1e-14)
    return LogisticModel(tuple(COLS), ref.params[0], ref.params[1:], ref.cov_params(), center)


def test_probability_and_interval_equal_statsmodels(fitted: tuple[Any, np.ndarray, np.ndarray]) -> None:
    res, x, center = fitted
    exog = sm.add_constant(x)
    frame = res.get_prediction(exog).summary_frame(alpha=0.05)
    linear = res.get_prediction(exog).linpred
    for model in (LogisticModel.from_fit(COLS, res.params, res.cov_params(), center),
                  _centred_model(res, center)):
        prob, lower, upper = model.probability_with_interval(x)
        assert np.max(np.abs(model.probability(x) - res.predict(exog))) <= 1e-8
        assert np.max(np.abs(prob - frame["mean"])) <= 1e-8
        assert np.max(np.abs(lower - frame["mean_ci_lower"])) <= 1e-8
        assert np.max(np.abs(upper - frame["mean_ci_upper"])) <= 1e-8
        assert np.max(np.abs(model.lp(x) - linear.predicted_mean)) <= 1e-8
        assert np.max(np.abs(model.se_lp(x) - linear.se_mean)) <= 1e-8
        assert np.all((lower < prob) & (prob < upper))


def test_the_intercept_is_the_log_odds_of_the_reference_patient(
        fitted: tuple[Any, np.ndarray, np.ndarray]) -> None:
    res, _, center = fitted
    model = LogisticModel.from_fit(COLS, res.params, res.cov_params(), center)
    exog = np.r_[1.0, center][None, :]
    assert abs(model.intercept - res.get_prediction(exog).linpred.predicted_mean[0]) <= 1e-10
    assert abs(np.sqrt(model.covariance[0, 0]) - res.get_prediction(exog).linpred.se_mean[0]) <= 1e-10
    np.testing.assert_array_equal(model.contributions(center[None, :]), np.zeros((1, len(COLS))))


def test_contributions_sum_to_the_linear_predictor_minus_the_intercept(
        fitted: tuple[Any, np.ndarray, np.ndarray]) -> None:
    res, x, center = fitted
    model = LogisticModel.from_fit(COLS, res.params, res.cov_params(), center)
    parts = model.contributions(x)
    assert parts.shape == x.shape
    assert np.max(np.abs(parts.sum(axis=1) - (model.lp(x) - model.intercept))) <= 1e-12
    np.testing.assert_allclose(parts[:, 0], res.params[1] * (x[:, 0] - 55.0), rtol=1e-12)


def test_expit_is_stable_and_exact() -> None:
    eta = np.linspace(-800, 800, 16001)
    got = expit(eta)  # no overflow warning (pytest turns warnings into errors)
    normal = eta >= -700  # e^η is a normal double: scipy's expit to the last bits
    want = scipy_expit(eta[normal])
    assert np.max(np.abs(got[normal] - want) / want) <= 1e-15
    # below, e^η is subnormal or 0: expit = e^η to rounding (scipy flushes these to 0)
    np.testing.assert_array_equal(got[~normal], np.exp(eta[~normal]))
    np.testing.assert_array_equal(expit(np.array([-1e300, 0.0, 1e300])), [0.0, 0.5, 1.0])
    q = np.array([1e-300, 1e-10, 0.25, 0.5, 0.9, 1 - 1e-10])
    np.testing.assert_allclose(expit(logit(q)), q, rtol=1e-6)
    assert logit(np.array([0.0]))[0] == -np.inf and logit(np.array([1.0]))[0] == np.inf


def test_inconsistent_arrays_are_refused() -> None:
    two, zero2 = np.array([1.0, 2.0]), np.zeros(2)
    with pytest.raises(ValueError, match="covariance must have shape"):
        LogisticModel(("a", "b"), 0.0, two, np.eye(2), zero2)
    with pytest.raises(ValueError, match="beta must have shape"):
        LogisticModel(("a", "b"), 0.0, np.array([1.0]), np.eye(3), zero2)
    with pytest.raises(ValueError, match="symmetric"):
        LogisticModel(("a",), 0.0, np.array([1.0]), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(1))
    model = LogisticModel(("a", "b"), 0.0, two, np.eye(3), zero2)
    with pytest.raises(ValueError, match=r"X must have shape \(n, 2\)"):
        model.lp(np.zeros((3, 3)))
    assert model.beta.flags.writeable is False and model.covariance.flags.writeable is False

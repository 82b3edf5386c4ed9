"""The device scores a released logistic model: the probability of its outcome at its one horizon with
the logit-scale 95% Wald interval (statsmodels' GLM prediction), no other horizon, the same envelope."""

from __future__ import annotations

import numpy as np
import pytest

from device.model import LogisticModel, load_model
from device.scoring import ScoringError, check_inputs, score, survival_curve
from prognosis.logistic import expit
from tests.device.logistic_model import COVARIATES, glm_prediction, logistic_artifact, table

pytestmark = pytest.mark.req("SRS-MOD-027")


@pytest.fixture(scope="module")
def model() -> LogisticModel:
    loaded = load_model(logistic_artifact())
    assert isinstance(loaded, LogisticModel)
    return loaded


def test_the_probability_and_interval_equal_statsmodels(model: LogisticModel) -> None:
    X = table()[list(COVARIATES)].to_numpy(dtype=float)
    s = score(model, X)
    ref = glm_prediction(X)
    assert s.kind == "logistic" and s.horizons.tolist() == [1.0] and s.risk.shape == (len(X), 1)
    np.testing.assert_array_equal(s.risk[:, 0], model.probability(X))
    assert np.max(np.abs(s.risk[:, 0] - ref["mean"].to_numpy())) <= 1e-8
    assert np.max(np.abs(s.lower[:, 0] - ref["mean_ci_lower"].to_numpy())) <= 1e-8
    assert np.max(np.abs(s.upper[:, 0] - ref["mean_ci_upper"].to_numpy())) <= 1e-8
    assert s.interval.scale == "logit" and s.interval.complete
    upper = expit(s.lp + 1.959963984540054 * s.interval.se[:, 0])
    np.testing.assert_allclose(upper, s.upper[:, 0], rtol=1e-14)
    assert s.ratio == "odds" and s.names == model.effects
    assert np.max(np.abs(s.contributions.sum(axis=1) - s.log_ratio)) <= 1e-12
    np.testing.assert_allclose(s.log_ratio, s.lp - model.intercept, rtol=0, atol=1e-12)
    assert not np.isnan(np.concatenate([s.risk.ravel(), s.lp, s.se_lp, s.interval.se.ravel()])).any()


def test_only_the_one_horizon_is_scored(model: LogisticModel) -> None:
    x = model.reference[None, :]
    np.testing.assert_array_equal(score(model, x, [1.0, 1.0]).risk, [[expit(model.intercept)] * 2])
    for h in (0.5, 2.0, 365.25):
        with pytest.raises(ScoringError) as err:
            score(model, x, [1.0, h])
        assert str(err.value) == (f"horizon {h:g} day: grade3@1 predicts grade 3 tumour only at 1 day, "
                                  "when it is recorded; the device neither extrapolates nor interpolates")
    with pytest.raises(ScoringError, match="has no survival curve"):
        survival_curve(model, model.reference)


def test_inputs_outside_the_envelope_are_refused_as_for_a_cox_model(model: LogisticModel) -> None:
    X = np.repeat(model.reference[None, :], 3, axis=0)
    X[1, 1] = 15.0  # positive nodes: validated 1-14
    X[2, 0] = 90.0  # age: 27-79
    reasons = check_inputs(model, X)
    assert reasons[0] is None and "Positive lymph nodes" in str(reasons[1]) and "Age" in str(reasons[2])
    with pytest.raises(ScoringError, match=r"^row 1: Positive lymph nodes: 15 is outside .*"
                                           r"\(and 1 more rows; see check_inputs\)$"):
        score(model, X)
    with pytest.raises(ScoringError, match=r"expected an array of shape \(n, 5\)"):
        score(model, X[:, :4])

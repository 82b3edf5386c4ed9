"""A site's binary validation metrics against scikit-learn (C, Brier) and statsmodels (calibration)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.metrics import brier_score_loss, roc_auc_score

from federated.site import binary_performance as bp
from prognosis.logistic import LogisticModel, expit

pytestmark = pytest.mark.req("SRS-MOD-014")

COLS = ["age", "tsize", "pnodes", "progrec", "estrec", "hormone_therapy", "postmenopausal"]
Case = tuple[np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def external(gbsg2_raw: pd.DataFrame) -> Case:
    """A logistic model of tumour grade III trained on 60 % of GBSG2 (statsmodels) and evaluated on
    the other 40 %: the evaluation rows' outcome and linear predictor."""
    df = gbsg2_raw.assign(y=(gbsg2_raw["tgrade"] == 3).astype(int))
    rng = np.random.default_rng(11)
    held = rng.permutation(len(df))[: int(0.4 * len(df))]
    test = df.iloc[held]
    train = df.drop(index=df.index[held])
    res = sm.GLM(train["y"].to_numpy(), sm.add_constant(train[COLS].to_numpy(float)),
                 family=sm.families.Binomial()).fit(tol=1e-14)
    model = LogisticModel.from_fit(COLS, res.params, res.cov_params(), train[COLS].mean().to_numpy())
    return test["y"].to_numpy(), model.lp(test[COLS].to_numpy(float))


@pytest.fixture(scope="module")
def miscalibrated() -> Case:
    """3000 synthetic patients whose predictions are too extreme and too high: true log-odds
    −1.5 + x·b, predicted −0.9 + 1.6 x·b (seeded)."""
    rng = np.random.default_rng(23)
    x = rng.normal(size=(3000, 4))
    xb = x @ np.array([0.8, -0.5, 0.3, 0.2])
    y = rng.binomial(1, expit(-1.5 + xb))
    return y, -0.9 + 1.6 * xb


def _cases(external: Case, miscalibrated: Case) -> list[Case]:
    return [external, miscalibrated]


def _statsmodels_calibration(y: np.ndarray, lp: np.ndarray) -> tuple[float, float]:
    ones = np.ones((y.size, 1))
    intercept = sm.GLM(y, ones, family=sm.families.Binomial(), offset=lp).fit(tol=1e-14).params[0]
    slope = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit(tol=1e-14).params[1]
    return float(intercept), float(slope)


def test_c_statistic_equals_roc_auc_with_ties(external: Case, miscalibrated: Case) -> None:
    for y, lp in _cases(external, miscalibrated):
        prob = expit(lp)
        tied = np.round(prob, 2)  # many tied predictions: each event/non-event tie counts ½
        assert np.unique(tied).size < tied.size / 3
        for score in (lp, prob, tied):
            assert abs(bp.c_statistic(y, score) - roc_auc_score(y, score)) <= 1e-12
    y = np.array([0, 1, 0, 1])
    assert bp.c_statistic(y, np.array([0.1, 0.1, 0.1, 0.1])) == 0.5
    assert bp.c_statistic(y, np.array([0.1, 0.9, 0.2, 0.2])) == 0.875  # pairs: 1, 1, ½, 1 over 4 → 3.5/4


def test_brier_score_equals_sklearn(external: Case, miscalibrated: Case) -> None:
    for y, lp in _cases(external, miscalibrated):
        prob = expit(lp)
        assert abs(bp.brier_score(y, prob) - brier_score_loss(y, prob)) <= 1e-12


def test_e_o_ratio_is_expected_over_observed(external: Case, miscalibrated: Case) -> None:
    y, lp = miscalibrated
    prob = expit(lp)
    assert bp.e_o_ratio(y, prob) == pytest.approx(prob.mean() / y.mean(), rel=1e-12)
    assert bp.e_o_ratio(y, prob) > 1.2  # predictions shifted up on the logit scale: E > O
    y_ext, lp_ext = external
    assert 0.8 < bp.e_o_ratio(y_ext, expit(lp_ext)) < 1.25


def test_calibration_intercept_and_slope_equal_statsmodels(external: Case, miscalibrated: Case) -> None:
    for y, lp in _cases(external, miscalibrated):
        intercept, slope = _statsmodels_calibration(y, lp)
        assert abs(bp.calibration_intercept(y, lp) - intercept) <= 1e-6
        assert abs(bp.calibration_slope(y, lp) - slope) <= 1e-6
    y, lp = miscalibrated
    assert bp.calibration_slope(y, lp) == pytest.approx(1 / 1.6, abs=0.1)  # too extreme: slope < 1
    assert bp.calibration_intercept(y, lp) < -0.2                          # too high: intercept < 0


def test_metrics_from_the_linear_predictor_or_the_probability(miscalibrated: Case) -> None:
    y, lp = miscalibrated
    prob = expit(lp)
    from_lp, none = bp.metrics(y, lp=lp)
    from_p, none_p = bp.metrics(y, probability=prob)
    assert none == {} and none_p == {} and set(from_lp) == set(bp.SCALES) == set(from_p)
    intercept, slope = _statsmodels_calibration(y, lp)
    assert abs(from_lp["c_statistic"] - roc_auc_score(y, lp)) <= 1e-12
    assert abs(from_lp["brier"] - brier_score_loss(y, prob)) <= 1e-12
    assert abs(from_lp["calibration_intercept"] - intercept) <= 1e-6
    assert abs(from_lp["calibration_slope"] - slope) <= 1e-6
    for name, value in from_p.items():
        assert value == pytest.approx(from_lp[name], abs=1e-9), name


def test_a_metric_that_cannot_be_computed_comes_with_a_masked_reason() -> None:
    y0 = np.zeros(40, dtype=int)
    values, reasons = bp.metrics(y0, lp=np.linspace(-2, 2, 40))
    assert set(values) == {"brier"} and set(reasons) == set(bp.SCALES) - {"brier"}
    assert all(not any(ch.isdigit() for ch in r) for r in reasons.values()), reasons
    assert "outcomes are #" in reasons["calibration_intercept"]
    # a probability of exactly 1 has no logit: the calibration fits are refused, the rest computed
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    prob = np.array([0.1, 1.0, 0.3, 0.8, 0.6, 0.2, 0.7, 0.4])
    values, reasons = bp.metrics(y, probability=prob)
    assert set(reasons) == {"calibration_intercept", "calibration_slope"}
    assert "finite" in reasons["calibration_slope"]
    assert abs(values["c_statistic"] - roc_auc_score(y, prob)) <= 1e-12
    # a linear predictor that separates the outcome: no finite slope
    values, reasons = bp.metrics(y, lp=np.where(y == 1, 1.0, -1.0) + np.linspace(0, 0.1, 8))
    assert "separated" in reasons["calibration_slope"] and values["c_statistic"] == 1.0
    with pytest.raises(ValueError, match="either"):
        bp.metrics(y, lp=prob, probability=prob)

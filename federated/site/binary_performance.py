"""Performance of a binary-outcome (logistic) model on one group of patients (pure; runs at a site).

For rows with outcome y_i ∈ {0, 1}, predicted probability p_i and linear predictor
η_i = logit p_i (Steyerberg 2019, *Clinical Prediction Models*, 2nd ed., Springer, ch. 15;
Van Calster et al. 2016, *J Clin Epidemiol* 74:167–176, "A calibration hierarchy for risk models"):

* ``c_statistic`` — the concordance statistic: the probability that a random patient with the
  event has a higher prediction than a random one without, ties counted ½. It is the area under
  the ROC curve, and Harrell's C for a binary outcome (Hanley & McNeil 1982, *Radiology* 143:29;
  Harrell, Lee & Mark 1996, *Stat Med* 15:361). Computed as the Mann–Whitney statistic with
  mid-ranks: C = (R₁ − n₁(n₁ + 1)/2) / (n₁ n₀), R₁ the rank sum of the n₁ events.
* ``brier`` — the Brier (1950) score (1/n) Σ (p_i − y_i)² (0 is perfect).
* ``e_o_ratio`` — expected over observed events, E/O = Σ p_i / Σ y_i (1 is perfect; > 1 means
  the model over-predicts risk). The orientation of the survival metric of
  :mod:`federated.site.performance` (E/O = mean predicted risk / Kaplan–Meier risk).
* ``calibration_intercept`` — calibration-in-the-large: α̂ in logit P(y = 1) = α + η, η as an
  offset (0 is perfect; > 0 means the model under-predicts on average).
* ``calibration_slope`` — b̂ in logit P(y = 1) = a + b η (1 is perfect; < 1 means predictions
  too extreme, the signature of overfitting).

The two calibration fits are maximum-likelihood logistic regressions by the federated engine's own
Newton–Raphson (:func:`federated.logistic_math.newton` over
:func:`federated.logistic_math.site_sums`, the offset carried in the sums).

:func:`metrics` returns every metric that can be computed and, for the rest (no events, no
non-events, a probability of exactly 0 or 1 whose logit is infinite, a separated calibration fit),
a reason with every number masked (reasons leave the site); never a NaN.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

import numpy as np

from federated.exceptions import FederatedError
from federated.logistic_math import newton, site_sums
from prognosis.logistic import expit, logit

#: metric → the scale its standard error and any pooling are on (Debray et al. 2017, BMJ 356:i6460:
#: logit for C statistics, log for O:E ratios; the Brier score and calibration coefficients as they are)
Scale = Literal["logit", "log", "identity"]
SCALES: dict[str, Scale] = {"c_statistic": "logit", "brier": "identity", "e_o_ratio": "log",
                            "calibration_intercept": "identity", "calibration_slope": "identity"}
#: errors a metric raises for rows it cannot use
METRIC_ERRORS = (ValueError, FloatingPointError, ZeroDivisionError, FederatedError)


def _outcome(y: np.ndarray) -> np.ndarray:
    yy = np.asarray(y, dtype=float)
    if yy.ndim != 1 or yy.size == 0:
        raise ValueError("the outcome must be a non-empty 1-d array")
    if not np.all((yy == 0) | (yy == 1)):
        raise ValueError("the outcome must be 0 or 1")
    return yy


def _paired(y: np.ndarray, values: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    yy = _outcome(y)
    v = np.asarray(values, dtype=float)
    if v.shape != yy.shape:
        raise ValueError(f"{what} must have one value per outcome")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what} must be finite")
    return yy, v


def _probabilities(y: np.ndarray, probability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    yy, p = _paired(y, probability, "the predicted probability")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("the predicted probability must lie in [0, 1]")
    return yy, p


def c_statistic(y: np.ndarray, score: np.ndarray) -> float:
    """C = P(score_event > score_non-event) + ½ P(tie) over all event/non-event pairs (module docstring).

    ``score`` is any monotone function of the risk (the probability or the linear predictor).

    Raises
    ------
    ValueError
        No events or no non-events (no pair to compare).
    """
    yy, s = _paired(y, score, "the score")
    n1 = float(yy.sum())
    n0 = float(yy.size) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("the C statistic needs patients with and without the event")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    mid_rank = np.cumsum(counts) - 0.5 * (counts - 1)      # 1-based mid-rank of each distinct score
    rank_sum = float(mid_rank[inverse][yy == 1].sum())
    return (rank_sum - 0.5 * n1 * (n1 + 1.0)) / (n1 * n0)


def brier_score(y: np.ndarray, probability: np.ndarray) -> float:
    """Brier score (1/n) Σ (p_i − y_i)²."""
    yy, p = _probabilities(y, probability)
    return float(np.mean((p - yy) ** 2))


def e_o_ratio(y: np.ndarray, probability: np.ndarray) -> float:
    """Expected over observed events Σ p_i / Σ y_i.

    Raises
    ------
    ZeroDivisionError
        No observed events.
    """
    yy, p = _probabilities(y, probability)
    observed = float(yy.sum())
    if observed == 0:
        raise ZeroDivisionError("E/O needs at least one observed event")
    return float(p.sum()) / observed


def calibration_intercept(y: np.ndarray, lp: np.ndarray) -> float:
    """Calibration-in-the-large α̂: the maximum-likelihood intercept of logit P(y = 1) = α + η with
    the linear predictor η = ``lp`` as an offset.

    Raises
    ------
    SingularDesignError
        All outcomes equal (α̂ = ±∞).
    """
    yy, eta = _paired(y, lp, "the linear predictor")
    x = np.empty((yy.size, 0))
    return float(newton(lambda b: site_sums(x, yy, b, offset=eta), 0).coef[0])


def calibration_slope(y: np.ndarray, lp: np.ndarray) -> float:
    """Calibration slope b̂: the maximum-likelihood coefficient of η = ``lp`` in
    logit P(y = 1) = a + b η.

    Raises
    ------
    SingularDesignError
        A constant η, all outcomes equal, or η separating the outcome (b̂ = ±∞).
    """
    yy, eta = _paired(y, lp, "the linear predictor")
    x = eta[:, None]
    return float(newton(lambda b: site_sums(x, yy, b), 1).coef[1])


def _masked(exc: Exception) -> str:
    """The error's first line with every number masked: a reason leaves the site."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: " + re.sub(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", "#", text)


def metrics(y: np.ndarray, *, probability: np.ndarray | None = None, lp: np.ndarray | None = None
            ) -> tuple[dict[str, float], dict[str, str]]:
    """Every metric of :data:`SCALES` on the rows: finite values by name, and reasons for the rest.

    Give the linear predictor ``lp`` (η; p = expit η) or the ``probability`` p (η = logit p, so a
    probability of exactly 0 or 1 leaves the calibration fits without a value), not both.
    """
    if (probability is None) == (lp is None):
        raise ValueError("give either the predicted probability or the linear predictor")
    values: dict[str, float] = {}
    reasons: dict[str, str] = {}
    if lp is not None:
        eta = np.asarray(lp, dtype=float)
        prob = expit(eta)
    else:
        prob = np.asarray(probability, dtype=float)
        eta = logit(prob)

    def attempt(name: str, compute: Callable[[], float]) -> None:
        try:
            with np.errstate(divide="raise", over="raise", invalid="raise", under="ignore"):
                value = float(compute())
        except METRIC_ERRORS as exc:
            reasons[name] = _masked(exc)
            return
        if np.isfinite(value):
            values[name] = value
        else:
            reasons[name] = "not finite"

    attempt("c_statistic", lambda: c_statistic(y, eta if lp is not None else prob))
    attempt("brier", lambda: brier_score(y, prob))
    attempt("e_o_ratio", lambda: e_o_ratio(y, prob))
    attempt("calibration_intercept", lambda: calibration_intercept(y, eta))
    attempt("calibration_slope", lambda: calibration_slope(y, eta))
    return values, reasons


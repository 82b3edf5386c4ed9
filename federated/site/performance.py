"""Performance metrics of a Cox model on one group of patients (pure; runs at a site).

Every discrimination and accuracy metric is scikit-survival's own function, called on the
group's rows; nothing here re-implements one. With η = β·(x − c) the linear predictor and
S(t | x) = S0(t) ** exp(η) the model's survival:

* ``harrell_c`` — Harrell's concordance (Harrell et al. 1982, JAMA 247:2543; Harrell, Lee &
  Mark 1996, Stat Med 15:361): :func:`sksurv.metrics.concordance_index_censored` on η.
* ``uno_c`` — Uno's IPCW concordance (Uno et al. 2011, Stat Med 30:1105):
  :func:`sksurv.metrics.concordance_index_ipcw` on η, the censoring distribution estimated
  from the same rows, truncated at τ = the largest horizon inside the group's follow-up
  (beyond it the censoring weights are unstable or undefined).
* ``td_auc`` at each horizon — cumulative/dynamic AUC (Heagerty, Lumley & Pepe 2000,
  Biometrics 56:337; IPCW estimator of Uno et al. 2007, JASA 102:1212):
  :func:`sksurv.metrics.cumulative_dynamic_auc` on η (a monotone transform of the risk), with
  follow-up censored just after the largest horizon (see :func:`_censored_after`).
* ``brier`` at each horizon and ``integrated_brier`` over the public grid points inside the
  follow-up up to τ — IPCW Brier score (Graf et al. 1999, Stat Med 18:2529):
  :func:`sksurv.metrics.brier_score`, :func:`sksurv.metrics.integrated_brier_score`.
* Calibration at each horizon h (Steyerberg, *Clinical Prediction Models*, 2nd ed., §15.3):
  expected E = mean predicted risk 1 − S(h | x); observed O = 1 − KM(h)
  (:func:`sksurv.nonparametric.kaplan_meier_estimator`); ``e_o_ratio`` = E / O (1 is perfect);
  ``calibration_intercept`` = log(O / E), calibration-in-the-large on the log scale (0 is perfect).
* ``calibration_slope`` — the coefficient γ of η refitted as the only covariate of a Cox model
  on the rows (Royston & Altman 2013, BMC Med Res Methodol 13:33; 1 is perfect, < 1 means
  predictions too extreme). Without a horizon on all follow-up; at horizon h with follow-up
  administratively censored at h. Fitted with the federated engine's own exact Efron
  partial likelihood (:mod:`federated.cox_math`, :mod:`federated.site.local_stats`).

A metric that cannot be computed on the rows (a horizon beyond follow-up, no comparable pair,
a censoring weight of zero, a non-converging slope) is returned with its reason, never as NaN;
a reason quoting a library's error has every number in it masked (it leaves the site).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np

from federated import cox_math as cm
from federated.site import local_stats as ls
from prognosis import CoxModel, step_at

#: metric → the scale its bootstrap standard error (and any pooling) is on (Debray et al. 2017,
#: BMJ 356:i6460: logit for C statistics, log for O:E ratios, the slope as it is)
Scale = Literal["logit", "log", "identity"]
SCALES: dict[str, Scale] = {
    "harrell_c": "logit", "uno_c": "logit", "td_auc": "logit", "brier": "identity",
    "integrated_brier": "identity", "calibration_slope": "identity",
    "calibration_intercept": "identity", "e_o_ratio": "log",
}
#: metrics given per horizon (the others once, ``horizon = None``; the slope both ways)
PER_HORIZON = ("td_auc", "brier", "e_o_ratio", "calibration_intercept", "calibration_slope")

Key = tuple[str, float | None]
#: errors scikit-survival and the slope fit raise for rows a metric cannot use
METRIC_ERRORS = (ValueError, ZeroDivisionError, FloatingPointError, np.linalg.LinAlgError)


@dataclass(frozen=True)
class Rows:
    """One group's rows sorted by time: time, event (0/1) and linear predictor, each (n,)."""

    time: np.ndarray
    event: np.ndarray
    lp: np.ndarray

    @classmethod
    def sorted(cls, time: np.ndarray, event: np.ndarray, lp: np.ndarray) -> Rows:
        order = np.argsort(time, kind="stable")
        return cls(np.asarray(time, float)[order], np.asarray(event, np.int64)[order],
                   np.asarray(lp, float)[order])

    def take(self, idx: np.ndarray) -> Rows:
        """The rows at sorted indices ``idx`` (still sorted by time)."""
        return Rows(self.time[idx], self.event[idx], self.lp[idx])

    @property
    def n(self) -> int:
        return int(self.time.size)

    @property
    def events(self) -> int:
        return int(self.event.sum())


def inside_followup(rows: Rows, horizons: Sequence[float], min_cell: int = 5) -> list[float]:
    """The horizons with at least ``min_cell`` patients followed to or past them and at least
    ``min_cell`` whose follow-up ended by them. A count rule, not the rows' first and last times:
    asking about chosen horizons must not reveal one patient's follow-up (disclosure control)."""
    t = rows.time
    return [h for h in horizons if int((t >= h).sum()) >= min_cell and int((t <= h).sum()) >= min_cell]


def truncation(rows: Rows, horizons: Sequence[float], min_cell: int = 5) -> float | None:
    """τ: the largest horizon inside the rows' follow-up by :func:`inside_followup` (or ``None``)."""
    inside = inside_followup(rows, horizons, min_cell)
    return max(inside) if inside else None


def metrics(rows: Rows, model: CoxModel, horizons: Sequence[float], grid: np.ndarray, tau: float | None,
            min_cell: int = 5) -> tuple[dict[Key, float], dict[Key, str]]:
    """Every metric of ``model`` at ``horizons`` on ``rows``: finite values by (metric, horizon), and
    reasons for the rest.

    ``tau`` (see :func:`truncation`) is fixed by the caller so that bootstrap replicates use the
    same truncation as the estimate; ``grid`` is the public integrated-Brier grid.
    """
    from sksurv.metrics import (
        brier_score,
        concordance_index_censored,
        concordance_index_ipcw,
        cumulative_dynamic_auc,
        integrated_brier_score,
    )
    from sksurv.util import Surv

    values: dict[Key, float] = {}
    reasons: dict[Key, str] = {}
    ev = rows.event.astype(bool)
    y = Surv.from_arrays(ev, rows.time)
    t_min, t_max = float(rows.time.min()), float(rows.time.max())
    inside = inside_followup(rows, horizons, min_cell)
    for h in horizons:
        if h not in inside:
            for m in PER_HORIZON:
                reasons[(m, h)] = f"horizon {h:g} is outside the follow-up"

    def attempt(keys: list[Key], compute: Callable[[], Sequence[float]]) -> None:
        if not keys:
            return
        try:
            with np.errstate(divide="raise", over="raise", invalid="raise", under="ignore"):
                got = [float(v) for v in compute()]
        except METRIC_ERRORS as exc:
            reasons.update({k: _reason(exc) for k in keys})
            return
        for k, v in zip(keys, got, strict=True):
            if np.isfinite(v):
                values[k] = v
            else:
                reasons[k] = "not finite"

    hs = np.array(inside)
    attempt([("harrell_c", None)], lambda: [concordance_index_censored(ev, rows.time, rows.lp)[0]])
    if tau is None or tau >= t_max:
        reasons[("uno_c", None)] = reasons[("integrated_brier", None)] = "no horizon inside the follow-up"
    else:
        attempt([("uno_c", None)], lambda: [concordance_index_ipcw(y, y, rows.lp, tau=tau)[0]])
        # grid points with at least min_cell patients followed past them and min_cell whose follow-up
        # ended by them: a count rule, so the grid used says nothing of one patient's time
        ended = np.searchsorted(rows.time, grid, side="right")
        g = grid[(ended >= min_cell) & (rows.n - ended >= min_cell) & (grid <= tau)
                 & (grid >= t_min) & (grid < t_max)]
        attempt([("integrated_brier", None)],
                lambda: [integrated_brier_score(y, y, model.survival_at(rows.lp, g), g)])
    if inside:
        y_auc = _censored_after(rows, max(inside))
        attempt([("td_auc", h) for h in inside], lambda: cumulative_dynamic_auc(y_auc, y_auc, rows.lp, hs)[0])
    attempt([("brier", h) for h in inside],
            lambda: brier_score(y, y, model.survival_at(rows.lp, hs), hs)[1])
    attempt([("calibration_slope", None)], lambda: [cox_slope(rows.time, rows.event, rows.lp)])
    keys: list[Key] = [(m, h) for h in inside for m in ("e_o_ratio", "calibration_intercept")]
    attempt(keys, partial(_calibration, rows, model, hs))
    for h in inside:
        attempt([("calibration_slope", h)], partial(_slope_at, rows, h))
    return values, reasons


def _reason(exc: Exception) -> str:
    """A library's error message with every number masked: reasons leave the site, and a message
    such as "times must be within [8.0; 2659.0[" would quote patients' follow-up times."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: " + re.sub(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", "#", text)


def _censored_after(rows: Rows, horizon: float) -> np.ndarray:
    """The rows as a scikit-survival target with follow-up censored midway between ``horizon`` and
    the next observed time: the AUC at every horizon up to ``horizon`` is unchanged (same cases,
    controls and weights), but an event at the last time, whose censoring weight is undefined
    (Ĝ = 0) and which plays no role, no longer stops the computation."""
    from sksurv.util import Surv

    later = rows.time[rows.time > horizon]
    cut = horizon + 0.5 * (later.min() - horizon)
    return Surv.from_arrays(rows.event.astype(bool) & (rows.time <= cut), np.minimum(rows.time, cut))


def observed_risk(rows: Rows, horizons: np.ndarray) -> np.ndarray:
    """1 − KM(h) (Kaplan & Meier 1958) by :func:`sksurv.nonparametric.kaplan_meier_estimator`."""
    from sksurv.nonparametric import kaplan_meier_estimator

    times, surv = kaplan_meier_estimator(rows.event.astype(bool), rows.time)
    return np.asarray(1.0 - step_at(times, surv, horizons))


def _slope_at(rows: Rows, horizon: float) -> list[float]:
    """The calibration slope with follow-up administratively censored at ``horizon``."""
    return [cox_slope(np.minimum(rows.time, horizon), rows.event * (rows.time <= horizon), rows.lp)]


def _calibration(rows: Rows, model: CoxModel, horizons: np.ndarray) -> list[float]:
    """E/O and log(O/E) at each horizon (interleaved); refused when O or E is 0."""
    observed = observed_risk(rows, horizons)
    expected = np.mean(1.0 - model.survival_at(rows.lp, horizons), axis=0)
    if np.any(observed <= 0.0) or np.any(expected <= 0.0):
        raise ZeroDivisionError("no observed or no expected risk by a horizon")
    return np.column_stack([expected / observed, np.log(observed / expected)]).ravel().tolist()


def cox_slope(time: np.ndarray, event: np.ndarray, lp: np.ndarray, *, tol: float = 1e-10,
              max_iter: int = 50) -> float:
    """Calibration slope: the Efron (1977) partial-likelihood estimate of γ in
    h(t | x) = h0(t) exp(γ η) (Royston & Altman 2013), by Newton–Raphson (from γ = 1) with step
    halving.

    ``time`` must be sorted; η is centred internally (γ does not change).

    Raises
    ------
    FloatingPointError
        No events, a constant η, a monotone likelihood (:func:`monotone_likelihood`: no finite
        estimate), or no convergence.
    """
    d = np.asarray(event, dtype=np.int64)
    z = (lp - lp.mean())[:, None]
    grid = np.unique(time[d == 1])
    if grid.size == 0 or np.ptp(z) == 0:
        raise FloatingPointError("calibration slope needs events and a non-constant linear predictor")
    if monotone_likelihood(time, d, lp):
        raise FloatingPointError("calibration slope: the partial likelihood is monotone (no finite estimate)")
    dk = ls.event_counts(time, d, grid)
    z_events = z[d == 1].sum(axis=0)

    def loglik(gamma: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        w = np.exp(z @ gamma)
        s0, s1, t0, t1 = ls.risk_set_sums(time, d, z * w[:, None], w, grid, efron=True)
        terms = cm.tie_terms(dk, s0, t0)
        ll, score = cm.loglik_and_score(gamma, z_events, s1, t1, terms, 0.0)
        info = cm.information(ls.information_sum(time, d, z, w, grid, terms.a, terms.b), s1, t1, terms, 0.0)
        return ll, score, info

    gamma = np.ones(1)  # start at perfect calibration: fewer iterations than from 0
    ll, score, info = loglik(gamma)
    for _ in range(max_iter):
        step = score / info[0, 0]
        for _halving in range(30):
            new_ll, new_score, new_info = loglik(gamma + step)
            if np.isfinite(new_ll) and new_ll >= ll - 1e-12 * max(1.0, abs(ll)):
                break
            step = step / 2
        else:
            raise FloatingPointError("calibration slope: no step improves the likelihood")
        gamma, ll, score, info = gamma + step, new_ll, new_score, new_info
        if abs(step[0]) < tol:
            return float(gamma[0])
    raise FloatingPointError(f"calibration slope did not converge in {max_iter} iterations")


def monotone_likelihood(time: np.ndarray, event: np.ndarray, lp: np.ndarray) -> bool:
    """Whether the partial likelihood of γ is monotone, so that γ̂ is ±∞ (Bryson & Johnson 1981,
    J Chron Dis 34:327): at no event time does another patient at risk have a larger η than an
    event (γ̂ = +∞), or at none a smaller one (γ̂ = −∞). Breslow's and Efron's likelihoods alike;
    ``time`` sorted. Newton–Raphson then stops wherever the likelihood flattens out in rounding,
    at a number that means nothing."""
    start = np.searchsorted(time, time, side="left")       # first row at risk at each row's time
    top = np.maximum.accumulate(lp[::-1])[::-1][start]     # max η at risk (ties: the row itself)
    low = np.minimum.accumulate(lp[::-1])[::-1][start]
    ev = np.asarray(event) == 1
    return not (np.any(lp[ev] < top[ev]) and np.any(lp[ev] > low[ev]))


def to_scale(values: np.ndarray, scale: str) -> np.ndarray:
    """Values on the pooling scale (logit, log or as they are); non-finite where undefined."""
    v = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if scale == "logit":
            return np.log(v / (1.0 - v))
        if scale == "log":
            return np.log(v)
    return v


def from_scale(values: np.ndarray | float, scale: str) -> np.ndarray:
    """Inverse of :func:`to_scale`."""
    v = np.asarray(values, dtype=float)
    if scale == "logit":
        return 1.0 / (1.0 + np.exp(-v))
    if scale == "log":
        return np.exp(v)
    return v

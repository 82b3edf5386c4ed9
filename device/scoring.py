"""Vectorised scoring of a released model: absolute risk at horizons with a 95% interval.

The maths is the model's own. A Cox model (:class:`prognosis.CoxModel`) gives the risk 1 − S(h | x) at
any horizon up to its last released baseline time, with the complementary log-log interval carrying the
variance of both β and the baseline hazard, as ``survival::survfit.coxph`` does (for an older artifact
without the baseline's variance, β uncertainty only — not a bound either way, flagged by
``Interval.complete``). A logistic model (:class:`prognosis.LogisticModel`) gives the probability of its
binary outcome at the one horizon it is recorded at, with the 95% Wald interval on the logit scale
(delta method over the intercept and the slopes; as statsmodels' ``GLMResults.get_prediction``).

This module is the device's gate in front of them: the input matrix's shape, every value inside its
input's intended-use envelope, horizons that need no extrapolation (a Cox model: never past the last
released baseline time; a logistic model: its one horizon only — it neither extrapolates nor
interpolates), and no stratified model (not supported yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from prognosis import Z95, CoxModel, LogisticModel

from .model import PrognosticModel

__all__ = ["Z95", "Interval", "Scores", "ScoringError", "baseline_cumhaz", "check_inputs", "score",
           "survival_curve"]


class ScoringError(ValueError):
    """A request the device must refuse: bad shape, input outside the envelope, horizon, model kind."""


@dataclass(frozen=True)
class Interval:
    """How the 95% intervals of :class:`Scores` were built: ``estimate ∓ z·se`` on ``scale``, mapped back.

    Attributes
    ----------
    scale : "log(-log S)" or "logit"
        The complementary log-log scale of a Cox model's survival (Kalbfleisch & Prentice 2002, §5.2),
        or the log-odds of a logistic model's probability (Hosmer, Lemeshow & Sturdivant 2013, §1.4).
    se : ndarray (n, H)
        The standard error on that scale at each horizon (:meth:`prognosis.CoxModel.se_loglog`;
        :meth:`prognosis.LogisticModel.se_lp` at the one horizon).
    complete : bool
        True when the interval carries the uncertainty of every released parameter (a Cox model's β
        and baseline hazard; a logistic model's intercept and slopes); False for an older Cox artifact
        without the baseline's variance (β only, to be labelled so).
    """

    scale: Literal["log(-log S)", "logit"]
    se: np.ndarray
    complete: bool


@dataclass(frozen=True)
class Scores:
    """Scores of ``n`` patients at ``H`` horizons (``horizons`` in the model's time unit), of either kind.

    Attributes
    ----------
    kind : "cox-ph" or "logistic"
        The scored model's kind.
    names : tuple of str
        The effects, the column order of ``contributions``: each input (the column order of ``X``),
        then each declared interaction ``a:b`` (:attr:`prognosis.released.Released.effects`).
    horizons : ndarray (H,)
        The horizons scored (a logistic model: its one horizon).
    risk, lower, upper : ndarray (n, H)
        Probability of the event by each horizon (1 − S(h | x); a logistic model: π(x) at its horizon)
        and its 95% interval (:attr:`interval`).
    lp, se_lp : ndarray (n,)
        Linear predictor and its standard error: η = β·(x − c), the log relative hazard, with β
        uncertainty (Cox); η = α + β·(x − c), the log-odds of the event, with the intercept's too
        (logistic).
    ratio : "hazard" or "odds"
        What exp(``log_ratio``) is against the model's reference patient.
    log_ratio : ndarray (n,)
        The log hazard ratio (Cox: ``lp``) or log odds ratio (logistic: ``lp`` − α) against the
        reference patient; each row of ``contributions`` sums to it.
    contributions : ndarray (n, E)
        Each effect's share of ``log_ratio``, Σ β_j (d_j(x) − c_j) over its design columns (one per
        input however many spline or dummy columns it has, then one per interaction).
    interval : Interval
        How the 95% interval was built (its scale, standard errors, completeness).
    """

    kind: Literal["cox-ph", "logistic"]
    names: tuple[str, ...]
    horizons: np.ndarray
    risk: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    lp: np.ndarray
    se_lp: np.ndarray
    ratio: Literal["hazard", "odds"]
    log_ratio: np.ndarray
    contributions: np.ndarray
    interval: Interval


def _unstratified(model: PrognosticModel) -> None:
    if model.stratified:
        raise ScoringError(f"{model.ref} is a stratified model (one baseline per stratum); "
                           "scoring stratified models is not supported yet")


def _matrix(model: PrognosticModel, X: np.ndarray | Sequence[float], ndim: int = 2) -> np.ndarray:
    """``X`` as a float (n, p) array; ``ndim=1`` takes one patient's (p,) vector."""
    try:
        arr = np.asarray(X, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ScoringError(f"inputs are not numeric: {exc}") from None
    p = len(model.inputs)
    if arr.ndim != ndim or arr.shape[-1] != p:
        want = f"({p},)" if ndim == 1 else f"(n, {p})"
        raise ScoringError(f"expected an array of shape {want}, columns {', '.join(model.names)}; "
                           f"got shape {arr.shape}")
    return arr.reshape(-1, p)


def _outside(model: PrognosticModel, arr: np.ndarray) -> np.ndarray:
    """(n, p) mask of the values outside their input's envelope (vectorised over patients)."""
    return np.column_stack([~spec.accepts_array(arr[:, j]) for j, spec in enumerate(model.inputs)])


def _reason(model: PrognosticModel, row: np.ndarray, bad: np.ndarray) -> str:
    return "; ".join(str(model.inputs[j].accepts(float(row[j]))) for j in np.flatnonzero(bad))


def check_inputs(model: PrognosticModel, X: np.ndarray) -> list[str | None]:
    """Per row, ``None`` if every input is inside its envelope, else the reasons (joined by "; ").

    The check is one vectorised mask per input; :meth:`InputSpec.accepts` words the reasons
    of the failing rows only, so a batch can be accepted or refused row by row.
    """
    arr = _matrix(model, X)
    bad = _outside(model, arr)
    reasons: list[str | None] = [None] * arr.shape[0]
    for i in np.flatnonzero(bad.any(axis=1)):
        reasons[i] = _reason(model, arr[i], bad[i])
    return reasons


def _checked(model: PrognosticModel, arr: np.ndarray) -> np.ndarray:
    bad = _outside(model, arr)
    failed = np.flatnonzero(bad.any(axis=1))
    if failed.size:
        i = int(failed[0])
        more = f" (and {failed.size - 1} more rows; see check_inputs)" if failed.size > 1 else ""
        raise ScoringError(f"row {i}: {_reason(model, arr[i], bad[i])}{more}")
    return arr


def _horizons(model: PrognosticModel, horizons: Sequence[float] | np.ndarray | None) -> np.ndarray:
    hs = np.atleast_1d(np.asarray(model.horizons if horizons is None else horizons, dtype=float))
    if hs.ndim != 1 or hs.size == 0:
        raise ScoringError("horizons: expected a non-empty list of times (none given and none declared)")
    unit = model.time_unit
    for h in hs:
        if not (np.isfinite(h) and h > 0):
            raise ScoringError(f"horizon {h:g} {unit}: must be a positive finite time")
        if isinstance(model, LogisticModel):
            (only,) = model.horizons
            if h != only:
                raise ScoringError(
                    f"horizon {h:g} {unit}: {model.ref} predicts {model.outcome} only at {only:g} {unit}, "
                    "when it is recorded; the device neither extrapolates nor interpolates")
        elif h > model.baseline_times[-1]:
            raise ScoringError(f"horizon {h:g} {unit} is beyond the last released baseline time "
                               f"{model.baseline_times[-1]:g} {unit}; the device does not extrapolate")
    return hs


def baseline_cumhaz(model: CoxModel, times: np.ndarray) -> np.ndarray:
    """H0(t) = −log S0(t) with S0 the released step function (0 before the first released time)."""
    return model.cumulative_hazard_at(times)


def score(model: PrognosticModel, X: np.ndarray,
          horizons: Sequence[float] | np.ndarray | None = None) -> Scores:
    """Absolute risk at ``horizons`` (default: the model's) for each row of ``X``.

    Parameters
    ----------
    model : PrognosticModel
        A loaded, unstratified model (Cox or logistic).
    X : ndarray (n, p)
        Covariates in the model's units, columns in ``model.names`` order (convert first with
        :func:`device.units.convert`). Every value must lie inside its input's envelope.
    horizons : sequence of float, optional
        In the model's ``time_unit``; each must be > 0 and ≤ the last released baseline time (Cox), or
        the one horizon of a logistic model.

    Returns
    -------
    Scores
        Cox: ``risk = 1 − S0(h)^exp(η)`` with a 95% interval on the log(−log S) scale (β and baseline
        uncertainty; β only for an older artifact, see ``Interval.complete``). Logistic:
        ``risk = expit(η)`` with the 95% Wald interval on the logit scale.

    Raises
    ------
    ScoringError
        Stratified model, wrong shape, an input outside its envelope (naming the row and the
        input), or a horizon that would need extrapolation (or, for a logistic model, any other
        horizon than its own).
    """
    _unstratified(model)
    arr = _checked(model, _matrix(model, X))
    hs = _horizons(model, horizons)
    if isinstance(model, LogisticModel):
        return _logistic(model, arr, hs)
    lp, se = model.lp(arr), model.se_loglog(arr, hs)
    risk, lower, upper = model.risk_with_interval(lp, se, hs)
    return Scores(kind="cox-ph", names=model.effects, horizons=hs, risk=risk, lower=lower, upper=upper,
                  lp=lp, se_lp=model.se_lp(arr), ratio="hazard", log_ratio=lp,
                  contributions=model.contributions(arr),
                  interval=Interval("log(-log S)", se, model.interval_includes_baseline))


def _logistic(model: LogisticModel, arr: np.ndarray, hs: np.ndarray) -> Scores:
    """A logistic model's scores at its one horizon (``hs`` repeats it): π(x), logit-scale interval."""
    def wide(v: np.ndarray) -> np.ndarray:
        return np.repeat(v[:, None], hs.size, axis=1)

    prob, lower, upper = model.probability_with_interval(arr)
    se = model.se_lp(arr)
    return Scores(kind="logistic", names=model.effects, horizons=hs, risk=wide(prob), lower=wide(lower),
                  upper=wide(upper), lp=model.lp(arr), se_lp=se, ratio="odds", log_ratio=model.log_ratio(arr),
                  contributions=model.contributions(arr), interval=Interval("logit", wide(se), True))


def survival_curve(model: PrognosticModel, x: np.ndarray | Sequence[float]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One patient's survival S(t | x) at every released baseline time, with its 95% interval (a Cox
    model; a logistic model predicts one binary outcome, not a curve over time).

    Returns
    -------
    times, survival, lower, upper : ndarray (K,)
        ``times`` in the model's time unit; ``lower ≤ survival ≤ upper`` (same interval as
        :func:`score`).
    """
    if isinstance(model, LogisticModel):
        raise ScoringError(f"{model.ref} is a logistic model of {model.outcome} at one horizon: it has no "
                           "survival curve")
    _unstratified(model)
    arr = _checked(model, _matrix(model, x, ndim=1))
    times = np.array(model.baseline_times)
    surv, lower, upper = model.survival_with_interval(model.lp(arr), model.se_loglog(arr, times), times)
    return times, surv[0], lower[0], upper[0]

"""Vectorised scoring of a Cox model: absolute risk at horizons with a 95% interval.

The maths (linear predictor, baseline step function, survival and risk with their
complementary log-log interval carrying the variance of both β and the baseline hazard, as
``survival::survfit.coxph`` does; for an older artifact without the baseline's variance, β
uncertainty only — not a bound either way, flagged by ``Scores.includes_baseline``) is the model's own
(:class:`prognosis.CoxModel`). This module is the device's gate in front of it: the input
matrix's shape, every value inside its input's intended-use envelope, horizons that need no
extrapolation (never past the last released baseline time), and no stratified model (not
supported yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prognosis import Z95

from .model import PrognosticModel

__all__ = ["Z95", "Scores", "ScoringError", "baseline_cumhaz", "check_inputs", "score", "survival_curve"]


class ScoringError(ValueError):
    """A request the device must refuse: bad shape, input outside the envelope, horizon, model kind."""


@dataclass(frozen=True)
class Scores:
    """Scores of ``n`` patients at ``H`` horizons (``horizons`` in the model's time unit).

    Attributes
    ----------
    names : tuple of str
        The effects, the column order of ``contributions``: each input (the column order of ``X``),
        then each declared interaction ``a:b`` (:attr:`prognosis.CoxModel.effects`).
    horizons : ndarray (H,)
        The horizons scored.
    risk, lower, upper : ndarray (n, H)
        Absolute risk 1 − S(h | x) and its 95% delta-method interval on the log(−log) scale.
    lp : ndarray (n,)
        Linear predictor η = β·(x − c).
    se_lp : ndarray (n,)
        Standard error of η, sqrt((x − c)ᵀ Σ (x − c)) (β uncertainty only).
    contributions : ndarray (n, E)
        Log hazard ratio of each effect against the centre, Σ β_j (d_j(x) − c_j) over its design
        columns (one per input however many spline or dummy columns it has); rows sum to ``lp``.
    se_loglog : ndarray (n, H)
        Standard error of log(−log S(h | x)) the interval is built from
        (:meth:`prognosis.CoxModel.se_loglog`).
    includes_baseline : bool
        True when the interval includes the baseline hazard's variance; False for an older
        artifact without it (β uncertainty only, to be labelled so).
    """

    names: tuple[str, ...]
    horizons: np.ndarray
    risk: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    lp: np.ndarray
    se_lp: np.ndarray
    contributions: np.ndarray
    se_loglog: np.ndarray
    includes_baseline: bool


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
    last = float(model.baseline_times[-1])
    for h in hs:
        if not (np.isfinite(h) and h > 0):
            raise ScoringError(f"horizon {h:g} {model.time_unit}: must be a positive finite time")
        if h > last:
            raise ScoringError(f"horizon {h:g} {model.time_unit} is beyond the last released baseline time "
                               f"{last:g} {model.time_unit}; the device does not extrapolate")
    return hs


def baseline_cumhaz(model: PrognosticModel, times: np.ndarray) -> np.ndarray:
    """H0(t) = −log S0(t) with S0 the released step function (0 before the first released time)."""
    return model.cumulative_hazard_at(times)


def score(model: PrognosticModel, X: np.ndarray,
          horizons: Sequence[float] | np.ndarray | None = None) -> Scores:
    """Absolute risk at ``horizons`` (default: the model's) for each row of ``X``.

    Parameters
    ----------
    model : PrognosticModel
        A loaded, unstratified model.
    X : ndarray (n, p)
        Covariates in the model's units, columns in ``model.names`` order (convert first with
        :func:`device.units.convert`). Every value must lie inside its input's envelope.
    horizons : sequence of float, optional
        In the model's ``time_unit``; each must be > 0 and ≤ the last released baseline time.

    Returns
    -------
    Scores
        ``risk = 1 − S0(h)^exp(η)`` with a 95% interval on the log(−log S) scale (β and baseline
        uncertainty; β only for an older artifact, see ``Scores.includes_baseline``).

    Raises
    ------
    ScoringError
        Stratified model, wrong shape, an input outside its envelope (naming the row and the
        input), or a horizon that would need extrapolation.
    """
    _unstratified(model)
    arr = _checked(model, _matrix(model, X))
    hs = _horizons(model, horizons)
    lp, se = model.lp(arr), model.se_loglog(arr, hs)
    risk, lower, upper = model.risk_with_interval(lp, se, hs)
    return Scores(names=model.effects, horizons=hs, risk=risk, lower=lower, upper=upper, lp=lp,
                  se_lp=model.se_lp(arr), contributions=model.contributions(arr), se_loglog=se,
                  includes_baseline=model.interval_includes_baseline)


def survival_curve(model: PrognosticModel, x: np.ndarray | Sequence[float]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One patient's survival S(t | x) at every released baseline time, with its 95% interval.

    Returns
    -------
    times, survival, lower, upper : ndarray (K,)
        ``times`` in the model's time unit; ``lower ≤ survival ≤ upper`` (same interval as
        :func:`score`).
    """
    _unstratified(model)
    arr = _checked(model, _matrix(model, x, ndim=1))
    times = np.array(model.baseline_times)
    surv, lower, upper = model.survival_with_interval(model.lp(arr), model.se_loglog(arr, times), times)
    return times, surv[0], lower[0], upper[0]

"""Vectorised scoring of a Cox model: absolute risk at horizons with a 95% interval.

For a patient with covariates ``x`` (in the model's units and input order), centre ``c``,
coefficients ``β`` with covariance ``Σ``, and released Breslow baseline survival ``S0``
(Breslow 1974, *Biometrics* 30:89–99; the step function at the largest released time ≤ t,
1 before the first)::

    η = β·(x − c)                          linear predictor (log hazard ratio vs the centre)
    H0(h) = −log S0(h)                      baseline cumulative hazard at horizon h
    S(h | x) = S0(h) ** exp(η) = exp(−H0(h) e^η),   risk = 1 − S(h | x)

The 95% interval is built on the complementary log-log scale, where the model is additive
and the interval respects [0, 1] (Kalbfleisch & Prentice 2002, *The Statistical Analysis of
Failure Time Data*, 2nd ed., Wiley)::

    log(−log S(h | x)) = log H0(h) + η,      Var(η) = (x − c)ᵀ Σ (x − c)    (delta method)
    bounds = log H0(h) + η ∓ z·sd(η),  z = Φ⁻¹(0.975),  mapped back by risk = 1 − exp(−e^(·)).

LIMITATION — the interval reflects the uncertainty of β only. The artifact releases no
variance for the baseline hazard, so Var(log H0(h)) and its covariance with β (Tsiatis 1981,
*Ann. Statist.* 9:93–108) are ignored: the interval is too narrow, and has zero width for a
patient exactly at the centre ``c``. It is a lower bound on the true uncertainty and must be
labelled so wherever it is shown.

Horizons past the last released baseline time are refused (never extrapolated), as are
stratified models (not supported yet) and inputs outside the intended-use envelope.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .model import PrognosticModel

#: Φ⁻¹(0.975), the two-sided 95% normal quantile
Z95 = 1.959963984540054


class ScoringError(ValueError):
    """A request the device must refuse: bad shape, input outside the envelope, horizon, model kind."""


@dataclass(frozen=True)
class Scores:
    """Scores of ``n`` patients at ``H`` horizons (``horizons`` in the model's time unit).

    Attributes
    ----------
    names : tuple of str
        Input names, the column order of ``X`` and of ``contributions``.
    horizons : ndarray (H,)
        The horizons scored.
    risk, lower, upper : ndarray (n, H)
        Absolute risk 1 − S(h | x) and its 95% delta-method interval (β uncertainty only).
    lp : ndarray (n,)
        Linear predictor η = β·(x − c).
    se_lp : ndarray (n,)
        Standard error of η, sqrt((x − c)ᵀ Σ (x − c)).
    contributions : ndarray (n, p)
        β_j (x_j − c_j), log hazard ratio of each input against the centre; rows sum to ``lp``.
    """

    names: tuple[str, ...]
    horizons: np.ndarray
    risk: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    lp: np.ndarray
    se_lp: np.ndarray
    contributions: np.ndarray


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
    idx = np.searchsorted(model.baseline_times, times, side="right") - 1
    s0 = np.where(idx >= 0, model.baseline_survival[np.maximum(idx, 0)], 1.0)
    return -np.log(s0)


def _linear(model: PrognosticModel, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centred covariates Z = X − c, η = Zβ and sd(η) = sqrt(rowwise ZΣZᵀ)."""
    Z = X - model.center
    lp = Z @ model.beta
    var = ((Z @ model.covariance) * Z).sum(axis=1)
    return Z, lp, np.sqrt(np.maximum(var, 0.0))


def _cumhaz_bounds(H0: np.ndarray, lp: np.ndarray, se: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative hazard H0 e^η and its log-log-scale 95% bounds, shape (n, len(H0)).

    Where H0 = 0 (before the first released time) all three are 0 (risk exactly 0).
    """
    pos = H0 > 0
    log_h0 = np.log(np.where(pos, H0, 1.0))
    ll = lp[:, None] + log_h0[None, :]
    half = (Z95 * se)[:, None]
    with np.errstate(over="ignore"):  # unbounded envelopes: e^η may overflow to inf (risk 1)
        out = tuple(np.where(pos[None, :], np.exp(v), 0.0) for v in (ll, ll - half, ll + half))
    return out[0], out[1], out[2]


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
        ``risk = 1 − S0(h)^exp(η)`` with a 95% interval on the log(−log S) scale (β uncertainty
        only; see the module docstring for the limitation).

    Raises
    ------
    ScoringError
        Stratified model, wrong shape, an input outside its envelope (naming the row and the
        input), or a horizon that would need extrapolation.
    """
    _unstratified(model)
    arr = _checked(model, _matrix(model, X))
    hs = _horizons(model, horizons)
    Z, lp, se = _linear(model, arr)
    H, H_lo, H_hi = _cumhaz_bounds(baseline_cumhaz(model, hs), lp, se)
    return Scores(names=model.names, horizons=hs, risk=-np.expm1(-H), lower=-np.expm1(-H_lo),
                  upper=-np.expm1(-H_hi), lp=lp, se_lp=se, contributions=Z * model.beta)


def survival_curve(model: PrognosticModel, x: np.ndarray | Sequence[float]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One patient's survival S(t | x) at every released baseline time, with its 95% interval.

    Returns
    -------
    times, survival, lower, upper : ndarray (K,)
        ``times`` in the model's time unit; ``lower ≤ survival ≤ upper`` (same interval as
        :func:`score`, β uncertainty only).
    """
    _unstratified(model)
    arr = _checked(model, _matrix(model, x, ndim=1))
    _, lp, se = _linear(model, arr)
    times = np.array(model.baseline_times)
    H, H_lo, H_hi = _cumhaz_bounds(baseline_cumhaz(model, times), lp, se)
    return times, np.exp(-H[0]), np.exp(-H_hi[0]), np.exp(-H_lo[0])

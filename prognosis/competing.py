"""Absolute risk of one cause before any competing cause, from cause-specific Cox models (pure numpy).

One Cox model per cause k = 1…C, each with a Breslow baseline cumulative hazard H0_k, a
right-continuous step function jumping at its listed times (0 before the first), and a patient's
linear predictor η_k (on the scale the baseline was released at). With u_1 < u_2 < … the union of
all causes' jump times, ΔH0_k(u) the jump of H0_k at u and u− the previous union time::

    ΔH_k(u | x) = e^{η_k} ΔH0_k(u),        ΔH(u | x) = Σ_k ΔH_k(u | x)
    F_c(t | x)  = Σ_{u ≤ t} S(u− | x) ΔH_c(u | x)                  absolute risk of cause c by t

with the event-free survival just before u either the exponential of the summed cumulative
hazards (``product_limit=False``, the default) or their product integral (``product_limit=True``)::

    S(u− | x) = exp(−Σ_k e^{η_k} H0_k(u−))          or          Π_{u' < u} (1 − ΔH(u' | x))

(Benichou & Gail 1990, *Biometrics* 46:813–826; Cheng, Fine & Wei 1998, *Biometrics* 54:219–228;
Ozenne et al. 2017, *The R Journal* 9(2):440–460, eq. 2). This is what riskRegression's
``predict.CauseSpecificCox`` / ``predictRisk`` compute from ``CSC`` fits (``predictCIF_cpp``, its
``product.limit`` argument: ``TRUE`` is its default there). It is the risk of the event of
interest *before* a competing event, not the risk were competing events abolished.

Which identity holds:

* product limit: S(t | x) = Π_{u ≤ t} (1 − ΔH(u | x)) and Σ_k F_k(t | x) + S(t | x) = 1 exactly;
* exponential form: S(t | x) = exp(−Σ_k H_k(t | x)) and

      Σ_k F_k(t | x) + S(t | x) − 1 = Σ_{u ≤ t} S(u− | x) (ΔH(u | x) − 1 + e^{−ΔH(u | x)})
                                    ∈ [0, ½ Σ_{u ≤ t} S(u− | x) ΔH(u | x)²]

  so the risks add up to slightly more than 1 − S, by a second-order term in the jump sizes. With
  one cause the same identity says F(t | x) is not exactly 1 − exp(−H(t | x)) but exceeds it by
  that sum (it vanishes as the jumps shrink).

Breslow jumps in the tail, where few patients remain at risk, can be large for a high-risk
patient (ΔH(u | x) > 1). The product limit is then undefined (a negative survival factor), and
even the exponential form, whose survival stays in (0, 1], can give F_c > 1 (a jump S(u−) ΔH_c
above the mass S(u−) left). riskRegression returns such values with a warning; here a request is
refused naming the patients: with the product limit when some ΔH(u | x) > 1 at or before the latest
time asked for, with either form when a risk exceeds 1 (beyond 1e-12 of rounding, which is
clipped). Predict at earlier times instead. After the last jump time every value holds: do not
predict beyond the follow-up the models were fitted on (riskRegression returns NA there).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .steps import step_at

ArrayLike = np.ndarray | Sequence[float] | float

#: a risk this little above 1 is rounding (clipped to 1); more is refused
_ROUNDING = 1e-12


def _baselines(times_by_cause: Sequence[ArrayLike],
               cumhaz_by_cause: Sequence[ArrayLike]) -> tuple[np.ndarray, np.ndarray]:
    """The union of jump times (U,) and every cause's H0_k there (C, U), after checking the inputs."""
    if len(times_by_cause) != len(cumhaz_by_cause) or len(times_by_cause) < 1:
        raise ValueError(f"want one baseline per cause, got {len(times_by_cause)} time arrays and "
                         f"{len(cumhaz_by_cause)} cumulative hazard arrays")
    pairs = []
    for k, (tk, hk) in enumerate(zip(times_by_cause, cumhaz_by_cause, strict=True)):
        times, cumhaz = np.asarray(tk, dtype=float), np.asarray(hk, dtype=float)
        if times.ndim != 1 or times.shape != cumhaz.shape:
            raise ValueError(f"cause {k}: times and cumulative hazard must be 1-d of one length, got "
                             f"shapes {times.shape} and {cumhaz.shape}")
        if not (np.all(np.isfinite(times)) and np.all(np.isfinite(cumhaz))):
            raise ValueError(f"cause {k}: times and cumulative hazard must be finite")
        if np.any(np.diff(times) <= 0):
            raise ValueError(f"cause {k}: jump times must be strictly increasing")
        if np.any(cumhaz < 0) or np.any(np.diff(cumhaz) < 0):
            raise ValueError(f"cause {k}: the cumulative hazard must be non-negative and non-decreasing")
        pairs.append((times, cumhaz))
    union = np.unique(np.concatenate([times for times, _ in pairs]))
    return union, np.stack([step_at(times, cumhaz, union, before=0.0) for times, cumhaz in pairs])


def _relative_hazards(lp_by_cause: Sequence[ArrayLike] | np.ndarray, n_causes: int) -> np.ndarray:
    """e^{η_k} per patient and cause (n, C)."""
    lp = np.asarray(lp_by_cause, dtype=float)
    if lp.ndim == 1 and n_causes == 1:
        lp = lp[None, :]
    if lp.ndim != 2 or lp.shape[0] != n_causes:
        raise ValueError(f"want one linear predictor per cause and patient, shape ({n_causes}, n); "
                         f"got {lp.shape}")
    if not np.all(np.isfinite(lp)):
        raise ValueError("linear predictors must be finite")
    return np.exp(lp).T


def _eval_times(t: ArrayLike) -> np.ndarray:
    at = np.atleast_1d(np.asarray(t, dtype=float))
    if at.ndim != 1 or np.any(np.isnan(at)):
        raise ValueError("t must be a number or a 1-d array of times (no NaN)")
    return at


def _product_limit_factors(weights: np.ndarray, union: np.ndarray, cumhaz: np.ndarray,
                           horizon: float) -> np.ndarray:
    """1 − ΔH(u | x) (n, U); refused when it is negative at a union time ≤ ``horizon``."""
    factor = 1.0 - weights @ np.diff(cumhaz, axis=1, prepend=0.0)
    bad = np.flatnonzero(np.any(factor[:, union <= horizon] < 0.0, axis=1))
    if bad.size:
        raise ValueError(f"product limit undefined: the all-cause hazard jump exceeds 1 by t = {horizon:g} "
                         f"for patient(s) {bad[:5].tolist()}; use the exponential form")
    return factor


def _survival_before(weights: np.ndarray, union: np.ndarray, cumhaz: np.ndarray, horizon: float,
                     product_limit: bool) -> np.ndarray:
    """S(u− | x) at every union time (n, U)."""
    if product_limit:
        factor = _product_limit_factors(weights, union, cumhaz, horizon)
        return np.cumprod(np.concatenate((np.ones((factor.shape[0], 1)), factor[:, :-1]), axis=1), axis=1)
    before = np.concatenate((np.zeros((cumhaz.shape[0], 1)), cumhaz[:, :-1]), axis=1)
    return np.exp(-(weights @ before))


def _at(union: np.ndarray, values: np.ndarray, t: np.ndarray, before: float) -> np.ndarray:
    """Columns of ``values`` (n, U), a step function of the union times, at each t: (n, len(t))."""
    idx = np.searchsorted(union, t, side="right") - 1
    return np.where(idx[None, :] >= 0, values[:, np.maximum(idx, 0)], before)


def absolute_risk(times_by_cause: Sequence[ArrayLike], cumhaz_by_cause: Sequence[ArrayLike],
                  lp_by_cause: Sequence[ArrayLike] | np.ndarray, t: ArrayLike, cause: int = 0, *,
                  product_limit: bool = False) -> np.ndarray:
    """F_c(t | x): each patient's risk of cause ``cause`` by each time in ``t``, before any competing event.

    Parameters
    ----------
    times_by_cause : sequence of C arrays (K_k,)
        Jump times of each cause's baseline cumulative hazard, strictly increasing.
    cumhaz_by_cause : sequence of C arrays (K_k,)
        H0_k at those times (non-decreasing, ≥ 0; 0 before the first time).
    lp_by_cause : array (C, n)
        η_k of each patient for each cause's model, on the baseline's scale (H_k = e^{η_k} H0_k).
        With one cause a 1-d array (n,) is accepted.
    t : float or array (m,)
        Times to predict at, any order.
    cause : int, default 0
        Index (into the per-cause sequences) of the cause of interest.
    product_limit : bool, default False
        Event-free survival as the product integral instead of exp(−Σ_k H_k) (module docstring).

    Returns
    -------
    ndarray (n, m)
        F_c(t | x) by patient (rows) and time (columns), in [0, 1] and non-decreasing in t; 0
        before the first jump time.

    Raises
    ------
    ValueError
        Inconsistent or non-finite inputs, ``cause`` out of range, a risk above 1, or (product
        limit) an all-cause hazard jump above 1 at or before the latest time in ``t``.
    """
    union, cumhaz = _baselines(times_by_cause, cumhaz_by_cause)
    if not 0 <= cause < cumhaz.shape[0]:
        raise ValueError(f"cause must index one of the {cumhaz.shape[0]} models, got {cause}")
    weights = _relative_hazards(lp_by_cause, cumhaz.shape[0])
    at = _eval_times(t)
    surv = _survival_before(weights, union, cumhaz, float(at.max()), product_limit)
    jump = np.diff(cumhaz[cause], prepend=0.0)
    risk = _at(union, np.cumsum(surv * weights[:, cause, None] * jump[None, :], axis=1), at, 0.0)
    over = np.flatnonzero(np.any(risk > 1.0 + _ROUNDING, axis=1))
    if over.size:
        raise ValueError(f"absolute risk above 1 by t = {float(at.max()):g} for patient(s) "
                         f"{over[:5].tolist()}: hazard jumps too large in the sparse tail; predict at "
                         f"earlier times")
    return np.minimum(risk, 1.0)


def event_free_survival(times_by_cause: Sequence[ArrayLike], cumhaz_by_cause: Sequence[ArrayLike],
                        lp_by_cause: Sequence[ArrayLike] | np.ndarray, t: ArrayLike, *,
                        product_limit: bool = False) -> np.ndarray:
    """S(t | x): each patient's probability of no event of any cause by each time in ``t`` (n, m).

    exp(−Σ_k e^{η_k} H0_k(t)), or with ``product_limit`` Π_{u ≤ t} (1 − ΔH(u | x)); 1 before the
    first jump time. Arguments as :func:`absolute_risk`.
    """
    union, cumhaz = _baselines(times_by_cause, cumhaz_by_cause)
    weights = _relative_hazards(lp_by_cause, cumhaz.shape[0])
    at = _eval_times(t)
    if product_limit:
        surv = np.cumprod(_product_limit_factors(weights, union, cumhaz, float(at.max())), axis=1)
    else:
        surv = np.exp(-(weights @ cumhaz))
    return _at(union, surv, at, 1.0)

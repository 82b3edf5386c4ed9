"""Aalen–Johansen cumulative incidence of competing causes from summed counts (coordinator side, pure).

Sites send, on the public grid g_1 < … < g_K, the numbers at risk n_k and the events d_jk of each
cause j = 1…C (:func:`federated.site.competing_counts.cause_counts`); everything below is a
function of the summed counts only, so it equals the estimate on the pooled rows. With
d_k = Σ_j d_jk (Aalen & Johansen 1978, *Scand. J. Statist.* 5:141–150; Kalbfleisch & Prentice
2002, *The Statistical Analysis of Failure Time Data*, 2nd ed., ch. 8)::

    S(t)   = Π_{g_k ≤ t} (1 − d_k / n_k)                      all-cause (Kaplan–Meier) survival
    F_j(t) = Σ_{g_k ≤ t} S(g_{k−1}) d_jk / n_k,   S(g_0) = 1   cumulative incidence of cause j

so that S(t) + Σ_j F_j(t) = 1. Ties need no special handling: the events of all causes at one
time enter through their counts.

Variance: the delta-method, Greenwood-type estimator that lifelines' ``AalenJohansenFitter``
computes (lifelines 0.30, ``AalenJohansenFitter._bounds``, which cites Collett 2015, *Modelling
Survival Data in Medical Research*, 3rd ed., CRC Press, p. 411; Greenwood 1926)::

    Var F_j(t) = Σ_{g_k ≤ t} [F_j(t) − F_j(g_k)]² d_k / (n_k (n_k − d_k))
               + Σ_{g_k ≤ t} S(g_{k−1})² d_jk (n_k − d_jk) / n_k³
               − 2 Σ_{g_k ≤ t} [F_j(t) − F_j(g_k)] S(g_{k−1}) d_jk / n_k²

evaluated in O(C K) by expanding the squares into running sums (as lifelines does). Where every
patient at risk has an event (n_k = d_k, necessarily the last time anyone is at risk) the first
sum's term is taken as 0: its factor F_j(t) − F_j(g_k) is exactly 0 for every t ≥ g_k, as nothing
can happen afterwards (lifelines returns NaN there: 0 · ∞).

95% interval on the log(−log) scale, by the delta method (the interval lifelines reports; it
stays within [0, 1])::

    L = log(−log F),   se(L) = √Var F / (F |log F|),
    lower = exp(−exp(L + z se(L))),   upper = exp(−exp(L − z se(L))),   z = Φ⁻¹(0.975)

Where F_j = 0 (before the first event of cause j) the interval is [0, 0] and where F_j = 1 it is
[1, 1]: the transform is undefined there (lifelines returns NaN). lifelines 0.30 names its two
interval columns the other way round (its ``…_upper_0.95`` column holds the lower limit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from federated.exceptions import DataError
from prognosis.steps import Z95, step_at

ArrayLike = np.ndarray | Sequence[float] | float


@dataclass(frozen=True)
class CumulativeIncidence:
    """Aalen–Johansen estimates at the grid times where anyone is at risk.

    Row ``j − 1`` of every (C, K) array is cause j. All values are right-continuous step
    functions of time: read them at any time with the ``*_at`` methods.
    """

    times: np.ndarray        # (K,)
    at_risk: np.ndarray      # (K,) int64
    events: np.ndarray       # (C, K) int64
    survival: np.ndarray     # (K,) all-cause S(t)
    cif: np.ndarray          # (C, K) F_j(t)
    variance: np.ndarray     # (C, K) Var F_j(t)
    lower: np.ndarray        # (C, K) 95% limits
    upper: np.ndarray        # (C, K)

    @property
    def n_causes(self) -> int:
        return int(self.cif.shape[0])

    def _rows_at(self, values: np.ndarray, t: ArrayLike, before: float) -> np.ndarray:
        return np.stack([step_at(self.times, row, t, before=before) for row in values])

    def cif_at(self, t: ArrayLike) -> np.ndarray:
        """F_j(t) (C, *shape of t): the value at the last grid time ≤ t, 0 before the first."""
        return self._rows_at(self.cif, t, 0.0)

    def variance_at(self, t: ArrayLike) -> np.ndarray:
        """Var F_j(t) (C, *shape of t), 0 before the first grid time."""
        return self._rows_at(self.variance, t, 0.0)

    def interval_at(self, t: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """95% limits (lower, upper), each (C, *shape of t), [0, 0] before the first grid time."""
        return self._rows_at(self.lower, t, 0.0), self._rows_at(self.upper, t, 0.0)

    def survival_at(self, t: ArrayLike) -> np.ndarray:
        """All-cause S(t) (shape of t), 1 before the first grid time."""
        return step_at(self.times, self.survival, t, before=1.0)


def _validated(times: np.ndarray, at_risk: np.ndarray,
               events: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(times, dtype=float)
    n = np.asarray(at_risk)
    d = np.asarray(events)
    if t.ndim != 1 or n.shape != t.shape or d.ndim != 2 or d.shape[1] != t.size or d.shape[0] < 1:
        raise DataError(f"want times (K,), at_risk (K,) and events (C, K) with C ≥ 1, got shapes "
                        f"{t.shape}, {n.shape} and {d.shape}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(n)) and np.all(np.isfinite(d))):
        raise DataError("times and counts must be finite")
    if np.any(np.diff(t) <= 0):
        raise DataError("times must be strictly increasing")
    if np.any(n < 0) or np.any(d < 0):
        raise DataError("counts must be non-negative")
    if np.any(d.sum(axis=0) > n):
        k = int(np.flatnonzero(d.sum(axis=0) > n)[0])
        raise DataError(f"more events than patients at risk at time {t[k]:g}: inconsistent counts")
    return t, n.astype(float), d.astype(float)


def _delta_variance(cif: np.ndarray, lag: np.ndarray, n: np.ndarray, d_all: np.ndarray,
                    d: np.ndarray) -> np.ndarray:
    """Var F_j at every kept time (C, K), the three sums of the module docstring as running sums."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(n > d_all, d_all / (n * (n - d_all)), 0.0)
    b = lag ** 2 * d * (n - d) / n ** 3
    c = lag * d / n ** 2
    quad = cif ** 2 * np.cumsum(a) - 2.0 * cif * np.cumsum(a * cif, axis=1) \
        + np.cumsum(a * cif ** 2, axis=1)
    cross = cif * np.cumsum(c, axis=1) - np.cumsum(c * cif, axis=1)
    return quad + np.cumsum(b, axis=1) - 2.0 * cross


def _loglog_interval(cif: np.ndarray, variance: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """log(−log) 95% limits; [0, 0] where F = 0 and [1, 1] where F = 1."""
    inside = (cif > 0.0) & (cif < 1.0)
    f = np.where(inside, cif, 0.5)
    log_f = np.log(f)
    half = z * np.sqrt(np.maximum(variance, 0.0)) / (f * np.abs(log_f))
    centre = np.log(-log_f)
    lower = np.exp(-np.exp(centre + half))
    upper = np.exp(-np.exp(centre - half))
    edge = np.where(cif >= 1.0, 1.0, 0.0)
    return np.where(inside, lower, edge), np.where(inside, upper, edge)


def aalen_johansen(times: np.ndarray, at_risk: np.ndarray, events: np.ndarray,
                   z: float = Z95) -> CumulativeIncidence:
    """Aalen–Johansen cumulative incidence of each cause, its variance and 95% interval.

    Parameters
    ----------
    times : ndarray (K,)
        The public grid, strictly increasing.
    at_risk : ndarray (K,)
        n_k summed over sites: patients with time ≥ g_k.
    events : ndarray (C, K)
        d_jk summed over sites: events of cause j (row j − 1) at g_k.
    z : float
        Normal quantile of the interval (default Φ⁻¹(0.975)).

    Returns
    -------
    CumulativeIncidence
        At the grid times with n_k > 0 (later times, where nobody is at risk, are dropped).

    Raises
    ------
    DataError
        Wrong shapes, non-finite or negative counts, times not strictly increasing, or more
        events than patients at risk at some time (including any event where nobody is at risk).
    """
    t, n, d = _validated(times, at_risk, events)
    keep = n > 0
    t, n, d = t[keep], n[keep], d[:, keep]
    d_all = d.sum(axis=0)
    survival = np.cumprod(1.0 - d_all / n)
    lag = np.concatenate(([1.0], survival[:-1]))
    cif = np.cumsum(lag * d / n, axis=1)
    variance = _delta_variance(cif, lag, n, d_all, d)
    lower, upper = _loglog_interval(cif, variance, z)
    return CumulativeIncidence(times=t, at_risk=n.astype(np.int64), events=d.astype(np.int64),
                               survival=survival, cif=cif, variance=variance, lower=lower, upper=upper)

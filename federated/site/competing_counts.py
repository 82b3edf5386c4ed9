"""A site's competing-risks counts: numbers at risk and events of each cause on the public grid.

For rows (t_i, c_i) with c_i = 0 for a censored row and c_i = j ∈ {1, …, C} for an event of
cause j, and the study's public grid g_1 < … < g_K (every event time of any cause on it)::

    n_k  = #{i : t_i ≥ g_k}                       at risk just before g_k (all causes together)
    d_jk = #{i : t_i = g_k, c_i = j}              events of cause j at g_k

the same grid convention as the Kaplan–Meier counts of :mod:`federated.site.local_stats`, whose
:func:`~federated.site.local_stats.at_risk_counts` and :func:`~federated.site.local_stats.event_counts`
compute them. Summed over sites they are the pooled counts, from which the coordinator's
Aalen–Johansen estimator (:mod:`federated.aalen_johansen`) follows exactly. Counts only: small-cell
suppression is the caller's.
"""

from __future__ import annotations

import numpy as np

from federated.exceptions import DataError
from federated.site.local_stats import at_risk_counts, event_counts


def cause_counts(time: np.ndarray, cause: np.ndarray, grid: np.ndarray,
                 n_causes: int) -> tuple[np.ndarray, np.ndarray]:
    """Numbers at risk (K,) and events of each cause (C, K) of one site's rows on ``grid``.

    Parameters
    ----------
    time : ndarray (n,)
        Event or censoring times, in any order.
    cause : ndarray (n,)
        0 for a censored row, j ∈ {1, …, ``n_causes``} for an event of cause j (integer-valued).
    grid : ndarray (K,)
        The public, strictly increasing time grid; every event time must lie on it.
    n_causes : int
        C, the study's number of causes (public), so that every site answers with the same shape
        whatever causes its own rows hold.

    Returns
    -------
    at_risk : ndarray (K,) int64
        n_k = #{i : t_i ≥ g_k}.
    events : ndarray (C, K) int64
        ``events[j - 1, k]`` = d_jk = #{i : t_i = g_k, c_i = j}.

    Raises
    ------
    DataError
        Mismatched lengths, a grid that is not strictly increasing, a cause code outside 0…C, or
        an event time off the grid.
    """
    t = np.asarray(time, dtype=float)
    c = np.asarray(cause)
    g = np.asarray(grid, dtype=float)
    if t.ndim != 1 or t.shape != c.shape:
        raise DataError(f"time and cause must be 1-d of one length, got shapes {t.shape} and {c.shape}")
    if n_causes < 1:
        raise DataError(f"n_causes must be at least 1, got {n_causes}")
    if g.ndim != 1 or np.any(np.diff(g) <= 0):
        raise DataError("the time grid must be 1-d and strictly increasing")
    codes = np.arange(n_causes + 1)
    valid = np.isin(c, codes)
    if not np.all(valid):
        bad = np.unique(c[~valid])
        raise DataError(f"{int((~valid).sum())} rows have a cause code outside 0..{n_causes}: "
                        f"{bad[:5].tolist()}")
    events = np.stack([event_counts(t, (c == j).astype(np.int64), g) for j in codes[1:]])
    return at_risk_counts(np.sort(t), g), events

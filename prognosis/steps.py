"""Right-continuous step functions (survival curves) and the two-sided 95% normal quantile.

A Kaplan–Meier curve, a Breslow baseline survival and a released (disclosure-controlled) curve
are all step functions that jump at their listed times and hold their value until the next one
(Kalbfleisch & Prentice 2002, *The Statistical Analysis of Failure Time Data*, 2nd ed., §1.2):
the value at ``t`` is the value at the last listed time ≤ t, and ``before`` earlier (1 for a
survival curve, 0 for a cumulative hazard).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Φ⁻¹(0.975), the two-sided 95% normal quantile (to double precision)
Z95 = 1.959963984540054


def step_at(times: np.ndarray | Sequence[float], values: np.ndarray | Sequence[float],
            t: np.ndarray | Sequence[float] | float, *, before: float = 1.0) -> np.ndarray:
    """Value of the right-continuous step function ``(times, values)`` at each ``t``.

    Parameters
    ----------
    times : array (K,)
        Jump times, non-decreasing (with ties the last listed value at a time wins).
    values : array (K,)
        ``values[i]`` holds on ``[times[i], times[i + 1])``.
    t : float or array
        Where to evaluate; any shape.
    before : float, default 1
        The value before the first jump (and everywhere when ``K = 0``).

    Returns
    -------
    ndarray
        Same shape as ``t``: ``values[i]`` for the largest ``i`` with ``times[i] ≤ t``, else ``before``.
    """
    knots = np.asarray(times, dtype=float)
    levels = np.asarray(values, dtype=float)
    if knots.ndim != 1 or knots.shape != levels.shape:
        raise ValueError(f"times and values must be 1-d of one length, got shapes {knots.shape} "
                         f"and {levels.shape}")
    at = np.asarray(t, dtype=float)
    idx = np.searchsorted(knots, at, side="right") - 1
    if levels.size == 0:
        return np.full(at.shape, float(before))
    return np.where(idx >= 0, levels[np.maximum(idx, 0)], float(before))

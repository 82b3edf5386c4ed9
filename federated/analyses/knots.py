"""Knots of restricted cubic splines placed at quantiles of the securely summed coverage histogram.

A study may declare ``spline = {quantiles = k}`` (3 ≤ k ≤ 7) for an input with a declared range instead
of the knots themselves. The first round of the fit (discovery) returns, per declared range, the sum over
sites of each site's histogram of its patients — below the range, in each of its ``range_bins`` equal
bins, above it — with every cell of 1 to k − 1 patients sent as 0
(:func:`federated.disclosure.cells.safe_counts`) and masked in a secure study. From that sum alone the
coordinator places knot j at the public bin edge nearest Harrell's quantile p_j (``Hmisc::rcspline.eval``,
``nk`` = k; Harrell 2015, *Regression Modeling Strategies*, 2nd ed., §2.4.6), and the fit then proceeds
as with declared knots, in a fresh session (:func:`federated.analyses.cox.with_knots`). Everything here
is a pure function of public things (the study and the summed histogram). A cell a site suppressed (1
to k − 1 patients) is missing from the sum, so in thin tails a knot may lie an edge away from where the
pooled rows would put it; the fit is exact at the knots placed, which the model records.

Adversary: an honest-but-curious coordinator. The knots are bin edges chosen from the summed
histogram, so they tell a reader of the released model nothing beyond that histogram (itself a sum of
k-safe cells over sites). The sites accept only knots on the public edges
(:func:`federated.disclosure.rules.placed_on_edges`), so a malicious one cannot place a knot at a
patient's value either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from federated.exceptions import DataError
from federated.study import CohortSpec, StudySpec, range_edges
from prognosis.inputs import Spline

#: Harrell's default quantiles for k knots (``Hmisc::rcspline.eval``, ``rms::rcs``)
HARRELL_QUANTILES: dict[int, tuple[float, ...]] = {
    3: (0.10, 0.50, 0.90),
    4: (0.05, 0.35, 0.65, 0.95),
    5: (0.05, 0.275, 0.50, 0.725, 0.95),
    6: (0.05, 0.23, 0.41, 0.59, 0.77, 0.95),
    7: (0.025, 0.1833, 0.3417, 0.50, 0.6583, 0.8167, 0.975),
}


def edge_fractions(counts: np.ndarray) -> np.ndarray:
    """F(e_j), j = 0 … B: the fraction of the histogram's patients below each bin edge, shape (B + 1,).

    ``counts`` (B + 2,) are (below, bin 1, …, bin B, above) as discovery sums them: bins
    [e_{j−1}, e_j), the last one closed; a patient outside the range was clipped to its edge, so
    ``below`` lies at e_0 and ``above`` at e_B: F(e_0) = below / N, F(e_B) = (N − above) / N.
    """
    c = np.asarray(counts, dtype=np.float64)
    total = float(c.sum())
    if c.ndim != 1 or c.size < 3 or not np.all(c >= 0) or total <= 0:
        raise ValueError("a histogram of (below, bins…, above) with at least one patient")
    return np.cumsum(c[:-1]) / total


def place(counts: np.ndarray, lo: float, hi: float, k: int, name: str = "input") -> tuple[float, ...]:
    """The k knots at Harrell's quantiles (:data:`HARRELL_QUANTILES`) of a summed histogram of
    [``lo``, ``hi``] (``counts`` as :func:`edge_fractions` reads them), each on a public edge.

    Knot j is the edge e minimising |F(e) − p_j| (ties to the lower edge): the edge nearest the
    quantile of the histogram with its patients spread evenly over each bin (linear interpolation of F
    between edges, so the nearer of the two edges around the quantile is the nearer in F too).

    Raises
    ------
    DataError
        The histogram holds no patient, or is too coarse for k distinct knots (two quantiles fall on one
        edge); the message names the input and what to change.
    """
    if k not in HARRELL_QUANTILES:
        raise ValueError(f"{name}: {k} knots; want 3 to 7")
    c = np.asarray(counts, dtype=np.float64)
    if c.sum() <= 0:
        raise DataError(f"{name}: the securely summed histogram of its declared range holds no patients "
                        "(every cell suppressed below k at every site): declare its knots instead")
    edges = range_edges(lo, hi, c.size - 2)
    fractions = edge_fractions(c)
    p = np.asarray(HARRELL_QUANTILES[k])
    at = np.argmin(np.abs(fractions[None, :] - p[:, None]), axis=1)  # the first (lowest) minimiser
    if np.unique(at).size < k:
        chosen = ", ".join(f"{q:g} → {edges[i]:g}" for q, i in zip(p, at, strict=True))
        raise DataError(f"{name}: the summed histogram of its {c.size - 2} bins is too coarse for {k} "
                        f"distinct knots at quantiles ({chosen}): raise range_bins, narrow the declared "
                        "range, or declare fewer quantiles or the knots themselves")
    return tuple(float(edges[i]) for i in at)


def unplaced(cohort: CohortSpec) -> list[str]:
    """The inputs of ``cohort`` whose knots are still to be placed at quantiles."""
    return [n for n in cohort.knot_quantiles if n not in cohort.splines]


def placed_cohort(cohort: CohortSpec, range_counts: np.ndarray | None) -> CohortSpec:
    """``cohort`` with the knots of every :func:`unplaced` spline placed (:func:`place`) from discovery's
    summed ``range_counts`` (one row per covariate with a declared range, in ``covariates`` order)."""
    todo = unplaced(cohort)
    if not todo:
        return cohort
    names = [c for c in cohort.covariates if c in cohort.ranges]
    if range_counts is None or np.shape(range_counts) != (len(names), cohort.range_bins + 2):
        raise ValueError(f"range_counts: want shape ({len(names)}, {cohort.range_bins + 2})")
    rows = dict(zip(names, np.asarray(range_counts), strict=True))
    knots = {n: place(rows[n], *cohort.ranges[n], cohort.knot_quantiles[n], n) for n in todo}
    return cohort.model_copy(update={"splines": {**cohort.splines, **knots}})


def placed_knots(cohort: CohortSpec) -> dict[str, tuple[float, ...]]:
    """The knots of ``cohort``'s splines placed at quantiles (what a fit records)."""
    return {n: cohort.splines[n] for n in cohort.knot_quantiles if n in cohort.splines}


def placed_study(study: StudySpec, knots: Mapping[str, Sequence[float]]) -> StudySpec:
    """``study`` with each ``spline = {quantiles = k}`` input given the knots a fit placed: the study a
    released model (and prediction) reads, whose spline records ``{knots, quantiles}``."""
    if not knots:
        return study
    inputs = dict(study.inputs)
    for name, at in knots.items():
        spec = inputs[name]
        if spec.spline is None or spec.spline.quantiles != len(at):
            raise ValueError(f"{name}: {len(at)} knots placed for an input not declared with as many "
                             "quantiles")
        spline = Spline(knots=[float(t) for t in at], quantiles=spec.spline.quantiles)  # checked
        inputs[name] = spec.model_copy(update={"spline": spline})
    return study.model_copy(update={"inputs": inputs})


def artifact_knots(artifact: Mapping[str, object]) -> dict[str, tuple[float, ...]]:
    """The knots a released model's fit placed at quantiles, as its artifact records them
    (``inputs[].spline`` {knots, quantiles})."""
    out: dict[str, tuple[float, ...]] = {}
    for spec in artifact.get("inputs") or []:  # type: ignore[attr-defined]
        spline = spec.get("spline") or {}
        if spline.get("quantiles") is not None:
            out[str(spec["name"])] = tuple(float(t) for t in spline.get("knots") or ())
    return out


def model_study(study: StudySpec, artifact: Mapping[str, object]) -> StudySpec:
    """``study`` as the released model was fitted under it: its quantile splines at the knots the model
    records (:func:`artifact_knots`), so that a request about the model (evaluate, recalibrate) names
    the model's own design columns; the sites accept them on the public edges. An input the study
    declares with its knots keeps them."""
    quantiles = {n for n, spec in study.inputs.items() if spec.spline is not None and spec.spline.quantiles}
    return placed_study(study, {n: k for n, k in artifact_knots(artifact).items() if n in quantiles})

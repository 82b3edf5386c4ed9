"""k-cells at the source: every cell a site sends covers 0 or at least k of its own patients.

Adversary: an **honest-but-curious coordinator** that decodes the secure sums and differences
them (issue 14, attack 1: on a day grid, a day with one event made Efron's tie sum that woman's
covariate vector). Everything a site sends about time — events per interval, risk-set sums,
at-risk counts, tie sums — is a sum over *atoms*: the site's patients grouped by label, by
event status and by the interval of the time grid their time falls in. A risk-set difference
is a union of atoms, a tie sum is one. If every atom holds 0 or ≥ k patients, so does every
union, and every difference of unions: the coordinator decodes nothing about fewer than k.

The grid is a rung of the public ladder (:data:`federated.study.LADDER`). Months, quarters and
years are nested, weeks and months are not, so a site that answers on a rung checks the common
refinement of that rung and every coarser one (a week cell minus a month cell must not isolate a
patient either). Coarser rungs only merge atoms, so a site that accepts a rung accepts every
coarser one.
"""

from __future__ import annotations

import numpy as np

from federated.study import DAYS_PER_UNIT, GRID_DAYS, CohortSpec, grid_steps, rungs_from


def small_cells(time: np.ndarray, event: np.ndarray, label: np.ndarray, level: str, unit: str,
                k: int) -> int:
    """The number of atoms with 1 to k − 1 patients (0 means the site may answer on ``level``).

    ``time`` are the site's times before coarsening (in ``unit``), ``event`` 0/1 and ``label``
    the stratum or group index, all of shape (n,). An atom is one (label, event status, interval
    of every rung from ``level`` up) combination.
    """
    if k <= 1 or time.size == 0:
        return 0
    columns = [np.asarray(label, dtype=np.float64), np.asarray(event, dtype=np.float64)]
    columns += [grid_steps(time, rung, unit) for rung in rungs_from(level)]
    _, counts = np.unique(np.column_stack(columns), axis=0, return_counts=True)
    return int(((counts > 0) & (counts < k)).sum())


def safe_counts(counts: np.ndarray, k: int) -> np.ndarray:
    """Counts with every cell of 1 to k − 1 sent as 0 (suppression at the source, for
    descriptive histograms such as input coverage, where no estimate depends on the cell)."""
    out = np.asarray(counts, dtype=np.int64).copy()
    out[(out > 0) & (out < k)] = 0
    return out


def shift_sparse_censoring(time: np.ndarray, event: np.ndarray, label: np.ndarray, level: str, unit: str,
                           k: int) -> tuple[np.ndarray, np.ndarray]:
    """Censor earlier the censored patients of sparse cells, so that every censored atom holds 0 or
    ≥ k patients: ``(times, kept)``.

    Repeatedly, the censored atom with 1 to k − 1 patients that ends latest is moved to the end of the
    previous interval of ``level`` (its patients are censored there, i.e. followed up a little less);
    a sparse atom in the first interval is left out (``kept`` False: censored at time 0, a patient adds
    nothing to a Cox or Kaplan–Meier fit). Event atoms are never moved: an event time is the
    estimate's information, and a sparse event atom still makes the site refuse the rung.

    Censoring earlier is non-informative when censoring is (the patient was at risk at least that
    long), so the estimates stay unbiased; the fit equals the pooled fit on the shifted times.
    A site applies it only on the last rung of the ladder, and only when the approved study's policy
    says so (``shift_sparse_censoring``); the coordinator learns nothing it would not learn from
    the k-safe cells. ``time`` in ``unit`` (not coarsened), ``event`` 0/1, ``label`` codes, shape (n,).
    """
    times = np.asarray(time, dtype=np.float64).copy()
    kept = np.ones(times.shape, dtype=bool)
    if k <= 1 or times.size == 0:
        return times, kept
    censored = np.asarray(event) == 0
    width = GRID_DAYS[level] / DAYS_PER_UNIT[unit]
    labels = np.asarray(label, dtype=np.float64)
    while True:
        rows = np.flatnonzero(censored & kept)
        if rows.size == 0:
            return times, kept
        steps = grid_steps(times[rows], level, unit)
        columns = [labels[rows], steps] + [grid_steps(times[rows], r, unit) for r in rungs_from(level)[1:]]
        atoms, inverse, counts = np.unique(np.column_stack(columns), axis=0, return_inverse=True,
                                           return_counts=True)
        sparse = np.flatnonzero(counts < k)
        if sparse.size == 0:
            return times, kept
        latest = sparse[np.argmax(atoms[sparse, 1])]
        members = rows[inverse.ravel() == latest]
        step = atoms[latest, 1]
        if step <= 0:
            kept[members] = False
        else:
            times[members] = (step - 1) * width



def design_indicators(spec: CohortSpec, x: np.ndarray, design: np.ndarray) -> dict[str, np.ndarray]:
    """The 0/1 splits of the rows a cohort's columns make, each of which must not isolate patients:
    where each column the site builds is non-zero (a spline's non-linear column beyond its knot, a
    dummy at its level, an interaction where both factors are), each dummy-coded category's reference
    level, and — in a binary cohort (logistic regression), whose information matrix counts them — every
    column that holds only 0 and 1. ``x`` are the covariates (n, q), ``design`` their columns (n, m)."""
    out: dict[str, np.ndarray] = {}
    generated = set(spec.columns) - set(spec.covariates)
    for j, name in enumerate(spec.columns):
        col = design[:, j]
        if name in generated or (spec.time is None and np.all((col == 0) | (col == 1))):
            out[name] = col != 0
    for name, codes in spec.dummies.items():
        out[f"{name}={codes[0]}"] = x[:, spec.covariates.index(name)] == 0
    return out


def design_cells(time: np.ndarray, event: np.ndarray, label: np.ndarray, level: str, unit: str, k: int,
                 indicators: dict[str, np.ndarray]) -> str | None:
    """The first split (:func:`design_indicators`) whose cells — label, event status, interval of every
    rung from ``level`` up, and the split's side — hold 1 to k − 1 patients; None when none does.

    Adversary: an honest-but-curious coordinator. A sum over an atom of at least k patients tells
    nothing of fewer than k only if every column is the same kind of value within it; a column that is
    0 for some and not for others splits the atom, and the difference of two decoded sums (a level
    against the whole) is the few patients of the smaller side: their covariates and events.
    ``level="exact"`` checks (label, event, side) cells, which is what sites apply: the cells of each
    side per interval of the time grid are NOT checked (the year-to-year differences of a side's
    risk-set sums remain a residual risk, FP-CYB; every interval × side cell at k would leave nonlinear
    effects unfittable on hospitals of a few hundred patients).
    """
    if k <= 1:
        return None
    for name, side in indicators.items():
        if small_cells(time, event, np.asarray(label) * 2 + side.astype(np.int64), level, unit, k):
            return name
    return None

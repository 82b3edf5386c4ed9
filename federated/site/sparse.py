"""A site's sparse censored cells on the yearly grid: censored earlier rather than refused.

Adversary: an **honest-but-curious coordinator** decoding secure sums (k-cells at the source,
:mod:`federated.disclosure.cells`). Real cohorts lose a few patients to follow-up early, so some
(label, censored, year) atoms hold 1 to k − 1 patients even on the last rung of the ladder and the
site would refuse the study. When the approved study says ``shift_sparse_censoring``, the site
censors those patients at the start of their year instead
(:func:`federated.disclosure.cells.shift_sparse_censoring`): every atom it then sends about holds 0
or at least k patients, and the fit equals the pooled fit on the shifted, coarsened times.
"""

from __future__ import annotations

import numpy as np

from federated.disclosure.cells import shift_sparse_censoring
from federated.site.data import Cohort, coarsen
from federated.study import LADDER, CohortSpec


def censor_sparse(cohort: Cohort, spec: CohortSpec, k: int) -> Cohort:
    """``cohort`` with its sparse censored atoms censored earlier (on the last rung only; any other
    grid is returned unchanged, and the k-cell check decides)."""
    if spec.time_grid != LADDER[-1]:
        return cohort
    raw, kept = shift_sparse_censoring(cohort.raw_time, cohort.event, cohort.label, spec.time_grid,
                                       spec.time_unit, k)
    if kept.all() and np.array_equal(raw, cohort.raw_time):
        return cohort
    time = coarsen(raw, spec.time_grid, spec.time_unit)
    order = np.lexsort((time, cohort.label))
    order = order[kept[order]]
    return Cohort(labels=cohort.labels, label=cohort.label[order], time=time[order],
                  event=cohort.event[order], x=np.ascontiguousarray(cohort.x[order]), raw_time=raw[order],
                  outside=cohort.outside[order], rows=cohort.rows[order], incomplete=cohort.incomplete)

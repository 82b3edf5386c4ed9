"""Federated Kaplan–Meier with lifelines' face (``from fedprog import FederatedKaplanMeier``).

>>> km = FederatedKaplanMeier(max_time=1826.25).fit_sites(sites, time="time", event="event")
>>> km.survival_function_, km.confidence_interval_, km.median_survival_time_
>>> FederatedKaplanMeier().fit(durations, event_observed)     # one local table, as lifelines

The curve is Kaplan & Meier (1958) with Greenwood's log-log band (:mod:`federated.analyses.km`),
released at times where at least ``min_cell_count`` events accumulated; settings as
:class:`~federated.analyses.estimator.FederatedCoxPH` (checked when fitting by
:mod:`federated.analyses.estimator_settings`, a DataError quoting the bad value).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from federated.analyses.estimator_settings import (
    check_sites,
    checked_outcome,
    local_sites,
    local_study,
    study_of,
)
from federated.analyses.km import KMFit
from federated.analyses.runner import kaplan_meier
from federated.analyses.summary import (
    km_confidence_frame,
    km_event_table,
    km_survival_frame,
    median_survival_time,
)
from federated.disclosure.dp import DPSettings
from federated.disclosure.policy import DisclosurePolicy
from federated.disclosure.rules import StudyProtocol
from federated.exceptions import DataError
from federated.protocol.messages import ConsentGate
from federated.protocol.transport import Transport
from federated.site.handler import Site


class FederatedKaplanMeier(BaseEstimator):
    """Kaplan–Meier survival curve over hospitals from aggregates only (and log-rank with a group).

    Parameters
    ----------
    group : str, optional
        Group column: one curve per group and the k-group log-rank test (``logrank_``); with secure
        aggregation declare its ``levels``.
    levels : list of str, optional
        Declared group levels.
    time_grid, time_unit, max_time, secure_aggregation, allow_small_time_cells, shift_sparse_censoring,
    policy, dp, timeout
        As :class:`~federated.analyses.estimator.FederatedCoxPH` ("auto": "day" for
        :meth:`fit_sites`, "exact" for :meth:`fit`).
    label : str, default "KM_estimate"
        Column name of the curve (lifelines' ``label``).

    Attributes
    ----------
    survival_function_ : DataFrame, index "timeline" (0, then the released event times), one column
    confidence_interval_ : DataFrame — the 95% Greenwood log-log band (``<label>_lower_0.95``, …)
    event_table_ : DataFrame — ``at_risk`` and ``observed`` at each released time
    median_survival_time_ : float — first time with S(t) ≤ 0.5 (inf if none)
    group_survival_functions_ : dict of group label to DataFrame (with ``group``)
    logrank_ : LogRank or None
    fit_ : KMFit
    """

    def __init__(self, *, group: str | None = None, levels: Sequence[str] | None = None,
                 time_grid: str = "auto", time_unit: str = "day", max_time: float | None = None,
                 secure_aggregation: bool = True, allow_small_time_cells: bool = False,
                 shift_sparse_censoring: bool = False,
                 policy: DisclosurePolicy | Mapping[str, Any] | None = None,
                 dp: DPSettings | Mapping[str, Any] | None = None, timeout: float = 120.0,
                 label: str = "KM_estimate") -> None:
        self.group = group
        self.levels = levels
        self.time_grid = time_grid
        self.time_unit = time_unit
        self.max_time = max_time
        self.secure_aggregation = secure_aggregation
        self.allow_small_time_cells = allow_small_time_cells
        self.shift_sparse_censoring = shift_sparse_censoring
        self.policy = policy
        self.dp = dp
        self.timeout = timeout
        self.label = label

    def fit_sites(self, sites: Sequence[Site] | Transport, time: str, event: str, *,
                  consent: ConsentGate | None = None,
                  protocol: StudyProtocol | None = None) -> FederatedKaplanMeier:
        """Fit over hospitals: in-process :class:`Site` objects or a :class:`Transport` reaching
        them (with the ``protocol`` their operators approved); ``time`` and ``event`` name columns."""
        check_sites(sites, "FederatedKaplanMeier.fit_sites")
        study = study_of(self, "day", time=time, event=event)
        fit = kaplan_meier(study, sites=sites if isinstance(sites, Transport) else list(sites),
                           consent=consent, protocol=protocol)
        return self._set(fit)

    def fit(self, durations: Sequence[float] | np.ndarray | pd.Series,
            event_observed: Sequence[int] | np.ndarray | pd.Series | None = None) -> FederatedKaplanMeier:
        """Fit one local table, as lifelines' ``KaplanMeierFitter.fit``: ``durations`` (n,) and
        ``event_observed`` (n,) 0/1 or boolean (default: every duration is an event). Nothing leaves
        the table, so the disclosure settings do not apply, and "auto" is the exact time grid."""
        study = local_study(study_of(self, "exact", time="time", event="event"))
        if study.group is not None:
            raise DataError(f"group={study.group!r}: fit(durations, event_observed) fits one curve; "
                            "use fit_sites")
        n = np.asarray(durations).size
        event, when = checked_outcome(np.ones(n) if event_observed is None else event_observed, durations)
        frame = pd.DataFrame({"time": when, "event": event.astype(np.int64)})
        sites, protocol = local_sites(frame, study)
        return self._set(kaplan_meier(study, sites=sites, protocol=protocol))

    def _set(self, fit: KMFit) -> FederatedKaplanMeier:
        self.fit_ = fit
        self.survival_function_ = km_survival_frame(fit.overall, self.label)
        self.confidence_interval_ = km_confidence_frame(fit.overall, self.label)
        self.event_table_ = km_event_table(fit.overall)
        self.median_survival_time_ = median_survival_time(fit.overall)
        self.group_survival_functions_ = {g: km_survival_frame(c, self.label) for g, c in fit.groups.items()}
        self.logrank_ = fit.logrank
        return self

    def survival_function_at_times(self, times: Sequence[float] | np.ndarray) -> pd.Series:
        """S(t) at ``times`` (the step function; 1 before the first event), as lifelines'."""
        check_is_fitted(self, "fit_")
        t = np.asarray(times, dtype=float)
        grid = self.survival_function_.index.to_numpy()
        idx = np.searchsorted(grid, t, side="right") - 1
        values = np.where(idx >= 0, self.survival_function_[self.label].to_numpy()[np.maximum(idx, 0)], 1.0)
        return pd.Series(values, index=t, name=self.label)

    def predict(self, times: Sequence[float] | np.ndarray) -> pd.Series:
        """Alias of :meth:`survival_function_at_times` (lifelines' ``predict``)."""
        return self.survival_function_at_times(times)

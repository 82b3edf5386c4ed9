"""Federated Aalen–Johansen with lifelines' face (``FederatedAalenJohansen``).

>>> aj = FederatedAalenJohansen(max_time=1826.25).fit_sites(sites, "time", "status",
...                                                         event_of_interest=1, causes=[1, 2])
>>> aj.cumulative_density_, aj.confidence_interval_, aj.variance_
>>> FederatedAalenJohansen().fit(durations, event_observed, event_of_interest=1)  # one local table

The estimate is the Aalen–Johansen cumulative incidence of :mod:`federated.analyses.competing`
(variance and log(−log) interval of :mod:`federated.aalen_johansen`), released at times where every
cause had 0 or at least ``min_cell_count`` events since the previous one. Settings are those of
:class:`~federated.analyses.km_estimator.FederatedKaplanMeier`, checked when fitting
(:mod:`federated.analyses.estimator_settings`). Unlike lifelines 0.30, whose interval columns are
named the other way round, ``<label>_lower_0.95`` holds the lower limit; and where the incidence is
0 or 1 the interval is [0, 0] or [1, 1], and where all at risk fail the variance is finite (lifelines:
NaN).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from federated.analyses.competing import CompetingFit, competing_cohort, fit_aalen_johansen
from federated.analyses.estimator_settings import (
    LOCAL_FLOORS,
    LOCAL_POLICY,
    check_sites,
    checked_settings,
)
from federated.disclosure.policy import DisclosurePolicy
from federated.disclosure.rules import StudyProtocol
from federated.exceptions import DataError
from federated.protocol.coordinator import Coordinator
from federated.protocol.messages import ConsentGate
from federated.protocol.transport import InProcessTransport, Transport, as_transport
from federated.site.handler import Site, approve_in_process
from federated.study import CohortSpec


class FederatedAalenJohansen(BaseEstimator):
    """Cumulative incidence of one cause among competing causes over hospitals, from aggregates only.

    Parameters
    ----------
    time_grid, time_unit, max_time, secure_aggregation, allow_small_time_cells, shift_sparse_censoring,
    policy, timeout
        As :class:`~federated.analyses.km_estimator.FederatedKaplanMeier` ("auto": "day" for
        :meth:`fit_sites`, "exact" for :meth:`fit`).
    label : str, default "AJ_estimate"
        Prefix of the interval's columns (lifelines' ``label``).

    Attributes
    ----------
    cumulative_density_ : DataFrame, index "event_at" (0, then the released times), column
        ``CIF_<event_of_interest>``
    confidence_interval_ : DataFrame — the 95% log(−log) interval (``<label>_lower_0.95``, ``…_upper_0.95``)
    variance_ : Series "variance" — the delta-method variance of the incidence
    fit_ : CompetingFit — every cause's released incidence, counts, sites and time grid
    """

    def __init__(self, *, time_grid: str = "auto", time_unit: str = "day", max_time: float | None = None,
                 secure_aggregation: bool = True, allow_small_time_cells: bool = False,
                 shift_sparse_censoring: bool = False,
                 policy: DisclosurePolicy | Mapping[str, Any] | None = None, timeout: float = 120.0,
                 label: str = "AJ_estimate") -> None:
        self.time_grid = time_grid
        self.time_unit = time_unit
        self.max_time = max_time
        self.secure_aggregation = secure_aggregation
        self.allow_small_time_cells = allow_small_time_cells
        self.shift_sparse_censoring = shift_sparse_censoring
        self.policy = policy
        self.timeout = timeout
        self.label = label

    def fit_sites(self, sites: Sequence[Site] | Transport, duration_col: str, cause_col: str, *,
                  event_of_interest: str | int, causes: Sequence[str | int],
                  consent: ConsentGate | None = None,
                  protocol: StudyProtocol | None = None) -> FederatedAalenJohansen:
        """Fit over hospitals: in-process :class:`Site` objects or a :class:`Transport` reaching them
        (with the ``protocol`` their operators approved). ``cause_col`` holds 0 (censored) or one of
        the declared ``causes`` (public codes, in order); ``event_of_interest`` is one of them."""
        check_sites(sites, "FederatedAalenJohansen.fit_sites")
        settings = checked_settings(self)
        cohort = self._cohort(settings, "day", duration_col, cause_col, causes)
        transport = as_transport(sites if isinstance(sites, Transport) else list(sites))
        if protocol is None:
            protocol = _approved_here(transport, cohort, settings)
        return self._run(transport, cohort, protocol, settings, event_of_interest, consent)

    def fit(self, durations: Sequence[float] | np.ndarray | pd.Series,
            event_observed: Sequence[int] | np.ndarray | pd.Series,
            event_of_interest: int) -> FederatedAalenJohansen:
        """Fit one local table, as lifelines' ``AalenJohansenFitter.fit``: ``durations`` (n,) and
        ``event_observed`` (n,) integer codes, 0 censored (the causes are the other codes present).
        Nothing leaves the table, so the disclosure settings do not apply, and "auto" is the exact
        grid."""
        when = np.asarray(durations, dtype=float).ravel()
        code = np.asarray(event_observed).ravel()
        if code.size != when.size:
            raise DataError(f"event_observed has {code.size} values, durations has {when.size}")
        if not (np.isfinite(when).all() and (when >= 0).all()):
            raise DataError("durations: times must be finite and >= 0")
        integer = np.issubdtype(code.dtype, np.number) and np.all(code == np.round(code))
        if not (integer and np.all(code >= 0)):
            raise DataError("event_observed: want integer codes, 0 for a censored row")
        causes = [int(c) for c in np.unique(code[code != 0])]
        settings = checked_settings(self)
        settings.update(policy=LOCAL_POLICY, secure_aggregation=False, allow_small_time_cells=True,
                        shift_sparse_censoring=False)
        cohort = self._cohort(settings, "exact", "time", "cause", causes)
        table = pd.DataFrame({"time": when, "cause": code.astype(np.int64)})
        local = as_transport([Site("local", table, floors=LOCAL_FLOORS)])
        protocol = _approved_here(local, cohort, settings)
        return self._run(local, cohort, protocol, settings, event_of_interest, None)

    @staticmethod
    def _cohort(settings: dict[str, Any], auto: str, time: str, cause: str,
                causes: Sequence[str | int]) -> CohortSpec:
        grid = auto if settings["time_grid"] == "auto" else settings["time_grid"]
        return competing_cohort(time, cause, causes, time_grid=grid, time_unit=settings["time_unit"],
                                max_time=settings["max_time"])

    def _run(self, transport: Transport, cohort: CohortSpec, protocol: StudyProtocol,
             settings: dict[str, Any], event_of_interest: str | int,
             consent: ConsentGate | None) -> FederatedAalenJohansen:
        causes = [str(c) for c in (cohort.levels or ())[1:]]
        if str(event_of_interest) not in causes:
            raise DataError(f"event_of_interest={event_of_interest!r}: want one of the causes {causes}")
        session = "aj-" + hashlib.sha256(cohort.model_dump_json().encode()).hexdigest()[:16]
        coord = Coordinator(transport, session=session, protocol=protocol, timeout=settings["timeout"])
        return self._set(fit_aalen_johansen(coord, cohort, consent=consent), str(event_of_interest))

    def _set(self, fit: CompetingFit, cause: str) -> FederatedAalenJohansen:
        c, j = fit.incidence, fit.causes.index(cause)
        start = c.times.size == 0 or c.times[0] > 0.0  # lifelines' timeline starts at 0
        pad = (lambda v: np.concatenate(([0.0], v))) if start else (lambda v: v)
        index = pd.Index(pad(c.times), name="event_at")
        self.fit_ = fit
        self.event_of_interest_ = cause
        self.cumulative_density_ = pd.DataFrame({f"CIF_{cause}": pad(c.cif[j])}, index=index)
        self.confidence_interval_ = pd.DataFrame({f"{self.label}_lower_0.95": pad(c.lower[j]),
                                                  f"{self.label}_upper_0.95": pad(c.upper[j])}, index=index)
        self.variance_ = pd.Series(pad(c.variance[j]), index=index, name="variance")
        return self

    def cumulative_density_at_times(self, times: Sequence[float] | np.ndarray) -> pd.Series:
        """F(t) of the event of interest at ``times`` (the released step function; 0 before the first
        released time), as lifelines'."""
        check_is_fitted(self, "fit_")
        t = np.atleast_1d(np.asarray(times, dtype=float))
        j = self.fit_.causes.index(self.event_of_interest_)
        return pd.Series(self.fit_.incidence.cif_at(t)[j], index=t, name=f"CIF_{self.event_of_interest_}")


def _approved_here(transport: Transport, cohort: CohortSpec, settings: dict[str, Any]) -> StudyProtocol:
    """The study over ``cohort``, approved at each in-process site (their operator is the caller); sites
    outside this process answer only for a study their operators approved (pass its protocol)."""
    if not isinstance(transport, InProcessTransport):
        raise DataError("sites outside this process answer only for a study their operators approved: "
                        "pass that study's protocol (fedprog site approve)")
    members = [s for s in transport.members() if isinstance(s, Site)]
    if len(members) != len(transport.members()):
        raise DataError("every in-process site must be a federated.site.Site to approve the study")
    study = StudyProtocol(study_id="fedprog-aalen-johansen", cohorts=(cohort,), policy=settings["policy"],
                          secure=settings["secure_aggregation"],
                          allow_small_time_cells=settings["allow_small_time_cells"],
                          shift_sparse_censoring=settings["shift_sparse_censoring"])
    return approve_in_process(members, study)

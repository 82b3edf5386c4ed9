"""Absolute risk of one cause before the others from federated cause-specific Cox models.

>>> csc = FederatedCauseSpecificCox(time_unit="year", max_time=10.0)
>>> csc.fit_sites(sites, "years", "cause", ["age", "nodes"], event_of_interest=1, causes=[1, 2])
>>> csc.summary_                                   # lifelines' coefficient table, one block per cause
>>> csc.predict_absolute_risk(X, times=[5.0])      # risk of cause 1 by 5 years, before cause 2

One Cox model per declared cause k, fitted over the sites with events of cause k as events and every
other cause censored at its time (the cause-specific hazard; Putter, Fiocco & Geskus 2007, *Stat Med*
26:2389–2430, §3.2). Each site derives that indicator itself from its cause column
(:func:`federated.site.data.cause_index`), for a cause, a column and codes its operator approved
(``CohortSpec.cause``, ``CohortSpec.causes``); the Cox rounds (:func:`federated.analyses.cox.fit_cox`)
and their disclosure rules are those of any Cox fit, and a site's atoms are per code of the cause
column (censored, each cause) and interval of the grid, as in the Aalen–Johansen rounds. All causes
are fitted on one rung of the time ladder over the same sites, so the models share the rows the
absolute risk combines (:func:`prognosis.competing.absolute_risk`: Benichou & Gail 1990; Ozenne et al.
2017, riskRegression's ``predictRisk`` of a ``CSC`` fit)::

    F_c(t | x) = Σ_{u ≤ t} S(u− | x) e^{η_c(x)} ΔH0_c(u),    S(u− | x) = exp(−Σ_k e^{η_k(x)} H0_k(u−))

with H0_k Breslow's baseline of cause k at the reference patient and η_k(x) = β_k·(x − ref). Each
fit equals lifelines' ``CoxPHFitter`` on the pooled rows (times as the sites coarsened them), so the
absolute risk equals the one computed from pooled fits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from federated.analyses.cox import CoxFit, fit_cox
from federated.analyses.estimator_settings import check_sites, columns, feature_matrix, study_of
from federated.analyses.summary import cox_summary
from federated.disclosure.policy import DisclosurePolicy
from federated.disclosure.rules import StudyProtocol
from federated.exceptions import DataError
from federated.protocol.coordinator import Coordinator
from federated.protocol.messages import ConsentGate
from federated.protocol.transport import InProcessTransport, Transport, as_transport
from federated.site.handler import Site, approve_in_process
from federated.study import LADDER, CohortSpec, InputSpec, StudySpec
from prognosis.competing import absolute_risk


def cause_specific_cohorts(base: CohortSpec, causes: Sequence[str | int]) -> tuple[CohortSpec, ...]:
    """One cause-specific cohort per declared cause: ``base`` (its ``event`` the cause column) with
    ``cause`` = that code and ``causes`` = all of them (what a study approves; DataError if unusable)."""
    codes = tuple(str(c) for c in causes)
    if not codes or "0" in codes or len(set(codes)) != len(codes):
        raise DataError(f"causes={list(causes)!r}: want the codes of the cause column, each once, without 0 "
                        "(censored)")
    fields = base.model_dump()
    return tuple(CohortSpec.model_validate({**fields, "cause": code, "causes": codes}) for code in codes)


def _rung(grid: str) -> int:
    return LADDER.index(grid) if grid in LADDER else -1


def fit_cause_specific(coord: Coordinator, cohorts: Sequence[CohortSpec], study: StudySpec,
                       consent: ConsentGate | None = None) -> tuple[CoxFit, ...]:
    """Every cohort's Cox fit over the sites behind ``coord``, all on one rung and over the same sites.

    Each fit climbs the time ladder on its own (:func:`federated.analyses.cox.fit_cox`); when the causes
    stop on different rungs, or a site dropped in a later fit took part in an earlier one, every cause
    is fitted again from the coarsest rung reached, among the remaining sites (``coord`` keeps them).
    """
    grid: str = cohorts[0].time_grid
    for _ in range(len(LADDER) + 2):
        fits = tuple(fit_cox(coord, c.model_copy(update={"time_grid": grid}), ties=study.ties,
                             penalty=study.penalty, tol=study.tol, max_iter=study.max_iter,
                             policy=study.policy, consent=consent) for c in cohorts)
        grid = max((f.time_grid for f in fits), key=_rung)
        if all(f.time_grid == grid and f.sites == fits[-1].sites for f in fits):
            return fits
    raise DataError("the cause-specific fits did not settle on one time grid and one set of sites")


class FederatedCauseSpecificCox(BaseEstimator):
    """Cause-specific Cox models over hospitals and the absolute risk of one cause before the others.

    Parameters
    ----------
    ties, penalty, time_grid, time_unit, max_time, secure_aggregation, allow_small_time_cells,
    shift_sparse_censoring, policy, inputs, tol, max_iter, timeout
        As :class:`~federated.analyses.estimator.FederatedCoxPH` ("auto": the "day" grid); ``inputs``
        declare the covariates' ranges and the reference patient every baseline is released at.
    product_limit : bool, default False
        Event-free survival in the absolute risk as the product integral instead of exp(−Σ_k H_k)
        (:func:`prognosis.competing.absolute_risk`).

    Attributes
    ----------
    causes_ : tuple of str — the declared codes, in order; ``event_of_interest_`` one of them
    fits_ : dict code → CoxFit
    params_ : DataFrame (covariate × cause) of the coefficients
    summaries_ : dict code → DataFrame, lifelines' ``CoxPHFitter.summary`` columns
    summary_ : DataFrame, the summaries stacked, index (cause, covariate)
    baseline_cumulative_hazard_ : dict code → DataFrame, H0_k at the reference patient (index "time")
    center_ : ndarray — the reference patient's design columns
    time_grid_ : str — the rung every cause was fitted on
    """

    def __init__(self, *, ties: str = "efron", penalty: float = 0.0, time_grid: str = "auto",
                 time_unit: str = "day", max_time: float | None = None, secure_aggregation: bool = True,
                 allow_small_time_cells: bool = False, shift_sparse_censoring: bool = False,
                 policy: DisclosurePolicy | Mapping[str, Any] | None = None,
                 inputs: Mapping[str, InputSpec | Mapping[str, Any]] | None = None,
                 product_limit: bool = False, tol: float = 1e-10, max_iter: int = 100,
                 timeout: float = 120.0) -> None:
        self.ties = ties
        self.penalty = penalty
        self.time_grid = time_grid
        self.time_unit = time_unit
        self.max_time = max_time
        self.secure_aggregation = secure_aggregation
        self.allow_small_time_cells = allow_small_time_cells
        self.shift_sparse_censoring = shift_sparse_censoring
        self.policy = policy
        self.inputs = inputs
        self.product_limit = product_limit
        self.tol = tol
        self.max_iter = max_iter
        self.timeout = timeout

    def fit_sites(self, sites: Sequence[Site] | Transport, time: str, cause: str, covariates: Sequence[str],
                  *, event_of_interest: str | int, causes: Sequence[str | int],
                  consent: ConsentGate | None = None,
                  protocol: StudyProtocol | None = None) -> FederatedCauseSpecificCox:
        """Fit one Cox model per cause over hospitals: in-process :class:`Site` objects (approved here)
        or a :class:`Transport` reaching them (pass the ``protocol`` their operators approved, holding
        :func:`cause_specific_cohorts`). ``cause`` holds 0 (censored) or one of ``causes`` (public
        codes); ``event_of_interest`` is one of them. Raises DataError, PolicyError, SiteError."""
        check_sites(sites, "FederatedCauseSpecificCox.fit_sites")
        if not isinstance(self.product_limit, bool):
            raise DataError(f"product_limit={self.product_limit!r}: want True or False")
        study = study_of(self, "day", time=time, event=cause, covariates=columns(covariates))
        cohorts = cause_specific_cohorts(study.cohort(), causes)
        codes = cohorts[0].causes
        if str(event_of_interest) not in codes:
            raise DataError(f"event_of_interest={event_of_interest!r}: want one of the causes {list(codes)}")
        transport = as_transport(sites if isinstance(sites, Transport) else list(sites))
        approved = protocol if protocol is not None else _approved_here(transport, cohorts, study)
        session = "csc-" + hashlib.sha256(study.model_dump_json(exclude={"sites"}).encode()).hexdigest()[:16]
        coord = Coordinator(transport, session=session, protocol=approved, timeout=study.timeout)
        fits = fit_cause_specific(coord, cohorts, study, consent)
        return self._set(dict(zip(codes, fits, strict=True)), study, str(event_of_interest))

    def _set(self, fits: dict[str, CoxFit], study: StudySpec, cause: str) -> FederatedCauseSpecificCox:
        first = next(iter(fits.values()))
        self.fits_, self._study = fits, study
        self.causes_, self.event_of_interest_ = tuple(fits), cause
        self.time_grid_, self.center_ = first.time_grid, first.center
        self.feature_names_in_ = np.array(list(study.covariates), dtype=object)
        self.n_features_in_ = len(study.covariates)
        self.params_ = pd.DataFrame({c: f.coef for c, f in fits.items()},
                                    index=pd.Index(list(first.covariates), name="covariate"))
        self.params_.columns.name = "cause"
        self.summaries_ = {c: cox_summary(f) for c, f in fits.items()}
        self.summary_ = pd.concat(self.summaries_, names=["cause"])
        self.baseline_cumulative_hazard_ = {
            c: pd.DataFrame({f"H0_{c}": f.baselines[0].cumulative_hazard},
                            index=pd.Index(f.baselines[0].times, name="time")) for c, f in fits.items()}
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "fits_"):
            raise NotFittedError("this FederatedCauseSpecificCox is not fitted yet: call fit_sites first")

    def predict_linear_predictor(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """η_k = β_k·(x − ref) of each cause's model, shape (C, n) (design columns of ``X``'s covariates)."""
        self._fitted()
        x = self._study.design().matrix(feature_matrix(self, X)) - self.center_
        return np.stack([x @ f.coef for f in self.fits_.values()])

    def predict_absolute_risk(self, X: pd.DataFrame | np.ndarray, times: Sequence[float] | np.ndarray,
                              cause: str | int | None = None) -> np.ndarray:
        """F_c(t | x): each patient's risk of ``cause`` (default the event of interest) by each time,
        before any competing cause, shape (n, len(times)) (:func:`prognosis.competing.absolute_risk`).

        Raises DataError for an unknown cause or a risk the sparse tail makes undefined (predict at
        earlier times)."""
        self._fitted()
        code = self.event_of_interest_ if cause is None else str(cause)
        if code not in self.causes_:
            raise DataError(f"cause={cause!r}: want one of the causes {list(self.causes_)}")
        base = [f.baselines[0] for f in self.fits_.values()]
        try:
            return absolute_risk([b.times for b in base], [b.cumulative_hazard for b in base],
                                 self.predict_linear_predictor(X), np.asarray(times, dtype=float),
                                 self.causes_.index(code), product_limit=self.product_limit)
        except ValueError as exc:
            raise DataError(str(exc)) from None


def _approved_here(transport: Transport, cohorts: Sequence[CohortSpec], study: StudySpec) -> StudyProtocol:
    """The study over the cause-specific ``cohorts``, approved at each in-process site (their operator
    is the caller); sites outside this process answer only for a study their operators approved."""
    if not isinstance(transport, InProcessTransport):
        raise DataError("sites outside this process answer only for a study their operators approved: "
                        "pass that study's protocol (fedprog site approve)")
    members = [s for s in transport.members() if isinstance(s, Site)]
    if len(members) != len(transport.members()):
        raise DataError("every in-process site must be a federated.site.Site to approve the study")
    return approve_in_process(members, StudyProtocol(
        study_id="fedprog-cause-specific-cox", cohorts=tuple(cohorts), policy=study.policy,
        secure=study.secure_aggregation, allow_small_time_cells=study.allow_small_time_cells,
        shift_sparse_censoring=study.shift_sparse_censoring))

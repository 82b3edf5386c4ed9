"""The federated Cox model with scikit-learn's face and lifelines' tables (``fedprog.FederatedCoxPH``).

>>> cox = FederatedCoxPH(ties="efron", max_time=1826.25)
>>> cox.fit_sites(sites, time="time", event="event", covariates=["age", "pnodes"])  # federated
>>> cox.fit(X, y)            # scikit-survival's convention: one local table, y = Surv.from_arrays(…)
>>> cox.summary_             # lifelines' CoxPHFitter.summary columns; cox.print_summary()
>>> cox.score(X, y)          # Harrell's C, as sksurv.metrics.concordance_index_censored
>>> cox.to_artifact()        # the sealed fedprog.model/v1 artifact

Every setting is an ``__init__`` argument, stored as given (scikit-learn's convention, so
``sklearn.base.clone`` and ``get_params``/``set_params`` work) and checked when fitting: a bad value
raises :class:`~federated.exceptions.DataError` (a ``ValueError``) quoting it, e.g.
``ties='Efron': want 'efron' or 'breslow'`` (:mod:`federated.analyses.estimator_settings`).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from federated.analyses.artifact import build_artifact
from federated.analyses.cox import CoxFit, fit_cox
from federated.analyses.dp_cox import fit_dp_cox, privacy_record
from federated.analyses.estimator_settings import (
    EVENT,
    TIME,
    check_sites,
    columns,
    design_frame,
    feature_matrix,
    local_sites,
    local_study,
    study_of,
    survival_target,
)
from federated.analyses.knots import placed_study
from federated.analyses.runner import study_protocol
from federated.analyses.summary import cox_summary, format_cox_summary
from federated.disclosure.dp import DPSettings
from federated.disclosure.policy import DisclosurePolicy
from federated.disclosure.rules import StudyProtocol
from federated.exceptions import DataError
from federated.protocol.coordinator import Coordinator
from federated.protocol.messages import ConsentGate
from federated.protocol.transport import Transport, as_transport
from federated.site.handler import Site
from federated.study import InputSpec, StudySpec
from prognosis import step_at
from prognosis.schema import IntendedUse


class FederatedCoxPH(BaseEstimator):
    """Cox proportional-hazards model fitted over hospitals from aggregates only (Cox 1972).

    Parameters
    ----------
    ties : {"efron", "breslow"}, default "efron"
        Tied event times: Efron (1977) as lifelines, or Breslow (1974) as scikit-survival's default.
    penalty : float >= 0, default 0
        Ridge penalty λ: maximises ℓ(β) − ½λ‖β‖² (scikit-survival's ``alpha``).
    strata : str, optional
        Stratum column (a baseline per stratum); with secure aggregation declare its ``levels``.
    strata_by_site : bool, default False
        Stratify by hospital as well.
    levels : list of str, optional
        Declared stratum levels (public, so sites need not reveal which they hold).
    time_grid : {"auto", "exact", "day", "week", "month", "quarter", "year"}, default "auto"
        Finest public time grid; the coordinator coarsens it until every site's cells hold 0 or at
        least ``min_cell_count`` patients, and the fit is exact on times coarsened to the rung it
        reached (``fit_.time_grid``). "auto": "day" for :meth:`fit_sites`, "exact" for :meth:`fit`.
    time_unit : {"day", "week", "month", "year"}, default "day"
        Unit of the time column.
    max_time : float > 0, optional
        Administrative censoring at this time (a public horizon; needed on coarse grids).
    secure_aggregation : bool, default True
        Sites mask their replies; the coordinator decodes only sums over sites.
    allow_small_time_cells : bool, default False
        The loud opt-in to exact (per-patient) time cells.
    shift_sparse_censoring : bool, default False
        Sites may move a few sparse censorings into a neighbouring cell instead of refusing
        (:func:`federated.disclosure.cells.shift_sparse_censoring`).
    policy : DisclosurePolicy or dict, optional
        The study's disclosure rules (default :class:`DisclosurePolicy`: 3 sites, k = 5, …).
    dp : DPSettings or dict, optional
        Differential privacy (off by default): the noisy-Newton fit of :mod:`federated.analyses.dp_cox`.
    inputs : dict of str to InputSpec or dict, optional
        Declared inputs (code, UCUM unit, range, reference patient) for the artifact and the centre; a
        ``spline`` enters an input as a restricted cubic spline, a ``category`` without ``ordinal`` is
        dummy-coded (:mod:`prognosis.design`).
    interactions : list of (str, str), optional
        Declared interactions between covariates (the product of their design columns).
    missing : {"refuse", "complete-case"}, default "refuse"
        Rows missing a value: refused in one line, or left out at each site and counted (rounded to k).
    intended_use : IntendedUse or dict, optional
        What the device enforces of the intended purpose (population, sex, maximum result age, the event
        in words), carried by the artifact.
    range_bins : int, default 10
        Bins of the securely summed coverage histogram of each declared range.
    horizons : list of float, optional
        Horizons of the risk the artifact serves.
    model_id, version, outcome : str
        The artifact's identity and outcome name.
    tol : float > 0, default 1e-10
        Newton–Raphson stops when max |Δβ| < tol.
    max_iter : int >= 1, default 100
        Newton–Raphson iterations at most.
    timeout : float > 0, default 120
        Seconds to wait for a site's reply in each round.

    Attributes
    ----------
    params_, standard_errors_, hazard_ratios_ : pandas.Series (p,), index "covariate"
    summary_ : pandas.DataFrame — :func:`~federated.analyses.summary.cox_summary`
    variance_matrix_ : pandas.DataFrame (p, p)
    coef_, covariance_, center_ : ndarray — β, its covariance, the reference patient
    baseline_times_, baseline_survival_, unique_times_ : ndarray (K,) — S0 at the reference patient
        on the event-time grid (unstratified fits)
    log_likelihood_ : float
    n_features_in_, feature_names_in_ : the covariates
    fit_ : CoxFit
    """

    def __init__(self, *, ties: str = "efron", penalty: float = 0.0, strata: str | None = None,
                 strata_by_site: bool = False, levels: Sequence[str] | None = None,
                 time_grid: str = "auto", time_unit: str = "day", max_time: float | None = None,
                 secure_aggregation: bool = True, allow_small_time_cells: bool = False,
                 shift_sparse_censoring: bool = False,
                 policy: DisclosurePolicy | Mapping[str, Any] | None = None,
                 dp: DPSettings | Mapping[str, Any] | None = None,
                 inputs: Mapping[str, InputSpec | Mapping[str, Any]] | None = None,
                 interactions: Sequence[Sequence[str]] | None = None, missing: str = "refuse",
                 intended_use: IntendedUse | Mapping[str, Any] | None = None, range_bins: int = 10,
                 horizons: Sequence[float] | None = None, model_id: str = "fedprog-cox",
                 version: str = "1", outcome: str = "event", tol: float = 1e-10, max_iter: int = 100,
                 timeout: float = 120.0) -> None:
        self.ties = ties
        self.penalty = penalty
        self.strata = strata
        self.strata_by_site = strata_by_site
        self.levels = levels
        self.time_grid = time_grid
        self.time_unit = time_unit
        self.max_time = max_time
        self.secure_aggregation = secure_aggregation
        self.allow_small_time_cells = allow_small_time_cells
        self.shift_sparse_censoring = shift_sparse_censoring
        self.policy = policy
        self.dp = dp
        self.inputs = inputs
        self.interactions = interactions
        self.missing = missing
        self.intended_use = intended_use
        self.range_bins = range_bins
        self.horizons = horizons
        self.model_id = model_id
        self.version = version
        self.outcome = outcome
        self.tol = tol
        self.max_iter = max_iter
        self.timeout = timeout

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True  # y: structured (event, time), as scikit-survival's
        return tags

    # ------------------------------------------------------------------ fit
    def fit_sites(self, sites: Sequence[Site] | Transport, time: str, event: str,
                  covariates: Sequence[str], *, consent: ConsentGate | None = None,
                  protocol: StudyProtocol | None = None) -> FederatedCoxPH:
        """Fit over hospitals: in-process :class:`Site` objects (each holding its own table) or a
        :class:`Transport` reaching them (then pass the ``protocol`` their operators approved).

        ``time``, ``event`` and ``covariates`` name the sites' columns. Raises DataError (a bad
        setting, unusable data), PolicyError (a disclosure rule refused), SiteError, TypeError.
        """
        check_sites(sites, "FederatedCoxPH.fit_sites")
        study = study_of(self, "day", time=time, event=event, covariates=columns(covariates))
        reach = sites if isinstance(sites, Transport) else list(sites)
        fit, privacy = fit_study(study, reach, consent=consent, protocol=protocol)
        return self._set(fit, study, privacy)

    def fit(self, X: pd.DataFrame | np.ndarray, y: np.ndarray) -> FederatedCoxPH:
        """Fit on one local table (scikit-survival's convention).

        ``X`` (n, p): a DataFrame (its columns name the covariates, and hold ``strata``) or an
        array (covariates ``x0``, ``x1``, …); ``y`` (n,): a structured array, event indicator first
        and time second (``sksurv.util.Surv.from_arrays``). Nothing leaves the table, so the
        disclosure settings (``policy``, ``secure_aggregation``, ``allow_small_time_cells``) do not
        apply, and "auto" is the exact time grid; ``dp`` is refused (it protects what leaves a site).
        """
        frame = design_frame(X, keep=self.strata)
        event, when = survival_target(y, len(frame))
        cov = [c for c in frame.columns if c != self.strata]
        frame[EVENT], frame[TIME] = event.astype(np.int64), when
        study = local_study(study_of(self, "exact", time=TIME, event=EVENT, covariates=cov))
        sites, protocol = local_sites(frame, study)
        fit, _ = fit_study(study, sites, protocol=protocol)
        return self._set(fit, study)

    def _set(self, fit: CoxFit, study: StudySpec | None = None,
             privacy: dict[str, Any] | None = None) -> FederatedCoxPH:
        index = pd.Index(list(fit.covariates), name="covariate")
        self.fit_ = fit
        self.coef_, self.covariance_, self.center_ = fit.coef, fit.covariance, fit.center
        self.params_ = pd.Series(fit.coef, index=index, name="coef")
        self.standard_errors_ = pd.Series(fit.se, index=index, name="se")
        self.hazard_ratios_ = pd.Series(np.exp(fit.coef), index=index, name="exp(coef)")
        self.variance_matrix_ = pd.DataFrame(fit.covariance, index=index, columns=index)
        self.summary_ = cox_summary(fit)
        self.log_likelihood_ = fit.loglik
        features = list(study.covariates) if study is not None else list(fit.covariates)
        self.n_features_in_ = len(features)
        self.feature_names_in_ = np.array(features, dtype=object)
        if len(fit.baselines) == 1:
            self.baseline_times_ = self.unique_times_ = fit.baselines[0].times
            self.baseline_survival_ = fit.baselines[0].survival
        self._study = None if study is None else placed_study(study, fit.placed_knots)  # knots as placed
        self._privacy = privacy
        return self

    # ------------------------------------------------------------- outputs
    def print_summary(self, decimals: int = 2, alpha: float = 0.05) -> None:
        """Print the fit's facts, the coefficient table and the likelihood-ratio test (lifelines' layout)."""
        check_is_fitted(self, "fit_")
        print(format_cox_summary(self.fit_, alpha=alpha, decimals=decimals, privacy=self._privacy))

    def to_artifact(self) -> dict[str, Any]:
        """The sealed ``fedprog.model/v1`` artifact of the fit (built by
        :func:`~federated.analyses.artifact.build_artifact` under the fit's settings; a fresh dict)."""
        check_is_fitted(self, "fit_")
        if self._study is None:
            raise DataError("this estimator holds a bare CoxFit: fit it with fit() or fit_sites()")
        return build_artifact(self.fit_, self._study, privacy=copy.deepcopy(self._privacy))

    # -------------------------------------------------------------- predict
    def _x(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The design columns (n, m) of ``X``'s covariates (:mod:`prognosis.design`)."""
        check_is_fitted(self, "fit_")
        x = feature_matrix(self, X)
        return x if self._study is None else self._study.design().matrix(x)

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Risk score β·(x − c), shape (n,): higher means higher risk (c the reference, ``center_``)."""
        return np.asarray((self._x(X) - self.center_) @ self.coef_)

    def score(self, X: pd.DataFrame | np.ndarray, y: np.ndarray) -> float:
        """Harrell's concordance index of :meth:`predict` (``sksurv.metrics.concordance_index_censored``)."""
        from sksurv.metrics import concordance_index_censored

        event, when = survival_target(y, len(X))
        return float(concordance_index_censored(event, when, self.predict(X))[0])

    def predict_survival_function(self, X: pd.DataFrame | np.ndarray, times: Sequence[float] | None = None,
                                  return_array: bool = False) -> np.ndarray:
        """S(t | x) = S0(t)^exp(β·(x − c)) (Breslow's baseline), as scikit-survival returns it.

        By default an array of n ``sksurv.functions.StepFunction`` (callable on [0, last event time];
        1 before the first event). ``return_array=True``: shape (n, K), at ``unique_times_``.
        ``times`` given: shape (n, len(times)), at those times (1 before the first event time).
        """
        if not hasattr(self, "baseline_survival_"):
            raise DataError("survival prediction of a stratified model needs the stratum's baseline "
                            "(fit_.baselines)")
        if times is None and not return_array:
            from sksurv.functions import StepFunction

            grid, start = self.baseline_times_, self.baseline_times_.size == 0 or self.baseline_times_[0] > 0
            x = np.concatenate(([0.0], grid)) if start else grid
            s = self.baseline_survival_[None, :] ** np.exp(self.predict(X))[:, None]
            rows = np.hstack((np.ones((s.shape[0], 1)), s)) if start else s
            return np.array([StepFunction(x, row) for row in rows])
        t = self.baseline_times_ if times is None else np.asarray(times, dtype=float)
        s0 = step_at(self.baseline_times_, self.baseline_survival_, t)
        return np.asarray(s0[None, :] ** np.exp(self.predict(X))[:, None])

    def predict_risk(self, X: pd.DataFrame | np.ndarray, horizons: Sequence[float]) -> np.ndarray:
        """Absolute risk of the event by each horizon, 1 − S(h | x), shape (n, len(horizons))."""
        return 1.0 - self.predict_survival_function(X, horizons)


def fit_study(study: StudySpec, sites: list[Site] | Transport, *, consent: ConsentGate | None = None,
              protocol: StudyProtocol | None = None) -> tuple[CoxFit, dict[str, Any] | None]:
    """The study's Cox fit over ``sites`` and, for a differentially private one, its privacy record
    (:func:`federated.analyses.runner.train` without the artifact, which :meth:`FederatedCoxPH.to_artifact`
    builds when asked: a fit stands even where no artifact can be released)."""
    if study.dp.enabled and study.penalty > 0:
        raise DataError("a differentially private Cox fit takes no penalty: set penalty = 0")
    transport = as_transport(sites)
    approved = study_protocol(study, transport, protocol)
    digest = hashlib.sha256(study.model_dump_json(exclude={"sites"}).encode()).hexdigest()[:16]
    coord = Coordinator(transport, session=f"estimator-{digest}", protocol=approved, timeout=study.timeout)
    if approved.dp is not None:
        private = fit_dp_cox(coord, study.cohort(), policy=study.policy, consent=consent)
        return private, privacy_record(approved.dp, private, study.cohort())
    if study.dp.enabled:
        raise DataError("the study enables differential privacy but the sites' approved protocol does not")
    return fit_cox(coord, study.cohort(), ties=study.ties, penalty=study.penalty, tol=study.tol,
                   max_iter=study.max_iter, policy=study.policy, consent=consent), None

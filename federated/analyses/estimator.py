"""A scikit-learn face for the federated Cox model, usable with scikit-survival's metrics.

>>> est = FederatedCoxPH(ties="efron").fit_sites(sites, cohort)     # federated
>>> est = FederatedCoxPH().fit(X, y)                                 # pooled, one site
>>> est.predict(X)               # risk score β·(x − c), for concordance_index_censored
>>> est.predict_risk(X, [365])   # absolute risk 1 − S(h | x)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from federated.analyses.cox import CoxFit, fit_cox
from federated.disclosure.policy import DisclosurePolicy
from federated.disclosure.rules import SiteFloors, StudyProtocol
from federated.protocol.coordinator import Coordinator
from federated.protocol.transport import InProcessTransport
from federated.site.handler import Site, approve_in_process
from federated.study import CohortSpec


class FederatedCoxPH:
    """Cox proportional-hazards model fitted over sites (Efron or Breslow ties).

    Parameters
    ----------
    ties : {"efron", "breslow"}, default "efron"
        Handling of tied event times (Efron 1977; Breslow 1974).
    penalty : float, default 0
        Ridge penalty λ: maximises ℓ(β) − ½λ‖β‖² (scikit-survival's ``alpha``).
    tol : float, default 1e-10
        Convergence when max |Δβ| < tol.
    max_iter : int, default 100
        Newton–Raphson iterations at most.

    Attributes
    ----------
    coef_ : ndarray (p,)
    covariance_ : ndarray (p, p)
    center_ : ndarray (p,)
        Global covariate means; the baseline refers to them.
    baseline_times_, baseline_survival_ : ndarray (K,)
        Breslow baseline survival S0 on the global event-time grid (unstratified fits).
    fit_ : CoxFit
    """

    def __init__(self, ties: str = "efron", penalty: float = 0.0, tol: float = 1e-10,
                 max_iter: int = 100) -> None:
        self.ties = ties
        self.penalty = penalty
        self.tol = tol
        self.max_iter = max_iter

    # ------------------------------------------------------------------ fit
    def fit_sites(self, sites: Sequence[Site], cohort: CohortSpec, *, secure: bool = True,
                  policy: DisclosurePolicy | None = None, max_abs_lp: float = 30.0) -> FederatedCoxPH:
        """Fit over in-process ``sites`` (each holding its own table), secure aggregation on."""
        rules = policy or DisclosurePolicy()
        protocol = approve_in_process(sites, StudyProtocol(study_id="estimator", cohorts=(cohort,),
                                                           policy=rules, secure=secure,
                                                           max_abs_lp=max_abs_lp))
        coord = Coordinator(InProcessTransport(sites), session="estimator", protocol=protocol)
        return self._set(fit_cox(coord, cohort, ties=self.ties, penalty=self.penalty,
                                 tol=self.tol, max_iter=self.max_iter, policy=rules))

    def fit(self, X: pd.DataFrame | np.ndarray, y: np.ndarray) -> FederatedCoxPH:
        """Pooled fit on one in-process site; ``y`` is a structured (event, time) array."""
        frame = X.copy() if isinstance(X, pd.DataFrame) else \
            pd.DataFrame(np.asarray(X, dtype=float), columns=[f"x{i}" for i in range(np.shape(X)[1])])
        event_field, time_field = y.dtype.names or ("", "")  # scikit-survival's Surv layout
        frame["__event"], frame["__time"] = y[event_field].astype(int), y[time_field]
        cohort = CohortSpec(time="__time", event="__event",
                            covariates=tuple(str(c) for c in frame.columns[:-2]))
        # one local table: nothing crosses a site boundary, so no masking and no site rules
        local = SiteFloors(min_sites=1, min_patients_per_site=0, min_events_per_site=0, min_cell_count=1,
                           min_events_per_covariate=0, max_abs_lp=1e6)
        return self.fit_sites([Site("pooled", frame, floors=local)], cohort, secure=False, max_abs_lp=690.0,
                              policy=DisclosurePolicy(min_sites=1, min_patients_per_site=0,
                                                      min_events_per_site=0, min_cell_count=1,
                                                      min_events_per_covariate=0))

    def _set(self, fit: CoxFit) -> FederatedCoxPH:
        self.fit_ = fit
        self.coef_, self.covariance_, self.center_ = fit.coef, fit.covariance, fit.center
        self.feature_names_in_ = np.array(fit.covariates, dtype=object)
        if len(fit.baselines) == 1:
            self.baseline_times_ = fit.baselines[0].times
            self.baseline_survival_ = fit.baselines[0].survival
        return self

    # -------------------------------------------------------------- predict
    def _x(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            X = X[list(self.fit_.covariates)]
        return np.asarray(X, dtype=float)

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Linear predictor β·(x − c): higher means higher risk."""
        return (self._x(X) - self.center_) @ self.coef_

    def predict_survival_function(self, X: pd.DataFrame | np.ndarray,
                                  times: Sequence[float] | None = None) -> np.ndarray:
        """S(t | x) = S0(t)^exp(β·(x − c)), shape (n, len(times)); default times: the grid."""
        if not hasattr(self, "baseline_survival_"):
            raise ValueError("survival prediction of a stratified model needs the stratum")
        t = self.baseline_times_ if times is None else np.asarray(times, dtype=float)
        idx = np.searchsorted(self.baseline_times_, t, side="right") - 1
        s0 = np.where(idx >= 0, self.baseline_survival_[np.maximum(idx, 0)], 1.0)
        return s0[None, :] ** np.exp(self.predict(X))[:, None]

    def predict_risk(self, X: pd.DataFrame | np.ndarray, horizons: Sequence[float]) -> np.ndarray:
        """Absolute risk of the event by each horizon, 1 − S(h | x), shape (n, len(horizons))."""
        return 1.0 - self.predict_survival_function(X, horizons)

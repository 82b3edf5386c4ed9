"""Federated logistic regression with scikit-learn's face (``fedprog.FederatedLogisticRegression``).

>>> lr = FederatedLogisticRegression(horizon=1826.25, inputs={...})
>>> lr.fit_sites(sites, event="recurred_5y", covariates=["age", "pnodes"])   # over the hospitals
>>> lr.fit(X, y)                # scikit-learn's convention: one local table, y the recorded 0/1 outcome
>>> lr.summary_                 # coef, se(coef), odds ratio with its 95% CI, z, p (statsmodels' columns)
>>> lr.predict_proba(X)         # (n, 2): P(y = 0), P(y = 1)
>>> lr.to_artifact()            # the sealed fedprog.model/v1 artifact, kind "logistic"

The outcome is a binary outcome the hospitals recorded at the stated ``horizon``; a survival outcome
is never cut at a horizon to make one (:class:`federated.study.StudySpec` refuses it). Settings are
``__init__`` arguments, stored as given and checked when fitting
(:mod:`federated.analyses.estimator_settings`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from federated.analyses.artifact import build_logistic_artifact
from federated.analyses.estimator_settings import (
    EVENT,
    check_sites,
    columns,
    design_frame,
    feature_matrix,
    local_sites,
    local_study,
    study_of,
)
from federated.analyses.knots import placed_study
from federated.analyses.logistic import FederatedLogisticFit, fit_logistic
from federated.analyses.runner import study_protocol
from federated.disclosure.policy import DisclosurePolicy
from federated.disclosure.rules import StudyProtocol
from federated.exceptions import DataError
from federated.protocol.coordinator import Coordinator
from federated.protocol.messages import ConsentGate
from federated.protocol.transport import Transport, as_transport
from federated.site.handler import Site
from federated.study import InputSpec, StudySpec
from prognosis import wald
from prognosis.logistic import LogisticModel, expit
from prognosis.schema import INTERCEPT


class FederatedLogisticRegression(ClassifierMixin, BaseEstimator):
    """Logistic regression of a recorded binary outcome across hospitals, equal to the pooled fit.

    Parameters
    ----------
    penalty : float >= 0, default 0
        Ridge penalty λ on the slopes (the intercept is not penalised): maximises ℓ(β) − ½λ‖β₋₀‖²,
        scikit-learn's ``LogisticRegression(C = 1/λ)``.
    horizon : float > 0, optional
        When the outcome was recorded (e.g. recurrence within 1826.25 days): the artifact's horizon.
    time_unit : {"day", "week", "month", "year"}, default "day"
        Unit of ``horizon``.
    inputs : dict of str to InputSpec or dict, optional
        Declared inputs (codes, units, ranges, reference patient, splines, categories).
    interactions : list of (str, str), optional
        Declared interactions.
    missing : {"refuse", "complete-case"}, default "refuse"
        Rows missing a value: refused in one line, or left out at each site and counted.
    secure_aggregation : bool, default True
        Sites mask their sums; the coordinator decodes only totals over sites.
    policy : DisclosurePolicy or dict, optional
        The study's disclosure rules (default :class:`DisclosurePolicy`).
    model_id, version, outcome : str
        The artifact's identity and the outcome's name.
    tol : float > 0, default 1e-10
        Newton–Raphson stops once the squared Newton decrement is below it.
    max_iter : int >= 1, default 100
    timeout : float > 0, default 120
        Seconds to wait for a site's reply in each round.

    Attributes
    ----------
    coef_ : ndarray (1, p), intercept_ : ndarray (1,)
        scikit-learn's: slopes and the intercept at x = 0 (the design columns, :mod:`prognosis.design`).
    params_, standard_errors_, odds_ratios_ : pandas.Series, index "column"
        The released parametrisation: ``(intercept)`` is the log-odds of the reference patient.
    summary_ : pandas.DataFrame
    covariance_ : ndarray (p + 1, p + 1), of ``params_``
    log_likelihood_, log_likelihood_null_ : float
    n_features_in_, feature_names_in_ : the covariates
    fit_ : FederatedLogisticFit
    """

    def __init__(self, *, penalty: float = 0.0, horizon: float | None = None, time_unit: str = "day",
                 inputs: Mapping[str, InputSpec | Mapping[str, Any]] | None = None,
                 interactions: Sequence[Sequence[str]] | None = None, missing: str = "refuse",
                 secure_aggregation: bool = True, policy: DisclosurePolicy | Mapping[str, Any] | None = None,
                 model_id: str = "fedprog-logistic", version: str = "1", outcome: str = "event",
                 tol: float = 1e-10, max_iter: int = 100, timeout: float = 120.0) -> None:
        self.penalty = penalty
        self.horizon = horizon
        self.time_unit = time_unit
        self.inputs = inputs
        self.interactions = interactions
        self.missing = missing
        self.secure_aggregation = secure_aggregation
        self.policy = policy
        self.model_id = model_id
        self.version = version
        self.outcome = outcome
        self.tol = tol
        self.max_iter = max_iter
        self.timeout = timeout

    # ------------------------------------------------------------------ fit
    def _study(self, event: str, covariates: list[str]) -> StudySpec:
        if self.horizon is None:
            raise DataError("horizon: state when the binary outcome was recorded (e.g. 1826.25 days)")
        return study_of(self, "day", model="logistic", event=event, covariates=covariates,
                        horizons=[self.horizon])

    def fit_sites(self, sites: Sequence[Site] | Transport, event: str, covariates: Sequence[str], *,
                  consent: ConsentGate | None = None,
                  protocol: StudyProtocol | None = None) -> FederatedLogisticRegression:
        """Fit over hospitals (in-process :class:`Site` objects or a :class:`Transport` reaching them,
        with the ``protocol`` their operators approved); ``event`` names the recorded 0/1 outcome."""
        check_sites(sites, "FederatedLogisticRegression.fit_sites")
        study = self._study(event, columns(covariates))
        reach = sites if isinstance(sites, Transport) else list(sites)
        return self._set(_fit(study, reach, consent, protocol), study)

    def fit(self, X: pd.DataFrame | np.ndarray, y: Any) -> FederatedLogisticRegression:
        """Fit on one local table (scikit-learn's convention): ``y`` the recorded 0/1 outcome."""
        frame = design_frame(X)
        outcome = np.asarray(y, dtype=float).reshape(-1)
        if outcome.size != len(frame) or not np.all(np.isin(outcome, (0.0, 1.0))):
            raise DataError(f"y: want {len(frame)} outcomes, each 0 or 1")
        frame[EVENT] = outcome.astype(np.int64)
        study = local_study(self._study(EVENT, [c for c in frame.columns if c != EVENT]))
        sites, protocol = local_sites(frame, study)
        return self._set(_fit(study, sites, None, protocol), study)

    def _set(self, fit: FederatedLogisticFit, study: StudySpec) -> FederatedLogisticRegression:
        study = placed_study(study, fit.placed_knots)  # a spline's knots as the fit placed them
        self.fit_, self._study_spec = fit, study
        self.classes_ = np.array([0, 1])
        self.coef_ = fit.fit.coef[None, 1:]
        self.intercept_ = fit.fit.coef[:1]
        self.n_features_in_ = len(study.covariates)
        self.feature_names_in_ = np.array(study.covariates, dtype=object)
        model = LogisticModel.from_fit(fit.columns, fit.fit.coef, fit.fit.covariance,
                                       study.cohort().reference_columns())
        params = np.concatenate(([model.intercept], model.beta))
        se, ci, p = wald(params, model.covariance)
        index = pd.Index([INTERCEPT, *fit.columns], name="column")
        self.params_ = pd.Series(params, index=index, name="coef")
        self.standard_errors_ = pd.Series(se, index=index, name="se(coef)")
        self.odds_ratios_ = pd.Series(np.exp(params), index=index, name="exp(coef)")
        self.covariance_ = model.covariance
        self.summary_ = pd.DataFrame({"coef": params, "exp(coef)": np.exp(params), "se(coef)": se,
                                      "exp(coef) lower 95%": np.exp(ci[:, 0]),
                                      "exp(coef) upper 95%": np.exp(ci[:, 1]), "z": params / se, "p": p},
                                     index=index)
        self.log_likelihood_, self.log_likelihood_null_ = fit.fit.loglik, fit.fit.loglik_null
        return self

    def to_artifact(self) -> dict[str, Any]:
        """The sealed ``fedprog.model/v1`` artifact of the fit (``kind: "logistic"``)."""
        check_is_fitted(self, "fit_")
        return build_logistic_artifact(self.fit_, self._study_spec)

    # -------------------------------------------------------------- predict
    def decision_function(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The log-odds of the event, shape (n,)."""
        check_is_fitted(self, "fit_")
        d = self._study_spec.design().matrix(feature_matrix(self, X))
        return np.asarray(self.intercept_[0] + d @ self.coef_[0])

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """(n, 2): P(y = 0 | x), P(y = 1 | x)."""
        p = expit(self.decision_function(X))
        return np.column_stack((1.0 - p, p))

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """1 where P(y = 1 | x) > 1/2, else 0 (scikit-learn's rule; a prognosis reports the probability)."""
        return (self.decision_function(X) > 0).astype(np.int64)


def _fit(study: StudySpec, sites: list[Site] | Transport, consent: ConsentGate | None,
         protocol: StudyProtocol | None) -> FederatedLogisticFit:
    transport = as_transport(sites)
    approved = study_protocol(study, transport, protocol)
    digest = hashlib.sha256(study.model_dump_json(exclude={"sites"}).encode()).hexdigest()[:16]
    coord = Coordinator(transport, session=f"logistic-{digest}", protocol=approved, timeout=study.timeout)
    return fit_logistic(coord, study.cohort(), ridge=study.penalty, tol=study.tol, max_iter=study.max_iter,
                        policy=study.policy, consent=consent)

"""Federated logistic regression of a recorded binary outcome (the coordinator's side).

Each site opens the binary cohort (``prepare``: its patients, events, Σx, Σx², coverage, all masked
in a secure study) and then answers one ``logistic`` round per Newton step with the sums of its
Bernoulli log-likelihood, score and information at the coordinator's coefficients
(:func:`federated.logistic_math.site_sums`); the coordinator adds them up and steps
(:func:`federated.logistic_math.newton`), as DataSHIELD's ``ds.glm`` does (Gaye et al. 2014,
*Int J Epidemiol* 43:1929). The sums of the sites are the pooled sums, so the fit equals
``statsmodels``' binomial GLM on the pooled rows.

A binary outcome is the one the hospitals recorded (``event``, 0/1): a study never makes one by
cutting censored survival times at a horizon (:class:`federated.study.StudySpec` refuses it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from federated import logistic_math as lm
from federated.analyses.discovery import range_coverage
from federated.analyses.knots import placed_cohort, placed_knots, unplaced
from federated.disclosure.policy import DisclosurePolicy
from federated.exceptions import DataError
from federated.protocol.arrays import WireArray
from federated.protocol.coordinator import Coordinator, with_dropouts
from federated.protocol.messages import (
    ConsentGate,
    LogisticReply,
    LogisticRequest,
    PrepareReply,
    PrepareRequest,
)
from federated.study import CohortSpec


@dataclass(frozen=True)
class FederatedLogisticFit:
    """The fit over the sites and its federation record.

    ``columns`` name the slopes (the design columns, :mod:`prognosis.design`); ``fit`` holds the
    intercept and slopes (intercept first), their covariance and the likelihoods
    (:class:`federated.logistic_math.LogisticFit`). The coordinator knows totals only.
    """

    columns: tuple[str, ...]
    fit: lm.LogisticFit
    sites: tuple[str, ...]
    secure: bool
    rounds: int
    dropped: dict[str, str] = field(default_factory=dict)
    range_counts: dict[str, np.ndarray] = field(default_factory=dict)
    incomplete: dict[str, int] = field(default_factory=dict)
    consent_checkpoint: dict[str, Any] | None = None
    #: the knots placed at quantiles of the summed coverage histogram (:mod:`federated.analyses.knots`)
    placed_knots: dict[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.fit.n

    @property
    def events(self) -> int:
        return self.fit.events


def fit_logistic(coord: Coordinator, cohort: CohortSpec, *, ridge: float = 0.0, tol: float = 1e-10,
                 max_iter: int = 100, policy: DisclosurePolicy | None = None,
                 consent: ConsentGate | None = None) -> FederatedLogisticFit:
    """Logistic regression of ``cohort.event`` (a recorded 0/1 outcome; ``cohort.time`` is None) on the
    cohort's design columns over the coordinator's sites; a site that fails is excluded and the fit
    re-run among the others while ``policy`` still holds.

    Raises
    ------
    DataError, SiteError
        Unusable data (a survival cohort, an outcome that is not 0/1) or a site's refusal.
    PolicyError
        A disclosure rule refused the study (too few sites, too few events or non-events per column).
    SingularDesignError
        Collinear or constant columns, or separation (no finite estimate).
    """
    if cohort.time is not None:
        raise DataError("a logistic regression takes a binary cohort (a recorded 0/1 outcome, no time "
                        "column)")
    rules = policy or coord.protocol.policy
    return with_dropouts(coord, lambda: _fit_once(coord, cohort, ridge, tol, max_iter, rules, consent))


def _fit_once(coord: Coordinator, cohort: CohortSpec, ridge: float, tol: float, max_iter: int,
              policy: DisclosurePolicy, consent: ConsentGate | None) -> FederatedLogisticFit:
    policy.check_sites(len(coord.sites), coord.secure, coord.dropped)
    prep = coord.broadcast(PrepareRequest, PrepareReply, cohort=cohort, labels=[""], consent=consent)
    ranges = _range_counts(coord, prep, cohort)
    if unplaced(cohort):  # knots at quantiles of the summed histogram, then prepare afresh with them
        cohort = placed_cohort(cohort, ranges)
        coord.restart()
        prep = coord.broadcast(PrepareRequest, PrepareReply, cohort=cohort, labels=[""], consent=consent)
    columns = cohort.columns
    p = len(columns)
    n, events = coord.total(prep, "counts", (2,)).round().astype(np.int64).tolist()
    policy.check_saturation(min(events, n - events), p)  # events per column, of the rarer outcome

    def round_(beta: np.ndarray) -> lm.LogisticSums:
        rep = coord.broadcast(LogisticRequest, LogisticReply, beta=WireArray.from_numpy(beta))
        return lm.LogisticSums(n=n, events=events, loglik=float(coord.total(rep, "loglik", (1,))[0]),
                               score=coord.total(rep, "score", (p + 1,)),
                               information=coord.total(rep, "information", (p + 1, p + 1)))

    fit = lm.newton(round_, p, ridge=ridge, tol=tol, max_iter=max_iter)
    return FederatedLogisticFit(
        columns=columns, fit=fit, sites=tuple(coord.sites), secure=coord.secure, rounds=coord.rounds,
        dropped=dict(coord.dropped), range_counts=range_coverage(cohort, ranges),
        incomplete={s: r.incomplete for s, r in prep.items() if r.incomplete is not None},
        consent_checkpoint=None if consent is None else consent.model_dump(exclude={"job"}),
        placed_knots=placed_knots(cohort))


def _range_counts(coord: Coordinator, prep: dict[str, PrepareReply], cohort: CohortSpec) -> np.ndarray | None:
    """The summed coverage histograms of the cohort's declared ranges (None without any)."""
    n_ranges = sum(1 for c in cohort.covariates if c in cohort.ranges)
    return coord.total(prep, "range_counts", (n_ranges, cohort.range_bins + 2)).round() if n_ranges else None

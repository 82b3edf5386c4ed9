"""Federated Cox proportional-hazards fit: Newton–Raphson over the sites' sums.

The coordinator never sees a row: each Newton iteration costs two rounds (risk-set sums,
then the weighted information sums), and the result equals the pooled fit to numerical
precision because the partial likelihood is a function of those sums alone.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from federated import cox_math as cm
from federated.analyses.discovery import discover, range_coverage
from federated.analyses.knots import placed_cohort, placed_knots, unplaced
from federated.disclosure.policy import DisclosurePolicy
from federated.exceptions import ConvergenceError, DataError, SingularDesignError, SiteError
from federated.protocol.arrays import WireArray
from federated.protocol.coordinator import Coordinator, with_dropouts
from federated.protocol.messages import (
    ConsentGate,
    GridReply,
    GridRequest,
    InformationReply,
    InformationRequest,
    RiskSetReply,
    RiskSetRequest,
)
from federated.study import CohortSpec
from prognosis import wald

#: Newton steps in a row cut by a site's bound on the linear predictor before the fit gives up
_PRESSED = 5
#: largest |β·(reference − mean)|: beyond it the baseline at the reference under- or overflows
_MAX_SHIFT = 30.0


class ConvergenceWarning(UserWarning):
    """Newton–Raphson stopped at ``max_iter`` before the step became small."""


@dataclass(frozen=True)
class Baseline:
    """One stratum's baseline on its global grid, for the reference patient (``CoxFit.center``).

    ``events`` are the summed event counts per grid time (used to release the curve
    with small cells merged, :func:`federated.disclosure.policy.released_steps`). ``variance``
    (K,) and ``xbar`` (K, p) are the per-time increments Tsiatis' variance of the hazard needs
    (:func:`federated.cox_math.breslow_variance_increments`); None when the fit has no risk-set
    sums (a private fit).
    """

    label: str
    times: np.ndarray
    cumulative_hazard: np.ndarray
    events: np.ndarray
    variance: np.ndarray | None = None
    xbar: np.ndarray | None = None

    @property
    def survival(self) -> np.ndarray:
        return np.exp(-self.cumulative_hazard)


@dataclass(frozen=True)
class CoxFit:
    """Result of :func:`fit_cox`; all arrays in ``covariates`` order.

    The coordinator knows totals only: ``n`` and ``events`` over the contributing
    ``sites``; ``dropped`` names sites excluded during the fit, with the reason.
    """

    covariates: tuple[str, ...]
    coef: np.ndarray
    covariance: np.ndarray
    center: np.ndarray
    baselines: tuple[Baseline, ...]
    loglik: float
    loglik_null: float
    iterations: int
    rounds: int
    converged: bool
    ties: str
    penalty: float
    sites: tuple[str, ...]
    n: int
    events: int
    secure: bool
    strata: str | None = None
    dropped: dict[str, str] = field(default_factory=dict)
    range_counts: dict[str, np.ndarray] = field(default_factory=dict)
    consent_checkpoint: dict[str, Any] | None = None
    #: the rung of the time ladder every site accepted: the fit is exact on times coarsened to it
    time_grid: str = "day"
    #: complete-case studies: each contributing site's rows left out for a missing value (rounded to k)
    incomplete: dict[str, int] = field(default_factory=dict)
    #: the knots placed at quantiles of the summed coverage histogram (:mod:`federated.analyses.knots`)
    placed_knots: dict[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def se(self) -> np.ndarray:
        return wald(self.coef, self.covariance)[0]

    @property
    def z(self) -> np.ndarray:
        return self.coef / self.se

    @property
    def p_value(self) -> np.ndarray:
        """Two-sided Wald p-values (:func:`prognosis.wald`)."""
        return wald(self.coef, self.covariance)[2]

    @property
    def ci(self) -> np.ndarray:
        """Wald 95% interval of each coefficient, shape (p, 2) (:func:`prognosis.wald`)."""
        return wald(self.coef, self.covariance)[1]


@dataclass
class _State:
    beta: np.ndarray
    loglik: float
    score: np.ndarray
    s0: np.ndarray
    s1: np.ndarray
    t1: np.ndarray | None
    terms: cm.TieTerms


class _Problem:
    """The coordinator's view of one fit: global grid, counts and the rounds to ask."""

    def __init__(self, coord: Coordinator, cohort: CohortSpec, ties: str, penalty: float,
                 policy: DisclosurePolicy, consent: ConsentGate | None) -> None:
        self.coord, self.efron, self.penalty = coord, ties == "efron", penalty
        self.names = cohort.columns
        p = len(self.names)
        if p == 0:
            raise DataError("a Cox model needs at least one covariate")
        disc = discover(coord, cohort, policy, consent)
        policy.check_saturation(disc.events, p)
        self.n, self.events = disc.n, disc.events
        self.incomplete = disc.incomplete
        self.time_grid = disc.cohort.time_grid
        self.ranges = range_coverage(cohort, disc.range_counts)
        # numerics: the sites centre on the data mean (the coordinator knows it); a release is
        # centred on the study's reference patient instead (:meth:`CohortSpec.reference_point`)
        self.center = disc.sum_x / disc.n
        self.reference = cohort.reference_columns()
        variance = disc.sum_x2 / disc.n - self.center ** 2
        flat = variance <= 1e-12 * np.maximum(1.0, self.center ** 2)
        if np.any(flat):
            i = int(np.argmax(flat))
            raise SingularDesignError(f"covariate {self.names[i]!r} is constant across all sites "
                                      f"(value {self.center[i]:g}); drop it")
        self.labels, self.grids = disc.labels, disc.grids
        grid = coord.broadcast(GridRequest, GridReply, labels=self.labels,
                               times=[WireArray.from_numpy(g) for g in self.grids],
                               center=WireArray.from_numpy(self.center))
        self.k = sum(g.size for g in self.grids)
        self.d = coord.total(grid, "events", (self.k,)).round().astype(np.int64)
        self.z = coord.total(grid, "sum_event_x", (p,))
        self.p = p
    def evaluate(self, beta: np.ndarray) -> _State:
        """One risk-set round: penalised log-likelihood and score at ``beta``."""
        rs = self.coord.broadcast(RiskSetRequest, RiskSetReply, beta=WireArray.from_numpy(beta),
                                  efron=self.efron)
        s0 = self.coord.total(rs, "s0", (self.k,))
        s1 = self.coord.total(rs, "s1", (self.k, self.p))
        t0 = self.coord.total(rs, "t0", (self.k,)) if self.efron else None
        t1 = self.coord.total(rs, "t1", (self.k, self.p)) if self.efron else None
        terms = cm.tie_terms(self.d, s0, t0)
        ll, score = cm.loglik_and_score(beta, self.z, s1, t1, terms, self.penalty)
        return _State(beta, ll, score, s0, s1, t1, terms)

    def information(self, st: _State) -> np.ndarray:
        """One information round: observed information at ``st.beta``."""
        rep = self.coord.broadcast(InformationRequest, InformationReply,
                                   beta=WireArray.from_numpy(st.beta),
                                   a=WireArray.from_numpy(st.terms.a),
                                   b=WireArray.from_numpy(st.terms.b))
        site_sum = self.coord.total(rep, "matrix", (self.p, self.p))
        return cm.information(site_sum, st.s1, st.t1, st.terms, self.penalty)


def _check_rank(info: np.ndarray, names: tuple[str, ...]) -> None:
    vals, vecs = np.linalg.eigh(info)
    if vals[0] <= 1e-10 * max(vals[-1], 1e-300):
        v = np.abs(vecs[:, 0])
        involved = [names[i] for i in np.flatnonzero(v > 0.1 * v.max())]
        raise SingularDesignError("singular design: covariates " + ", ".join(map(repr, involved))
                                  + " are collinear (or carry no information)")


def _newton_step(info: np.ndarray, score: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    try:
        chol = np.linalg.cholesky(info)
    except np.linalg.LinAlgError:
        _check_rank(info, names)
        raise SingularDesignError("information matrix is not positive definite") from None
    return np.linalg.solve(chol.T, np.linalg.solve(chol, score))


def fit_cox(coord: Coordinator, cohort: CohortSpec, *, ties: str = "efron", penalty: float = 0.0,
            tol: float = 1e-10, max_iter: int = 100, max_halvings: int = 40,
            policy: DisclosurePolicy | None = None, consent: ConsentGate | None = None) -> CoxFit:
    """Fit a Cox model over the sites behind ``coord``.

    Newton–Raphson from β = 0 with step halving whenever the penalised log partial
    likelihood would decrease; converged when max |Δβ| < ``tol``. Covariates are centred
    on their global means internally (β is unchanged by centring); the baseline and
    ``CoxFit.center`` refer to the study's reference patient (:meth:`CohortSpec.reference_point`).
    The covariance is the inverse observed information at β̂. A site that drops out (no reply in
    time, invalid message) is excluded and the fit re-run among the
    others while ``policy`` (default: the approved study's) still holds at the coordinator — each
    site applies its own, the stricter of the study's rules and its floors. Times are coarsened
    along the public ladder until every site's cells hold 0 or at least k patients
    (:mod:`federated.analyses.discovery`); ``CoxFit.time_grid`` names the rung. With ``consent``,
    sites use only patients whose consent was active at that ledger checkpoint.

    Raises
    ------
    DataError, SiteError
        Unusable data or a site's refusal.
    PolicyError
        A disclosure rule refused the study (too few sites, over-saturated model, …).
    SingularDesignError
        Constant or collinear covariates.
    ConvergenceError
        No step improves the likelihood (non-finite values).
    """
    rules = policy or coord.protocol.policy
    return with_dropouts(coord, lambda: _fit_once(coord, cohort, ties, penalty, tol, max_iter,
                                                  max_halvings, rules, consent))


def _fit_once(coord: Coordinator, cohort: CohortSpec, ties: str, penalty: float, tol: float,
              max_iter: int, max_halvings: int, policy: DisclosurePolicy,
              consent: ConsentGate | None) -> CoxFit:
    cohort = with_knots(coord, cohort, policy, consent)
    prob = _Problem(coord, cohort, ties, penalty, policy, consent)
    state = prob.evaluate(np.zeros(prob.p))
    loglik_null = state.loglik
    info = prob.information(state)
    _check_rank(info, prob.names)
    converged, it, pressed = False, 0, 0
    for it in range(1, max_iter + 1):  # noqa: B007
        step = _newton_step(info, state.score, prob.names)
        state, step, bounded = _halving(prob, state, step, max_halvings)
        pressed = pressed + 1 if bounded else 0
        if pressed >= _PRESSED:
            raise ConvergenceError("the likelihood is diverging: the estimate runs into the sites' bound "
                                   "on |beta·(x − c)| over the inputs' ranges (separation, or an "
                                   "input scaled so that one unit is tiny); no finite estimate")
        info = prob.information(state)
        if np.max(np.abs(step)) < tol and not bounded:
            converged = True
            break
    if not converged:
        warnings.warn(f"Newton–Raphson did not converge in {max_iter} iterations",
                      ConvergenceWarning, stacklevel=3)
    try:
        covariance = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        raise SingularDesignError("information matrix is singular at the estimate") from None
    return CoxFit(covariates=prob.names, coef=state.beta, covariance=covariance,
                  center=prob.reference, baselines=_baselines(prob, state), loglik=state.loglik,
                  loglik_null=loglik_null, iterations=it, rounds=coord.rounds, converged=converged,
                  ties=ties, penalty=penalty, sites=tuple(coord.sites), n=prob.n, events=prob.events,
                  secure=coord.secure, strata=cohort.partition, dropped=dict(coord.dropped),
                  range_counts=prob.ranges, time_grid=prob.time_grid,
                  incomplete={s: n for s, n in prob.incomplete.items() if s in coord.sites},
                  placed_knots=placed_knots(cohort),
                  consent_checkpoint=None if consent is None else consent.model_dump(exclude={"job"}))


def with_knots(coord: Coordinator, cohort: CohortSpec, policy: DisclosurePolicy,
               consent: ConsentGate | None) -> CohortSpec:
    """``cohort`` with the knots of its splines declared as quantiles placed on the summed coverage
    histogram of a first discovery (the inputs enter as they are), in a fresh session after it
    (:func:`federated.analyses.knots.placed_cohort`); ``cohort`` itself when it has none to place."""
    if not unplaced(cohort):
        return cohort
    disc = discover(coord, cohort, policy, consent)
    coord.restart()
    return placed_cohort(disc.cohort, disc.range_counts)


def baselines_at(coord: Coordinator, cohort: CohortSpec, beta: np.ndarray, *, ties: str = "efron",
                 policy: DisclosurePolicy | None = None,
                 consent: ConsentGate | None = None) -> tuple[Baseline, ...]:
    """Breslow's baseline over the sites at given coefficients ``beta`` (e.g. noisy, private
    ones), so that a released model's baseline matches its coefficients."""
    rules = policy or coord.protocol.policy

    def run() -> tuple[Baseline, ...]:
        prob = _Problem(coord, cohort, ties, 0.0, rules, consent)
        return _baselines(prob, prob.evaluate(np.asarray(beta, dtype=float)))

    return with_dropouts(coord, run)


def _baselines(prob: _Problem, state: _State) -> tuple[Baseline, ...]:
    """Breslow's baseline per stratum at β̂ (on the stratum's own grid), for the reference patient:
    H_ref(t) = H_c(t) · exp(β̂·(ref − c)), the same model as at the fit's internal centre c, with
    the increments of its variance from the same decoded sums S0, S1 (nothing more is asked)."""
    exponent = float(state.beta @ (prob.reference - prob.center))
    if abs(exponent) > _MAX_SHIFT:
        far = prob.names[int(np.argmax(np.abs(state.beta * (prob.reference - prob.center))))]
        raise DataError(f"the reference patient lies too far from the data for a usable baseline "
                        f"(mostly input {far!r}): declare its reference value or range in the study's inputs")
    shift = math.exp(exponent)
    out = []
    offset = 0
    for label, grid in zip(prob.labels, prob.grids, strict=True):
        part = slice(offset, offset + grid.size)
        v, w = cm.breslow_variance_increments(prob.d[part], state.s0[part], state.s1[part], shift,
                                              prob.center - prob.reference)
        out.append(Baseline(label, grid, shift * cm.breslow_cumulative_hazard(prob.d[part], state.s0[part]),
                            prob.d[part], v, w))
        offset += grid.size
    return tuple(out)


def _halving(prob: _Problem, state: _State, step: np.ndarray,
             max_halvings: int) -> tuple[_State, np.ndarray, bool]:
    """Take ``step``, halving it until the penalised likelihood does not decrease; the flag says
    whether a site's bound on the linear predictor cut the step."""
    slack = 1e-12 * max(1.0, abs(state.loglik))
    bounded = False
    for _ in range(max_halvings):
        try:
            trial = prob.evaluate(state.beta + step)
        except SiteError as exc:
            if exc.code not in ("overflow", "bound"):
                raise
            bounded = True
        else:
            if np.isfinite(trial.loglik) and trial.loglik >= state.loglik - slack:
                return trial, step, bounded
        step = step / 2.0
    raise ConvergenceError(f"no step improves the likelihood after {max_halvings} halvings")

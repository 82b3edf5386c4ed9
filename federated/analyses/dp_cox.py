"""Differentially private Cox model: noisy Newton on the piecewise-exponential likelihood.

Adversary: an **honest-but-curious or malicious coordinator**, which decodes every masked sum, and
a **reader of releases**. Cox's partial likelihood couples the sites through its risk-set sums, so
the private fit uses the proportional-hazards model with a piecewise-constant baseline on the
study's public grid (:mod:`federated.pwe_math`), whose sufficient statistics are sums over patients.
Each site quantises its sums and adds its share of distributed Skellam noise before masking, and
charges each release to its own accountant (:mod:`federated.site.privacy`,
:mod:`federated.disclosure.dp_cox`); the coordinator decodes noisy sums only, and everything below
is post-processing of them (Dwork & Roth 2014, Prop. 2.1).

**Fit.** One β-free release ``(N, D, Z)``, then T = ``dp.cox_iterations`` rounds. Round t asks the
sites for ``(A_k, B_k, C_k)`` at β_{t−1} (β_0 = 0, on the standardised scale) and takes one joint
Newton step in (a, β) from the profile ``â_k = log(D_k / A_k)``:
``Δβ = M⁻¹ U_p(β)``, ``a_k = â_k − B_k·Δβ / A_k``, with ``M`` the noisy profile information with its
eigenvalues raised to a floor (positive definite whatever the noise; the floor grows with the
noise the information carries: ``max(1, 2 √p σ_C √(Σ_k (D_k / A_k)²))``), and β projected onto the
public box ``Σ_j |β_j| ≤ b`` the sites answer for. No ridge penalty is added: it would move the
estimate the fit converges to; the floor alone damps noisy steps. Intervals whose noisy exposure
``A_k`` is below twice its noise level carry no information on β (their noise dominates) and end the
released baseline: ``H(k w) = Σ_{j≤k} e^{a_j}`` at the reference patient, with e^{a_j} = 0 where
the noisy event count is not positive.

**Result.** The same :class:`~federated.analyses.cox.CoxFit` as the exact fit, on the original
covariate scale (``β_j = β̃_j / s_j``). Its covariance is the inverse information of the last round
**plus the variance the privacy noise adds to the estimate**, estimated by a parametric
bootstrap of the last Newton step (:func:`noise_covariance`: the known noise law redrawn on the
released sums, post-processing with fresh randomness); ``n`` and ``events`` are the noisy
totals, rounded; ``loglik`` is the noisy profile log likelihood at β_{T−1}, ``loglik_null`` at 0;
``converged`` says whether the last step moved β̃ by less than :data:`SETTLED` (no tolerance can be
met exactly under noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from federated import pwe_math as pwe
from federated.analyses.cox import Baseline, CoxFit
from federated.analyses.discovery import climb
from federated.disclosure import dp_cox
from federated.disclosure.dp import DPSettings
from federated.disclosure.policy import DisclosurePolicy
from federated.exceptions import DataError
from federated.protocol.arrays import WireArray
from federated.protocol.coordinator import Coordinator, with_dropouts
from federated.protocol.messages import (
    ConsentGate,
    PweEventsReply,
    PweEventsRequest,
    PweRoundReply,
    PweRoundRequest,
)
from federated.study import CohortSpec

#: the last step below this (max |Δβ̃| on the standardised scale) counts as converged
SETTLED = 0.01


@dataclass(frozen=True)
class NewtonPath:
    """The noisy Newton fit on the standardised scale (before any transformation)."""

    beta: np.ndarray        # β̃_T
    information: np.ndarray  # the (noisy) information at β̃_{T−1}, eigenvalues kept positive
    noise_cov: np.ndarray   # covariance of β̃_T that the privacy noise adds (standardised scale)
    log_hazard: np.ndarray  # a_k after the last joint step (−inf where e^{a_k} = 0)
    released: int           # leading intervals whose exposure stands above the noise
    loglik: float
    loglik_null: float
    last_step: float


def noisy_newton(d: np.ndarray, z: np.ndarray, evaluate: Callable[[np.ndarray], np.ndarray],
                 iterations: int, bound: float, sd_round: float, floor: float = 1.0,
                 sd_events: float = 0.0, draws: int = 400) -> NewtonPath:
    """T = ``iterations`` Newton steps from β̃ = 0 (module docstring); pure given ``evaluate``.

    Parameters
    ----------
    d, z : ndarray
        Events per interval (K,) and Σ δ x̃ (p,), as decoded (noisy).
    evaluate : callable
        β̃ → the round's sums (K, P) (:func:`federated.pwe_math.round_sums` summed over sites).
    iterations : int
        T, the number of rounds.
    bound : float
        β̃ stays in ``Σ_j |β̃_j| ≤ bound`` (the sites refuse beyond it).
    sd_round : float
        Noise standard deviation per coordinate of the round's sums (0 without noise).
    floor : float
        Smallest eigenvalue of the information used for a step (more under noise).
    sd_events : float
        Noise standard deviation per coordinate of ``d`` and ``z``.
    draws : int
        Bootstrap draws for :func:`noise_covariance`.
    """
    p = z.size
    beta, step = np.zeros(p), np.zeros(p)
    loglik_null = math.nan
    for t in range(iterations):
        sums = evaluate(beta)
        loglik, new, info, above = _step(beta, d, z, sums, bound, sd_round, floor)
        a, b, _ = pwe.unpack(sums, p)
        dm = np.where(above & (d > 0), d, 0.0)
        loglik_null = loglik if t == 0 else loglik_null
        start, step, beta = beta, new - beta, new
        with np.errstate(divide="ignore"):
            safe = np.where(dm > 0, a, 1.0)
            log_h = np.where(dm > 0, np.log(np.where(dm > 0, dm, 1.0) / safe) - (b @ step) / safe, -np.inf)
    released = int(np.argmin(above)) if not above.all() else above.size
    spread = noise_covariance(start, d, z, sums, (bound, sd_round, floor, sd_events), draws, iterations) \
        if sd_round > 0 or sd_events > 0 else np.zeros((p, p))
    return NewtonPath(beta=beta, information=info, noise_cov=spread, log_hazard=log_h, released=released,
                      loglik=loglik, loglik_null=loglik_null,
                      last_step=float(np.max(np.abs(step), initial=0.0)))


def _step(beta: np.ndarray, d: np.ndarray, z: np.ndarray, sums: np.ndarray, bound: float, sd_round: float,
          floor: float) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """One noisy Newton step from ``beta`` on the round's ``sums``: (profile log likelihood, the new
    β̃ projected onto the box, the information with its eigenvalues kept above 10⁻⁹ of the largest
    (for the covariance; the step itself uses the eigenvalues raised to the noise floor), the
    intervals standing above the noise)."""
    a, b, c = pwe.unpack(sums, z.size)
    above = a > 2.0 * sd_round
    dm = np.where(above & (d > 0), d, 0.0)
    loglik, score, info = pwe.profile(beta, z, dm, a, b, c)
    raw, _ = pwe.floored_step(score, info, _floor(dm, a, z.size, sd_round, floor))
    vals, vecs = np.linalg.eigh(info)
    positive = (vecs * np.maximum(vals, 1e-9 * max(float(vals.max()), 1e-300))) @ vecs.T
    return loglik, pwe.project_l1(beta + raw, bound * (1 - 1e-9)), positive, above


def _floor(d: np.ndarray, a: np.ndarray, p: int, sd_round: float, floor: float) -> float:
    """The eigenvalue floor of a step, ``max(floor, 2 √p σ √(Σ_k (D_k / A_k)²))``: the noise the
    information carries (module docstring)."""
    weight = np.divide(d, a, out=np.zeros_like(d), where=d > 0)
    return max(floor, 2.0 * math.sqrt(p) * sd_round * float(np.sqrt(np.sum(weight ** 2))))


def noise_covariance(beta: np.ndarray, d: np.ndarray, z: np.ndarray, sums: np.ndarray,
                     noise: tuple[float, float, float, float], draws: int, iterations: int) -> np.ndarray:
    """The covariance the privacy noise adds to β̃_T, on the standardised scale.

    One step's noise: the step from ``beta`` (β̃_{T−1}) redone on the released ``d``, ``z`` and round
    ``sums`` with the noise law redrawn (Gaussian of the Skellam's variance, sd ``sd_events`` and
    ``sd_round``) ``draws`` times — a parametric bootstrap (Efron & Tibshirani 1993, ch. 6) giving
    Σ_step. The noise of earlier steps is not fully undone by later ones, because the floored
    information M damps each step: near the estimate a step maps an error e to A e + noise with
    A = 1 − M⁻¹ H (H the information), so T steps carry Σ_{j<T} A^j Σ_step A^jᵀ. All of it is
    post-processing of released values with fresh randomness, so it costs no privacy. Without it the
    released standard errors would omit the noise and claim a precision the private fit lacks.
    """
    bound, sd_round, floor, sd_events = noise
    rng = np.random.default_rng()
    steps = np.array([
        _step(beta, d + rng.normal(0.0, sd_events, d.shape), z + rng.normal(0.0, sd_events, z.shape),
              sums + rng.normal(0.0, sd_round, sums.shape), bound, sd_round, floor)[1]
        for _ in range(draws)])
    step_cov = np.atleast_2d(np.cov(steps, rowvar=False))
    _, _, info, above = _step(beta, d, z, sums, bound, sd_round, floor)
    a = pwe.unpack(sums, z.size)[0]
    level = _floor(np.where(above & (d > 0), d, 0.0), a, z.size, sd_round, floor)
    vals, vecs = np.linalg.eigh(info)
    m = (vecs * np.maximum(vals, level)) @ vecs.T  # the floored information each step used
    contraction = np.eye(z.size) - np.linalg.solve(m, info)
    total, power = np.zeros_like(step_cov), np.eye(z.size)
    for _ in range(iterations):
        total += power @ step_cov @ power.T
        power = contraction @ power
    return total


def fit_dp_cox(coord: Coordinator, cohort: CohortSpec, *, policy: DisclosurePolicy | None = None,
               consent: ConsentGate | None = None) -> CoxFit:
    """A differentially private Cox fit over the sites behind ``coord`` (module docstring), under
    the approved study's DP settings (``coord.protocol.dp``).

    Raises
    ------
    DataError
        The study has no DP, or the cohort cannot be fitted privately (an exact grid, strata, an
        input without a declared range, too many intervals), or the noise hides every interval.
    SiteError, PolicyError
        A site's refusal (``bound``, ``budget``, …), or a disclosure rule.
    """
    rules = policy or coord.protocol.policy
    return with_dropouts(coord, lambda: _fit_once(coord, cohort, rules, consent))


def check_cohort(cohort: CohortSpec) -> int:
    """K, the intervals of the public grid, of a cohort a private Cox fit can use; else DataError."""
    if cohort.time_grid == "exact":
        raise DataError("differential privacy needs a public time grid: use --time-grid month|quarter|year "
                        "(and a max_time for the study)")
    if cohort.partition is not None or cohort.partition_by_site:
        raise DataError("differential privacy for Cox models does not support strata")
    unranged = [c for c in cohort.covariates if c not in cohort.ranges]
    if not cohort.covariates or unranged:
        raise DataError("differential privacy for Cox models needs a declared range (min and max) for "
                        f"every input{f', not given for {unranged[0]!r}' if unranged else ''}")
    k = cohort.n_bins() - 1
    if k > dp_cox.MAX_INTERVALS:
        raise DataError(f"differential privacy for Cox models uses at most {dp_cox.MAX_INTERVALS} intervals "
                        f"of the public grid, not {k}: use a coarser time grid or a smaller max_time")
    return k


def _fit_once(coord: Coordinator, cohort: CohortSpec, policy: DisclosurePolicy,
              consent: ConsentGate | None) -> CoxFit:
    dp = coord.protocol.dp
    if dp is None:
        raise DataError("the approved study has no differential privacy")
    check_cohort(cohort)
    policy.check_sites(len(coord.sites), coord.secure, coord.dropped)

    def first(rung: CohortSpec) -> tuple[CohortSpec, dict[str, PweEventsReply]]:
        check_cohort(rung)
        return rung, coord.broadcast(PweEventsRequest, PweEventsReply, cohort=rung, consent=consent)

    rung, replies = climb(coord, cohort, first)
    k, p = rung.n_bins() - 1, len(rung.covariates)
    counts = coord.total(replies, "counts", (k + 1,)) / dp_cox.SCALE
    z = coord.total(replies, "sum_event_x", (p,)) / dp_cox.SCALE
    n, d = max(int(round(counts[0])), 0), counts[1:]
    events = int(round(float(np.clip(d, 0, None).sum())))
    policy.check_saturation(events, p)

    def evaluate(beta: np.ndarray) -> np.ndarray:
        rep = coord.broadcast(PweRoundRequest, PweRoundReply, beta=WireArray.from_numpy(beta))
        return coord.total(rep, "sums", (k, pwe.n_features(p))) / dp_cox.SCALE

    path = noisy_newton(d, z, evaluate, dp.cox_iterations, dp.cox_bound,
                        dp_cox.noise_sd(dp, dp_cox.ROUND, k, p),
                        sd_events=dp_cox.noise_sd(dp, dp_cox.EVENTS, k, p))
    return _result(coord, rung, path, d, (n, events, dp.cox_iterations), consent)


def _result(coord: Coordinator, cohort: CohortSpec, path: NewtonPath, d: np.ndarray,
            sizes: tuple[int, int, int], consent: ConsentGate | None) -> CoxFit:
    """The :class:`CoxFit` on the original covariate scale (post-processing only); ``sizes`` are
    the noisy patients and events and the number of rounds. ``ties`` is ``breslow``: the profile
    score has Breslow's form, ties within an interval count alike."""
    n, events, iterations = sizes
    if path.released == 0:
        raise DataError("the privacy noise hides the exposure of every interval: the cohort is too small "
                        "for this epsilon (or use a coarser time grid)")
    center = cohort.reference_point()
    lo = np.array([cohort.ranges[c][0] for c in cohort.covariates])
    hi = np.array([cohort.ranges[c][1] for c in cohort.covariates])
    s = pwe.scales(lo, hi, center)
    keep = slice(0, path.released)
    hazard = np.exp(path.log_hazard[keep])
    width = cohort.bin_width()
    baseline = Baseline("", width * np.arange(1, path.released + 1), np.cumsum(hazard),
                        np.rint(np.clip(d[keep], 0, None)).astype(np.int64))
    return CoxFit(covariates=cohort.covariates, coef=path.beta / s,
                  covariance=(np.linalg.inv(path.information) + path.noise_cov) / np.outer(s, s),
                  center=center,
                  baselines=(baseline,), loglik=path.loglik, loglik_null=path.loglik_null,
                  iterations=iterations, rounds=coord.rounds,
                  converged=path.last_step < SETTLED, ties="breslow", penalty=0.0,
                  sites=tuple(coord.sites), n=n, events=events, secure=coord.secure, strata=None,
                  dropped=dict(coord.dropped), time_grid=cohort.time_grid,
                  consent_checkpoint=None if consent is None else consent.model_dump(exclude={"job"}))


def privacy_record(dp: DPSettings, fit: CoxFit, cohort: CohortSpec) -> dict[str, object]:
    """``training.differential_privacy`` of the artifact of a private fit."""
    rung = cohort.model_copy(update={"time_grid": fit.time_grid})
    return dp_cox.privacy_record(dp, len(fit.sites), rung.n_bins() - 1, len(fit.covariates))

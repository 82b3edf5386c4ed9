"""Optional differential privacy (off by default) for the released outputs of a study.

Two releases are covered: the Kaplan–Meier event/censoring counts per grid time, and the
final Cox coefficients through sample-and-aggregate (Nissim, Raskhodnikova & Smith 2007,
STOC; Smith 2011, STOC). Noise is Laplace (pure ε) or the analytic Gaussian mechanism
(Balle & Wang 2018, ICML, Algorithm 1). Budgets add up by basic sequential composition and
disjoint data by parallel composition (Dwork & Roth 2014, *The Algorithmic Foundations of
Differential Privacy*, Thm 3.6, 3.16 and §3.3 for the Laplace mechanism); rounding,
clipping and rebuilding counts from noisy values are post-processing and cost no privacy
(ibid., Prop. 2.1). Neighbouring data sets differ by adding or removing one patient.

Everything here is pure: no I/O, and all randomness comes from the ``numpy.random.Generator``
the caller passes (build it from :attr:`DPSettings.seed`). The caller decides, from
:attr:`DPSettings.enabled`, whether to call these functions at all, and writes
:meth:`PrivacyAccountant.to_dict` into the model artifact.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from federated.exceptions import FederatedError


class DPSettings(BaseModel):
    """Differential-privacy settings of a study; ``epsilon``/``delta`` are the TOTAL budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    mechanism: Literal["gaussian", "laplace"] = "gaussian"
    epsilon: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    delta: float = Field(default=1e-6, gt=0, lt=1)  # gaussian only; laplace spends δ = 0
    clip: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    blocks: int = Field(default=10, ge=2)
    seed: int | None = None


class BudgetExceeded(FederatedError, ValueError):
    """A release would spend more ε or δ than the study's budget has left."""


_REL_TOL = 1e-12  # relative float tolerance when a spend exactly exhausts the budget


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


class PrivacyAccountant:
    """Basic sequential composition: total ε = Σ ε_i, total δ = Σ δ_i; refuses to spend beyond the budget."""

    def __init__(self, settings: DPSettings) -> None:
        self.settings = settings
        self.epsilon_budget = float(settings.epsilon)
        self.delta_budget = float(settings.delta) if settings.mechanism == "gaussian" else 0.0
        self._releases: list[tuple[str, float, float]] = []

    @property
    def spent(self) -> tuple[float, float]:
        """``(ε, δ)`` spent so far."""
        return (math.fsum(r[1] for r in self._releases), math.fsum(r[2] for r in self._releases))

    @property
    def remaining(self) -> tuple[float, float]:
        """``(ε, δ)`` left, never negative."""
        eps, dlt = self.spent
        return max(self.epsilon_budget - eps, 0.0), max(self.delta_budget - dlt, 0.0)

    def spend(self, what: str, epsilon: float, delta: float = 0.0) -> None:
        """Record a release of ``what`` costing ``(epsilon, delta)``; :class:`BudgetExceeded` if over."""
        epsilon = _positive("epsilon", epsilon)
        delta = float(delta)
        if not (math.isfinite(delta) and 0.0 <= delta < 1.0):
            raise ValueError(f"delta must be in [0, 1), got {delta!r}")
        eps, dlt = self.spent
        if (eps + epsilon > self.epsilon_budget * (1 + _REL_TOL)
                or dlt + delta > self.delta_budget * (1 + _REL_TOL)):
            rem_e, rem_d = self.remaining
            raise BudgetExceeded(f"{what!r}: requested epsilon={epsilon!r}, delta={delta!r} but only "
                                 f"epsilon={rem_e!r}, delta={rem_d!r} remain of the study budget "
                                 f"(epsilon={self.epsilon_budget!r}, delta={self.delta_budget!r})")
        self._releases.append((what, epsilon, delta))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary for the model artifact."""
        eps, dlt = self.spent
        return {"mechanism": self.settings.mechanism, "epsilon_budget": self.epsilon_budget,
                "delta_budget": self.delta_budget, "epsilon_spent": eps, "delta_spent": dlt,
                "releases": [{"what": w, "epsilon": e, "delta": d} for w, e, d in self._releases]}


def laplace_scale(sensitivity_l1: float, epsilon: float) -> float:
    """Scale ``b = Δ1/ε`` of the Laplace mechanism (Dwork & Roth 2014, Thm 3.6)."""
    return _positive("sensitivity", sensitivity_l1) / _positive("epsilon", epsilon)


def _analytic_delta(s: float, epsilon: float) -> float:
    """δ(σ) of the Gaussian mechanism at ``s = σ/Δ`` (Balle & Wang 2018, Thm 8), overflow-safe."""
    a, b = 0.5 / s, epsilon * s
    from scipy.special import log_ndtr, ndtr  # imported on use, as brentq below

    return float(ndtr(a - b) - math.exp(epsilon + float(log_ndtr(-a - b))))


def gaussian_sigma(sensitivity_l2: float, epsilon: float, delta: float) -> float:
    """Smallest σ making N(0, σ²) noise (ε, δ)-DP for L2 sensitivity Δ (analytic Gaussian mechanism).

    Solves ``Φ(Δ/(2σ) − εσ/Δ) − e^ε Φ(−Δ/(2σ) − εσ/Δ) = δ`` with Brent's method; the left side
    decreases in σ. Valid for every ε > 0 (the classic ``Δ√(2 ln(1.25/δ))/ε`` needs ε < 1).
    """
    sens, epsilon = _positive("sensitivity", sensitivity_l2), _positive("epsilon", epsilon)
    delta = float(delta)
    if not (0.0 < delta < 1.0):
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")

    def excess(s: float) -> float:
        return _analytic_delta(s, epsilon) - delta

    lo = hi = 1.0
    for _ in range(2000):
        if excess(lo) > 0:
            break
        lo /= 2
    for _ in range(2000):
        if excess(hi) <= 0:
            break
        hi *= 2
    if not (excess(lo) > 0 >= excess(hi)):
        raise ValueError(f"cannot bracket sigma for epsilon={epsilon!r}, delta={delta!r}")
    from scipy.optimize import brentq  # here: scipy.optimize costs 0.4 s to import, sites never need it

    s = float(brentq(excess, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500))
    step = s * np.finfo(float).eps
    while excess(s) > 0:  # land on the feasible side of the root (a few ulps at most)
        s, step = s + step, 2 * step
    return s * sens


def add_noise(values: np.ndarray, sensitivity: float, epsilon: float, settings: DPSettings,
              rng: np.random.Generator) -> np.ndarray:
    """``values`` plus Laplace(0, Δ1/ε) or N(0, σ²) noise, by ``settings.mechanism``.

    ``sensitivity`` is the L1 sensitivity for Laplace and the L2 sensitivity for Gaussian.
    """
    arr = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValueError("values must be finite")
    if settings.mechanism == "laplace":
        return arr + rng.laplace(0.0, laplace_scale(sensitivity, epsilon), size=arr.shape)
    sigma = gaussian_sigma(sensitivity, epsilon, settings.delta)
    return arr + rng.normal(0.0, sigma, size=arr.shape)


def _delta_cost(settings: DPSettings) -> float:
    return float(settings.delta) if settings.mechanism == "gaussian" else 0.0


def _counts(name: str, values: np.ndarray, ndim: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if arr.size and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) and arr.min() >= 0):
        raise ValueError(f"{name} must hold non-negative integers, got {arr!r}")
    return arr.astype(np.int64)


def noisy_km_counts(events: np.ndarray, censored: np.ndarray, n_before: np.ndarray, epsilon: float,
                    settings: DPSettings, accountant: PrivacyAccountant, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Differentially private Kaplan–Meier counts ``(events (G, K), at_risk (G, K))``.

    ``events[g, k]`` are the events at grid time k, ``censored[g, k]`` those leaving the risk set in
    ``[t_k, t_{k+1})`` without an event, ``n_before[g]`` those censored before the first grid time.
    The grid must be public (fixed before seeing the data). One patient changes exactly one cell by 1,
    so L1 = L2 sensitivity = 1 over all groups together (parallel composition): one spend of
    ``epsilon`` (and δ for gaussian) as ``"kaplan-meier counts"``. Every cell, ``n_before`` included,
    is noised. Post-processing (free of privacy cost): ``at_risk_k = Σ_{j≥k} (d̃_j + c̃_j)`` from the
    *unclipped* noisy cells (so the noise stays mean-zero instead of piling up a positive bias from
    clipping every cell at 0), then made non-increasing and non-negative, rounded; events rounded and
    clipped to ``[0, at_risk]``. The noisy ``n_before`` (released total ``n = at_risk_0 + n_before``)
    is not returned.
    """
    d, c = _counts("events", events, 2), _counts("censored", censored, 2)
    nb = _counts("n_before", n_before, 1)
    if d.shape != c.shape or nb.shape != d.shape[:1]:
        raise ValueError(f"shapes disagree: events {d.shape}, censored {c.shape}, n_before {nb.shape}")
    epsilon = _positive("epsilon", epsilon)
    accountant.spend("kaplan-meier counts", epsilon, _delta_cost(settings))
    flat = np.concatenate([d.ravel(), c.ravel(), nb]).astype(float)
    noisy = add_noise(flat, 1.0, epsilon, settings, rng)
    nd, nc = noisy[:d.size].reshape(d.shape), noisy[d.size:2 * d.size].reshape(d.shape)
    at_risk = np.cumsum((nd + nc)[:, ::-1], axis=1)[:, ::-1]
    at_risk = np.maximum.accumulate(np.clip(at_risk, 0, None)[:, ::-1], axis=1)[:, ::-1]
    at_risk = np.rint(at_risk).astype(np.int64)
    events_out = np.clip(np.rint(nd), 0, at_risk).astype(np.int64)
    return events_out, np.ascontiguousarray(at_risk)


def km_counts_from_at_risk(at_risk: np.ndarray, events: np.ndarray, n_total: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """``(censored (G, K), n_before (G,))`` from exact ``at_risk``, ``events`` and group totals.

    ``c_k = n_k − d_k − n_{k+1}`` (with ``n_K = 0``) and ``n_before = n_total − n_0``.
    """
    n, d = _counts("at_risk", at_risk, 2), _counts("events", events, 2)
    total = _counts("n_total", n_total, 1)
    if n.shape != d.shape or total.shape != n.shape[:1] or n.shape[1] < 1:
        raise ValueError(f"shapes disagree: at_risk {n.shape}, events {d.shape}, n_total {total.shape}")
    nxt = np.concatenate([n[:, 1:], np.zeros((n.shape[0], 1), dtype=np.int64)], axis=1)
    censored, n_before = n - d - nxt, total - n[:, 0]
    if censored.min() < 0 or n_before.min() < 0:
        raise ValueError("at_risk, events and n_total are inconsistent (negative censoring count)")
    return censored, n_before


def sample_and_aggregate(estimates: np.ndarray, scales: np.ndarray, epsilon: float, settings: DPSettings,
                         accountant: PrivacyAccountant, rng: np.random.Generator) -> np.ndarray:
    """Noisy clipped mean of Cox coefficients fitted on m disjoint blocks of patients, shape (p,).

    ``z_bj = clip(estimates_bj · scales_j, −C, C)`` with ``C = settings.clip``; one patient changes
    one block's row, so the mean over blocks has L1 sensitivity ``2Cp/m`` and L2 ``2C√p/m``. Spends
    ``epsilon`` (and δ for gaussian) as ``"cox coefficients"`` and returns the noisy mean ÷ ``scales``.
    ``scales`` must be public (e.g. declared covariate ranges) and the block assignment must not
    depend on other patients' data; replace a failed block fit by a fixed value (e.g. 0) beforehand.
    """
    est = np.asarray(estimates, dtype=float)
    sc = np.asarray(scales, dtype=float)
    if est.ndim != 2 or est.shape[0] < 2 or est.shape[1] < 1:
        raise ValueError(f"estimates must have shape (m >= 2, p >= 1), got {est.shape}")
    if sc.shape != est.shape[1:]:
        raise ValueError(f"scales must have shape {est.shape[1:]}, got {sc.shape}")
    if not (np.all(np.isfinite(sc)) and np.all(sc > 0)):
        raise ValueError(f"scales must be finite and > 0, got {sc!r}")
    if not np.all(np.isfinite(est)):
        raise ValueError("estimates must be finite (replace a failed block fit by a fixed value)")
    epsilon = _positive("epsilon", epsilon)
    m, p = est.shape
    bound = float(settings.clip)
    mean = np.clip(est * sc, -bound, bound).mean(axis=0)
    sens = 2 * bound * (p if settings.mechanism == "laplace" else math.sqrt(p)) / m
    accountant.spend("cox coefficients", epsilon, _delta_cost(settings))
    return add_noise(mean, sens, epsilon, settings, rng) / sc

"""Differential privacy against the coordinator: distributed Skellam noise, added at the sites.

Adversary: an **honest-but-curious or malicious coordinator**, which decodes every masked sum, and
a **reader of releases**. The noise is therefore added by the sites, to integer statistics, before
masking (:mod:`federated.site.privacy`): the coordinator decodes sum + noise and never a sum
without it. Neighbouring data sets differ by adding or removing one patient at one site.

**Mechanism** (Agarwal, Kairouz & Liu 2021, "The Skellam Mechanism for Differentially Private
Federated Learning", NeurIPS). ``Sk(μ) = P₁ − P₂`` with ``P₁, P₂ ~ Poisson(μ)`` independent:
mean 0, variance 2μ. Poisson laws add, so n sites each adding ``Sk(μ/n)`` to every cell give a
sum carrying exactly ``Sk(μ)`` per cell, whatever the split. A site missing from a round leaves its
masks uncancelled: nothing under-noised is ever decoded (:mod:`federated.protocol.secagg`).

**Accounting** in Rényi DP (Mironov 2017, CSF): for an integer vector of L1 sensitivity Δ₁ and
L2 sensitivity Δ₂ with independent ``Sk(μ)`` in every coordinate, for α > 1 (Agarwal et al. 2021,
§3, the multi-dimensional Skellam RDP theorem, stated with μ the Poisson rate)::

    ε(α) ≤ α Δ₂² / (4μ) + min( ((2α − 1) Δ₂² + 6 Δ₁) / (16 μ²),  3 Δ₁ / (4μ) ).

RDP adds up over releases at every order α (Mironov 2017, Prop. 1) and converts to (ε, δ)-DP by
(Canonne, Kamath & Steinke 2020, "The Discrete Gaussian for DP", Prop. 12; Balle et al. 2020,
AISTATS, Thm 21)::

    ε = min_α  ε(α) + log((α − 1)/α) − (log δ + log α) / (α − 1).

Only integer orders α ∈ :data:`ORDERS` are used (valid for either statement of the theorem).
Rebuilding counts from noisy values, rounding and clipping are post-processing (Dwork & Roth 2014,
Prop. 2.1) and cost nothing.

Everything here is pure except :func:`fresh_generator`, which reads the OS's CSPRNG: no noise
is ever drawn from a stored or configured seed.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Rényi orders the accountant evaluates (integers only)
ORDERS: tuple[int, ...] = (*range(2, 65), 80, 96, 128, 192, 256)

_RETIRED = {
    "seed": "dp.seed is no longer accepted: sites draw noise from fresh OS randomness, never from a "
            "stored seed; remove it from the study file",
    "blocks": "dp.blocks (Cox sample-and-aggregate) was removed: it showed the coordinator exact block "
              "fits; remove it from the study file",
    "clip": "dp.clip (Cox sample-and-aggregate) was removed: it showed the coordinator exact block "
            "fits; remove it from the study file",
}


class DPSettings(BaseModel):
    """Differential privacy of a study, as the sites' operators approve it
    (:attr:`federated.disclosure.rules.StudyProtocol.dp`), never as a request states it.

    ``epsilon`` and ``delta`` are the cost of ONE fit: one Kaplan–Meier fit (its ``prepare``
    and ``counts`` rounds composed), or one Cox fit (its β-free release and its
    ``cox_iterations`` Newton rounds composed, :mod:`federated.disclosure.dp_cox`). Each site's
    accountant composes every release over every study against the budget its operator set
    (:class:`federated.disclosure.rules.SiteFloors`). ``cox_bound`` is the largest
    ``Σ_j |β_j|`` on the standardised scale a site answers a Cox round for: it bounds every
    patient's weight by ``e^cox_bound`` and so the rounds' sensitivity.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    mechanism: Literal["skellam"] = "skellam"
    epsilon: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    delta: float = Field(default=1e-6, gt=0, lt=1)
    cox_iterations: int = Field(default=4, ge=1, le=30)
    cox_bound: float = Field(default=3.0, gt=0, le=5, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data: Any) -> Any:
        """Old study files: one clear line instead of a silently different mechanism."""
        if isinstance(data, dict):
            for key, why in _RETIRED.items():
                if key in data:
                    raise ValueError(why)
            if data.get("mechanism") in ("gaussian", "laplace"):
                raise ValueError(f"dp.mechanism {data['mechanism']!r} added noise at the coordinator "
                                 "after decoding exact sums and was removed; use 'skellam' (noise added "
                                 "by the sites)")
        return data


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


# ------------------------------------------------------------------------------ accounting
def skellam_rdp(alpha: float, mu: float, l1: float, l2: float) -> float:
    """RDP ε(α) of adding ``Sk(mu)`` to each coordinate of a vector with sensitivities ``l1``, ``l2``.

    ``α Δ₂²/(4μ) + min(((2α − 1)Δ₂² + 6Δ₁)/(16μ²), 3Δ₁/(4μ))`` (Agarwal, Kairouz & Liu 2021, §3;
    μ is the Poisson rate, the variance is 2μ). The first term is the RDP of the Gaussian
    mechanism of equal variance (Mironov 2017, Prop. 7).
    """
    if not alpha > 1:
        raise ValueError(f"alpha must be > 1, got {alpha!r}")
    mu = _positive("mu", mu)
    l1, l2 = float(l1), float(l2)
    if not (l1 >= 0 and l2 >= 0 and math.isfinite(l1) and math.isfinite(l2)):
        raise ValueError(f"sensitivities must be finite and >= 0, got {l1!r}, {l2!r}")
    return alpha * l2**2 / (4 * mu) + min(((2 * alpha - 1) * l2**2 + 6 * l1) / (16 * mu**2),
                                          3 * l1 / (4 * mu))


def rdp_curve(mu: float, l1: float, l2: float) -> np.ndarray:
    """:func:`skellam_rdp` at every order of :data:`ORDERS`."""
    return np.array([skellam_rdp(a, mu, l1, l2) for a in ORDERS])


def rdp_to_dp(rdp: np.ndarray, delta: float) -> float:
    """The ε of (ε, δ)-DP implied by RDP ``rdp[i]`` at order ``ORDERS[i]``.

    ``min_α ε(α) + log((α − 1)/α) − (log δ + log α)/(α − 1)``, never below 0 (Canonne, Kamath &
    Steinke 2020, Prop. 12; Balle et al. 2020, Thm 21).
    """
    delta = float(delta)
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    a = np.array(ORDERS, dtype=float)
    eps = np.asarray(rdp, dtype=float) + np.log((a - 1) / a) - (math.log(delta) + np.log(a)) / (a - 1)
    return max(float(np.min(eps)), 0.0)


@dataclass(frozen=True)
class Release:
    """One noised reply: its sensitivities and its share ``weight`` of the fit's noise (μ·weight)."""

    kind: str
    l1: float
    l2: float
    weight: float


#: A Kaplan–Meier fit releases two noised replies. ``prepare``: [patients, events], which one patient
#: changes by at most (1, 1): Δ₁ = 2, Δ₂ = √2, noised 8 times harder (these two totals are
#: nuisance; their RDP is 1/4 of the counts'). ``counts``: events and censorings per interval and
#: group, where one patient is one count in one cell: Δ₁ = Δ₂ = 1.
KM_RELEASES: tuple[Release, ...] = (Release("prepare", 2.0, math.sqrt(2.0), 8.0),
                                    Release("counts", 1.0, 1.0, 1.0))


def fit_epsilon(mu: float, delta: float, releases: tuple[Release, ...] = KM_RELEASES) -> float:
    """ε at ``delta`` of one fit whose releases carry ``Sk(mu · weight)`` (composed in RDP)."""
    total = sum((rdp_curve(mu * r.weight, r.l1, r.l2) for r in releases), np.zeros(len(ORDERS)))
    return rdp_to_dp(total, delta)


@lru_cache(maxsize=256)
def calibrate_mu(epsilon: float, delta: float, releases: tuple[Release, ...] = KM_RELEASES) -> float:
    """The smallest μ (to 1e-9 relative) with :func:`fit_epsilon` ≤ ``epsilon`` (ε decreases in μ)."""
    epsilon = _positive("epsilon", epsilon)
    lo = hi = 1.0
    while fit_epsilon(hi, delta, releases) > epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e15:
            raise ValueError(f"no noise level reaches epsilon={epsilon!r} at delta={delta!r}")
    while fit_epsilon(lo, delta, releases) <= epsilon and lo > 1e-12:
        lo /= 2
    for _ in range(200):
        if hi / lo - 1 < 1e-9:
            break
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if fit_epsilon(mid, delta, releases) <= epsilon else (mid, hi)
    return hi


def release_mu(settings: DPSettings, kind: str) -> float:
    """μ (Poisson rate of the total noise per cell) of the reply ``kind`` of a fit under ``settings``."""
    base = calibrate_mu(settings.epsilon, settings.delta)
    for r in KM_RELEASES:
        if r.kind == kind:
            return base * r.weight
    raise ValueError(f"no differentially private release of kind {kind!r}")


# ------------------------------------------------------------------------------ sampling
def fresh_generator() -> np.random.Generator:
    """A generator (PCG64DXSM) seeded with 256 bits from the OS's CSPRNG (:mod:`secrets`), for
    one release; the seed is neither stored nor returned."""
    return np.random.Generator(np.random.PCG64DXSM(np.random.SeedSequence(secrets.randbits(256))))


def skellam_share(shape: tuple[int, ...], mu: float, n_sites: int, rng: np.random.Generator) -> np.ndarray:
    """One site's share ``Sk(mu / n_sites)`` per cell (int64): n shares sum to exactly ``Sk(mu)``.

    Poisson variates come from NumPy's sampler (PTRS transformed rejection, Hörmann 1993), exact
    up to floating-point arithmetic; an exact integer sampler (Duchon & Duvignau 2016) is not used.
    Sites that collude with the coordinator can subtract their own shares: against t of them the
    noise left is ``Sk(mu (n − t)/n)``, which this accounting does not cover.
    """
    if n_sites < 1:
        raise ValueError(f"n_sites must be >= 1, got {n_sites}")
    lam = _positive("mu", mu) / n_sites
    return rng.poisson(lam, shape).astype(np.int64) - rng.poisson(lam, shape).astype(np.int64)


# ------------------------------------------------------------------------------ kaplan–meier cells
def _counts(name: str, values: np.ndarray, ndim: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if arr.size and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) and arr.min() >= 0):
        raise ValueError(f"{name} must hold non-negative integers")
    return arr.astype(np.int64)


def km_cells(at_risk: np.ndarray, events: np.ndarray) -> np.ndarray:
    """Censorings per interval ``c_k = n_k − d_k − n_{k+1}`` (``n_K = 0``), shape (G, K).

    Every patient with a time at or after the first grid time lies in exactly one interval
    ``[g_k, g_{k+1})`` (the last one open), where she is an event (``d_k``, at ``g_k``) or not
    (``c_k``): the pair (d, c) has L1 = L2 sensitivity 1 over all groups, for any grid.
    """
    n, d = _counts("at_risk", at_risk, 2), _counts("events", events, 2)
    if n.shape != d.shape:
        raise ValueError(f"shapes disagree: at_risk {n.shape}, events {d.shape}")
    nxt = np.concatenate([n[:, 1:], np.zeros((n.shape[0], 1), dtype=np.int64)], axis=1)
    censored = n - d - nxt
    if censored.size and censored.min() < 0:
        raise ValueError("at_risk and events are inconsistent (negative censoring count)")
    return censored


def km_wire(events: np.ndarray, censored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What a site sends for noisy cells: ``(Σ_{j≥k} (d_j + c_j), d)`` per group.

    A linear map of the cells, so the sum over sites is the same map of the summed (noisy) cells;
    the coordinator reads at-risk counts directly (post-processing, :func:`km_from_noisy`).
    """
    total = events + censored
    return np.cumsum(total[:, ::-1], axis=1)[:, ::-1], events


def km_from_noisy(at_risk: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid counts from decoded noisy ``(Σ_{j≥k}(d̃_j + c̃_j), d̃)``: post-processing only.

    At-risk: rounded, clipped at 0 and made non-increasing in time (each value raised to the
    largest later one); events: rounded and clipped to ``[0, at_risk]``. The at-risk sums are of
    *unclipped* cells, so their noise stays mean-zero.
    """
    n = np.asarray(at_risk, dtype=float)
    d = np.asarray(events, dtype=float)
    if n.ndim != 2 or n.shape != d.shape or not (np.all(np.isfinite(n)) and np.all(np.isfinite(d))):
        raise ValueError(f"noisy counts must be finite (G, K) arrays, got {n.shape} and {d.shape}")
    n = np.maximum.accumulate(np.clip(np.rint(n), 0, None)[:, ::-1], axis=1)[:, ::-1].astype(np.int64)
    return np.ascontiguousarray(n), np.clip(np.rint(d), 0, n).astype(np.int64)


def release_record(settings: DPSettings, n_sites: int) -> dict[str, object]:
    """What a private Kaplan–Meier release states about its privacy (JSON-ready)."""
    return {"mechanism": "skellam", "epsilon": settings.epsilon, "delta": settings.delta,
            "noise_added_by": "each site, to integer counts, before masking (distributed Skellam)",
            "sites": n_sites,
            "mu": {r.kind: release_mu(settings, r.kind) for r in KM_RELEASES},
            "accounting": "Renyi DP (Mironov 2017) with the Skellam bound of Agarwal, Kairouz & Liu "
                          "2021, converted by Canonne, Kamath & Steinke 2020, Prop. 12",
            "charged": "by each site's own accountant, once per answered attempt",
            "noisy": ["n", "n_events", "at_risk", "events", "survival", "ci_lower", "ci_upper",
                      "logrank"],
            "not_covered": ["refusals at the source (k-cells, site minimums) tell whether a count "
                            "is below a threshold"]}

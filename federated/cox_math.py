"""Cox partial likelihood from summed risk-set statistics (coordinator side, pure).

With d_k events at grid time k, global risk-set sums S0_k, S1_k and tie-set sums T0_k,
T1_k (see :mod:`federated.site.local_stats`), Efron's (1977) approximation gives

    ℓ(β) = β·Z − Σ_k Σ_{j<d_k} log(S0_k − c_kj T0_k),   c_kj = j / d_k,

and Breslow's (1974) is the special case c_kj = 0. Writing u_kj = 1 / (S0_k − c_kj T0_k):

    score        U = Z − Σ_k (a_k S1_k − b_k T1_k),        a_k = Σ_j u_kj,  b_k = Σ_j c_kj u_kj
    information  I = Σ_k (a_k S2_k − b_k T2_k) − Σ_k Σ_j (S1_k − c_kj T1_k)(…)ᵀ u_kj²

The first term of I is summed at the sites (it needs S2, p×p per time); the second is
assembled here from S1, T1 with e_m = Σ_j c_kj^m u_kj². Ridge: ℓ − ½λ‖β‖² (as
scikit-survival's ``alpha``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TieTerms:
    """Per-time weights of the partial likelihood at one β (all shape (K,))."""

    log_denominator: float
    a: np.ndarray
    b: np.ndarray
    e0: np.ndarray
    e1: np.ndarray
    e2: np.ndarray


def tie_terms(d: np.ndarray, s0: np.ndarray, t0: np.ndarray | None) -> TieTerms:
    """Efron's (``t0`` given) or Breslow's (``t0`` None) per-time weights.

    Requires d_k ≥ 0 integers and S0_k > c T0_k for every tie index (always true for
    valid sums: the tie set is inside the risk set).
    """
    d = d.astype(np.int64)
    k = np.repeat(np.arange(d.size), d)
    if t0 is None:
        c = np.zeros(k.size)
        denom = s0[k]
    else:
        first = np.concatenate(([0], np.cumsum(d)[:-1]))
        c = (np.arange(k.size) - first[k]) / d[k]
        denom = s0[k] - c * t0[k]
    if np.any(denom <= 0):
        raise FloatingPointError("non-positive risk-set sum: inconsistent site statistics")
    u = 1.0 / denom
    u2 = u * u
    size = d.size

    def per_time(v: np.ndarray) -> np.ndarray:
        return np.bincount(k, weights=v, minlength=size)

    return TieTerms(log_denominator=float(np.log(denom).sum()), a=per_time(u), b=per_time(c * u),
                    e0=per_time(u2), e1=per_time(c * u2), e2=per_time(c * c * u2))


def loglik_and_score(beta: np.ndarray, z: np.ndarray, s1: np.ndarray, t1: np.ndarray | None,
                     terms: TieTerms, penalty: float) -> tuple[float, np.ndarray]:
    """Penalised log partial likelihood ℓ(β) − ½λ‖β‖² and its gradient."""
    ll = float(beta @ z) - terms.log_denominator - 0.5 * penalty * float(beta @ beta)
    expected = terms.a @ s1 - (terms.b @ t1 if t1 is not None else 0.0)
    return ll, z - expected - penalty * beta


def information(site_sum: np.ndarray, s1: np.ndarray, t1: np.ndarray | None, terms: TieTerms,
                penalty: float) -> np.ndarray:
    """Observed information −∂²ℓ/∂β² (p × p, symmetric), penalty included."""
    cross = s1.T @ (terms.e0[:, None] * s1)
    if t1 is not None:
        mixed = s1.T @ (terms.e1[:, None] * t1)
        cross += t1.T @ (terms.e2[:, None] * t1) - mixed - mixed.T
    info = site_sum - cross + penalty * np.eye(s1.shape[1])
    return 0.5 * (info + info.T)


def breslow_cumulative_hazard(d: np.ndarray, s0: np.ndarray) -> np.ndarray:
    """Breslow's (1972) estimator H0(g_k) = Σ_{k' ≤ k} d_k' / S0_k'(β̂) for one stratum."""
    return np.cumsum(d / s0)


def breslow_variance_increments(d: np.ndarray, s0: np.ndarray, s1: np.ndarray, shift: float,
                                offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per grid time, the two sums the variance of Breslow's hazard at a reference patient r needs.

    The sites centre covariates on m (``s0``, ``s1`` are the risk-set sums of e^{β·(x−m)} and
    (x − m) e^{β·(x−m)}); the baseline is released at r, with ``shift`` = e^{β·(r−m)} and
    ``offset`` = m − r. Then dH_r = shift · d/S0 and (Tsiatis 1981, *Ann. Statist.* 9:93–108;
    Andersen et al. 1993, *Statistical Models Based on Counting Processes*, §VII.2.2; Therneau &
    Grambsch 2000, *Modeling Survival Data*, §10.2; ``survival::agsurv`` with ``ctype = 1``)::

        v_k = d_k / S0_r,k²  = shift² d_k / S0_k²         (the "varhaz" increment)
        w_k = (x̄_k − r) dH_r,k = (S1_k/S0_k + m − r) dH_r,k   (the "xbar" increment, p-vector)

    Returns
    -------
    v : ndarray (K,), w : ndarray (K, p)
    """
    dh = shift * d / s0
    return shift * shift * d / (s0 * s0), (s1 / s0[:, None] + offset[None, :]) * dh[:, None]

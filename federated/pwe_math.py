"""Proportional hazards with a piecewise-constant baseline (piecewise exponential): pure maths.

Used by the differentially private Cox fit (:mod:`federated.analyses.dp_cox`): unlike Cox's
partial likelihood, whose risk-set sums S0_k couple every site, this likelihood is a sum over
patients of terms each site computes alone, so each Newton round is one sum of per-site vectors.

**Model** (Holford 1980, Biometrics 36:299; Laird & Olivier 1981, JASA 76:231; Friedman 1982,
Ann. Stat. 10:101). The study's public grid of width ``w`` cuts (0, K w] into intervals
``I_k = ((k − 1) w, k w]``, k = 1…K. The hazard of a patient with covariates x is
``λ(t | x) = exp(a_k + η) / w`` on ``I_k``, with ``η = β·x̃`` and ``x̃ = (x − c) / s``: the
covariates centred on the study's reference patient ``c`` (:meth:`CohortSpec.reference_point`) and
scaled by ``s_j = max(hi_j − c_j, c_j − lo_j)`` over the declared range [lo_j, hi_j], so that
``|x̃_j| ≤ 1`` on the clipped rows. With ``e_ik = |I_k ∩ (0, t_i]| / w ∈ [0, 1]`` (the fraction of
interval k patient i is at risk) and ``d_ik = δ_i [t_i ∈ I_k]`` (a time 0 counts in I_1), the log
likelihood is, up to a constant, that of independent Poisson counts ``d_ik`` with means
``e_ik exp(a_k + η_i)``::

    ℓ(a, β) = Σ_i Σ_k [d_ik (a_k + η_i) − e_ik exp(a_k + η_i)]
            = Σ_k D_k a_k + β·Z − Σ_k exp(a_k) A_k(β),

with the sums over patients (each site's part computed alone)::

    D_k = Σ_i d_ik,   Z = Σ_i δ_i x̃_i                                    (free of β)
    A_k = Σ_i e_ik u_i,   B_k = Σ_i e_ik u_i x̃_i,   C_k = Σ_i e_ik u_i x̃_i x̃_iᵀ,   u_i = e^{η_i}.

Score and information in (a, β)::

    U_{a_k} = D_k − e^{a_k} A_k,        U_β = Z − Σ_k e^{a_k} B_k,
    I_{a_k a_k} = e^{a_k} A_k,   I_{a_k β} = e^{a_k} B_k,   I_ββ = Σ_k e^{a_k} C_k   (I_aa diagonal).

**Profile.** For fixed β the maximising ``a_k`` is ``â_k = log(D_k / A_k)``; there U_a = 0 and the
joint Newton step's β part is the profile Newton step (the Schur complement of I_aa)::

    ℓ_p(β) = β·Z + Σ_k D_k (log(D_k / A_k) − 1),
    U_p(β) = Z − Σ_k D_k B_k / A_k,     I_p(β) = Σ_k D_k (C_k / A_k − B_k B_kᵀ / A_k²),
    Δa_k = −B_k·Δβ / A_k  (so a_k ← â_k − B_k·Δβ / A_k).

The profile score has Breslow's (1974) form with exposure-weighted risk sets. The baseline at the
reference patient (x̃ = 0) is ``H(k w) = Σ_{j≤k} exp(a_j)``.
"""

from __future__ import annotations

import numpy as np


def scales(lo: np.ndarray, hi: np.ndarray, center: np.ndarray) -> np.ndarray:
    """``s_j = max(hi_j − c_j, c_j − lo_j)``: with x clipped to [lo, hi], |x_j − c_j| ≤ s_j.

    Raises
    ------
    ValueError
        If a range is empty or a scale is not positive (a constant input carries no information).
    """
    lo, hi, center = (np.asarray(v, dtype=float) for v in (lo, hi, center))
    s = np.maximum(hi - center, center - lo)
    if np.any(hi < lo) or not np.all(s > 0):
        raise ValueError("every input needs a declared range of positive width")
    return s


def standardise(x: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``x̃ = (x − c) / s`` clipped to [−1, 1] (a guard against round-off only: rows are clipped
    to their declared ranges before, :func:`federated.site.data.prepare_cohort`)."""
    return np.clip((np.asarray(x, dtype=float) - center) / scale, -1.0, 1.0)


def exposure(time: np.ndarray, event: np.ndarray, width: float,
             k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(e, idx)``: ``e[i, k] = clip(t_i / w − k, 0, 1)`` for 0-based k (shape (n, K)), and the
    0-based interval of each event (−1 for a censoring). Times beyond K w are censored at K w
    (the grid's public horizon), as :func:`prepare_cohort` does at ``max_time``."""
    steps = np.asarray(time, dtype=float) / float(width)
    e = np.clip(steps[:, None] - np.arange(k)[None, :], 0.0, 1.0)
    inside = (np.asarray(event) == 1) & (steps <= k * (1 + 1e-12))
    idx = np.where(inside, np.clip(np.ceil(np.round(steps, 9)) - 1, 0, k - 1), -1).astype(np.int64)
    return e, idx


def n_features(p: int) -> int:
    """``P = 1 + p + p (p + 1) / 2``: the entries (1, x̃, upper triangle of x̃ x̃ᵀ) per interval."""
    return 1 + p + p * (p + 1) // 2


def features(xt: np.ndarray) -> np.ndarray:
    """``φ(x̃) = (1, x̃_1…x̃_p, x̃_j x̃_l for j ≤ l in row-major order)``, shape (n, P); every entry
    lies in [−1, 1] when |x̃_j| ≤ 1."""
    j, l_ = np.triu_indices(xt.shape[1])
    return np.column_stack([np.ones(xt.shape[0]), xt, xt[:, j] * xt[:, l_]])


def event_sums(idx: np.ndarray, xt: np.ndarray, k: int) -> np.ndarray:
    """``(N, D_1…D_K, Z_1…Z_p)``: patients, events per interval and ``Z = Σ_i δ_i x̃_i``."""
    ev = idx >= 0
    d = np.bincount(idx[ev], minlength=k).astype(float)
    return np.concatenate(([float(idx.size)], d, xt[ev].sum(axis=0)))


def round_sums(e: np.ndarray, xt: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``[A_k, B_k, upper(C_k)]`` per interval at ``beta``, shape (K, P): ``Σ_i e_ik u_i φ(x̃_i)``."""
    u = np.exp(xt @ np.asarray(beta, dtype=float))
    return (e * u[:, None]).T @ features(xt)


def unpack(sums: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A (K,), B (K, p), C (K, p, p))`` from :func:`round_sums`' layout (C symmetric)."""
    a, b, upper = sums[:, 0], sums[:, 1:1 + p], sums[:, 1 + p:]
    c = np.zeros((sums.shape[0], p, p))
    j, l_ = np.triu_indices(p)
    c[:, j, l_] = upper
    c[:, l_, j] = upper
    return a, b, c


def profile(beta: np.ndarray, z: np.ndarray, d: np.ndarray, a: np.ndarray, b: np.ndarray,
            c: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Profile log likelihood, score and information at ``beta`` (module docstring), over the
    intervals with ``d > 0`` and ``a > 0`` (others carry no information on β: D_k = 0 gives
    â_k = −∞, a zero hazard)."""
    use = (d > 0) & (a > 0)
    d, a, b, c = d[use], a[use], b[use], c[use]
    ratio = b / a[:, None]
    loglik = float(beta @ z + np.sum(d * (np.log(d / a) - 1.0)))
    score = z - d @ ratio
    info = np.einsum("k,kjl->jl", d / a, c) - np.einsum("k,kj,kl->jl", d, ratio, ratio)
    return loglik, score, (info + info.T) / 2.0


def floored_step(score: np.ndarray, info: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Newton step ``M⁻¹ U`` with ``M`` the information with its eigenvalues raised to ``floor``
    (positive definite whatever noise the information carries), and ``M``."""
    vals, vecs = np.linalg.eigh((info + info.T) / 2.0)
    m = (vecs * np.maximum(vals, floor)) @ vecs.T
    return np.linalg.solve(m, score), m


def project_l1(v: np.ndarray, radius: float) -> np.ndarray:
    """Euclidean projection of ``v`` onto ``{β : Σ_j |β_j| ≤ radius}`` (Duchi, Shalev-Shwartz,
    Singer & Chandra 2008, ICML, Fig. 1)."""
    v = np.asarray(v, dtype=float)
    if float(np.abs(v).sum()) <= radius:
        return v
    mags = np.sort(np.abs(v))[::-1]
    cum = np.cumsum(mags)
    rho = int(np.flatnonzero(mags - (cum - radius) / np.arange(1, v.size + 1) > 0)[-1])
    theta = (cum[rho] - radius) / (rho + 1)
    return np.sign(v) * np.maximum(np.abs(v) - theta, 0.0)

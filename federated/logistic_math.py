"""Exact federated logistic regression: per-site sums and the coordinator's Newton–Raphson (pure).

A site holds rows (x_i, y_i), y_i ∈ {0, 1}, and optionally a known offset o_i. With the intercept
as the first column, x̃_i = (1, x_i), and β = (β₀, β₁, …, β_p)::

    η_i = x̃_i·β + o_i,       π_i = expit(η_i) = 1 / (1 + e^{−η_i})
    ℓ(β)  = Σ_i y_i log π_i + (1 − y_i) log(1 − π_i)        Bernoulli log-likelihood
    U(β)  = ∂ℓ/∂β = Σ_i x̃_i (y_i − π_i) = X̃ᵀ(y − π)         score
    I(β)  = −∂²ℓ/∂β∂βᵀ = Σ_i π_i(1 − π_i) x̃_i x̃_iᵀ = X̃ᵀ W X̃,   W = diag(π(1 − π))   information

(McCullagh & Nelder 1989, *Generalized Linear Models*, 2nd ed., Chapman & Hall, ch. 2 and 4; for
the canonical logit link the observed and expected information coincide, so Newton–Raphson is IRLS).
All three are sums over rows, so the sums of the sites' (ℓ, U, I) at a common β are exactly the
pooled ones: each site returns them per Newton round and the coordinator adds them up, as
DataSHIELD's ``ds.glm`` does (Wolfson et al. 2010, *Int J Epidemiol* 39:1372–1382; Gaye et al.
2014, *Int J Epidemiol* 43:1929–1944). The result equals the pooled fit to rounding.

The coordinator (:func:`newton`) maximises the penalised log-likelihood

    Q(β) = ℓ(β) − ½ λ ‖β₋₀‖²,       β₋₀ = (β₁, …, β_p)   (the intercept is not penalised)

by Newton–Raphson from β = 0: δ = H⁻¹ g with g = U − λ D β, H = I + λ D, D = diag(0, 1, …, 1),
halving the step while Q would decrease. It stops once the squared Newton decrement
ν² = gᵀ H⁻¹ g (≈ 2 (Q(β̂) − Q(β)), invariant to the covariates' units) of a full step is below
``tol``; the estimate is the point after that step, where every reported quantity is evaluated.
λ = 0 is maximum likelihood; λ > 0 is ridge logistic regression (le Cessie & van Houwelingen 1992,
*Appl Stat* 41:191), the objective of scikit-learn's ``LogisticRegression(C = 1/λ)`` with lbfgs.

The maximum-likelihood estimate does not exist under complete or quasi-complete separation
(Albert & Anderson 1984, *Biometrika* 71:1): ℓ keeps increasing as some coefficients run off to
±∞ while the fitted probabilities of the rows that carry them go to 0 or 1, so their weights
π(1 − π) and with them the information in that direction vanish. :func:`newton` detects it from
the sums alone: with I(0) = L Lᵀ the information at the start β = 0, it computes
ρ(β) = λ_min(L⁻¹ I(β) L⁻ᵀ), the smallest ratio of the information in any direction at β to that at
the start (without offsets I(0) = X̃ᵀX̃ / 4 and ρ lies between 4 min_i W_i and 4 max_i W_i), and
refuses once ρ < :data:`SEPARATION_RHO` at a step or at the estimate: some direction of the design
is then carried only by rows whose fitted probabilities are within ~1e-9 of 0 or 1 (R's "fitted
probabilities numerically 0 or 1"). Under a ridge penalty (λ > 0) a finite maximum exists
whenever 0 < Σy < n, and the check is off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from federated.exceptions import ConvergenceError, DataError, SingularDesignError
from prognosis.logistic import expit

#: ρ(β) below this (see the module docstring) is refused as separation
SEPARATION_RHO = 1e-8
#: a penalised information whose diagonally scaled smallest eigenvalue is below this is singular
SINGULAR_RCOND = 1e-12
SEPARATION_MESSAGE = ("logistic regression has no finite estimate: the outcome is completely or "
                      "quasi-completely separated by the covariates (fitted probabilities tend to 0 or 1 "
                      "and coefficients run off to infinity); drop or merge the covariate(s) that "
                      "separate it, or use a ridge penalty")


@dataclass(frozen=True, eq=False)
class LogisticSums:
    """What one site returns per Newton round at β (or their total over sites).

    ``n`` rows, ``events`` = Σ y, ``loglik`` = ℓ(β), ``score`` = U(β) (p+1,) and ``information``
    = I(β) (p+1, p+1), intercept first and unpenalised (module docstring).
    """

    n: int
    events: int
    loglik: float
    score: np.ndarray
    information: np.ndarray

    def __post_init__(self) -> None:
        score = np.array(self.score, dtype=float)
        info = np.array(self.information, dtype=float)
        m = score.size
        if score.ndim != 1 or m < 1 or info.shape != (m, m):
            raise DataError(f"logistic sums: score must be (m,) and information (m, m), got "
                            f"{score.shape} and {info.shape}")
        if not (0 <= self.events <= self.n):
            raise DataError(f"logistic sums: need 0 ≤ events ≤ n, got events={self.events}, n={self.n}")
        if not (np.isfinite(self.loglik) and np.all(np.isfinite(score)) and np.all(np.isfinite(info))):
            raise DataError("logistic sums: log-likelihood, score and information must be finite")
        score.setflags(write=False)
        info.setflags(write=False)
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "events", int(self.events))
        object.__setattr__(self, "loglik", float(self.loglik))
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "information", info)


@dataclass(frozen=True, eq=False)
class LogisticFit:
    """A fitted logistic regression, intercept first.

    ``coef`` = β̂ (p+1,); ``covariance`` = (I(β̂) + λ D)⁻¹, the inverse of the penalised
    information (for λ = 0 the usual inverse observed = expected information; for λ > 0 the
    "naive" ridge covariance, the Bayesian posterior covariance under the Gaussian prior the
    penalty is, not the sandwich H⁻¹ I H⁻¹); ``loglik`` = ℓ(β̂), the *unpenalised* log-likelihood
    (of the model with any offset the rounds carry); ``loglik_null`` = the intercept-only,
    offset-free log-likelihood n [ȳ log ȳ + (1 − ȳ) log(1 − ȳ)], ȳ = events / n; ``iterations``
    Newton steps taken; ``converged`` False when ``max_iter`` steps did not reach ``tol``.
    """

    coef: np.ndarray
    covariance: np.ndarray
    loglik: float
    loglik_null: float
    iterations: int
    converged: bool
    n: int
    events: int
    ridge: float

    @property
    def se(self) -> np.ndarray:
        """Standard errors sqrt(diag(covariance)), intercept first."""
        return np.sqrt(np.diag(self.covariance))


def site_sums(X: np.ndarray, y: np.ndarray, beta: np.ndarray,
              offset: np.ndarray | None = None) -> LogisticSums:
    """One site's ℓ(β), U(β) and I(β) over its rows (module docstring).

    Parameters
    ----------
    X : array (n, p)
        Covariates *without* an intercept column: the intercept is added here, as column 0 of
        X̃ = [1, X] (p = 0 gives the intercept-only model).
    y : array (n,)
        Outcome, 0 or 1.
    beta : array (p+1,)
        (β₀, β₁, …, β_p), intercept first.
    offset : array (n,), optional
        Known offsets o_i added to η_i (default 0).

    Raises
    ------
    DataError
        Shapes that do not match, non-finite values, or y outside {0, 1}.
    """
    x = np.asarray(X, dtype=float)
    yy = np.asarray(y, dtype=float)
    b = np.asarray(beta, dtype=float)
    if x.ndim != 2 or yy.shape != (x.shape[0],) or b.shape != (x.shape[1] + 1,):
        raise DataError(f"site_sums: need X (n, p), y (n,) and beta (p+1,), got {x.shape}, {yy.shape}, "
                        f"{b.shape}")
    o = np.zeros(x.shape[0]) if offset is None else np.asarray(offset, dtype=float)
    if o.shape != yy.shape:
        raise DataError(f"site_sums: offset must have shape {yy.shape}, got {o.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(b)) and np.all(np.isfinite(o))):
        raise DataError("site_sums: X, beta and offset must be finite")
    if not np.all((yy == 0) | (yy == 1)):
        raise DataError("site_sums: y must be 0 or 1")
    xt = np.column_stack((np.ones(x.shape[0]), x))
    eta = xt @ b + o
    p1, p0 = expit(eta), expit(-eta)                 # π and 1 − π, each to full relative precision
    # log π = −log(1 + e^{−η}), log(1 − π) = −log(1 + e^{η}): no cancellation for either outcome
    loglik = -float(np.sum(np.where(yy == 1, np.logaddexp(0.0, -eta), np.logaddexp(0.0, eta))))
    resid = yy * p0 - (1.0 - yy) * p1                 # y − π
    info = (xt * (p1 * p0)[:, None]).T @ xt
    return LogisticSums(n=x.shape[0], events=int(yy.sum()), loglik=loglik, score=xt.T @ resid,
                        information=0.5 * (info + info.T))


def total(sums: Sequence[LogisticSums]) -> LogisticSums:
    """The coordinator's sum of the sites' :class:`LogisticSums` at one β (the pooled sums)."""
    if not sums:
        raise DataError("total: no site sums to add")
    shape = sums[0].score.shape
    if any(s.score.shape != shape for s in sums):
        raise DataError("total: the sites' sums have different numbers of coefficients")
    return LogisticSums(n=sum(s.n for s in sums), events=sum(s.events for s in sums),
                        loglik=float(sum(s.loglik for s in sums)),
                        score=np.sum([s.score for s in sums], axis=0),
                        information=np.sum([s.information for s in sums], axis=0))


def null_loglik(n: int, events: int) -> float:
    """Intercept-only log-likelihood n [ȳ log ȳ + (1 − ȳ) log(1 − ȳ)], ȳ = events / n (0 log 0 = 0)."""
    out = 0.0
    for k in (events, n - events):
        if k > 0:
            out += k * np.log(k / n)
    return float(out)


def _penalty_diag(m: int, ridge: float) -> np.ndarray:
    d = np.full(m, float(ridge))
    d[0] = 0.0
    return d


def _cholesky(h: np.ndarray) -> np.ndarray | None:
    """Cholesky factor of ``h``, or None when ``h`` is numerically singular or not positive
    definite: the smallest eigenvalue of D^{-1/2} h D^{-1/2}, D = diag(h), is ≤ :data:`SINGULAR_RCOND`."""
    diag = np.diag(h)
    if np.any(diag <= 0):
        return None
    s = 1.0 / np.sqrt(diag)
    if np.linalg.eigvalsh(h * s[:, None] * s[None, :])[0] <= SINGULAR_RCOND:
        return None
    try:
        return np.linalg.cholesky(h)
    except np.linalg.LinAlgError:
        return None


def _solve(chol: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.linalg.solve(chol.T, np.linalg.solve(chol, v))


def _separated(info: np.ndarray, chol0: np.ndarray) -> bool:
    """ρ(β) = λ_min(L⁻¹ I(β) L⁻ᵀ) < :data:`SEPARATION_RHO`, with I(0) = L Lᵀ (module docstring)."""
    a = np.linalg.solve(chol0, np.linalg.solve(chol0, info).T)
    return bool(np.linalg.eigvalsh(0.5 * (a + a.T))[0] < SEPARATION_RHO)


def newton(round_fn: Callable[[np.ndarray], LogisticSums], p: int, *, ridge: float = 0.0,
           tol: float = 1e-10, max_iter: int = 100, max_halvings: int = 30) -> LogisticFit:
    """Maximise Q(β) = ℓ(β) − ½ ridge ‖β₋₀‖² by Newton–Raphson with step halving (module docstring).

    Parameters
    ----------
    round_fn : callable
        ``round_fn(beta)`` → the sites' summed :class:`LogisticSums` at ``beta`` (p+1,): one
        federated round. It is called once per Newton step (plus once per halving).
    p : int
        Number of covariates (β has p + 1 entries, intercept first).
    ridge : float, default 0
        λ ≥ 0; the intercept is never penalised.
    tol : float, default 1e-10
        Converged once a full step's squared Newton decrement ν² = gᵀH⁻¹g is ≤ ``tol``.
    max_iter : int, default 100
        Newton steps before giving up (``converged`` False).
    max_halvings : int, default 30
        Halvings of one step before :class:`ConvergenceError`.

    Raises
    ------
    SingularDesignError
        A singular information at β = 0 (collinear or constant covariates), all outcomes equal,
        or separation (:data:`SEPARATION_MESSAGE`).
    ConvergenceError
        No halving of the step increases Q (non-finite or inconsistent sums).
    """
    if ridge < 0 or not np.isfinite(ridge):
        raise ValueError(f"ridge must be a finite number ≥ 0, got {ridge}")
    m = p + 1
    pen = _penalty_diag(m, ridge)

    def evaluate(beta: np.ndarray) -> tuple[LogisticSums, float]:
        s = round_fn(beta)
        if s.score.shape != (m,):
            raise DataError(f"newton: round returned {s.score.size} coefficients, expected {m}")
        return s, s.loglik - 0.5 * float(pen @ (beta * beta))

    beta = np.zeros(m)
    sums, q = evaluate(beta)
    if sums.events in (0, sums.n):
        raise SingularDesignError(f"logistic regression has no finite estimate: all {sums.n} outcomes are "
                                  f"{'0' if sums.events == 0 else '1'} (the intercept runs off to infinity)")
    chol0 = _cholesky(sums.information + np.diag(pen))
    if chol0 is None:
        raise SingularDesignError("logistic regression: the information matrix is singular (collinear or "
                                  "constant covariates)")
    base = chol0 if ridge == 0 else None   # I(0) = L Lᵀ for the separation check
    converged, it = False, 0
    while True:
        chol = _cholesky(sums.information + np.diag(pen))
        if chol is None or (base is not None and _separated(sums.information, base)):
            raise SingularDesignError(SEPARATION_MESSAGE)
        if converged or it == max_iter:
            break
        g = sums.score - pen * beta
        step = _solve(chol, g)
        decrement = float(g @ step)
        for halving in range(max_halvings + 1):  # noqa: B007  (read after the loop)
            new_sums, new_q = evaluate(beta + step)
            if new_q >= q - 1e-12 * max(1.0, abs(q)):
                break
            step = step / 2
        else:
            raise ConvergenceError("logistic regression: no step increases the likelihood")
        beta, sums, q, it = beta + step, new_sums, new_q, it + 1
        converged = halving == 0 and decrement <= tol
    covariance = _solve(chol, np.eye(m))
    return LogisticFit(coef=beta, covariance=0.5 * (covariance + covariance.T), loglik=sums.loglik,
                       loglik_null=null_loglik(sums.n, sums.events), iterations=it, converged=converged,
                       n=sums.n, events=sums.events, ridge=float(ridge))

"""The released binary-outcome prognostic model: a logistic regression's predictions (pure numpy).

A logistic model (McCullagh & Nelder 1989, *Generalized Linear Models*, 2nd ed., Chapman & Hall,
ch. 4) released at the covariate centre ``c`` (the study's reference patient). For covariates
``x`` (``names`` order), slopes ``β`` and the intercept ``α`` *at the centre* (the log-odds of the
event for the reference patient x = c)::

    η(x) = α + β·(x − c)                     linear predictor (log-odds of the event)
    π(x) = expit(η) = 1 / (1 + e^{−η})        predicted probability of the event
    contribution_j(x) = β_j (x_j − c_j)       so that η = α + Σ_j contribution_j

With ``Σ`` the (p+1)×(p+1) covariance of (α, β) and z̃ = (1, x − c), the delta method gives
Var(η̂) = z̃ᵀ Σ z̃ (exact: η is linear in (α, β)); the 95% Wald interval is built on the logit
scale and mapped back, η̂ ∓ z·se(η̂), z = Φ⁻¹(0.975), π ∈ (expit(η̂ − z se), expit(η̂ + z se)),
so that it lies inside (0, 1) — as R's ``predict.glm(se.fit = TRUE)`` on the link scale and
statsmodels' ``GLMResults.get_prediction`` do (Hosmer, Lemeshow & Sturdivant 2013, *Applied
Logistic Regression*, 3rd ed., Wiley, §1.4).

A fit on uncentred covariates (intercept β₀ at x = 0, covariance Σ₀ of (β₀, β)) is released at
``c`` by the exact reparametrisation (:meth:`LogisticModel.from_fit`)::

    α = β₀ + β·c,      Σ = A Σ₀ Aᵀ,      A = [[1, cᵀ], [0, I_p]],

which leaves every η(x), se(η̂(x)) and interval unchanged.

:func:`expit` is evaluated without overflow for any finite η (it is the one link inverse the
training maths of :mod:`federated.logistic_math` uses too). No I/O and no artifact parsing here.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cox import ModelError, read_artifact
from .schema import INTERCEPT, Artifact
from .steps import Z95

ArrayLike = np.ndarray | Sequence[float] | float


def expit(eta: ArrayLike) -> np.ndarray:
    """The logistic function 1 / (1 + e^{−η}), elementwise, without overflow.

    For η ≥ 0 it is evaluated as 1 / (1 + e^{−η}), for η < 0 as e^{η} / (1 + e^{η}): the exponent
    is never positive, so nothing overflows, and tiny probabilities keep full relative precision
    (expit(−800) = e^{−800} underflows to 0 only where the double itself does).
    """
    x = np.asarray(eta, dtype=float)
    e = np.exp(-np.abs(x))
    return np.asarray(np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)))


def logit(prob: ArrayLike) -> np.ndarray:
    """The log-odds log(π / (1 − π)), elementwise (−inf at 0, +inf at 1, nan outside [0, 1])."""
    q = np.asarray(prob, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.log(q) - np.log1p(-q))


def _readonly(values: ArrayLike, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.array(values, dtype=float)
    if arr.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be finite")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class LogisticModel:
    """A released logistic model, centred at the reference patient ``center``.

    Parameters
    ----------
    names : tuple of str
        Input names, the column order of every ``X`` (n, p) the model takes.
    intercept : float
        α, the log-odds of the event at x = ``center``.
    beta : array (p,)
        Slopes β (log odds ratios per unit of each input).
    covariance : array (p+1, p+1)
        Covariance of (α, β), intercept first.
    center : array (p,)
        The reference patient c.
    """

    names: tuple[str, ...]
    intercept: float
    beta: np.ndarray
    covariance: np.ndarray
    center: np.ndarray
    #: the validated contract when read from a ``fedprog.model/v1`` artifact (:meth:`from_artifact`)
    artifact: Artifact | None = field(default=None, repr=False)
    _json: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        p = len(self.names)
        if len(set(self.names)) != p:
            raise ValueError("input names must be unique")
        if not np.isfinite(self.intercept):
            raise ValueError("intercept must be finite")
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "intercept", float(self.intercept))
        object.__setattr__(self, "beta", _readonly(self.beta, (p,), "beta"))
        object.__setattr__(self, "center", _readonly(self.center, (p,), "center"))
        cov = _readonly(self.covariance, (p + 1, p + 1), "covariance")
        if not np.allclose(cov, cov.T, rtol=1e-10, atol=0.0):
            raise ValueError("covariance must be symmetric")
        object.__setattr__(self, "covariance", cov)

    @classmethod
    def from_fit(cls, names: Sequence[str], coef: ArrayLike, covariance: ArrayLike,
                 center: ArrayLike) -> LogisticModel:
        """The model of a fit on uncentred covariates, released at ``center``.

        ``coef`` is (β₀, β) with β₀ the intercept at x = 0 and ``covariance`` its (p+1)×(p+1)
        covariance; returns α = β₀ + β·c with Σ = A Σ₀ Aᵀ (module docstring).
        """
        b = np.asarray(coef, dtype=float)
        c = np.asarray(center, dtype=float)
        if b.ndim != 1 or b.size != c.size + 1:
            raise ValueError(f"coef must have shape ({c.size + 1},), got {b.shape}")
        a = np.eye(b.size)
        a[0, 1:] = c
        cov0 = np.asarray(covariance, dtype=float)
        cov = a @ cov0 @ a.T
        return cls(tuple(names), float(b[0] + b[1:] @ c), b[1:], 0.5 * (cov + cov.T), c)

    @classmethod
    def from_artifact(cls, source: str | Path | Mapping[str, Any]) -> LogisticModel:
        """Read, hash-check and validate a ``kind: "logistic"`` artifact (a path or the parsed JSON);
        ``names`` are its design columns (:mod:`prognosis.design`), ``center`` the reference
        patient's, ``intercept`` the log-odds of the event for her."""
        name, art, data = read_artifact(source)
        if art.kind != "logistic" or art.logistic is None:
            raise ModelError(f"{name}: kind {art.kind!r} is not a logistic model")
        columns = art.design().columns
        return cls(tuple(columns), art.coefficients[INTERCEPT],
                   np.array([art.coefficients[c] for c in columns]),
                   np.array(art.covariance), np.array(art.logistic.center), artifact=art, _json=data)

    def to_artifact(self) -> dict[str, Any]:
        """The artifact's JSON object, exactly as read (same canonical bytes, same ``sha256``)."""
        if self.artifact is None:
            raise ModelError("this logistic model was not read from an artifact")
        return copy.deepcopy(self._json)

    def design_matrix(self, X: np.ndarray) -> np.ndarray:
        """The design columns (n, p) of raw inputs ``X`` (n, q) in the artifact's ``inputs`` order."""
        if self.artifact is None:
            raise ModelError("this logistic model was not read from an artifact: it takes columns")
        return np.atleast_2d(self.artifact.design().matrix(np.asarray(X, dtype=float)))

    @property
    def p(self) -> int:
        """Number of inputs."""
        return len(self.names)

    def _centred(self, X: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        Z = np.asarray(X, dtype=float)
        if Z.ndim != 2 or Z.shape[1] != self.p:
            raise ValueError(f"X must have shape (n, {self.p}), got {Z.shape}")
        return Z - self.center

    def lp(self, X: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Linear predictor η = α + β·(x − c) of each row of ``X`` (n, p), shape (n,)."""
        return np.asarray(self.intercept + self._centred(X) @ self.beta, dtype=float)

    def se_lp(self, X: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Standard error of η̂ by the delta method, sqrt(z̃ᵀ Σ z̃) with z̃ = (1, x − c), shape (n,)."""
        Z = self._centred(X)
        zt = np.column_stack((np.ones(Z.shape[0]), Z))
        return np.sqrt(np.maximum(((zt @ self.covariance) * zt).sum(axis=1), 0.0))

    def probability(self, X: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Predicted probability of the event π = expit(η), shape (n,)."""
        return expit(self.lp(X))

    def probability_with_interval(self, X: np.ndarray | Sequence[Sequence[float]]
                                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """π with its 95% Wald interval built on the logit scale and mapped back by :func:`expit`:
        (π, lower, upper), each (n,); lower = expit(η̂ − z se), upper = expit(η̂ + z se)."""
        eta = self.lp(X)
        half = Z95 * self.se_lp(X)
        return expit(eta), expit(eta - half), expit(eta + half)

    def contributions(self, X: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """β_j (x_j − c_j) of each row (n, p): each input's log odds ratio against the reference
        patient; a row sums to η − α."""
        return np.asarray(self._centred(X) * self.beta)

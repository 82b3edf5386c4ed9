"""The released binary-outcome prognostic model: a logistic regression's predictions (pure numpy).

A logistic model (McCullagh & Nelder 1989, *Generalized Linear Models*, 2nd ed., Chapman & Hall,
ch. 4) released at the covariate centre ``c`` (the study's reference patient's design columns). For
inputs ``x`` (``names`` order) with design columns d(x) (:mod:`prognosis.design`; x itself for a
model built from arrays), slopes ``β`` and the intercept ``α`` *at the centre* (the log-odds of the
event for the reference patient)::

    η(x) = α + β·(d(x) − c)                  linear predictor (log-odds of the event)
    π(x) = expit(η) = 1 / (1 + e^{−η})        predicted probability of the event
    contribution_e(x) = Σ_{j ∈ e} β_j (d_j(x) − c_j)    per effect e, so that η = α + Σ_e contribution_e

(the contributions, each effect's log odds ratio against the reference patient, and the model's
facts are those every released model shares: :class:`prognosis.released.Released`).

With ``Σ`` the (p+1)×(p+1) covariance of (α, β) and z̃ = (1, d(x) − c), the delta method gives
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
training maths of :mod:`federated.logistic_math` uses too). Reading an artifact is
:func:`prognosis.cox.read_artifact`'s (hash check and contract), as for a Cox model.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .cox import ModelError, read_artifact
from .design import Design
from .inputs import ModelInput
from .released import Released, open_input, readonly
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


def _checked(values: ArrayLike, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = readonly(values)
    if arr.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be finite")
    return arr


@dataclass(frozen=True, eq=False)
class LogisticModel(Released):
    """A released logistic model, centred at the reference patient ``center``.

    Parameters
    ----------
    column_names : tuple of str
        The slopes' columns (the design columns; the inputs themselves for a model built from arrays).
    intercept : float
        α, the log-odds of the event at the reference patient (columns = ``center``).
    beta : array (p,)
        Slopes β (log odds ratios per unit of each column).
    covariance : array (p+1, p+1)
        Covariance of (α, β), intercept first.
    center : array (p,)
        The reference patient's columns c.

    Every method takes raw inputs ``X`` (n, q) in ``names`` order and builds the design columns
    itself, as :class:`prognosis.CoxModel` does (for a model built from arrays the columns are the
    inputs). Read from an artifact (:meth:`from_artifact`), it states the facts the device serves
    (``model_id``, ``version``, ``sha256``, ``outcome``, ``time_unit``, its one ``horizons`` entry —
    when the binary outcome is recorded —, ``inputs``, ``design``, ``artifact``); built from arrays,
    its inputs are its columns, open-ranged, and it has no artifact.
    """

    kind: ClassVar[str] = "logistic"
    ratio: ClassVar[str] = "odds"
    #: a logistic model has one reference patient, never one baseline per stratum
    stratified: ClassVar[bool] = False
    #: the intercept (the reference patient's log-odds, this model's baseline) is in ``covariance``:
    #: the interval carries the uncertainty of every released parameter
    interval_includes_baseline: ClassVar[bool] = True

    column_names: tuple[str, ...]
    intercept: float
    beta: np.ndarray
    covariance: np.ndarray
    center: np.ndarray
    #: the validated contract when read from a ``fedprog.model/v1`` artifact (:meth:`from_artifact`)
    _artifact: Artifact | None = field(default=None, repr=False)
    _json: dict[str, Any] = field(default_factory=dict, repr=False)
    model_id: str = field(init=False)
    version: str = field(init=False)
    sha256: str = field(init=False)
    outcome: str = field(init=False)
    time_unit: str = field(init=False)
    horizons: tuple[float, ...] = field(init=False)
    inputs: list[ModelInput] = field(init=False)
    design: Design | None = field(init=False)

    def __post_init__(self) -> None:
        p = len(self.column_names)
        if len(set(self.column_names)) != p:
            raise ValueError("input names must be unique")
        if not np.isfinite(self.intercept):
            raise ValueError("intercept must be finite")
        put = partial(object.__setattr__, self)
        put("column_names", tuple(self.column_names))
        put("intercept", float(self.intercept))
        put("beta", _checked(self.beta, (p,), "beta"))
        put("center", _checked(self.center, (p,), "center"))
        cov = _checked(self.covariance, (p + 1, p + 1), "covariance")
        if not np.allclose(cov, cov.T, rtol=1e-10, atol=0.0):
            raise ValueError("covariance must be symmetric")
        put("covariance", cov)
        art = self._artifact
        if art is None:
            put("inputs", [ModelInput.model_validate(open_input(n)) for n in self.column_names])
            put("design", None)
            put("horizons", ())
            for name, text in (("model_id", "model"), ("version", "1"), ("sha256", ""), ("outcome", "event"),
                               ("time_unit", "day")):
                put(name, text)
            return
        design = art.design()
        if design.columns != self.column_names:
            raise ValueError(f"column_names {self.column_names} are not the artifact's design columns "
                             f"{design.columns}")
        put("inputs", list(art.inputs))
        put("design", design)
        put("horizons", tuple(art.outcome.horizons))
        for name, text in (("model_id", art.model_id), ("version", art.version), ("sha256", art.sha256),
                           ("outcome", art.outcome.name), ("time_unit", art.outcome.time_unit)):
            put(name, text)

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
        its slopes are over the design columns (:mod:`prognosis.design`), ``center`` is the reference
        patient's, ``intercept`` the log-odds of the event for her."""
        name, art, data = read_artifact(source)
        if art.kind != "logistic" or art.logistic is None:
            raise ModelError(f"{name}: kind {art.kind!r} is not a logistic model")
        return cls._of(art, data)

    @classmethod
    def _of(cls, art: Artifact, data: dict[str, Any]) -> LogisticModel:
        assert art.logistic is not None  # a logistic model's (Artifact._check_kind)
        columns = art.design().columns
        return cls(tuple(columns), art.coefficients[INTERCEPT],
                   np.array([art.coefficients[c] for c in columns]),
                   np.array(art.covariance), np.array(art.logistic.center), _artifact=art, _json=data)

    @property
    def artifact(self) -> Artifact:
        """The validated contract this model was read from (:class:`ModelError` when built from arrays)."""
        if self._artifact is None:
            raise ModelError("this logistic model was not read from an artifact")
        return self._artifact

    def to_artifact(self) -> dict[str, Any]:
        """The artifact's JSON object, exactly as read (same canonical bytes, same ``sha256``)."""
        self.artifact  # noqa: B018  (ModelError when built from arrays: there is no file to give back)
        return copy.deepcopy(self._json)

    @property
    def p(self) -> int:
        """Number of slopes (design columns)."""
        return len(self.column_names)

    @property
    def slope_covariance(self) -> np.ndarray:
        """Σ_β, the covariance of the slopes (``covariance`` without the intercept's row and column)."""
        return np.asarray(self.covariance[1:, 1:])

    def lp(self, X: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Linear predictor η = α + β·(d(x) − c) of each row of ``X`` (n, q), shape (n,): the log-odds."""
        return np.asarray(self.intercept + self.log_ratio(np.asarray(X, dtype=float)), dtype=float)

    def se_lp(self, X: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Standard error of η̂ by the delta method, sqrt(z̃ᵀ Σ z̃) with z̃ = (1, d(x) − c), shape (n,)."""
        Z = np.atleast_2d(self.centred(np.asarray(X, dtype=float)))
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

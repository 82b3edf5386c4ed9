"""The one Cox model object: a released ``fedprog.model/v1`` model, its predictions and its file.

A Cox proportional-hazards model with a Breslow baseline (Breslow 1974, *Biometrics* 30:89–99)
released at the covariate centre ``c`` (the study's reference patient). For covariates ``x``
(the model's units, ``inputs`` order), coefficients ``β`` with covariance ``Σ`` and the released
baseline survival step function ``S0`` (:func:`prognosis.steps.step_at`: the value at the last
released time ≤ t, 1 before the first)::

    η = β·(x − c)                      linear predictor (log hazard ratio against the centre)
    H0(t) = −log S0(t)                  baseline cumulative hazard
    S(t | x) = S0(t) ** exp(η) = exp(−H0(t) e^η),     risk = 1 − S(t | x)

The 95% interval is built on the complementary log-log scale, where the model is additive and
the interval respects [0, 1] (Kalbfleisch & Prentice 2002, *The Statistical Analysis of Failure
Time Data*, 2nd ed., Wiley, §5.2): with L = log(−log S(t | x)) = log H0(t) + η,
bounds = L ∓ z·se(L), z = Φ⁻¹(0.975), mapped back by S = exp(−e^(·)).

se(L) carries the baseline hazard's variance as well as β's (:meth:`CoxModel.se_loglog`), as
R's ``survival::survfit.coxph`` does with ``ctype = 1``: the Breslow hazard d/S0, which the
artifact releases whatever its ``ties`` (survfit's default for an Efron fit, ctype 2, would
change the hazard too) (Tsiatis 1981, *Ann. Statist.* 9:93–108; Andersen et al. 1993,
*Statistical Models Based on Counting Processes*, §VII.2.2; Therneau & Grambsch 2000, §10.2)::

    Var(Λ̂(t | x)) = e^{2η} [ V(t) + q(t)ᵀ Σ q(t) ],   q(t) = (x − c) H0(t) − M(t)
    V(t) = Σ_{t_k ≤ t} d_k / S0_k²,                     M(t) = Σ_{t_k ≤ t} (x̄_k − c) dH0_k
    Var(L) = Var(Λ̂)/Λ̂² = V(t)/H0(t)² + aᵀ Σ a,          a = (x − c) − M(t)/H0(t)

with S0 and x̄ = S1/S0 the risk-set sums at the centre and V, M the running sums of the
artifact's ``variance_increments``/``xbar_increments`` at the released times (the same step
function as S0(t)). An older artifact without them gives the β-only interval
Var(L) = (x − c)ᵀ Σ (x − c), and :attr:`CoxModel.interval_includes_baseline` is False: it omits
V and the covariance of β̂ with Ĥ0 (M), so it is too narrow near the centre (zero width at it)
and may be too wide for patients nearer the data's hazard-weighted mean — not a bound.

Reading (:meth:`CoxModel.from_artifact`, :func:`load_model`) never trusts a file: the SHA-256 of
the canonical JSON of every field but ``sha256`` (:func:`ledger.canonical.sealed_sha256`) must
match, then the whole contract is validated (:class:`prognosis.schema.Artifact`); any refusal
is a :class:`ModelError` whose one-line message names the file and the field. Writing
(:meth:`CoxModel.to_artifact`) gives back the very JSON object read (same bytes, same hash).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import ValidationError

from ledger.canonical import sealed_sha256

from .design import Design
from .inputs import ModelInput
from .released import Released, open_input, readonly
from .schema import SCHEMA, Artifact
from .steps import Z95, step_at

ArrayLike = np.ndarray | Sequence[float] | float


class ModelError(ValueError):
    """A model artifact that is unreadable, tampered with, or outside the contract."""


def seal(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` plus its ``sha256`` over the canonical JSON of the rest (an existing one is recomputed)."""
    rest = {k: v for k, v in body.items() if k != "sha256"}
    return {**rest, "sha256": sealed_sha256(rest)}


def verify_sha256(artifact: Mapping[str, Any]) -> bool:
    """True when ``artifact['sha256']`` matches its content."""
    return sealed_sha256(dict(artifact)) == artifact.get("sha256")


def wald(beta: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standard errors, 95% Wald intervals (p, 2) and two-sided p-values 2(1 − Φ(|β/se|)) of ``beta``.

    The p-value is computed as erfc(|z| / √2), exact in double precision in both tails.
    """
    se = np.sqrt(np.diag(np.asarray(covariance, dtype=float)))
    b = np.asarray(beta, dtype=float)
    half = Z95 * se
    p = np.array([math.erfc(abs(z) / math.sqrt(2.0)) for z in b / se])
    return se, np.column_stack((b - half, b + half)), p


@dataclass(frozen=True, eq=False)
class BaselineCurve:
    """One released baseline survival step function (a stratum's, or the model's when ``label`` is None)."""

    label: str | None
    times: np.ndarray
    survival: np.ndarray
    #: V(t) and M(t) (K, p) at each released time (running sums of the artifact's increments), or None
    variance: np.ndarray | None = None
    xbar: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class CoxModel(Released):
    """A loaded, verified Cox model: the arrays prediction needs, all read-only, in ``inputs`` order.

    ``horizons`` and baseline times are in ``time_unit``. A stratified model has empty
    ``baseline_times``/``baseline_survival`` and one curve per stratum in ``strata``. ``artifact``
    is the validated contract (every released field); :meth:`to_artifact` its exact JSON object.
    The facts and contributions every released model shares are :class:`prognosis.released.Released`'s.
    """

    kind: ClassVar[str] = "cox-ph"
    ratio: ClassVar[str] = "hazard"

    model_id: str
    version: str
    sha256: str
    outcome: str
    time_unit: str
    horizons: tuple[float, ...]
    inputs: list[ModelInput]
    beta: np.ndarray
    covariance: np.ndarray
    center: np.ndarray
    baseline_times: np.ndarray
    baseline_survival: np.ndarray
    stratified: bool
    artifact: Artifact
    strata: tuple[BaselineCurve, ...] = ()
    #: V(t) (K,) and M(t) (K, p) of the unstratified baseline (see the module docstring), or None
    baseline_variance: np.ndarray | None = None
    baseline_xbar: np.ndarray | None = None
    _json: dict[str, Any] = field(default_factory=dict, repr=False)
    #: how the inputs become the coefficients' columns (:mod:`prognosis.design`; identity for a
    #: linear model of numeric and ordinal inputs)
    design: Design | None = None

    # ------------------------------------------------------------ reading and writing
    @classmethod
    def from_artifact(cls, source: str | Path | Mapping[str, Any]) -> CoxModel:
        """Read, hash-check and validate a ``fedprog.model/v1`` artifact (a path or the parsed JSON).

        Raises
        ------
        ModelError
            ``"<file>: sha256 mismatch: file says …, content hashes to …"`` when the content was
            edited, or ``"<file>: <field>: <rule>"`` for the first contract violation.
        """
        name, art, data = read_artifact(source)
        if art.kind != "cox-ph":
            raise ModelError(f"{name}: kind {art.kind!r} is not a Cox model (prognosis.logistic reads it)")
        return cls._of(art, data)

    @classmethod
    def _of(cls, art: Artifact, data: dict[str, Any]) -> CoxModel:
        design = art.design()
        names = list(design.columns)
        base = art.baseline_survival
        assert base is not None  # a Cox model's (Artifact._check_kind)
        strata = tuple(BaselineCurve(s.label, readonly(s.times), readonly(s.survival),
                                     *_running(s.variance_increments, s.xbar_increments, len(base.center)))
                       for s in base.strata or [])
        variance, xbar = _running(base.variance_increments, base.xbar_increments, len(base.center))
        return cls(model_id=art.model_id, version=art.version, sha256=art.sha256, outcome=art.outcome.name,
                   time_unit=art.outcome.time_unit, horizons=tuple(art.outcome.horizons),
                   inputs=list(art.inputs), beta=readonly([art.coefficients[n] for n in names]),
                   covariance=readonly(art.covariance), center=readonly(base.center),
                   baseline_times=readonly(base.times), baseline_survival=readonly(base.survival),
                   stratified=base.strata is not None, artifact=art, strata=strata,
                   baseline_variance=variance, baseline_xbar=xbar, _json=data, design=design)

    @classmethod
    def from_arrays(cls, names: Sequence[str], beta: ArrayLike, center: ArrayLike, times: ArrayLike,
                    survival: ArrayLike, horizons: Sequence[float], *, covariance: ArrayLike | None = None,
                    model_id: str = "model", version: str = "1", outcome: str = "event",
                    time_unit: str = "day", ties: str = "efron", min_cell_count: int = 1) -> CoxModel:
        """A sealed minimal model from its arrays (inputs coded ``urn:fedprog:covariate``, open
        ranges; covariance zero unless given). For a model with a study behind it, see
        :func:`federated.analyses.artifact.build_artifact`."""
        b = np.atleast_1d(np.asarray(beta, dtype=float))
        cov = np.zeros((b.size, b.size)) if covariance is None else np.asarray(covariance, dtype=float)
        se = np.sqrt(np.diag(cov))
        body = {"schema": SCHEMA, "model_id": model_id, "version": version, "kind": "cox-ph",
                "outcome": {"name": outcome, "time_unit": time_unit,
                            "horizons": [float(h) for h in horizons]},
                "inputs": [open_input(n) for n in names],
                "coefficients": dict(zip(names, b.tolist(), strict=True)),
                "standard_errors": dict(zip(names, se.tolist(), strict=True)), "covariance": cov.tolist(),
                "baseline_survival": {"times": np.asarray(times, dtype=float).tolist(),
                                      "survival": np.asarray(survival, dtype=float).tolist(),
                                      "center": np.atleast_1d(np.asarray(center, dtype=float)).tolist(),
                                      "min_cell_count": min_cell_count},
                "ties": ties, "training": {}}
        return cls.from_artifact(seal(body))

    def to_artifact(self) -> dict[str, Any]:
        """The artifact's JSON object, exactly as read or built (same canonical bytes, same ``sha256``)."""
        return copy.deepcopy(self._json)

    # ------------------------------------------------------------------ baseline
    def baseline(self, stratum: str | None = None) -> BaselineCurve:
        """The released baseline curve (of ``stratum`` in a stratified model)."""
        if stratum is None:
            if self.stratified:
                raise ValueError(f"{self.ref} is stratified: name one of its strata "
                                 f"({', '.join(str(s.label) for s in self.strata)})")
            return BaselineCurve(None, self.baseline_times, self.baseline_survival,
                                 self.baseline_variance, self.baseline_xbar)
        for curve in self.strata:
            if curve.label == stratum:
                return curve
        raise ValueError(f"{self.ref} has no stratum {stratum!r}")

    def baseline_at(self, t: ArrayLike, stratum: str | None = None) -> np.ndarray:
        """S0(t): the released value at the last baseline time ≤ t, 1 before the first."""
        curve = self.baseline(stratum)
        return step_at(curve.times, curve.survival, t)

    def cumulative_hazard_at(self, t: ArrayLike, stratum: str | None = None) -> np.ndarray:
        """H0(t) = −log S0(t) (0 before the first released time)."""
        return np.asarray(-np.log(self.baseline_at(t, stratum)))

    # ------------------------------------------------------------ linear predictor
    @property
    def slope_covariance(self) -> np.ndarray:
        """Σ, the covariance of β (:class:`prognosis.released.Released`)."""
        return self.covariance

    def lp(self, X: np.ndarray) -> np.ndarray:
        """Linear predictor η = β·(d(x) − c) of each row of ``X`` (n, q), shape (n,), with d(x) the
        design columns of the inputs (x itself for a linear model): the log hazard ratio against the
        centre (:meth:`prognosis.released.Released.log_ratio`)."""
        return self.log_ratio(X)

    def se_lp(self, X: np.ndarray) -> np.ndarray:
        """Standard error of η by the delta method, sqrt((d(x) − c)ᵀ Σ (d(x) − c)), shape (n,)."""
        return self.se_log_ratio(X)

    @property
    def interval_includes_baseline(self) -> bool:
        """True when the artifact carries the baseline hazard's variance (every curve): the full
        interval; False for an older artifact (β uncertainty only, see the module docstring)."""
        curves = self.strata if self.stratified else (self.baseline(),)
        return all(c.variance is not None for c in curves)

    def se_loglog(self, X: np.ndarray, t: ArrayLike, stratum: str | None = None) -> np.ndarray:
        """Standard error of L = log(−log S(t | x)) = log Λ̂(t | x), shape (n, len(t)).

        ``sqrt(V/H0² + aᵀ Σ a)``, a = (x − c) − M/H0, at the released step ≤ t (module
        docstring); without the baseline's variance in the artifact, :meth:`se_lp` at every t.
        0 before the first released time (where the risk is exactly 0).
        """
        tt = np.atleast_1d(np.asarray(t, dtype=float))
        curve = self.baseline(stratum)
        if curve.variance is None or curve.xbar is None:
            return np.repeat(self.se_lp(X)[:, None], tt.size, axis=1)
        Z = self.design_matrix(X) - self.center
        H0 = -np.log(step_at(curve.times, curve.survival, tt))
        pos = H0 > 0
        H = np.where(pos, H0, 1.0)
        V = step_at(curve.times, curve.variance, tt, before=0.0)
        M = np.column_stack([step_at(curve.times, curve.xbar[:, j], tt, before=0.0)
                             for j in range(curve.xbar.shape[1])])
        A = Z[:, None, :] - (M / H[:, None])[None, :, :]
        var = ((A @ self.covariance) * A).sum(axis=2) + (V / (H * H))[None, :]
        return np.where(pos[None, :], np.sqrt(np.maximum(var, 0.0)), 0.0)

    # ------------------------------------------------------------------ predictions
    def survival_at(self, lp: np.ndarray, t: ArrayLike, stratum: str | None = None) -> np.ndarray:
        """S(t | x) = S0(t) ** exp(η) for linear predictors ``lp`` (n,), shape (n, len(t)).

        The contract's formula, evaluated as written; the interval methods work on the log(−log)
        scale instead (equal to within a few ulp).
        """
        s0 = self.baseline_at(np.atleast_1d(np.asarray(t, dtype=float)), stratum)
        return np.asarray(np.power(s0[None, :], np.exp(np.asarray(lp, dtype=float))[:, None]))

    def survival_with_interval(self, lp: np.ndarray, se_lp: np.ndarray, t: ArrayLike,
                               stratum: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """S(t | x) with its 95% log(−log) interval, each (n, len(t)); ``se_lp``, the standard error of
        log(−log S), is (n, len(t)) from :meth:`se_loglog` or (n,) from :meth:`se_lp` (β only)."""
        H, lo, hi = self._bounds(lp, se_lp, t, stratum)
        return np.exp(-H), np.exp(-hi), np.exp(-lo)

    def risk_with_interval(self, lp: np.ndarray, se_lp: np.ndarray, t: ArrayLike,
                           stratum: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Absolute risk 1 − S(t | x) with its 95% interval, each (n, len(t)) (``se_lp`` as in
        :meth:`survival_with_interval`)."""
        H, lo, hi = self._bounds(lp, se_lp, t, stratum)
        return -np.expm1(-H), -np.expm1(-lo), -np.expm1(-hi)

    def predict_survival(self, X: np.ndarray, t: ArrayLike, stratum: str | None = None) -> np.ndarray:
        """S(t | x) for each row of ``X`` (n, p), shape (n, len(t))."""
        return self.survival_at(self.lp(X), t, stratum)

    def predict_risk(self, X: np.ndarray, t: ArrayLike, stratum: str | None = None) -> np.ndarray:
        """1 − S(t | x) for each row of ``X`` (n, p), shape (n, len(t))."""
        H0 = self.cumulative_hazard_at(np.atleast_1d(np.asarray(t, dtype=float)), stratum)
        return -np.expm1(-_cumhaz(H0, self.lp(X)))

    def _bounds(self, lp: np.ndarray, se_lp: np.ndarray, t: ArrayLike, stratum: str | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        H0 = self.cumulative_hazard_at(np.atleast_1d(np.asarray(t, dtype=float)), stratum)
        return _cumhaz_bounds(H0, np.asarray(lp, dtype=float), np.asarray(se_lp, dtype=float))


def _cumhaz_bounds(H0: np.ndarray, lp: np.ndarray, se: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative hazard H0 e^η and its log-log-scale 95% bounds, shape (n, len(H0)); ``se`` (n[, T]).

    Where H0 = 0 (before the first released time) all three are 0 (risk exactly 0).
    """
    pos = H0 > 0
    ll = lp[:, None] + np.log(np.where(pos, H0, 1.0))[None, :]
    half = Z95 * (se[:, None] if se.ndim == 1 else se)
    with np.errstate(over="ignore"):  # unbounded envelopes: e^η may overflow to inf (risk 1)
        out = tuple(np.where(pos[None, :], np.exp(v), 0.0) for v in (ll, ll - half, ll + half))
    return out[0], out[1], out[2]


def _cumhaz(H0: np.ndarray, lp: np.ndarray) -> np.ndarray:
    """H0 e^η = exp(η + log H0), shape (n, len(H0)); 0 where H0 = 0 (the first of :func:`_cumhaz_bounds`)."""
    pos = H0 > 0
    with np.errstate(over="ignore"):
        return np.where(pos[None, :], np.exp(lp[:, None] + np.log(np.where(pos, H0, 1.0))[None, :]), 0.0)


def _running(increments: list[float] | None, xbar: list[list[float]] | None, p: int
             ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """V(t) and M(t) (K, p) at the released times: running sums of the artifact's per-step increments."""
    if increments is None or xbar is None:
        return None, None
    return (readonly(np.cumsum(np.asarray(increments, dtype=float))),
            readonly(np.cumsum(np.asarray(xbar, dtype=float).reshape(-1, p), axis=0)))


def read_artifact(source: str | Path | Mapping[str, Any]) -> tuple[str, Artifact, dict[str, Any]]:
    """Read, hash-check and validate any ``fedprog.model/v1`` artifact: (its name in messages, the
    validated contract, a private copy of its JSON object); :class:`ModelError` otherwise."""
    name, data = _read(source)
    if not isinstance(data, dict):
        raise ModelError(f"{name}: not a JSON object")
    claimed = data.get("sha256")
    try:
        actual: str | None = sealed_sha256(data)
    except (TypeError, ValueError):  # NaN/Infinity or non-JSON values: let validation name the field
        actual = None
    if actual is not None and isinstance(claimed, str) and claimed != actual:
        raise ModelError(f"{name}: sha256 mismatch: file says {claimed}, content hashes to {actual}")
    try:
        art = Artifact.model_validate(data)
    except ValidationError as exc:
        raise ModelError(f"{name}: {_first_error(exc, data)}") from None
    if actual is None:
        raise ModelError(f"{name}: training: not canonical JSON (NaN, Infinity or a non-JSON value)")
    return name, art, copy.deepcopy(data)


def load_model(source: str | Path | Mapping[str, Any]) -> CoxModel:
    """:meth:`CoxModel.from_artifact`: read, hash-check and validate a ``fedprog.model/v1`` artifact."""
    return CoxModel.from_artifact(source)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ModelError("a key appears twice in one JSON object")
    return out


def _read(source: str | Path | Mapping[str, Any]) -> tuple[str, Any]:
    if isinstance(source, Mapping):
        return f"artifact {source.get('model_id', '?')}@{source.get('version', '?')}", dict(source)
    path = Path(source)
    try:
        return str(path), json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates)
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model file: {exc.strerror or exc}") from None
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not valid JSON: {exc}") from None


def _first_error(exc: ValidationError, data: dict[str, Any]) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    if err["loc"][:1] == ("inputs",) and len(err["loc"]) > 1 and isinstance(err["loc"][1], int):
        item = data["inputs"][err["loc"][1]]
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            loc += f" (input {item['name']!r})"
    msg = err["msg"].removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc}: {msg}{more}" if loc else f"{msg}{more}"


def evaluable(artifact: dict[str, Any], purpose: str) -> CoxModel:
    """The verified model of ``artifact`` for ``purpose`` (an evaluation at its horizons, e.g. "the
    validation"): it needs one shared baseline and stated horizons; otherwise :class:`ModelError`."""
    model = CoxModel.from_artifact(artifact)
    if model.stratified:
        raise ModelError(f"{model.ref} is stratified: {purpose} needs one shared baseline")
    if not model.horizons:
        raise ModelError(f"{model.ref} states no horizons for {purpose}")
    return model

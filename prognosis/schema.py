"""The ``fedprog.model/v1`` contract as strict pydantic models: the one schema of a Cox model artifact.

Strict (no type coercion but int → float), finite numbers only, unknown fields refused except the
optional ones the contract lists; ``training`` is kept as an opaque JSON object. Checked here:
the shapes (covariance p × p in ``inputs`` order, centre of length p, keyed blocks naming exactly
the inputs), a symmetric positive semi-definite covariance whose diagonal the standard errors
are the square roots of, and proper baseline curves (times ≥ 0 strictly increasing, survival
non-increasing in (0, 1]). The seal (``sha256``) is checked by :func:`prognosis.cox.load_model`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator, model_validator

from .design import Design
from .inputs import STRICT, ModelInput, increasing

SCHEMA = "fedprog.model/v1"


class _Curve(BaseModel):
    """A released baseline step curve: times ≥ 0 strictly increasing, survival non-increasing in (0, 1]."""

    model_config = STRICT
    times: list[float]
    survival: list[float]
    #: optional (absent in older artifacts): per released step, Σ d/S0² and Σ (x̄ − center) dH0
    #: over the grid times merged into it — what the variance of the hazard needs (Tsiatis 1981)
    variance_increments: list[Annotated[float, Field(ge=0)]] | None = None
    xbar_increments: list[list[float]] | None = None

    @field_validator("times")
    @classmethod
    def _times(cls, v: list[float]) -> list[float]:
        if v and v[0] < 0:
            raise ValueError(f"must be ≥ 0, got {v[0]:g}")
        return increasing(v)

    @field_validator("survival")
    @classmethod
    def _survival(cls, v: list[float]) -> list[float]:
        out = [s for s in v if not 0.0 < s <= 1.0]
        if out:
            raise ValueError(f"must lie in (0, 1], got {out[0]!r}")
        up = [i for i in range(1, len(v)) if v[i] > v[i - 1]]
        if up:
            raise ValueError(f"must be non-increasing (index {up[0]}: {v[up[0]]!r} after {v[up[0] - 1]!r})")
        return v

    @model_validator(mode="after")
    def _lengths(self) -> _Curve:
        if len(self.times) != len(self.survival):
            raise ValueError(f"times and survival differ in length ({len(self.times)} vs "
                             f"{len(self.survival)})")
        return self

    def check_increments(self, p: int, where: str) -> None:
        """The optional variance increments: both or neither, one per time, rows of ``p`` values."""
        var, xbar = self.variance_increments, self.xbar_increments
        if (var is None) != (xbar is None):
            raise ValueError(f"{where}variance_increments, xbar_increments: give both or neither")
        for name, v in (("variance_increments", var), ("xbar_increments", xbar)):
            if v is not None and len(v) != len(self.times):
                raise ValueError(f"{where}{name}: {len(v)} values for {len(self.times)} times")
        wrong = [len(r) for r in xbar or [] if len(r) != p]
        if wrong:
            raise ValueError(f"{where}xbar_increments: rows of {wrong[0]} values for {p} inputs")


class Stratum(_Curve):
    """The baseline of one stratum of a stratified model."""

    label: str


class BaselineSurvival(_Curve):
    """Baseline survival at ``center``; a stratified model has empty ``times`` and one curve per stratum."""

    center: list[float]
    min_cell_count: int = Field(ge=1)
    strata: list[Stratum] | None = None
    strata_column: str | None = None
    strata_by_site: bool | None = None

    @model_validator(mode="after")
    def _shape(self) -> BaselineSurvival:
        if self.strata is None and not self.times:
            raise ValueError("times: an unstratified model needs a released baseline (times is empty)")
        if self.strata is not None and (self.times or not self.strata):
            raise ValueError("strata: a stratified model has empty times/survival and ≥ 1 stratum")
        return self


class LogisticBlock(BaseModel):
    """A logistic model's reference patient: ``center``, the design columns of the reference patient,
    at which the intercept is the log-odds (``coefficients["(intercept)"]``)."""

    model_config = STRICT
    center: list[float]
    min_cell_count: int = Field(ge=1)


#: the coefficient key of a logistic model's intercept (the log-odds of the reference patient)
INTERCEPT = "(intercept)"


class Outcome(BaseModel):
    """What is predicted, in which time unit, at which default horizons."""

    model_config = STRICT
    name: str = Field(min_length=1)
    time_unit: Literal["day", "week", "month", "year"]
    horizons: list[Annotated[float, Field(gt=0)]]

    @field_validator("horizons")
    @classmethod
    def _sorted(cls, v: list[float]) -> list[float]:
        return increasing(v)


class IntendedUse(BaseModel):
    """The part of the intended purpose the device can enforce on each request (optional block).

    ``population`` names who the model is for, in words; ``sex`` is the one administrative sex
    (FHIR ``Patient.gender``) the model was developed for, if any; ``max_observation_age_days``
    the oldest an input Observation may be at ``asOf``; ``event`` how the predicted event is
    named to a clinician ("recurrence or death"), when the outcome's name does not say it.
    """

    model_config = STRICT
    population: str = Field(min_length=1)
    sex: Literal["female", "male"] | None = None
    max_observation_age_days: int | None = Field(default=None, ge=1)
    event: str | None = Field(default=None, min_length=1)


class Artifact(BaseModel):
    """The whole ``fedprog.model/v1`` contract (``training`` is kept as an opaque JSON object)."""

    model_config = STRICT
    schema_: Literal["fedprog.model/v1"] = Field(alias="schema")
    model_id: str = Field(min_length=1)
    version: str = Field(min_length=1)
    kind: Literal["cox-ph", "logistic"]
    outcome: Outcome
    inputs: list[ModelInput] = Field(min_length=1)
    coefficients: dict[str, float]
    standard_errors: dict[str, Annotated[float, Field(ge=0)]]
    confidence_intervals: dict[str, Annotated[list[float], Field(min_length=2, max_length=2)]] | None = None
    p_values: dict[str, Annotated[float, Field(ge=0, le=1)]] | None = None
    penalty: float | None = Field(default=None, ge=0)
    covariance: list[list[float]]
    #: a Cox model's baseline (None for a logistic model)
    baseline_survival: BaselineSurvival | None = None
    ties: Literal["efron", "breslow"] | None = None
    #: a logistic model's reference patient (None for a Cox model)
    logistic: LogisticBlock | None = None
    training: dict[str, Any]
    intended_use: IntendedUse | None = None
    #: optional: declared interactions, pairs of input names (:mod:`prognosis.design`)
    interactions: list[Annotated[list[str], Field(min_length=2, max_length=2)]] | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    def design(self) -> Design:
        """The model's design: which columns its inputs and interactions make (:mod:`prognosis.design`)."""
        return Design.of([i.name for i in self.inputs], self.inputs, self.interactions or [])

    @model_validator(mode="after")
    def _consistent(self) -> Artifact:
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"inputs: input {dup[0]!r} listed twice")
        self._check_kind()
        design = self.design()
        columns, what = list(design.columns), "input" if design.identity else "column"
        if self.kind == "logistic":
            columns, what = [INTERCEPT, *columns], "column"
        for field in ("coefficients", "standard_errors", "confidence_intervals", "p_values"):
            keyed = getattr(self, field)
            if keyed is not None and set(keyed) != set(columns):
                missing, extra = sorted(set(columns) - set(keyed)), sorted(set(keyed) - set(columns))
                raise ValueError(f"{field}: " + (f"no entry for {what} {missing[0]!r}" if missing
                                                 else f"{extra[0]!r} is not an {what} of the model"))
        self._check_covariance(columns)
        if self.logistic is not None:
            p = len(design.columns)
            if len(self.logistic.center) != p:
                raise ValueError(f"logistic.center: {len(self.logistic.center)} values for {p} columns")
            return self
        assert self.baseline_survival is not None  # _check_kind
        p, center = len(columns), self.baseline_survival.center
        if len(center) != p:
            raise ValueError(f"baseline_survival.center: {len(center)} values for {p} {what}s")
        self.baseline_survival.check_increments(p, "baseline_survival.")
        for s in self.baseline_survival.strata or []:
            s.check_increments(p, f"baseline_survival.strata ({s.label!r}).")
        return self

    def _check_kind(self) -> None:
        """A Cox model has a baseline and ties, a logistic model a reference patient and one horizon."""
        if self.kind == "cox-ph":
            missing = [n for n in ("baseline_survival", "ties") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"{missing[0]}: Field required (a Cox model, kind cox-ph, needs it)")
            if self.logistic is not None:
                raise ValueError("logistic: only a logistic model has this block")
            return
        if self.logistic is None:
            raise ValueError("logistic: a logistic model needs its reference patient (center)")
        if self.baseline_survival is not None or self.ties is not None:
            raise ValueError("baseline_survival, ties: a logistic model has neither")
        if len(self.outcome.horizons) != 1:
            raise ValueError("outcome.horizons: a logistic model states the one horizon its binary "
                             "outcome was recorded at")

    def _check_covariance(self, names: list[str]) -> None:
        p = len(names)
        wrong = [len(r) for r in self.covariance if len(r) != p]
        if len(self.covariance) != p or wrong:
            cols = wrong[0] if wrong else p
            raise ValueError(f"covariance: expected {p}×{p} (coefficient order), "
                             f"got {len(self.covariance)}×{cols}")
        cov = np.array(self.covariance)
        scale = float(np.abs(cov).max(initial=0.0))
        if not np.allclose(cov, cov.T, rtol=0.0, atol=1e-9 * scale):
            raise ValueError("covariance: not symmetric")
        if p and float(np.linalg.eigvalsh(cov).min()) < -1e-9 * scale:
            raise ValueError("covariance: not positive semi-definite")
        se = np.array([self.standard_errors[n] for n in names])
        off = np.flatnonzero(~np.isclose(se, np.sqrt(np.diag(cov)), rtol=1e-6, atol=1e-12))
        if off.size:
            raise ValueError(f"standard_errors: {names[off[0]]!r} is not the square root of the "
                             "covariance diagonal")

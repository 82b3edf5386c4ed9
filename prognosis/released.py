"""What every released prognostic model states alike, whatever its kind: one place for both model objects.

A released model (:class:`prognosis.CoxModel`, :class:`prognosis.logistic.LogisticModel`) takes raw
inputs ``x`` (``names`` order, the model's units), builds its design columns d(x)
(:mod:`prognosis.design`: splines, dummy coding, interactions; x itself for a linear model) and
compares them with the reference patient's columns ``c`` (the centre) through its slopes β::

    log ratio(x) = β·(d(x) − c)                       against the reference patient
    contribution_e(x) = Σ_{j ∈ e} β_j (d_j(x) − c_j)    one per effect e (each input, each interaction)
    Var(log ratio) = (d(x) − c)ᵀ Σ_β (d(x) − c)         (delta method; exact, the ratio is linear in β)

For a Cox model the ratio is the hazard ratio (the linear predictor η itself); for a logistic model
the odds ratio (η minus the intercept, the reference patient's log-odds). The effects sum to the log
ratio. :class:`Released` provides these and the model's identity (``ref``, :meth:`Released.horizon_text`);
:func:`open_input` is the declaration of an input known by name only (a model built from arrays).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .design import Design
from .inputs import ModelInput

#: Length of each time unit in days (Julian year, as in most survival software).
DAYS_PER_UNIT: dict[str, float] = {"day": 1.0, "week": 7.0, "month": 365.25 / 12, "year": 365.25}


def open_input(name: str) -> dict[str, Any]:
    """The ``inputs[]`` item of an input known only by ``name``: coded ``urn:fedprog:covariate``,
    unit "1", open range (what a model built from arrays declares)."""
    return {"name": name, "code": {"system": "urn:fedprog:covariate", "code": name, "display": name},
            "unit": "1", "kind": "quantity", "min": None, "max": None}


def readonly(values: Any) -> np.ndarray:
    """A float copy of ``values`` that cannot be written to."""
    arr = np.array(values, dtype=float)
    arr.setflags(write=False)
    return arr


class Released:
    """The facts and the per-effect arithmetic both released model objects share (a mixin of their
    frozen dataclasses, which hold the attributes declared here).

    ``kind`` is the artifact's ``kind``; ``ratio`` names what exp(Σ contributions) is against the
    reference patient ("hazard" or "odds"); ``beta`` are the slopes over the design columns and
    :attr:`slope_covariance` their covariance.
    """

    kind: ClassVar[str]
    ratio: ClassVar[str]
    model_id: str
    version: str
    time_unit: str
    inputs: list[ModelInput]
    beta: np.ndarray
    center: np.ndarray
    design: Design | None

    @property
    def slope_covariance(self) -> np.ndarray:
        """Covariance Σ_β of the slopes ``beta`` (design-column order)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ facts
    @property
    def names(self) -> tuple[str, ...]:
        """Input names, the column order of every ``X`` the model takes."""
        return tuple(i.name for i in self.inputs)

    @property
    def columns(self) -> tuple[str, ...]:
        """The slopes' columns, in ``beta`` order (the inputs themselves for a linear model)."""
        return self.names if self.design is None else self.design.columns

    @property
    def effects(self) -> tuple[str, ...]:
        """What :meth:`contributions` returns, in order: each input's effect, then each interaction's."""
        return self.names if self.design is None else self.design.effects

    @property
    def reference(self) -> np.ndarray:
        """The reference patient's inputs (q,), ``names`` order: the centre read back through the design
        (:meth:`prognosis.design.Design.inputs_of`; the centre itself for a linear model)."""
        if self.design is None or self.design.identity:
            return self.center
        return readonly(self.design.inputs_of(self.center))

    @property
    def ref(self) -> str:
        return f"{self.model_id}@{self.version}"

    def horizon_text(self, h: float) -> str:
        """A horizon in words: in years once it is at least a year long (``1826`` days → ``5 years``)."""
        days = h * DAYS_PER_UNIT[self.time_unit]
        if self.time_unit != "year" and days < 365:
            return f"{h:g} {self.time_unit}{'' if h == 1 else 's'}"
        years = days / 365.25
        shown = f"{round(years)}" if abs(years - round(years)) < 0.05 else f"{years:.1f}"
        return f"{shown} year{'' if shown == '1' else 's'}"

    # ------------------------------------------------------------------ arithmetic
    def design_matrix(self, X: np.ndarray) -> np.ndarray:
        """The columns (n, m) of raw inputs ``X`` (n, q) in ``names`` order (:mod:`prognosis.design`)."""
        raw = np.asarray(X, dtype=float)
        return raw if self.design is None or self.design.identity else self.design.matrix(raw)

    def centred(self, X: np.ndarray) -> np.ndarray:
        """d(x) − c of each row of raw inputs ``X`` (n, q); ``ValueError`` for another number of columns."""
        raw = np.asarray(X, dtype=float)
        q = len(self.inputs)
        if raw.ndim not in (1, 2) or raw.shape[-1] != q:
            raise ValueError(f"X must have shape (n, {q}), got {raw.shape}")
        return self.design_matrix(raw) - self.center

    def log_ratio(self, X: np.ndarray) -> np.ndarray:
        """β·(d(x) − c) of each row of ``X`` (n, q), shape (n,): the log hazard or odds ratio (:attr:`ratio`)
        against the reference patient."""
        return np.asarray(self.centred(X) @ self.beta, dtype=float)

    def se_log_ratio(self, X: np.ndarray) -> np.ndarray:
        """Standard error of :meth:`log_ratio`, sqrt((d(x) − c)ᵀ Σ_β (d(x) − c)), shape (n,)."""
        Z = np.atleast_2d(self.centred(X))
        return np.sqrt(np.maximum(((Z @ self.slope_covariance) * Z).sum(axis=1), 0.0))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Each effect's log ratio against the reference patient, shape (n, len(effects)):
        Σ β_j (d_j(x) − c_j) over the columns of each input (then of each interaction); rows sum to
        :meth:`log_ratio`."""
        per_column = self.centred(X) * self.beta
        if self.design is None or self.design.identity:
            return np.asarray(per_column)
        return self.design.effect_sums(per_column)

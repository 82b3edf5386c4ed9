"""Study settings: what to fit, on which columns and sites (``study.toml`` or flags).

The same settings drive ``fedprog train`` and ``fedprog km``; a site only ever receives
the :class:`CohortSpec` part (column names and the time grid), never another site's path.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from federated.disclosure.dp import DPSettings
from federated.disclosure.policy import DisclosurePolicy
from federated.exceptions import DataError
from federated.table_format import TableFormat
from prognosis import DAYS_PER_UNIT, Coding, InputSpec  # noqa: F401  (a study declares its inputs with these)
from prognosis.design import Design
from prognosis.inputs import (
    Spline,
    first_error,  # noqa: F401  (one line per validation error, for every caller)
)
from prognosis.schema import IntendedUse  # noqa: F401  (a study declares its intended use with it)

TimeGrid = Literal["exact", "day", "week", "month", "quarter", "year"]
#: what a site does with a row missing a value of the study's columns: refuse the table, or leave the
#: row out and count it (complete-case analysis; the counts are released, rounded to k)
Missing = Literal["refuse", "complete-case"]
TimeUnit = Literal["day", "week", "month", "year"]
Ties = Literal["efron", "breslow"]

#: The public ladder of time grids, finest first, and the width of each step in days (a quarter is
#: three months); the coordinator climbs it until every site's cells hold 0 or at least k patients.
GRID_DAYS: dict[str, float] = {"day": 1.0, "week": 7.0, "month": 365.25 / 12, "quarter": 365.25 / 4,
                               "year": 365.25}
LADDER: tuple[str, ...] = tuple(GRID_DAYS)


def rungs_from(level: str) -> tuple[str, ...]:
    """``level`` and every coarser rung of the ladder (``exact`` has none)."""
    return LADDER[LADDER.index(level):] if level in LADDER else ()


def grid_width(grid: str, unit: str) -> float:
    """Width of one interval of ladder rung ``grid`` in the time ``unit``."""
    return GRID_DAYS[grid] / DAYS_PER_UNIT[unit]


def grid_steps(times: np.ndarray, grid: str, unit: str) -> np.ndarray:
    """For each time, the number of the ``grid`` interval it ends in: times are rounded *up* to the
    end of their interval (float round-off of 1e-9 intervals forgiven)."""
    return np.ceil(np.round(np.asarray(times, dtype=np.float64) / grid_width(grid, unit), 9))


def range_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """The public bin edges of a declared range [lo, hi] (``range_bins`` equal bins, shape (bins + 1,)):
    the coverage histogram's, and the only places a knot placed at a quantile may lie."""
    return np.linspace(lo, hi, bins + 1)


class CohortSpec(BaseModel):
    """What a site needs to know to prepare its rows: columns and the time grid.

    ``partition`` is the stratum column for Cox, the group column for Kaplan–Meier, and
    ``levels`` its declared values (public, so sites need not reveal which they hold);
    ``partition_by_site`` adds the site's own name to the label (stratify by site).
    On a coarse grid ``max_time`` (default 100 years) bounds the public histogram of event
    times. ``ranges`` are declared covariate ranges, checked with ``range_bins``-bin
    histograms. ``block = (b, m, seed)`` restricts the site to the b-th of m disjoint
    random blocks of its rows (differentially private sample-and-aggregate).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    time: str | None = Field(default=None, min_length=1)
    event: str = Field(min_length=1)
    covariates: tuple[str, ...] = ()
    partition: str | None = None
    levels: tuple[str, ...] | None = None
    partition_by_site: bool = False
    time_grid: TimeGrid = "day"
    time_unit: TimeUnit = "day"
    max_time: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    range_bins: int = Field(default=10, ge=1, le=1000)
    block: tuple[int, int, int] | None = None
    #: the reference patient (declared): a released model is centred on it, never on a data mean
    reference: dict[str, float] = Field(default_factory=dict)
    #: the design (:mod:`prognosis.design`): knots of the covariates entered as restricted cubic
    #: splines, the level codes of the categories dummy-coded against their first level, and the
    #: declared interactions; the site builds the columns from its own rows
    splines: dict[str, tuple[float, ...]] = Field(default_factory=dict)
    #: splines whose k knots are placed at quantiles of the securely summed coverage histogram, each on
    #: an edge of its declared range (:func:`range_edges`); ``splines`` holds them once placed
    knot_quantiles: dict[str, int] = Field(default_factory=dict)
    dummies: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    interactions: tuple[tuple[str, str], ...] = ()
    #: rows with a missing value: refused (the default) or left out ("complete-case"), counted
    missing: Missing = "refuse"
    #: a cause-specific cohort (Putter, Fiocco & Geskus 2007): ``event`` names the cause column, holding 0
    #: (censored) or one of the declared codes ``causes``; the event is ``cause``, every other code is
    #: censored at its time (:func:`federated.site.data.cause_index`)
    cause: str | None = Field(default=None, min_length=1)
    causes: tuple[str, ...] = ()

    def design(self) -> Design:
        """The columns the covariates make (:class:`prognosis.design.Design`)."""
        specs = [InputSpec(kind="category", categories=[Coding(system="urn:fedprog:level", code=c, display=c)
                                                        for c in self.dummies[n]]) if n in self.dummies
                 else InputSpec(spline=Spline(knots=list(self.splines[n]))) if n in self.splines
                 else InputSpec() for n in self.covariates]
        return Design.of(self.covariates, specs, self.interactions)

    @property
    def columns(self) -> tuple[str, ...]:
        """The design columns (the covariates themselves without splines, dummies or interactions)."""
        return self.design().columns if self.splines or self.dummies or self.interactions else self.covariates

    def design_matrix(self, x: np.ndarray) -> np.ndarray:
        """The design columns (n, m) of the covariates ``x`` (n, q) (``x`` itself for a linear design)."""
        return self.design().matrix(x) if self.columns != self.covariates else x

    def column_ranges(self) -> dict[str, tuple[float, float]]:
        """The range of each design column whose covariates all have a declared range (public)."""
        if self.columns == self.covariates:
            return dict(self.ranges)
        return self.design().column_bounds(dict(self.ranges))

    def reference_columns(self) -> np.ndarray:
        """The reference patient's design columns (:meth:`reference_point` through the design)."""
        return self.design_matrix(self.reference_point()[None, :])[0]

    def reference_point(self) -> np.ndarray:
        """The reference value of each covariate, in ``covariates`` order (0 where none is declared).

        Adversary: a reader of releases. A centre equal to the data mean (Σx / n) published beside
        n differences to one patient's covariates when she withdraws and the model is retrained
        (issue 15); a declared reference does not depend on the data.
        """
        return np.array([float(self.reference.get(name, 0.0)) for name in self.covariates])

    def bin_width(self) -> float:
        """Width of one grid interval in the time unit (coarse grids only)."""
        return grid_width(self.time_grid, self.time_unit)

    def n_bins(self) -> int:
        """Grid intervals 0…B covering ``max_time`` (default 100 years)."""
        horizon = self.max_time if self.max_time is not None else 100 * 365.25 / DAYS_PER_UNIT[self.time_unit]
        return int(math.ceil(round(horizon / self.bin_width(), 9))) + 1

    @field_validator("covariates")
    @classmethod
    def _unique(cls, cov: tuple[str, ...]) -> tuple[str, ...]:
        dup = sorted({c for c in cov if cov.count(c) > 1})
        if dup:
            raise ValueError(f"covariates listed twice: {', '.join(dup)}")
        return cov

    @model_validator(mode="after")
    def _design(self) -> CohortSpec:
        coded = set(self.splines) | set(self.dummies) | set(self.knot_quantiles)
        unknown = sorted(coded - set(self.covariates))
        if unknown:
            raise ValueError(f"{unknown[0]!r} is coded in the design but is not a covariate")
        for name, k in self.knot_quantiles.items():
            if name not in self.ranges or not 3 <= k <= min(7, self.range_bins + 1):
                raise ValueError(f"knot_quantiles: {name!r} needs a declared range with at least {k} bin "
                                 f"edges, and 3 to 7 knots")
        self.design()  # refuses unknown or repeated interactions, bad knots
        return self

    @model_serializer(mode="wrap")
    def _written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without ``knot_quantiles``, ``cause`` and ``causes`` when none are declared (studies approved
        before they existed keep their hash)."""
        out: dict[str, Any] = handler(self)
        for name in ("knot_quantiles", "cause", "causes"):
            if not getattr(self, name):
                out.pop(name, None)
        return out

    @model_validator(mode="after")
    def _cause_specific(self) -> CohortSpec:
        if self.cause is None and not self.causes:
            return self
        if self.cause is None or self.cause not in self.causes:
            raise ValueError(f"cause {self.cause!r}: a cause-specific cohort's cause is one of its declared "
                             f"codes {list(self.causes)}")
        if "0" in self.causes or len(set(self.causes)) != len(self.causes):
            raise ValueError("causes: the codes of the cause column, each once, without '0' (censored)")
        if self.time is None or self.partition == self.event:
            raise ValueError("a cause-specific cohort has a time column and is not grouped by its cause")
        return self


class RevocationPolicy(BaseModel):
    """What a consent withdrawal does to the models trained on the patient's data.

    ``window``: her data leaves every future computation at once; the models trained on it stay in
    service flagged ``retrain due`` until a successor is trained, which is due once
    ``min_revocations`` withdrawals have accumulated (default: the study's ``min_cell_count``) or
    ``window_days`` after the first of them, whichever comes first. ``immediate``: such a model is
    taken out of service at once (no risk is served until a successor is released).

    Adversary: a reader of releases who differences the models before and after a withdrawal;
    a model is retrained over at least k changes of its patients, not one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["window", "immediate"] = "window"
    window_days: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    min_revocations: int | None = Field(default=None, ge=1)


class SiteSource(BaseModel):
    """Where a site's table lives (CSV or Parquet). Used only by in-process runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    path: Path
    format: TableFormat = Field(default_factory=TableFormat)


class StudySpec(BaseModel):
    """Everything ``fedprog train`` / ``fedprog km`` needs; loadable from ``study.toml``."""

    model_config = ConfigDict(extra="forbid")

    model_id: str = "fedprog-cox"
    #: the model fitted: a Cox proportional-hazards model of a survival outcome (``time``, ``event``) or
    #: a logistic regression of a recorded binary outcome (``event``, no ``time``)
    model: Literal["cox-ph", "logistic"] = "cox-ph"
    version: str = "1"
    sites: list[SiteSource] = Field(default_factory=list)
    time: str | None = None
    event: str
    covariates: list[str] = Field(default_factory=list)
    strata: str | None = None
    strata_by_site: bool = False
    group: str | None = None
    levels: list[str] | None = None
    ties: Ties = "efron"
    penalty: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    time_grid: TimeGrid = "day"
    time_unit: TimeUnit = "day"
    max_time: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    horizons: list[float] = Field(default_factory=list)
    outcome: str = "event"
    secure_aggregation: bool = True
    #: the loud opt-in to exactness on time cells holding fewer than min_cell_count patients
    allow_small_time_cells: bool = False
    #: on the yearly grid (the last rung), each site censors a censored patient at the start of her year
    #: when her cell would hold fewer than k patients, instead of refusing (data as hospitals have them:
    #: a few patients lost to follow-up early); the artifact says so
    shift_sparse_censoring: bool = False
    timeout: float = Field(default=120.0, gt=0, allow_inf_nan=False)
    max_iter: int = Field(default=100, ge=1)
    tol: float = Field(default=1e-10, gt=0.0)
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    #: interactions between declared covariates, as pairs of names (:mod:`prognosis.design`)
    interactions: list[tuple[str, str]] = Field(default_factory=list)
    #: rows with a missing value: "refuse" (default: one clear line naming the column) or "complete-case"
    #: (each site leaves them out and reports how many, rounded to a multiple of k)
    missing: Missing = "refuse"
    #: what the device enforces of the intended purpose (sex, Observation age); released in the artifact
    intended_use: IntendedUse | None = None
    range_bins: int = Field(default=10, ge=1, le=1000)
    policy: DisclosurePolicy = Field(default_factory=DisclosurePolicy)
    dp: DPSettings = Field(default_factory=DPSettings)
    revocation: RevocationPolicy = Field(default_factory=RevocationPolicy)

    @field_validator("covariates")
    @classmethod
    def _once(cls, cov: list[str]) -> list[str]:
        dup = sorted({c for c in cov if cov.count(c) > 1})
        if dup:
            raise ValueError(f"covariates listed twice: {', '.join(dup)}")
        return cov

    @field_validator("time")
    @classmethod
    def _no_cut_at_a_horizon(cls, time: str | None, info: ValidationInfo) -> str | None:
        """A binary outcome is recorded, never made from censored survival times (module docstring)."""
        if info.data.get("model") == "logistic" and time is not None:
            raise ValueError("a logistic model takes a recorded binary outcome (event = its 0/1 column) and "
                             "no time column: cutting censored survival times at a horizon would count a "
                             "patient censored before it as event-free and bias the risk downwards; fit a "
                             "Cox model for a survival outcome")
        return time

    @model_validator(mode="after")
    def _outcome(self) -> StudySpec:
        if self.model == "cox-ph" and self.time is None:
            raise ValueError("time: a Cox model needs the time column (and event, 1 = the event)")
        if self.model == "logistic":
            if len(self.horizons) != 1:
                raise ValueError("horizons: a logistic model states the one horizon its binary outcome was "
                                 "recorded at (e.g. recurrence within 5 years)")
            if self.strata is not None or self.strata_by_site or self.dp.enabled:
                raise ValueError("a logistic model takes no strata and no differential privacy")
        return self

    @model_validator(mode="after")
    def _design(self) -> StudySpec:
        design = self.design()  # refuses unknown or repeated interactions
        splines = {n: self.inputs[n].spline for n in self.covariates if n in self.inputs}
        for name, spline in splines.items():
            if spline is not None and (spline.quantiles or 0) > self.range_bins + 1:
                raise ValueError(f"inputs.{name}.spline: {spline.quantiles} knots at quantiles need as many "
                                 f"bin edges of its range, and range_bins = {self.range_bins} gives "
                                 f"{self.range_bins + 1}: raise range_bins")
        if self.dp.enabled and not (design.identity and all(s is None for s in splines.values())):
            raise ValueError("dp: a differentially private fit takes linear covariates only (no "
                             "splines, dummy-coded categories or interactions)")
        return self

    @field_validator("horizons")
    @classmethod
    def _positive(cls, hs: list[float]) -> list[float]:
        bad = [h for h in hs if not h > 0 or h != h or h == float("inf")]
        if bad:
            raise ValueError(f"horizons must be positive and finite, got {bad}")
        return sorted(set(hs))

    def cohort(self, *, for_km: bool = False) -> CohortSpec:
        """The part of the settings a site receives (with the design it builds from its rows)."""
        declared = {n: self.inputs[n] for n in self.covariates if n in self.inputs}
        ranges = {} if for_km else {
            name: (spec.min, spec.max) for name, spec in self.inputs.items()
            if name in self.covariates and spec.min is not None and spec.max is not None}
        return CohortSpec(
            time=self.time, event=self.event,
            covariates=() if for_km else tuple(self.covariates),
            partition=self.group if for_km else self.strata,
            levels=None if self.levels is None else tuple(self.levels),
            partition_by_site=False if for_km else self.strata_by_site,
            time_grid=self.time_grid, time_unit=self.time_unit, max_time=self.max_time,
            ranges=ranges, range_bins=self.range_bins,
            reference={} if for_km else {
                name: ref for name, spec in self.inputs.items()
                if name in self.covariates and (ref := spec.reference_value()) is not None},
            splines={} if for_km else {n: tuple(s.knots) for n, s in declared.items() if s.knots is not None},
            knot_quantiles={} if for_km else {n: s.spline.quantiles for n, s in declared.items()
                                              if s.spline is not None and s.spline.quantiles is not None},
            dummies={} if for_km else {n: tuple(s.codes) for n, s in declared.items()
                                       if s.kind == "category" and not s.ordinal},
            interactions=() if for_km else tuple((a, b) for a, b in self.interactions),
            missing=self.missing,
        )

    def design(self) -> Design:
        """The columns the study's covariates make (:mod:`prognosis.design`)."""
        return Design.of(self.covariates, [self.inputs.get(n, InputSpec()) for n in self.covariates],
                         self.interactions)


def load_study(path: Path, **overrides: object) -> StudySpec:
    """Read ``study.toml`` (or the same settings as JSON, as a workspace keeps them in
    ``<sha256>.study.json``); ``overrides`` (from command-line flags) win over the file.

    Relative site paths are taken relative to the study file's folder.
    """
    as_json = path.suffix == ".json"
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if as_json else tomllib.loads(text)
    except FileNotFoundError:
        raise DataError(f"{path}: study file not found") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid {'JSON' if as_json else 'TOML'}: {exc}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: a study file holds one object of settings")
    sites = raw.get("sites", [])
    if isinstance(sites, dict):  # [sites] name = "path" form
        sites = [{"name": k, "path": v} for k, v in sites.items()]
    if isinstance(sites, list):
        for s in sites:
            if isinstance(s, dict) and "path" in s and not Path(str(s["path"])).is_absolute():
                s["path"] = str(path.parent / str(s["path"]))
        raw["sites"] = sites
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as exc:
        raise DataError(f"{path}: {first_error(exc)}") from None


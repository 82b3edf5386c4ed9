"""The model artifact (``fedprog.model/v1``) as the device reads it: validated and hash-checked.

The device never trusts a model file: :func:`load_model` recomputes the SHA-256 of the
canonical JSON of every field but ``sha256`` (sorted keys, compact separators, UTF-8, no
NaN; :func:`device.registry.canonical_sha256`) and refuses a mismatch, then validates the
whole contract with strict pydantic models (no type coercion, finite numbers only, unknown
fields refused except where the contract lists optional ones). Any refusal is a
:class:`ModelError` whose one-line message names the file and the field.

The model is a Cox proportional-hazards model with a Breslow baseline (Breslow 1974,
*Biometrics* 30:89–99) released at the covariate centre ``c``::

    S(t | x) = S0(t) ** exp(beta · (x − c)),

``S0`` the step function at the largest released time ≤ t (1 before the first).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .registry import canonical_sha256

SCHEMA = "fedprog.model/v1"

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True, protected_namespaces=())

class ModelError(ValueError):
    """A model artifact that is unreadable, tampered with, or outside the contract."""


class Coding(BaseModel):
    """A code from a terminology (LOINC, SNOMED CT, …)."""

    model_config = _STRICT
    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    display: str


class Coverage(BaseModel):
    """Securely summed training histogram of one input; ``None`` counts are suppressed small cells."""

    model_config = _STRICT
    edges: list[float] = Field(min_length=2)
    counts: list[Annotated[int, Field(ge=0)] | None]

    @model_validator(mode="after")
    def _bins(self) -> Coverage:
        _increasing(self.edges, "edges: ")
        if len(self.counts) != len(self.edges) - 1:
            raise ValueError(f"counts has {len(self.counts)} bins but edges define {len(self.edges) - 1}")
        return self


def _num(v: float) -> str:
    """Short form of a number unless that would hide the difference (150.000000001 is not 150)."""
    return f"{v:g}" if float(f"{v:g}") == v else repr(v)


class InputSpec(BaseModel):
    """One covariate: its code, UCUM unit, kind and intended-use envelope ``[min, max]``.

    A ``boolean`` is 0 or 1; a ``category`` is the 0-based index of one of ``categories``
    (or, in :meth:`accepts`, that category's code string); an ``integer`` is a quantity that can
    only be a whole number in its unit (a count, a grade): 2.5 positive nodes or a grade of 3.7
    are impossible values, refused rather than scored. Bounds given as ``null`` are open.
    """

    model_config = _STRICT
    name: str = Field(min_length=1)
    code: Coding
    unit: str = Field(min_length=1)
    kind: Literal["quantity", "integer", "boolean", "category"]
    min: float | None
    max: float | None
    categories: list[Coding] | None = None
    coverage: Coverage | None = None

    @model_validator(mode="after")
    def _consistent(self) -> InputSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} > max {self.max:g}")
        if self.kind == "category":
            codes = [c.code for c in self.categories or []]
            if not codes or len(set(codes)) != len(codes):
                raise ValueError("categories: a category input needs distinct category codes")
        elif self.categories:
            raise ValueError(f"categories: only a category input lists categories, not a {self.kind}")
        return self

    def accepts_array(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of the values inside the envelope (the vectorised form of :meth:`accepts`)."""
        v = np.asarray(values, dtype=float)
        ok = np.isfinite(v)
        if self.kind == "boolean":
            ok &= (v == 0.0) | (v == 1.0)
        elif self.kind == "category":
            ok &= (v == np.floor(v)) & (v >= 0) & (v < len(self.categories or []))
        elif self.kind == "integer":
            ok &= v == np.floor(v)
        if self.min is not None:
            ok &= v >= self.min
        if self.max is not None:
            ok &= v <= self.max
        return ok

    def accepts(self, value: object) -> str | None:
        """``None`` when ``value`` is admissible, otherwise a one-line reason naming the input.

        Values are never clamped: a value outside ``[min, max]`` is outside the intended use.
        """
        if self.kind == "category" and isinstance(value, str):
            codes = [c.code for c in self.categories or []]
            if value not in codes:
                return f"{self.name}: {value!r} is not a listed category ({', '.join(codes)})"
            value = codes.index(value)
        if isinstance(value, bool | np.bool_):
            value = float(value)
        if not isinstance(value, int | float | np.integer | np.floating):
            return f"{self.name}: {value!r} is not a number"
        v = float(value)
        if self.accepts_array(np.array([v]))[0]:
            return None
        if not math.isfinite(v):
            return f"{self.name}: {v} is not a finite number"
        if self.kind == "boolean" and v not in (0.0, 1.0):
            return f"{self.name}: {_num(v)} is not a boolean (0 = false, 1 = true)"
        if self.kind == "integer" and not v.is_integer():
            return f"{self.name}: {_num(v)} is not a whole number ({self.name} is a count or grade)"
        if self.kind == "category" and not (v.is_integer() and 0 <= v < len(self.categories or [])):
            last = len(self.categories or []) - 1
            return f"{self.name}: {_num(v)} is not the index of a listed category (0…{last})"
        lo, hi = ("−∞" if b is None else _num(b) for b in (self.min, self.max))
        unit = "" if self.unit == "1" else f" {self.unit}"
        return f"{self.name} = {_num(v)}{unit} is outside the intended-use range [{lo}, {hi}]{unit}"


def _increasing(v: list[float], what: str = "") -> list[float]:
    bad = [i for i in range(1, len(v)) if not v[i] > v[i - 1]]
    if bad:
        i = bad[0]
        raise ValueError(f"{what}must be strictly increasing (index {i}: {v[i]:g} after {v[i - 1]:g})")
    return v


class _Curve(BaseModel):
    """A released baseline step curve: times ≥ 0 strictly increasing, survival non-increasing in (0, 1]."""

    model_config = _STRICT
    times: list[float]
    survival: list[float]

    @field_validator("times")
    @classmethod
    def _times(cls, v: list[float]) -> list[float]:
        if v and v[0] < 0:
            raise ValueError(f"must be ≥ 0, got {v[0]:g}")
        return _increasing(v)

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


class Outcome(BaseModel):
    """What is predicted, in which time unit, at which default horizons."""

    model_config = _STRICT
    name: str = Field(min_length=1)
    time_unit: Literal["day", "week", "month", "year"]
    horizons: list[Annotated[float, Field(gt=0)]]

    @field_validator("horizons")
    @classmethod
    def _sorted(cls, v: list[float]) -> list[float]:
        return _increasing(v)


class Artifact(BaseModel):
    """The whole ``fedprog.model/v1`` contract (``training`` is kept as an opaque JSON object)."""

    model_config = _STRICT
    schema_: Literal["fedprog.model/v1"] = Field(alias="schema")
    model_id: str = Field(min_length=1)
    version: str = Field(min_length=1)
    kind: Literal["cox-ph"]
    outcome: Outcome
    inputs: list[InputSpec] = Field(min_length=1)
    coefficients: dict[str, float]
    standard_errors: dict[str, Annotated[float, Field(ge=0)]]
    confidence_intervals: dict[str, Annotated[list[float], Field(min_length=2, max_length=2)]] | None = None
    p_values: dict[str, Annotated[float, Field(ge=0, le=1)]] | None = None
    penalty: float | None = Field(default=None, ge=0)
    covariance: list[list[float]]
    baseline_survival: BaselineSurvival
    ties: Literal["efron", "breslow"]
    training: dict[str, Any]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _consistent(self) -> Artifact:
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"inputs: input {dup[0]!r} listed twice")
        for field in ("coefficients", "standard_errors", "confidence_intervals", "p_values"):
            keyed = getattr(self, field)
            if keyed is not None and set(keyed) != set(names):
                missing, extra = sorted(set(names) - set(keyed)), sorted(set(keyed) - set(names))
                raise ValueError(f"{field}: " + (f"no entry for input {missing[0]!r}" if missing
                                                 else f"{extra[0]!r} is not an input"))
        self._check_covariance(names)
        p, center = len(names), self.baseline_survival.center
        if len(center) != p:
            raise ValueError(f"baseline_survival.center: {len(center)} values for {p} inputs")
        return self

    def _check_covariance(self, names: list[str]) -> None:
        p = len(names)
        wrong = [len(r) for r in self.covariance if len(r) != p]
        if len(self.covariance) != p or wrong:
            cols = wrong[0] if wrong else p
            raise ValueError(f"covariance: expected {p}×{p} (inputs order), "
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


def _readonly(values: list[float] | list[list[float]]) -> np.ndarray:
    arr = np.array(values, dtype=float)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class PrognosticModel:
    """A loaded, verified model: the arrays scoring needs, all read-only, in ``inputs`` order.

    ``horizons`` and ``baseline_times`` are in ``time_unit``. A stratified model has empty
    baseline arrays (one curve per stratum in ``artifact.baseline_survival.strata``).
    """

    model_id: str
    version: str
    sha256: str
    outcome: str
    time_unit: str
    horizons: tuple[float, ...]
    inputs: list[InputSpec]
    beta: np.ndarray
    covariance: np.ndarray
    center: np.ndarray
    baseline_times: np.ndarray
    baseline_survival: np.ndarray
    stratified: bool
    artifact: Artifact

    @classmethod
    def from_artifact(cls, art: Artifact) -> PrognosticModel:
        names = [i.name for i in art.inputs]
        base = art.baseline_survival
        return cls(model_id=art.model_id, version=art.version, sha256=art.sha256, outcome=art.outcome.name,
                   time_unit=art.outcome.time_unit, horizons=tuple(art.outcome.horizons),
                   inputs=list(art.inputs), beta=_readonly([art.coefficients[n] for n in names]),
                   covariance=_readonly(art.covariance), center=_readonly(base.center),
                   baseline_times=_readonly(base.times), baseline_survival=_readonly(base.survival),
                   stratified=base.strata is not None, artifact=art)

    @property
    def names(self) -> tuple[str, ...]:
        """Input names, the column order of every ``X`` the scorer takes."""
        return tuple(i.name for i in self.inputs)

    @property
    def ref(self) -> str:
        return f"{self.model_id}@{self.version}"


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


def load_model(source: str | Path | Mapping[str, Any]) -> PrognosticModel:
    """Read, hash-check and validate a ``fedprog.model/v1`` artifact (a path or the parsed JSON).

    Raises
    ------
    ModelError
        ``"<file>: sha256 mismatch: file says …, content hashes to …"`` when the content was
        edited, or ``"<file>: <field>: <rule>"`` for the first contract violation.
    """
    name, data = _read(source)
    if not isinstance(data, dict):
        raise ModelError(f"{name}: not a JSON object")
    claimed = data.get("sha256")
    try:
        actual: str | None = canonical_sha256(data)
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
    return PrognosticModel.from_artifact(art)

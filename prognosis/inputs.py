"""A model's inputs: the one ``Coding`` and ``InputSpec``, as a study declares them and a model releases them.

:class:`InputSpec` is the declaration a study makes of one covariate (code, UCUM unit, kind,
intended-use range, reference value, and the words a clinician reads: ``title``, ``below``);
:class:`ModelInput` is the same input as the artifact
``fedprog.model/v1`` releases it: named, coded, with both bounds written out (``null`` = open)
and an optional securely summed coverage histogram. Both check one set of rules and judge a value
the same way (:meth:`InputSpec.accepts`): values are never clamped.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

#: strict, frozen, finite: no type coercion but int → float, unknown fields refused
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True, protected_namespaces=())

Kind = Literal["quantity", "integer", "boolean", "category"]


class Coding(BaseModel):
    """A code from a terminology (LOINC, SNOMED CT, …)."""

    model_config = STRICT
    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    display: str


def increasing(v: list[float], what: str = "") -> list[float]:
    """``v`` unchanged if strictly increasing, else ``ValueError`` naming the first offending index."""
    bad = [i for i in range(1, len(v)) if not v[i] > v[i - 1]]
    if bad:
        i = bad[0]
        raise ValueError(f"{what}must be strictly increasing (index {i}: {v[i]:g} after {v[i - 1]:g})")
    return v


class Coverage(BaseModel):
    """Securely summed training histogram of one input; ``None`` counts are suppressed small cells."""

    model_config = STRICT
    edges: list[float] = Field(min_length=2)
    counts: list[Annotated[int, Field(ge=0)] | None]

    @model_validator(mode="after")
    def _bins(self) -> Coverage:
        increasing(self.edges, "edges: ")
        if len(self.counts) != len(self.edges) - 1:
            raise ValueError(f"counts has {len(self.counts)} bins but edges define {len(self.edges) - 1}")
        return self


#: UCUM time units in words (refusals a clinician reads)
UNIT_WORDS = {"a": "years", "mo": "months", "wk": "weeks", "d": "days"}


def _template(text: str) -> str | None:
    """``text`` with ``{value}`` filled in, or None when it holds no or other placeholders."""
    try:
        return text.format(value="0") if "{value}" in text else None
    except (KeyError, IndexError, ValueError):
        return None


def _num(v: float) -> str:
    """Short form of a number unless that would hide the difference (150.000000001 is not 150)."""
    return f"{v:g}" if float(f"{v:g}") == v else repr(v)


class Bands(BaseModel):
    """How a banded category input is measured: a value in the input's ``unit``, from ``min`` to
    ``max`` (whole numbers only when ``whole``), falls in category ``i`` when ``cuts[i-1] < value ≤
    cuts[i]`` — right-closed bands ``[min, c₁], (c₁, c₂], …, (cₘ, max]``, as the Rotterdam tumour
    bank records tumour size (≤ 20, 20–50, > 50 mm). The model's covariate is the category's index.
    """

    model_config = STRICT
    cuts: list[float] = Field(min_length=1)
    min: float
    max: float
    whole: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        increasing([self.min, *self.cuts, self.max], "min, cuts and max ")
        return self

    def index(self, value: float) -> int:
        """The number of cuts below ``value``: its band's 0-based index."""
        return int(np.searchsorted(np.asarray(self.cuts, dtype=float), value, side="left"))


class Spline(BaseModel):
    """A restricted cubic spline of a continuous input (:func:`prognosis.design.rcs_basis`): its
    knots t₁ < … < t_k (3 ≤ k ≤ 7), declared in the study, or ``quantiles`` = k: placed by the fit
    at Harrell's default quantiles of the securely summed histogram of the input's declared range, each
    on a public bin edge (:mod:`federated.analyses.knots`). A study declares one of the two; a
    released model records the knots, and ``quantiles`` when the fit placed them (then k = len(knots))."""

    model_config = STRICT
    knots: list[float] = Field(default_factory=list, max_length=7)
    quantiles: int | None = Field(default=None, ge=3, le=7)

    @field_validator("knots")
    @classmethod
    def _knots(cls, v: list[float]) -> list[float]:
        if 0 < len(v) < 3:
            raise ValueError(f"knots: a restricted cubic spline needs at least 3 knots, got {len(v)}")
        return increasing(v, "knots ")

    @model_validator(mode="after")
    def _declared(self) -> Spline:
        if not self.knots and self.quantiles is None:
            raise ValueError("spline: declare its knots = [...] or how many to place at quantiles "
                             "(quantiles = 3 … 7)")
        if self.knots and self.quantiles is not None and len(self.knots) != self.quantiles:
            raise ValueError(f"spline: {len(self.knots)} knots placed at {self.quantiles} quantiles")
        return self

    @property
    def placed(self) -> bool:
        """Whether the knots are known (declared, or placed by a fit)."""
        return bool(self.knots)

    @model_serializer(mode="wrap")
    def _written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Only what is set: a declared spline is ``{knots}`` (as before quantiles existed), a
        declaration ``{quantiles}``, a placed one ``{knots, quantiles}``."""
        out: dict[str, Any] = handler(self)
        return {k: v for k, v in out.items() if v not in (None, [])}


class InputSpec(BaseModel):
    """One covariate: its code, UCUM unit, kind and intended-use envelope ``[min, max]``.

    A ``boolean`` is 0 or 1; a ``category`` is the 0-based index of one of ``categories``
    (or, in :meth:`accepts`, that category's code string); a category with ``bands`` is a banded
    measurement (:class:`Bands`, :meth:`band`); an ``integer`` is a quantity that can
    only be a whole number in its unit (a count, a grade): 2.5 positive nodes or a grade of 3.7
    are impossible values, refused rather than scored. Bounds given as ``None`` are open.
    ``reference`` is the reference patient's value (a study declares it; the released model is
    centred on it, never on a data mean). ``title`` is the input's name for a clinician ("Positive
    lymph nodes"); with it, refusals are worded clinically, and ``below`` (a template with
    ``{value}``) words a value under ``min`` as the intended purpose puts it ("this model was
    developed for node-positive patients; {value} positive nodes is outside it").
    """

    model_config = STRICT
    code: Coding | None = None
    unit: str = Field(default="1", min_length=1)
    kind: Kind = "quantity"
    min: float | None = None
    max: float | None = None
    reference: float | None = None
    categories: list[Coding] | None = Field(default_factory=list)
    title: str | None = Field(default=None, min_length=1)
    below: str | None = Field(default=None, min_length=1)
    bands: Bands | None = None
    #: a category whose levels are ordered and enter as their 0-based index (one coefficient);
    #: without it a category is dummy-coded against its first level (:mod:`prognosis.design`)
    ordinal: bool = False
    #: a continuous input entered as a restricted cubic spline (:class:`Spline`)
    spline: Spline | None = None

    @model_validator(mode="after")
    def _consistent(self) -> InputSpec:
        if self.ordinal and self.kind != "category":
            raise ValueError(f"ordinal: only a category input is ordinal, not a {self.kind}")
        if self.spline is not None:
            self._spline_fits(self.spline)
        if self.bands is not None and (self.kind != "category"
                                       or len(self.bands.cuts) != len(self.categories or []) - 1):
            raise ValueError("bands: a banded category input has one cut fewer than categories")
        if self.below is not None and (self.min is None or _template(self.below) is None):
            raise ValueError("below: words a value under min, so it needs min and exactly the "
                             "placeholder {value}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} > max {self.max:g}")
        ref = self.reference
        below = ref is not None and self.min is not None and ref < self.min
        if below or ref is not None and self.max is not None and ref > self.max:
            raise ValueError(f"reference {ref:g} lies outside the declared range [{self.min}, {self.max}]")
        if self.kind == "category":
            codes = [c.code for c in self.categories or []]
            if not codes or len(set(codes)) != len(codes):
                raise ValueError("categories: a category input needs distinct category codes")
        elif self.categories:
            raise ValueError(f"categories: only a category input lists categories, not a {self.kind}")
        return self

    def _spline_fits(self, spline: Spline) -> None:
        """``ValueError`` unless ``spline`` suits this input: a quantity or integer, its knots inside the
        declared range, a declared range to place knots at quantiles in."""
        if self.kind not in ("quantity", "integer"):
            raise ValueError(f"spline: only a quantity or integer input takes a spline, not a {self.kind}")
        if not spline.placed:
            if self.min is None or self.max is None:
                raise ValueError("spline: knots placed at quantiles lie on the bin edges of the declared "
                                 "range: declare min and max")
            return
        lo, hi = spline.knots[0], spline.knots[-1]
        if (self.min is not None and lo < self.min) or (self.max is not None and hi > self.max):
            raise ValueError(f"spline: knots {lo:g}…{hi:g} lie outside the declared range "
                             f"[{self.min}, {self.max}]")

    @property
    def label(self) -> str:
        """How messages name the input: its ``title`` (a declaration has no name of its own)."""
        return self.title or "input"

    @property
    def knots(self) -> list[float] | None:
        """The spline's knots, or None for an input entered as it is (or whose knots are yet to be placed)."""
        return list(self.spline.knots) if self.spline is not None and self.spline.placed else None

    @property
    def codes(self) -> list[str]:
        """The category codes, in level order (empty for other kinds)."""
        return [c.code for c in self.categories or []]

    def reference_value(self) -> float | None:
        """The declared reference, else the middle of the declared range, else None."""
        if self.reference is not None:
            return self.reference
        if self.min is not None and self.max is not None:
            return (self.min + self.max) / 2.0
        return None

    def band(self, value: float) -> int | str:
        """The category (0-based) of a value measured in ``unit`` (:meth:`Bands.index`), or the
        one-line refusal of a value the bands do not cover, worded like :meth:`accepts`'."""
        if self.bands is None:
            raise ValueError(f"{self.label} is not a banded category input")
        b, value = self.bands, float(value)
        if not math.isfinite(value):
            return f"{self.label}: {value} is not a finite number"
        if b.whole and not value.is_integer():
            return f"{self.label}: {_num(value)} is not a whole number ({self.label} is a count or grade)"
        if not b.min <= value <= b.max:
            return InputSpec(unit=self.unit, min=b.min, max=b.max, title=self.title)._outside(value)
        return b.index(value)

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
        name = self.label
        if self.kind == "category" and isinstance(value, str):
            codes = [c.code for c in self.categories or []]
            if value not in codes:
                return f"{name}: {value!r} is not a listed category ({', '.join(codes)})"
            value = codes.index(value)
        if isinstance(value, bool | np.bool_):
            value = float(value)
        if not isinstance(value, int | float | np.integer | np.floating):
            return f"{name}: {value!r} is not a number"
        v = float(value)
        if self.accepts_array(np.array([v]))[0]:
            return None
        if not math.isfinite(v):
            return f"{name}: {v} is not a finite number"
        if self.kind == "boolean" and v not in (0.0, 1.0):
            return f"{name}: {_num(v)} is not a boolean (0 = false, 1 = true)"
        if self.kind == "integer" and not v.is_integer():
            return f"{name}: {_num(v)} is not a whole number ({name} is a count or grade)"
        if self.kind == "category" and not (v.is_integer() and 0 <= v < len(self.categories or [])):
            last = len(self.categories or []) - 1
            return f"{name}: {_num(v)} is not the index of a listed category (0…{last})"
        return self._outside(v)

    def _outside(self, v: float) -> str:
        """The refusal of a value outside ``[min, max]``: clinical words when the input has a title."""
        lo, hi = ("−∞" if b is None else _num(b) for b in (self.min, self.max))
        if self.title is None:
            unit = "" if self.unit == "1" else f" {self.unit}"
            return f"{self.label} = {_num(v)}{unit} is outside the intended-use range [{lo}, {hi}]{unit}"
        if self.below is not None and self.min is not None and v < self.min:
            return f"{self.title}: {self.below.format(value=_num(v))}"
        unit = "" if self.unit == "1" else f" {UNIT_WORDS.get(self.unit, self.unit)}"
        lo = "no lower limit" if self.min is None else lo
        hi = "no upper limit" if self.max is None else hi
        return (f"{self.title}: {_num(v)}{unit} is outside the range this model was developed and "
                f"validated for ({lo} to {hi}{unit})")


class ModelInput(InputSpec):
    """An input as a released model states it (``inputs[]`` of ``fedprog.model/v1``).

    Unlike a declaration, ``name``, ``code``, ``unit``, ``min`` and ``max`` must be written out
    (bounds as ``null`` when open); the reference patient lives in the model's centre instead.
    """

    name: str = Field(min_length=1)
    code: Coding
    unit: str = Field(min_length=1)
    min: float | None
    max: float | None
    reference: None = None
    coverage: Coverage | None = None

    @model_validator(mode="after")
    def _knots_known(self) -> ModelInput:
        if self.spline is not None and not self.spline.placed:
            raise ValueError("spline: a released model records its knots (placed at quantiles by the fit)")
        return self

    @property
    def label(self) -> str:
        return self.title or self.name


def first_error(exc: ValidationError, *, plain: bool = False) -> str:
    """One line naming the field and the rule of a pydantic validation error (with ``plain``, without
    pydantic's "Value error, " prefix), and how many more errors there are."""
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "(root)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    msg = err["msg"].removeprefix("Value error, ") if plain else err["msg"]
    return f"{loc}: {msg}{more}"


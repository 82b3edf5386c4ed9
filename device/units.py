"""UCUM unit conversion for the inputs a clinician is likely to send (table-driven, not a full parser).

Supported (UCUM, case-sensitive, http://unitsofmeasure.org):

* metric atoms ``m`` (length), ``g`` (mass), ``s`` (time), ``mol`` (amount), ``L``/``l`` (volume,
  1 L = 10⁻³ m³), each with one prefix among ``f p n u m c d k`` (e.g. ``mm``, ``kg``, ``fmol``, ``dL``);
* customary atoms ``[in_i]`` (2.54 cm), ``[ft_i]`` (12 in), ``[lb_av]`` (453.59237 g), ``[oz_av]`` (1/16 lb);
* time ``min``, ``h``, ``d``, ``wk`` (7 d), ``a`` (mean Julian year, 365.25 d), ``mo`` (a/12);
* unity ``1``, ``%`` (10⁻²), and annotations: ``{count}``, ``{#}``, ``{nodes}`` … are unity, and an
  annotation after a unit is ignored (``mg{creat}`` = ``mg``);
* products with ``.``, one ``/`` and integer exponents of these atoms (``fmol/mg``, ``kg/m2``).

Bounded grammar: a unit is at most :data:`MAX_LENGTH` printable ASCII characters with at most
:data:`MAX_TERMS` factors and exponents within ±:data:`MAX_EXPONENT`; a factor that does not fit a
finite double is refused. At the FHIR edge a value may only be sent in the :func:`vocabulary` of
its input's declared unit (that unit's atoms, the table atoms of the same dimension, their
prefixes). Every refusal is a :class:`UnitError`, never an arithmetic error.

Not supported (:class:`UnitError`): offset units (``Cel``, ``[degF]``), ``10*n`` powers, arbitrary
units (``[IU]``, ``U``), nested ``/``. Conversion factors are exact rationals, so e.g. 170 cm is
exactly 1700 mm.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from fractions import Fraction
from functools import lru_cache
from typing import overload

import numpy as np

Dimension = tuple[int, int, int, int]  # exponents of length, mass, time, amount of substance

_L, _M, _T, _N, _ONE = (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1), (0, 0, 0, 0)
_DAY = Fraction(86400)
_YEAR = Fraction(36525, 100) * _DAY
_INCH = Fraction(254, 10000)
_POUND = Fraction(45359237, 100000)

#: atom → (factor to the base unit m, g, s, mol or 1; dimension; takes a metric prefix)
ATOMS: dict[str, tuple[Fraction, Dimension, bool]] = {
    "m": (Fraction(1), _L, True), "g": (Fraction(1), _M, True), "s": (Fraction(1), _T, True),
    "mol": (Fraction(1), _N, True), "L": (Fraction(1, 1000), (3, 0, 0, 0), True),
    "l": (Fraction(1, 1000), (3, 0, 0, 0), True),
    "[in_i]": (_INCH, _L, False), "[ft_i]": (12 * _INCH, _L, False),
    "[lb_av]": (_POUND, _M, False), "[oz_av]": (_POUND / 16, _M, False),
    "min": (Fraction(60), _T, False), "h": (Fraction(3600), _T, False), "d": (_DAY, _T, False),
    "wk": (7 * _DAY, _T, False), "a": (_YEAR, _T, False), "mo": (_YEAR / 12, _T, False),
    "1": (Fraction(1), _ONE, False), "%": (Fraction(1, 100), _ONE, False),
}

#: metric prefixes allowed in front of a metric atom
PREFIXES: dict[str, Fraction] = {
    "f": Fraction(1, 10**15), "p": Fraction(1, 10**12), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000), "c": Fraction(1, 100), "d": Fraction(1, 10), "k": Fraction(1000),
}

_NAMES = ("length", "mass", "time", "amount")

#: longest unit string read (UCUM codes clinicians send are a few characters; annotations included)
MAX_LENGTH = 64
#: most factors in one unit (numerator and denominator together)
MAX_TERMS = 6
#: largest absolute integer exponent of one factor (UCUM ``m2``, ``s-1``; ``m998`` is refused)
MAX_EXPONENT = 6
_TERM = re.compile(r"^(?P<atom>.*?)(?P<exp>[+-]?\d+)?$", re.ASCII)
_ANNOTATION = re.compile(r"\{[!-z|~]*\}", re.ASCII)  # UCUM §2.4: printable ASCII but braces


class UnitError(ValueError):
    """An unknown unit, an unsupported UCUM expression, or units of different dimensions."""


def _atom(text: str, unit: str) -> tuple[str, Fraction, Dimension]:
    """The table atom of ``text`` (prefix removed), its factor to the base unit and its dimension."""
    if text in ATOMS:
        return (text, *ATOMS[text][:2])
    if len(text) > 1 and text[0] in PREFIXES and ATOMS.get(text[1:], (Fraction(0), _ONE, False))[2]:
        factor, dim, _ = ATOMS[text[1:]]
        return text[1:], PREFIXES[text[0]] * factor, dim
    raise UnitError(f"unknown unit {unit!r} (atom {text!r} is not supported; see device.units)")


def _term(text: str, unit: str) -> tuple[str, Fraction, Dimension]:
    if text in ("", "1") or text in ATOMS:
        return _atom(text or "1", unit)
    match = _TERM.match(text)
    assert match is not None  # the pattern matches every string
    atom, factor, dim = _atom(match["atom"], unit)
    digits = (match["exp"] or "1").lstrip("+-")
    if len(digits) > len(str(MAX_EXPONENT)) or int(digits) > MAX_EXPONENT:
        raise UnitError(f"unsupported unit {unit!r} (exponent of {match['atom']!r} beyond ±{MAX_EXPONENT})")
    exp = int(match["exp"] or 1)
    return atom, factor**exp, (dim[0] * exp, dim[1] * exp, dim[2] * exp, dim[3] * exp)


def _product(text: str, unit: str) -> tuple[Fraction, Dimension, frozenset[str]]:
    factor, dim, atoms = Fraction(1), _ONE, set()
    for part in text.split("."):
        a, f, d = _term(part, unit)
        factor, dim = factor * f, (dim[0] + d[0], dim[1] + d[1], dim[2] + d[2], dim[3] + d[3])
        atoms.add(a)
    return factor, dim, frozenset(atoms)


@lru_cache(maxsize=256)
def _parse(unit: str) -> tuple[Fraction, Dimension, frozenset[str]]:
    """The bounded grammar: at most :data:`MAX_LENGTH` printable ASCII characters, annotations,
    one ``/``, at most :data:`MAX_TERMS` factors joined by ``.``, exponents within ±:data:`MAX_EXPONENT`
    (so the exact factor stays small and parsing takes microseconds whatever the input)."""
    if len(unit) > MAX_LENGTH:
        raise UnitError(f"unit of {len(unit)} characters is longer than {MAX_LENGTH}")
    if not unit or not unit.isascii() or not unit.isprintable():
        raise UnitError(f"unknown unit {unit!r} (empty, or not printable ASCII)")
    text = _ANNOTATION.sub("", unit)  # annotations carry no dimension
    if "{" in text or "}" in text or " " in text:
        raise UnitError(f"unknown unit {unit!r} (malformed annotation or space)")
    if text.count("/") > 1:
        raise UnitError(f"unsupported unit {unit!r} (more than one '/')")
    if text.count(".") + text.count("/") + 1 > MAX_TERMS:
        raise UnitError(f"unsupported unit {unit!r} (more than {MAX_TERMS} factors)")
    num, _, den = text.partition("/")
    f1, d1, a1 = _product(num, unit)
    f2, d2, a2 = _product(den, unit)
    return f1 / f2, (d1[0] - d2[0], d1[1] - d2[1], d1[2] - d2[2], d1[3] - d2[3]), a1 | a2


def parse(unit: str) -> tuple[Fraction, Dimension]:
    """Exact factor to the base units (m, g, s, mol) and the dimension of a UCUM unit string."""
    return _parse(unit)[:2]


@lru_cache(maxsize=256)
def vocabulary(declared: str) -> frozenset[str]:
    """The atoms a value for an input declared in ``declared`` may be sent in: the declared unit's
    own atoms and every table atom of the same dimension (what conversion needs: ``[in_i]`` for a
    length, ``[lb_av]`` for a mass, …), each with the metric prefixes :data:`PREFIXES`, and unity."""
    own = _parse(declared)[2] - {"1"} or {"1"}  # "1" stands in for an empty numerator/denominator
    dims = {ATOMS[a][1] for a in own}
    return frozenset({"1", *own, *(a for a, (_, d, _) in ATOMS.items() if d in dims)})


def check_vocabulary(unit: str, declared: str) -> None:
    """:class:`UnitError` unless every atom of ``unit`` is in :func:`vocabulary` of ``declared``."""
    allowed = vocabulary(declared)
    outside = sorted(_parse(unit)[2] - allowed)
    if outside:
        raise UnitError(f"unit {unit!r}: {outside[0]!r} is not a unit of this input (accepted atoms: "
                        f"{', '.join(sorted(allowed))}, with metric prefixes where UCUM allows them)")


def _describe(dim: Dimension) -> str:
    parts = [name if e == 1 else f"{name}^{e}" for name, e in zip(_NAMES, dim, strict=True) if e]
    return "·".join(parts) or "dimensionless"


def compatible(from_unit: str, to_unit: str) -> bool:
    """True when both units are supported and have the same dimension."""
    try:
        return parse(from_unit)[1] == parse(to_unit)[1]
    except UnitError:
        return False


@lru_cache(maxsize=1024)
def factor(from_unit: str, to_unit: str) -> float:
    """The multiplier taking a value in ``from_unit`` to ``to_unit`` (exact ratio, rounded once; a pure
    function of the two strings, remembered: a refusal raises every time, nothing wrong is cached)."""
    f1, d1 = parse(from_unit)
    f2, d2 = parse(to_unit)
    if d1 != d2:
        raise UnitError(f"cannot convert {from_unit!r} to {to_unit!r} ({_describe(d1)} vs {_describe(d2)})")
    try:
        out = float(f1 / f2)
    except OverflowError:
        out = math.inf
    if not (math.isfinite(out) and out > 0):
        raise UnitError(f"cannot convert {from_unit!r} to {to_unit!r} (the factor is not a finite "
                        "positive double)")
    return out


@overload
def convert(value: float, from_unit: str, to_unit: str) -> float: ...
@overload
def convert(value: np.ndarray, from_unit: str, to_unit: str) -> np.ndarray: ...


def convert(value: float | np.ndarray, from_unit: str, to_unit: str) -> float | np.ndarray:
    """``value`` expressed in ``from_unit``, converted to ``to_unit`` (arrays element-wise).

    Raises
    ------
    UnitError
        When either unit is unknown or the two have different dimensions, e.g.
        ``cannot convert 'kg' to 'mm' (mass vs length)``.
    """
    k = factor(from_unit, to_unit)
    if isinstance(value, np.ndarray):
        return np.asarray(value, dtype=float) * k
    out = float(value) * k
    if math.isfinite(float(value)) and not math.isfinite(out):
        raise UnitError(f"{value!r} {from_unit} is beyond the range of a double in {to_unit!r}")
    return out


def age_in(unit: str, birth_date: date, at: date) -> float:
    """Exact age at ``at`` in a UCUM time unit, from whole days since ``birth_date``.

    The age is fractional: ``(at − birth_date).days`` converted from ``d``; in years that is
    days / 365.25 (UCUM ``a``, the mean Julian year), NOT completed years. It can differ from
    calendar age by up to about a day near birthdays (leap years), and exceeds the completed
    years by up to one year. ``datetime`` values are reduced to their date.

    Raises
    ------
    UnitError
        ``unit`` is not a time unit.
    ValueError
        ``at`` is before ``birth_date``.
    """
    b = birth_date.date() if isinstance(birth_date, datetime) else birth_date
    a = at.date() if isinstance(at, datetime) else at
    if a < b:
        raise ValueError(f"date {a.isoformat()} is before the birth date {b.isoformat()}")
    return convert(float((a - b).days), "d", unit)

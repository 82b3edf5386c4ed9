"""UCUM unit conversion for the inputs a clinician is likely to send (table-driven, not a full parser).

Supported (UCUM, case-sensitive, http://unitsofmeasure.org):

* metric atoms ``m`` (length), ``g`` (mass), ``s`` (time), ``mol`` (amount), ``L``/``l`` (volume,
  1 L = 10⁻³ m³), each with one prefix among ``f p n u m c d k`` (e.g. ``mm``, ``kg``, ``fmol``, ``dL``);
* customary atoms ``[in_i]`` (2.54 cm), ``[ft_i]`` (12 in), ``[lb_av]`` (453.59237 g), ``[oz_av]`` (1/16 lb);
* time ``min``, ``h``, ``d``, ``wk`` (7 d), ``a`` (mean Julian year, 365.25 d), ``mo`` (a/12);
* unity ``1``, ``%`` (10⁻²), and annotations: ``{count}``, ``{#}``, ``{nodes}`` … are unity, and an
  annotation after a unit is ignored (``mg{creat}`` = ``mg``);
* products with ``.``, one ``/`` and integer exponents of these atoms (``fmol/mg``, ``kg/m2``).

Not supported (:class:`UnitError`): offset units (``Cel``, ``[degF]``), ``10*n`` powers, arbitrary
units (``[IU]``, ``U``), nested ``/``. Conversion factors are exact rationals, so e.g. 170 cm is
exactly 1700 mm.
"""

from __future__ import annotations

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
_TERM = re.compile(r"^(?P<atom>.*?)(?P<exp>[+-]?\d+)?$")


class UnitError(ValueError):
    """An unknown unit, an unsupported UCUM expression, or units of different dimensions."""


def _atom(text: str, unit: str) -> tuple[Fraction, Dimension]:
    if text in ATOMS:
        return ATOMS[text][:2]
    if len(text) > 1 and text[0] in PREFIXES and ATOMS.get(text[1:], (Fraction(0), _ONE, False))[2]:
        factor, dim, _ = ATOMS[text[1:]]
        return PREFIXES[text[0]] * factor, dim
    raise UnitError(f"unknown unit {unit!r} (atom {text!r} is not supported; see device.units)")


def _term(text: str, unit: str) -> tuple[Fraction, Dimension]:
    if text in ("", "1") or text in ATOMS:
        return _atom(text or "1", unit)
    match = _TERM.match(text)
    assert match is not None  # the pattern matches every string
    factor, dim = _atom(match["atom"], unit)
    exp = int(match["exp"] or 1)
    return factor**exp, (dim[0] * exp, dim[1] * exp, dim[2] * exp, dim[3] * exp)


def _product(text: str, unit: str) -> tuple[Fraction, Dimension]:
    factor, dim = Fraction(1), _ONE
    for part in text.split("."):
        f, d = _term(part, unit)
        factor, dim = factor * f, (dim[0] + d[0], dim[1] + d[1], dim[2] + d[2], dim[3] + d[3])
    return factor, dim


@lru_cache(maxsize=256)
def parse(unit: str) -> tuple[Fraction, Dimension]:
    """Exact factor to the base units (m, g, s, mol) and the dimension of a UCUM unit string."""
    text = re.sub(r"\{[^{}]*\}", "", unit)  # annotations carry no dimension
    if not unit or "{" in text or "}" in text or " " in text:
        raise UnitError(f"unknown unit {unit!r} (empty, malformed annotation or space)")
    if text.count("/") > 1:
        raise UnitError(f"unsupported unit {unit!r} (more than one '/')")
    num, _, den = text.partition("/")
    f1, d1 = _product(num, unit)
    f2, d2 = _product(den, unit)
    return f1 / f2, (d1[0] - d2[0], d1[1] - d2[1], d1[2] - d2[2], d1[3] - d2[3])


def _describe(dim: Dimension) -> str:
    parts = [name if e == 1 else f"{name}^{e}" for name, e in zip(_NAMES, dim, strict=True) if e]
    return "·".join(parts) or "dimensionless"


def compatible(from_unit: str, to_unit: str) -> bool:
    """True when both units are supported and have the same dimension."""
    try:
        return parse(from_unit)[1] == parse(to_unit)[1]
    except UnitError:
        return False


def factor(from_unit: str, to_unit: str) -> float:
    """The multiplier taking a value in ``from_unit`` to ``to_unit`` (exact ratio, rounded once)."""
    f1, d1 = parse(from_unit)
    f2, d2 = parse(to_unit)
    if d1 != d2:
        raise UnitError(f"cannot convert {from_unit!r} to {to_unit!r} ({_describe(d1)} vs {_describe(d2)})")
    return float(f1 / f2)


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
    return float(value) * k


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

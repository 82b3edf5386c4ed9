"""UCUM conversions of the units clinicians send, and age from a birth date."""

from __future__ import annotations

import re
from datetime import date, datetime

import numpy as np
import pytest

from device.units import UnitError, age_in, check_vocabulary, compatible, convert, factor, parse, vocabulary

pytestmark = pytest.mark.req("SRS-DEV-006")


@pytest.mark.parametrize(("value", "src", "dst", "expected"), [
    (170.0, "cm", "mm", 1700.0),
    (1.0, "a", "d", 365.25),
    (2.0, "[lb_av]", "kg", 0.90718474),
    (1.0, "[in_i]", "cm", 2.54),
    (1.0, "[ft_i]", "[in_i]", 12.0),
    (16.0, "[oz_av]", "[lb_av]", 1.0),
    (1.0, "kg", "g", 1000.0),
    (250.0, "mg", "g", 0.25),
    (1.5, "m", "mm", 1500.0),
    (1.0, "mo", "d", 30.4375),
    (12.0, "mo", "a", 1.0),
    (2.0, "wk", "d", 14.0),
    (1.0, "d", "h", 24.0),
    (1.0, "h", "min", 60.0),
    (1.0, "min", "s", 60.0),
    (1500.0, "ms", "s", 1.5),
    (1.0, "fmol/mg", "pmol/g", 1.0),
    (1.0, "fmol/mg", "nmol/kg", 1.0),
    (12.0, "pmol/mg", "fmol/mg", 12000.0),
    (5.0, "mmol/L", "umol/mL", 5.0),
    (1.0, "g/dL", "g/L", 10.0),
    (1.0, "kg/m2", "g/cm2", 0.1),
    (1.0, "kg.m-2", "kg/m2", 1.0),
    (37.0, "%", "1", 0.37),
    (3.0, "{count}", "1", 3.0),
    (3.0, "{nodes}", "{#}", 3.0),
    (4.0, "1", "{count}", 4.0),
    (2.0, "mg{creat}", "g", 0.002),
])
def test_known_conversions(value: float, src: str, dst: str, expected: float) -> None:
    got = convert(value, src, dst)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-15, abs=0.0)


def test_exact_rational_factors() -> None:
    assert convert(170.0, "cm", "mm") == 1700.0
    assert convert(1.0, "a", "d") == 365.25
    assert convert(2.0, "[lb_av]", "kg") == 0.90718474
    assert factor("a", "mo") == 12.0 and factor("cm", "mm") == 10.0


@pytest.mark.parametrize(("a", "b"), [("cm", "[in_i]"), ("kg", "[lb_av]"), ("a", "wk"), ("mo", "d"),
                                      ("fmol/mg", "nmol/g"), ("%", "1"), ("mm", "m")])
def test_round_trips(a: str, b: str) -> None:
    x = np.random.default_rng(7).uniform(0.0, 1000.0, 500)
    there = convert(x, a, b)
    assert isinstance(there, np.ndarray) and there.shape == x.shape
    np.testing.assert_allclose(convert(there, b, a), x, rtol=1e-14, atol=0.0)


def test_arrays_keep_their_shape_and_are_not_modified() -> None:
    x = np.arange(6.0).reshape(2, 3)
    y = convert(x, "cm", "mm")
    assert y.shape == (2, 3) and y is not x
    np.testing.assert_array_equal(x, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(y, 10 * x)


@pytest.mark.req("RC-UNIT-001")
@pytest.mark.parametrize(("src", "dst", "message"), [
    ("kg", "mm", "cannot convert 'kg' to 'mm' (mass vs length)"),
    ("a", "1", "cannot convert 'a' to '1' (time vs dimensionless)"),
    ("fmol/mg", "fmol/mL", "cannot convert 'fmol/mg' to 'fmol/mL' (mass^-1·amount vs length^-3·amount)"),
    ("kg/m2", "kg", "(length^-2·mass vs mass)"),
])
def test_incompatible_units_are_refused(src: str, dst: str, message: str) -> None:
    with pytest.raises(UnitError) as info:
        convert(1.0, src, dst)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError) and not compatible(src, dst)


@pytest.mark.req("RC-UNIT-001")
@pytest.mark.parametrize("unit", ["Cel", "[degF]", "furlong", "10*3/uL", "U/mL", "mg/kg/d", "kg ", "{a", "",
                                  "2"])
def test_unknown_or_unsupported_units_are_refused(unit: str) -> None:
    with pytest.raises(UnitError, match="unit"):
        convert(1.0, unit, "1")
    assert not compatible(unit, "1")


def test_prefixes_apply_to_metric_atoms_only() -> None:
    assert convert(1.0, "dL", "mL") == pytest.approx(100.0)
    for bad in ("kh", "ma", "cd", "m[in_i]", "k%"):
        with pytest.raises(UnitError, match="unknown unit"):
            convert(1.0, bad, "1")


def test_age_from_a_birth_date() -> None:
    born = date(1960, 3, 15)
    at = date(2020, 3, 15)
    days = (at - born).days
    assert days == 21915
    assert age_in("d", born, at) == 21915.0
    assert age_in("a", born, at) == pytest.approx(21915 / 365.25, rel=1e-15)
    assert age_in("mo", born, at) == pytest.approx(12 * 21915 / 365.25, rel=1e-15)
    assert age_in("wk", born, at) == pytest.approx(21915 / 7, rel=1e-15)
    # four calendar years that include one leap day are exactly four mean Julian years
    assert age_in("a", date(2000, 2, 29), date(2004, 2, 29)) == 4.0
    # fractional, not completed years: the day before the 60th birthday is ~59.997 a
    assert age_in("a", born, date(2020, 3, 14)) == pytest.approx(59.997, abs=1e-3)
    assert age_in("a", datetime(1960, 3, 15, 23, 0), datetime(2020, 3, 15, 1, 0)) == age_in("a", born, at)
    assert age_in("a", born, born) == 0.0


def test_age_refuses_a_date_before_birth_and_non_time_units() -> None:
    with pytest.raises(ValueError, match="before the birth date"):
        age_in("a", date(2000, 1, 2), date(2000, 1, 1))
    with pytest.raises(UnitError, match="cannot convert 'd' to 'kg'"):
        age_in("kg", date(2000, 1, 1), date(2001, 1, 1))


# ------------------------------------------------------------------ bounded grammar (issue 16 H1)
@pytest.mark.req("SRS-DEV-008")
@pytest.mark.parametrize(("unit", "why"), [
    ("km999/m998", "beyond ±6"), ("m" + "9" * 5000, "longer than 64"), ("km999999/m999998", "beyond ±6"),
    ("m07", "beyond ±6"), ("m+7", "beyond ±6"), ("m٣", "printable ASCII"), ("m\x00", "printable ASCII"),
    ("m.m.m.m.m.m.m", "more than 6 factors"), ("m/s/s", "more than one '/'"), ("{a{b}}", "malformed"),
])
def test_the_grammar_is_bounded(unit: str, why: str) -> None:
    """Before: ``int(exp)``, ``factor**exp`` and ``float()`` overflowed (a 500) or ran for seconds."""
    with pytest.raises(UnitError, match=re.escape(why)):
        parse(unit)


@pytest.mark.req("SRS-DEV-008")
def test_a_factor_beyond_a_double_is_a_unit_error_not_an_overflow() -> None:
    with pytest.raises(UnitError, match="not a finite positive double"):
        factor("fm6.fm6.fm6/km6.km6.km6", "1")
    with pytest.raises(UnitError, match="beyond the range of a double"):
        convert(1e300, "km6", "fm6")
    assert parse("m6") == (1, (6, 0, 0, 0)) and factor("mm-2", "m-2") == 1e6


@pytest.mark.req("SRS-DEV-008")
def test_the_vocabulary_of_an_input_is_its_units_dimension_and_prefixes() -> None:
    assert vocabulary("mm") == {"1", "m", "[in_i]", "[ft_i]"}
    assert vocabulary("fmol/mg") == {"1", "mol", "g", "[lb_av]", "[oz_av]"}
    assert vocabulary("1") == vocabulary("{count}") == {"1", "%"}
    for ok in ("cm", "[in_i]", "km", "mm{tumour}"):
        check_vocabulary(ok, "mm")
    for foreign in ("mol.m/mol", "g.m/g", "%.mm"):  # the right dimension, spelt with foreign atoms
        assert parse(foreign)[1] == parse("mm")[1]
        with pytest.raises(UnitError, match="is not a unit of this input"):
            check_vocabulary(foreign, "mm")

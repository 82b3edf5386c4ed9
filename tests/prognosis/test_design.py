"""The design of a model (prognosis.design): Harrell's restricted cubic splines, dummy coding and
interactions."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from prognosis import Coding, InputSpec
from prognosis.design import Design, rcs_basis
from prognosis.inputs import Spline

KNOTS = (35.0, 45.0, 55.0, 65.0)


def _harrell(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Hmisc::rcspline.eval(x, knots, inclx = TRUE, norm = 2), written out term by term as its
    documentation states it (an independent transcription, one row at a time)."""
    k = len(t)
    out = np.empty((x.size, k - 1))
    for i, v in enumerate(x):
        out[i, 0] = v
        for j in range(k - 2):
            a = max(v - t[j], 0.0) ** 3
            b = max(v - t[k - 2], 0.0) ** 3 * (t[k - 1] - t[j]) / (t[k - 1] - t[k - 2])
            c = max(v - t[k - 1], 0.0) ** 3 * (t[k - 2] - t[j]) / (t[k - 1] - t[k - 2])
            out[i, j + 1] = (a - b + c) / (t[k - 1] - t[0]) ** 2
    return out


def _category(*codes: str, ordinal: bool = False) -> InputSpec:
    return InputSpec(kind="category", ordinal=ordinal, min=0, max=len(codes) - 1,
                     categories=[Coding(system="urn:test", code=c, display=c) for c in codes])


@pytest.mark.req("SRS-MOD-001")
@pytest.mark.parametrize("knots", [(1.0, 2.0, 4.0), KNOTS, (0.0, 1.0, 3.0, 6.0, 10.0, 15.0, 21.0)])
def test_the_spline_basis_is_harrells(knots: tuple[float, ...]) -> None:
    x = np.random.default_rng(1).uniform(knots[0] - 10, knots[-1] + 10, 400)
    np.testing.assert_allclose(rcs_basis(x, knots), _harrell(x, np.array(knots)), rtol=1e-13, atol=1e-12)


@pytest.mark.req("SRS-MOD-001")
def test_a_spline_is_linear_beyond_its_outer_knots_and_smooth_at_every_knot() -> None:
    t = np.array(KNOTS)
    beta = np.array([0.02, -0.4, 1.3])
    f = lambda v: rcs_basis(np.atleast_1d(v), t) @ beta  # noqa: E731
    for lo, hi in ((10.0, t[0]), (t[-1], 90.0)):  # second differences vanish in both tails
        v = np.linspace(lo, hi, 50)
        assert np.max(np.abs(np.diff(f(v), 2))) < 1e-11
    h = 1e-4
    for knot in t:  # continuous first derivative at each knot (a cubic spline)
        left = (f(knot) - f(knot - h)) / h
        right = (f(knot + h) - f(knot)) / h
        assert abs(left[0] - right[0]) < 1e-3


@pytest.mark.req("SRS-MOD-001")
def test_knots_are_declared_strictly_increasing_inside_the_range_for_continuous_inputs_only() -> None:
    with pytest.raises(ValidationError, match="knots must be strictly increasing"):
        Spline(knots=[1.0, 1.0, 2.0])
    with pytest.raises(ValidationError, match="at least 3"):
        Spline(knots=[1.0, 2.0])
    with pytest.raises(ValidationError, match="knots 20…65 lie outside the declared range"):
        InputSpec(min=27, max=79, spline=Spline(knots=[20, 40, 65]))
    with pytest.raises(ValidationError, match="only a quantity or integer input takes a spline"):
        InputSpec(kind="boolean", spline=Spline(knots=[0, 0.5, 1]))
    with pytest.raises(ValidationError, match="only a category input is ordinal"):
        InputSpec(kind="quantity", ordinal=True)


@pytest.mark.req("SRS-MOD-002")
def test_a_category_is_dummy_coded_against_its_first_level_unless_ordinal() -> None:
    size = _category("<=20", "20-50", ">50")
    design = Design.of(["tsize"], [size])
    assert design.columns == ("tsize=20-50", "tsize=>50")
    np.testing.assert_array_equal(design.matrix(np.array([[0.0], [1.0], [2.0]])),
                                  [[0, 0], [1, 0], [0, 1]])
    ordinal = Design.of(["tsize"], [_category("<=20", "20-50", ">50", ordinal=True)])
    assert ordinal.columns == ("tsize",) and ordinal.identity
    np.testing.assert_array_equal(ordinal.matrix(np.array([[2.0]])), [[2.0]])


@pytest.mark.req("SRS-MOD-003")
def test_an_interaction_multiplies_every_column_of_one_input_with_every_column_of_the_other() -> None:
    age = InputSpec(min=27, max=79, spline=Spline(knots=list(KNOTS)))
    design = Design.of(["age", "grade"], [age, _category("1", "2", "3")], [("age", "grade")])
    assert design.columns == ("age", "age'", "age''", "grade=2", "grade=3", "age:grade=2", "age:grade=3",
                              "age':grade=2", "age':grade=3", "age'':grade=2", "age'':grade=3")
    assert design.effects == ("age", "grade", "age:grade")
    X = np.array([[50.0, 2.0], [70.0, 1.0]])
    D = design.matrix(X)
    basis = rcs_basis(X[:, 0], KNOTS)
    dummies = np.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(D[:, 5:], (basis[:, :, None] * dummies[:, None, :]).reshape(2, -1))
    with pytest.raises(ValueError, match="'dose' is not an input"):
        Design.of(["age"], [age], [("age", "dose")])
    with pytest.raises(ValueError, match="declared twice"):
        Design.of(["age", "grade"], [age, _category("1", "2")], [("age", "grade"), ("grade", "age")])


@pytest.mark.req("SRS-MOD-004")
def test_effects_sum_their_columns_and_a_row_maps_back_to_its_inputs() -> None:
    age = InputSpec(min=27, max=79, spline=Spline(knots=list(KNOTS)))
    design = Design.of(["age", "size", "h"], [age, _category("a", "b", "c"), InputSpec(kind="boolean")],
                       [("size", "h")])
    X = np.array([[61.0, 2.0, 1.0], [30.0, 0.0, 0.0]])
    D = design.matrix(X)
    beta = np.linspace(-1, 1, D.shape[1])
    per = design.effect_sums(D * beta)
    assert per.shape == (2, 4)
    np.testing.assert_allclose(per.sum(axis=1), D @ beta, rtol=1e-14)
    np.testing.assert_allclose(per[:, 0], D[:, :3] @ beta[:3], rtol=1e-14)
    for row, x in zip(D, X, strict=True):
        np.testing.assert_array_equal(design.inputs_of(row), x)


@pytest.mark.req("SRS-MOD-006")
def test_column_bounds_span_what_the_design_makes_of_the_declared_ranges() -> None:
    age = InputSpec(min=27, max=79, spline=Spline(knots=list(KNOTS)))
    design = Design.of(["age", "h"], [age, InputSpec(kind="boolean")], [("age", "h")])
    bounds = design.column_bounds({"age": (27.0, 79.0), "h": (0.0, 1.0)})
    dense = rcs_basis(np.linspace(27, 79, 100_001), KNOTS)
    for j, col in enumerate(("age", "age'", "age''")):
        assert bounds[col][0] == pytest.approx(dense[:, j].min(), abs=1e-9)
        assert bounds[col][1] == pytest.approx(dense[:, j].max(), abs=1e-9)
        assert bounds[f"{col}:h"] == (0.0, pytest.approx(dense[:, j].max(), abs=1e-9))
    assert "age" not in design.column_bounds({"h": (0.0, 1.0)})  # no declared range, no public bound

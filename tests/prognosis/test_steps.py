"""The one right-continuous step function: value at the last time ≤ t, ``before`` earlier."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm

from prognosis import Z95, step_at

pytestmark = pytest.mark.req("SRS-DEV-010")

TIMES = [1.0, 2.0, 2.0, 4.0]  # a tie at 2: the last value listed there holds from 2 on
VALUES = [0.9, 0.8, 0.7, 0.5]

#: (t, expected) — each case named by the one thing it checks
CASES = {
    "long before the first time": (-5.0, 1.0),
    "just before the first time": (0.999999, 1.0),
    "exactly at the first time": (1.0, 0.9),
    "between two times": (1.5, 0.9),
    "exactly at a tied time": (2.0, 0.7),
    "just after a tied time": (2.000001, 0.7),
    "between tie and last": (3.9999, 0.7),
    "exactly at the last time": (4.0, 0.5),
    "after the last time": (1e9, 0.5),
    "at infinity": (np.inf, 0.5),
}


def slow_step_at(times: list[float], values: list[float], t: float, before: float) -> float:
    """Obviously correct reference: scan for the last listed time ≤ t."""
    out = before
    for ti, vi in zip(times, values, strict=True):
        if ti <= t:
            out = vi
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_known_values(case: str) -> None:
    t, want = CASES[case]
    assert step_at(TIMES, VALUES, t) == want
    assert step_at(TIMES, VALUES, t, before=0.0) == (0.0 if want == 1.0 else want)


def test_vectorised_over_any_shape() -> None:
    t = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    got = step_at(TIMES, VALUES, t)
    assert got.shape == (2, 3)
    np.testing.assert_array_equal(got, [[1.0, 0.9, 0.7], [0.7, 0.5, 0.5]])
    assert step_at(TIMES, VALUES, 2.5).shape == ()


def test_empty_curve_is_before_everywhere() -> None:
    np.testing.assert_array_equal(step_at([], [], [0.0, 10.0]), [1.0, 1.0])
    np.testing.assert_array_equal(step_at([], [], [0.0, 10.0], before=0.0), [0.0, 0.0])


def test_mismatched_curve_is_refused() -> None:
    with pytest.raises(ValueError, match=r"shapes \(2,\) and \(3,\)"):
        step_at([1.0, 2.0], [0.9, 0.8, 0.7], 1.0)


@given(st.lists(st.integers(0, 20), max_size=12), st.lists(st.integers(-2, 24), min_size=1, max_size=12))
def test_equals_the_slow_reference(raw_times: list[int], probes: list[int]) -> None:
    times = sorted(float(t) for t in raw_times)
    values = [1.0 / (i + 2) for i in range(len(times))]
    got = step_at(times, values, [float(p) for p in probes])
    want = [slow_step_at(times, values, float(p), 1.0) for p in probes]
    np.testing.assert_array_equal(got, want)


def test_z95_is_the_normal_quantile() -> None:
    assert Z95 == pytest.approx(float(norm.ppf(0.975)), abs=1e-15)

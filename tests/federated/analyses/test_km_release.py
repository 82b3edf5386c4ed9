"""The released Kaplan–Meier curve: merged steps count only their own events.

Adversary: a reader of releases. Events after the last released time are fewer than k; adding them to
the last released step's count would publish them (the count minus the step's own events)."""

from __future__ import annotations

import numpy as np
import pytest

from federated.analyses.km import KMCurve, release


@pytest.mark.req("SRS-PRIV-002")
def test_trailing_withheld_events_are_not_added_to_the_last_released_step() -> None:
    events = np.array([1, 2, 0, 3, 5, 1, 1])
    at_risk = np.array([40, 39, 37, 37, 34, 29, 28])
    times = np.arange(1.0, 8.0)
    survival = np.cumprod(1 - events / at_risk)
    curve = KMCurve(times, survival, at_risk, events, survival - 0.01, np.minimum(survival + 0.01, 1.0))
    out = release(curve, 3)
    np.testing.assert_array_equal(out.times, [2.0, 4.0, 5.0])
    np.testing.assert_array_equal(out.events, [3, 3, 5])  # the last two events (1 + 1 < 3) withheld
    np.testing.assert_array_equal(out.survival, survival[[1, 3, 4]])
    assert int(out.events.sum()) == int(events[:5].sum())

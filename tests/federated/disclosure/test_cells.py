"""k-cells at the source: :func:`shift_sparse_censoring`, exhaustive small vectors."""

from __future__ import annotations

import numpy as np
import pytest

from federated.disclosure.cells import shift_sparse_censoring, small_cells

Y = 365.25
pytestmark = pytest.mark.req("SRS-PRIV-024")


def shifted(times: list[float], events: list[int], labels: list[int] | None = None, k: int = 3
            ) -> tuple[list[float], list[bool]]:
    label = np.zeros(len(times), dtype=np.int64) if labels is None else np.array(labels)
    t, kept = shift_sparse_censoring(np.array(times), np.array(events), label, "year", "day", k)
    return t.tolist(), kept.tolist()


def test_nothing_moves_when_every_censored_cell_holds_k() -> None:
    times = [100.0, 200.0, 300.0, 400.0, 800.0, 900.0, 1000.0]
    assert shifted(times, [0, 0, 0, 1, 0, 0, 0]) == (times, [True] * 7)


def test_a_sparse_censored_cell_moves_to_the_end_of_the_previous_year() -> None:
    # year 1 holds 3 censored (k = 3), year 2 one: she is censored at the end of year 1
    t, kept = shifted([100.0, 200.0, 300.0, 500.0], [0, 0, 0, 0])
    assert t == [100.0, 200.0, 300.0, Y] and all(kept)


def test_moves_cascade_from_the_latest_cell_and_a_cell_moved_before_zero_is_left_out() -> None:
    # year 3: 1 → year 2 (1 + 1 = 2) → year 1 (2 + 0) → left out; year 5: 3 stay
    t, kept = shifted([1000.0, 600.0, 1700.0, 1750.0, 1800.0], [0, 0, 0, 0, 0])
    assert kept == [False, False, True, True, True]
    assert t[2:] == [1700.0, 1750.0, 1800.0]


def test_merging_stops_as_soon_as_the_cell_holds_k() -> None:
    # year 3 (2 patients) joins year 2 (1 patient): 3 = k, so nothing goes further back
    t, kept = shifted([500.0, 800.0, 900.0], [0, 0, 0])
    assert t == [500.0, 2 * Y, 2 * Y] and all(kept)


def test_events_never_move_and_a_sparse_event_cell_remains_for_the_site_to_refuse() -> None:
    times, events = [100.0, 500.0, 600.0, 700.0], [1, 0, 0, 0]
    t, kept = shifted(times, events)
    assert t == times and all(kept)
    label = np.zeros(4, dtype=np.int64)
    assert small_cells(np.array(t), np.array(events), label, "year", "day", 3) == 1  # the lone event


def test_labels_are_cells_of_their_own() -> None:
    # stratum 0 has 3 censored in year 2, stratum 1 has 1 there: only stratum 1's moves
    t, kept = shifted([400.0, 450.0, 500.0, 420.0], [0, 0, 0, 0], labels=[0, 0, 0, 1])
    assert t[:3] == [400.0, 450.0, 500.0] and kept == [True, True, True, False]


def test_afterwards_every_censored_cell_holds_zero_or_k() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        time = rng.uniform(0, 10 * Y, n)
        event = (rng.uniform(size=n) < 0.4).astype(np.int64)
        label = rng.integers(0, 2, n)
        t, kept = shift_sparse_censoring(time, event, label, "year", "day", 5)
        assert np.all(t <= time) and np.all(t[event == 1] == time[event == 1])
        cens = kept & (event == 0)
        steps = np.ceil(np.round(t[cens] / Y, 9))
        _, counts = np.unique(np.column_stack([label[cens], steps]), axis=0, return_counts=True)
        assert np.all(counts >= 5)


def test_k_of_one_changes_nothing() -> None:
    assert shifted([100.0], [0], k=1) == ([100.0], [True])

"""The bootstrap of a site's metrics, all resamples at once, equals the metrics on each resample.

The reference is :func:`federated.site.bootstrap.reference_replicates`: for each resample, the rows
drawn are expanded and :func:`federated.site.performance.metrics` — scikit-survival's own functions
and the Efron calibration slope — is called on them (the computation before issue 18). The fast
path must give the same number to 1e-12 (relative for the calibration slope, an iterate of
Newton–Raphson stopped at a step of 1e-10) and the same refusals (NaN).
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from federated.site.bootstrap import reference_replicates, replicates
from federated.site.data import coarsen
from federated.site.evaluation import _bootstrap
from federated.site.performance import Key, Rows, cox_slope, metrics, monotone_likelihood, truncation
from prognosis import CoxModel

pytestmark = pytest.mark.req("SRS-VAL-008")

GRID = np.linspace(0.0, 1826.25, 51)[1:]
MAX_TIME = 1826.25


@cache
def _demo() -> tuple[CoxModel, tuple[Rows, ...]]:
    """The demo study's model (trained by the federated pipeline) and each demo hospital's rows as a
    site sees them: censored at the study's ``max_time`` and on the day grid."""
    from federated.analyses.runner import train
    from federated.demo_study import HOSPITALS, gbsg2_table, split, write_demo_study

    with tempfile.TemporaryDirectory() as folder:
        study = write_demo_study(Path(folder))
        model = CoxModel.from_artifact(train(study)[1])
    parts = []
    for part in split(gbsg2_table())[:len(HOSPITALS)]:
        time = part["time"].to_numpy(float)
        event = np.where(time > MAX_TIME, 0, part["event"].to_numpy())
        lp = model.lp(part[list(model.names)].to_numpy(float))
        parts.append(Rows.sorted(coarsen(np.minimum(time, MAX_TIME), "day", "day"), event, lp))
    return model, tuple(parts)


def _draws(n: int, b: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([rng.integers(0, n, n) for _ in range(b)])


def assert_same(rows: Rows, model: CoxModel, draws: np.ndarray, min_cell: int = 5) -> dict[Key, np.ndarray]:
    horizons = tuple(sorted(model.horizons))
    tau = truncation(rows, horizons, min_cell)
    keys = list(metrics(rows, model, horizons, GRID, tau, min_cell)[0])
    assert keys, "no metric to compare"
    fast = replicates(rows, model, horizons, GRID, tau, draws, keys, min_cell)
    slow = reference_replicates(rows, model, horizons, GRID, tau, draws, keys, min_cell)
    for key in keys:
        np.testing.assert_array_equal(np.isnan(fast[key]), np.isnan(slow[key]), err_msg=str(key))
        ok = ~np.isnan(slow[key])
        scale = np.maximum(1.0, np.abs(slow[key][ok])) if key[0] == "calibration_slope" else 1.0
        assert np.all(np.abs(fast[key][ok] - slow[key][ok]) <= 1e-12 * scale), key
    return slow


@pytest.mark.parametrize("hospital", [0, 1, 2, 3])
def test_every_replicate_equals_scikit_survival_on_the_same_resample(hospital: int) -> None:
    model, parts = _demo()
    rows = parts[hospital]
    slow = assert_same(rows, model, _draws(rows.n, 25, seed=hospital))
    assert len(slow) == 14 and all(np.isfinite(v).all() for v in slow.values())  # every metric, every time


def test_small_groups_refuse_the_same_replicates() -> None:
    """Subgroup-sized rows (20–45 patients): many replicates cannot compute a metric (a horizon
    leaves the follow-up, no comparable pair, a monotone likelihood…); the refusals must match."""
    model, parts = _demo()
    pick = np.random.default_rng(7)
    refused = 0
    for trial in range(12):
        rows = parts[1].take(np.sort(pick.choice(parts[1].n, int(pick.integers(20, 46)), replace=False)))
        slow = assert_same(rows, model, _draws(rows.n, 30, seed=trial))
        refused += sum(int(np.isnan(v).sum()) for v in slow.values())
    assert refused > 50  # the comparison did exercise the refusals


def test_near_tied_predictions_fall_back_to_the_reference() -> None:
    """Two distinct η within scikit-survival's tie tolerance: its two concordance codes disagree on
    what a tie is, so the replicates are computed the reference way (and are equal)."""
    model, parts = _demo()
    rows = parts[2]
    lp = rows.lp.copy()
    lp[1] = lp[0] + 5e-9
    assert_same(Rows(rows.time, rows.event, lp), model, _draws(rows.n, 5, seed=1))


def test_a_monotone_likelihood_has_no_slope() -> None:
    """Every event has the largest η at risk: γ̂ = +∞ (Bryson & Johnson 1981), refused, not a number
    where Newton–Raphson happened to stop."""
    time = np.arange(1.0, 11.0)
    event = np.array([1, 0, 1, 0, 1, 0, 1, 0, 0, 0])
    lp = -time.copy()  # earlier events, higher η
    assert monotone_likelihood(time, event, lp)
    with pytest.raises(FloatingPointError, match="monotone"):
        cox_slope(time, event, lp)
    lp[[4, 5]] = lp[[5, 4]]  # the event at t = 5 now has a later patient with a higher η at risk
    assert not monotone_likelihood(time, event, lp)
    assert np.isfinite(cox_slope(time, event, lp))


def test_the_site_bootstrap_draws_the_resamples_it_drew_before() -> None:
    """``_bootstrap`` resample b is the b-th ``rng.integers(0, n, n)`` of the block's generator, as
    before issue 18: the same seed gives the same CIs."""
    model, parts = _demo()
    rows = parts[3]
    horizons = tuple(sorted(model.horizons))
    tau = truncation(rows, horizons, 5)
    keys = list(metrics(rows, model, horizons, GRID, tau, 5)[0])
    got = _bootstrap(rows, model, horizons, GRID, tau, 8, np.random.default_rng(11), keys, 5)
    want = reference_replicates(rows, model, horizons, GRID, tau, _draws(rows.n, 8, seed=11), keys, 5)
    for key in keys:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-12, err_msg=str(key))

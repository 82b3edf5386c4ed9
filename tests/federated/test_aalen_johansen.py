"""Federated Aalen–Johansen cumulative incidence from summed site counts equals lifelines on the pooled rows.

Reference data: a seeded synthetic cohort with two competing causes and censoring (continuous
times, no ties), and GBSG2 with each event labelled by tumour grade (three causes from a baseline
covariate, nothing derived from the times; integer days, so tied event times of different causes).
lifelines' AalenJohansenFitter breaks such ties by jittering every event time by up to 1e-4
(``jitter_level``) at random, with a warning. To compare exactly we fit lifelines with a fixed
``seed`` (so the jitter is reproducible), take the jittered durations it actually used (its
``durations`` attribute, in row order) and give those same rows to the sites. The estimator's own
handling of ties (counts per time) is checked on the tied data against scikit-survival and a direct
evaluation of the variance formula, on GBSG2 and on the bone-marrow transplant competing-risks data
scikit-survival ships.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from lifelines import AalenJohansenFitter

from federated.aalen_johansen import CumulativeIncidence, aalen_johansen
from federated.exceptions import DataError
from federated.site.competing_counts import cause_counts
from tests.conftest import split_frame
from tests.federated.site.test_competing_counts import bmt, gbsg2_by_grade, synthetic

SEED = 2024  # lifelines' jitter seed for the tied GBSG2 data


@dataclass(frozen=True)
class Reference:
    """lifelines' output for one cause: times, CIF, variance and its two interval columns."""

    times: np.ndarray
    cif: np.ndarray
    variance: np.ndarray
    first_ci_column: np.ndarray   # lifelines labels it "..._upper_0.95": it holds the lower limit
    second_ci_column: np.ndarray  # "..._lower_0.95": the upper limit


@dataclass(frozen=True)
class Case:
    rows: pd.DataFrame  # time (as lifelines used it), cause
    n_causes: int
    refs: dict[int, Reference]


def _lifelines(time: np.ndarray, cause: np.ndarray, j: int, seed: int | None) -> AalenJohansenFitter:
    return AalenJohansenFitter(calculate_variance=True, seed=seed).fit(time, cause, event_of_interest=j)


def _reference(fit: AalenJohansenFitter) -> Reference:
    ci = fit.confidence_interval_.to_numpy()
    assert fit.confidence_interval_.columns[0].endswith("_upper_0.95")
    return Reference(times=fit.cumulative_density_.index.to_numpy(),
                     cif=fit.cumulative_density_.to_numpy()[:, 0], variance=fit.variance_.to_numpy(),
                     first_ci_column=ci[:, 0], second_ci_column=ci[:, 1])


def _case(table: pd.DataFrame, seed: int | None) -> Case:
    time, cause = table["time"].to_numpy(), table["cause"].to_numpy()
    n_causes = int(cause.max())
    fits = {}
    for j in range(1, n_causes + 1):
        if seed is None:
            fits[j] = _lifelines(time, cause, j, None)
        else:
            with pytest.warns(Warning, match="Tied event times"):
                fits[j] = _lifelines(time, cause, j, seed)
    used = fits[1].durations  # the jittered times when lifelines broke ties, in row order
    assert all(np.array_equal(f.durations, used) for f in fits.values())
    assert np.max(np.abs(used - time)) <= 1e-4
    rows = pd.DataFrame({"time": used, "cause": cause})
    assert not AalenJohansenFitter._check_for_duplicates(rows["time"], rows["cause"])
    return Case(rows, n_causes, {j: _reference(f) for j, f in fits.items()})


@pytest.fixture(scope="module")
def cases(gbsg2_raw: pd.DataFrame) -> dict[str, Case]:
    return {"synthetic": _case(synthetic(), None), "gbsg2-grade": _case(gbsg2_by_grade(gbsg2_raw), SEED)}


def federated(parts: list[pd.DataFrame], grid: np.ndarray, n_causes: int) -> CumulativeIncidence:
    """Each site's counts on the public grid, summed (what secure aggregation releases), then the estimate."""
    counts = [cause_counts(p["time"].to_numpy(), p["cause"].to_numpy(), grid, n_causes) for p in parts]
    at_risk, events = np.sum([c[0] for c in counts], axis=0), np.sum([c[1] for c in counts], axis=0)
    return aalen_johansen(grid, at_risk, events)


def event_grid(rows: pd.DataFrame) -> np.ndarray:
    return np.unique(rows["time"].to_numpy()[rows["cause"].to_numpy() > 0])


def _fit_sites(case: Case, n_sites: int) -> CumulativeIncidence:
    parts = split_frame(case.rows, n_sites, seed=10 + n_sites)
    assert len(parts) == n_sites and len({len(p) for p in parts}) > 1
    return federated(parts, event_grid(case.rows), case.n_causes)


@pytest.mark.req("SRS-MOD-020")
@pytest.mark.parametrize("name", ["synthetic", "gbsg2-grade"])
@pytest.mark.parametrize("n_sites", [2, 3, 4, 5, 6])
def test_cif_equals_lifelines_on_pooled_rows(cases: dict[str, Case], name: str, n_sites: int) -> None:
    case = cases[name]
    curve = _fit_sites(case, n_sites)
    assert curve.n_causes == case.n_causes
    for j, ref in case.refs.items():
        assert np.max(np.abs(curve.cif_at(ref.times)[j - 1] - ref.cif)) <= 1e-10
    assert np.max(np.abs(curve.survival + curve.cif.sum(axis=0) - 1.0)) <= 1e-12


@pytest.mark.req("SRS-MOD-021")
@pytest.mark.parametrize("name", ["synthetic", "gbsg2-grade"])
@pytest.mark.parametrize("n_sites", [2, 3, 4, 5, 6])
def test_variance_and_interval_equal_lifelines(cases: dict[str, Case], name: str, n_sites: int) -> None:
    case = cases[name]
    curve = _fit_sites(case, n_sites)
    for j, ref in case.refs.items():
        assert np.max(np.abs(curve.variance_at(ref.times)[j - 1] - ref.variance)) <= 1e-8
        lower, upper = curve.interval_at(ref.times)
        lo, up = lower[j - 1], upper[j - 1]
        finite = np.isfinite(ref.first_ci_column)
        # lifelines' limits are NaN exactly where the incidence is 0 (time 0, before the first event of j)
        assert np.array_equal(~finite, ref.cif == 0.0) and finite.sum() >= 16
        assert np.max(np.abs(lo - ref.first_ci_column)[finite]) <= 1e-8
        assert np.max(np.abs(up - ref.second_ci_column)[finite]) <= 1e-8
        assert np.all(lo[~finite] == 0.0) and np.all(up[~finite] == 0.0)
    assert np.all(curve.lower <= curve.cif) and np.all(curve.cif <= curve.upper)
    assert np.all(curve.lower >= 0.0) and np.all(curve.upper <= 1.0)


def direct(time: np.ndarray, cause: np.ndarray, n_causes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain loops over the distinct event times: grid, CIF (C, K) and the variance formula (C, K)."""
    grid = np.unique(time[cause > 0])
    n = np.array([float((time >= g).sum()) for g in grid])
    d = np.array([[float(((time == g) & (cause == j)).sum()) for g in grid] for j in range(1, n_causes + 1)])
    d_all = d.sum(axis=0)
    lag, s = np.ones(grid.size), 1.0
    for k in range(grid.size):
        lag[k] = s
        s *= 1.0 - d_all[k] / n[k]
    cif = np.cumsum(lag * d / n, axis=1)
    var = np.zeros_like(cif)
    for j in range(n_causes):
        for m in range(grid.size):
            total = 0.0
            for r in range(m + 1):
                gap = cif[j, m] - cif[j, r]
                if n[r] > d_all[r]:
                    total += gap ** 2 * d_all[r] / (n[r] * (n[r] - d_all[r]))
                total += lag[r] ** 2 * d[j, r] * (n[r] - d[j, r]) / n[r] ** 3
                total -= 2.0 * gap * lag[r] * d[j, r] / n[r] ** 2
            var[j, m] = total
    return grid, cif, var


@pytest.fixture(scope="module")
def tied(gbsg2_raw: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {"gbsg2-grade": gbsg2_by_grade(gbsg2_raw), "bmt": bmt()}


@pytest.mark.req("SRS-MOD-020")
@pytest.mark.parametrize("name", ["gbsg2-grade", "bmt"])
@pytest.mark.parametrize("n_sites", [2, 4, 6])
def test_tied_times_equal_scikit_survival(tied: dict[str, pd.DataFrame], name: str, n_sites: int) -> None:
    from sksurv.nonparametric import cumulative_incidence_competing_risks

    rows = tied[name]
    time, cause = rows["time"].to_numpy(), rows["cause"].to_numpy()
    grid = event_grid(rows)
    assert grid.size < int((cause > 0).sum())  # the data do have tied event times
    curve = federated(split_frame(rows, n_sites, seed=n_sites), grid, int(cause.max()))
    ref_times, ref = cumulative_incidence_competing_risks(cause, time)
    assert np.max(np.abs(curve.cif_at(ref_times) - ref[1:])) <= 1e-10
    assert np.max(np.abs(1.0 - curve.survival_at(ref_times) - ref[0])) <= 1e-10


@pytest.mark.req("SRS-MOD-021")
@pytest.mark.parametrize("name", ["gbsg2-grade", "bmt"])
def test_tied_variance_equals_the_formula(tied: dict[str, pd.DataFrame], name: str) -> None:
    rows = tied[name]
    time, cause = rows["time"].to_numpy(), rows["cause"].to_numpy()
    grid, cif, var = direct(time, cause, int(cause.max()))
    curve = federated(split_frame(rows, 3, seed=3), grid, int(cause.max()))
    assert np.array_equal(curve.times, grid)
    assert np.max(np.abs(curve.cif - cif)) <= 1e-12
    assert np.max(np.abs(curve.variance - var)) <= 1e-12


@pytest.mark.req("SRS-MOD-021")
def test_everyone_at_risk_failing_and_certain_incidence() -> None:
    # at time 5 both patients at risk have an event (of cause 1): lifelines' variance there is 0 · ∞
    time, cause = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 5.0]), np.array([1, 2, 0, 2, 1, 1])
    grid, cif, var = direct(time, cause, 2)
    n, d = cause_counts(time, cause, grid, 2)
    curve = aalen_johansen(grid, n, d)
    assert curve.survival[-1] == 0.0 and np.all(np.isfinite(curve.variance))
    assert np.max(np.abs(curve.variance - var)) <= 1e-15
    for j in (1, 2):
        ref = _reference(_lifelines(time, cause, j, None))
        last = ref.times == 5.0
        assert np.isnan(ref.variance[last]).all()
        assert np.max(np.abs(curve.variance_at(ref.times)[j - 1] - ref.variance)[~last]) <= 1e-8
    # every event of cause 1 and no censoring: F_1 reaches 1, where the interval is [1, 1]
    certain = aalen_johansen(np.array([1.0, 2.0, 3.0]), np.array([3, 2, 1]), np.array([[1, 1, 1]]))
    assert certain.cif[0].tolist() == pytest.approx([1 / 3, 2 / 3, 1.0], abs=1e-15)
    assert certain.lower[0, -1] == 1.0 and certain.upper[0, -1] == 1.0
    assert 0.0 < certain.lower[0, 0] < certain.cif[0, 0] < certain.upper[0, 0] < 1.0


@pytest.mark.req("SRS-MOD-020")
def test_grid_times_without_events_change_nothing(cases: dict[str, Case]) -> None:
    rows = cases["gbsg2-grade"].rows
    time = rows["time"].to_numpy()
    parts = split_frame(rows, 4, seed=4)
    events_only = federated(parts, event_grid(rows), 3)
    # every distinct time (censoring times too) and two times after the last follow-up
    wide_grid = np.concatenate((np.unique(time), [time.max() + 1.0, time.max() + 50.0]))
    wide = federated(parts, wide_grid, 3)
    assert wide.times.size == np.unique(time).size  # the times with nobody at risk are dropped
    at = wide.times
    assert np.max(np.abs(wide.cif - events_only.cif_at(at))) <= 1e-15
    assert np.max(np.abs(wide.variance - events_only.variance_at(at))) <= 1e-12
    assert np.max(np.abs(wide.survival - events_only.survival_at(at))) <= 1e-15


@pytest.mark.req("SRS-MOD-020")
def test_step_function_reading() -> None:
    curve = aalen_johansen(np.array([2.0, 4.0]), np.array([4, 2]), np.array([[1, 0], [0, 1]]))
    cif = curve.cif_at([0.0, 2.0, 3.0, 4.0, 10.0])
    expected = np.array([[0.0, 0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.0, 0.375, 0.375]])
    assert np.max(np.abs(cif - expected)) <= 1e-15
    assert curve.survival_at([1.0, 2.0, 4.0]).tolist() == pytest.approx([1.0, 0.75, 0.375])
    lower, upper = curve.interval_at(1.0)
    assert lower.tolist() == [0.0, 0.0] and upper.tolist() == [0.0, 0.0]
    assert curve.variance_at(1.0).tolist() == [0.0, 0.0]


@pytest.mark.req("SRS-MOD-020")
@pytest.mark.parametrize(("times", "at_risk", "events", "message"), [
    ([1.0, 2.0], [3, 1], [[1, 1], [0, 1]], "more events than patients at risk at time 2"),
    ([1.0, 2.0], [3, 0], [[1, 1]], "more events than patients at risk"),
    ([1.0, 2.0], [3, 1], [[-1, 0]], "non-negative"),
    ([2.0, 1.0], [3, 1], [[1, 0]], "strictly increasing"),
    ([1.0, 2.0], [3, 1], [1, 0], "shapes"),
    ([1.0, 2.0], [3, 1, 0], [[1, 0]], "shapes"),
    ([1.0, np.nan], [3, 1], [[1, 0]], "finite"),
])
def test_inconsistent_counts_are_refused(times: list[float], at_risk: list[int], events: list[list[int]],
                                         message: str) -> None:
    with pytest.raises(DataError, match=message):
        aalen_johansen(np.array(times), np.array(at_risk), np.array(events))


@pytest.mark.req("SRS-MOD-020")
def test_lifelines_breaks_ties_only_between_different_causes() -> None:
    """Why the synthetic data need no jitter and GBSG2 does (the premise of the comparison)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _lifelines(np.array([1.0, 1.0, 2.0]), np.array([1, 1, 2]), 1, None)  # same cause: no jitter
    with pytest.warns(Warning, match="Tied event times"):
        _lifelines(np.array([1.0, 1.0, 2.0]), np.array([1, 2, 2]), 1, 0)

"""Federated Aalen–Johansen over the wire: real sites, secure aggregation, equal to the pooled fit.

Reference data (as in ``tests/federated/test_aalen_johansen.py``): a seeded synthetic cohort with two
competing causes (continuous times, no ties), GBSG2 with each event labelled by tumour grade (three
causes, integer days, tied times) and scikit-survival's bone-marrow transplant data (two causes, 35
patients, ties, events at time 0). lifelines' AalenJohansenFitter breaks ties by a seeded jitter of up
to 1e-4 (with a warning): the sites then hold the jittered times lifelines used, so both fit the same
rows. On a coarse grid the reference is the fit on the pooled times coarsened as the sites coarsen them
(ties kept): scikit-survival's ``cumulative_incidence_competing_risks`` (the incidence, and the log-log
interval with ``var_type="Dinse_Approx"``, which is lifelines' delta-method variance).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import AalenJohansenFitter

from federated.aalen_johansen import aalen_johansen
from federated.analyses.competing import CompetingFit, competing_cohort, fit_aalen_johansen
from federated.analyses.competing_estimator import FederatedAalenJohansen
from federated.disclosure.policy import DisclosurePolicy
from federated.disclosure.rules import SiteFloors
from federated.protocol.coordinator import Coordinator
from federated.protocol.transport import InProcessTransport
from federated.site.competing_counts import cause_counts
from federated.site.data import coarsen
from federated.site.handler import Site
from federated.study import CohortSpec
from tests.conftest import PERMISSIVE, approve, make_sites, split_frame
from tests.federated.site.test_competing_counts import bmt, gbsg2_by_grade, synthetic

pytestmark = pytest.mark.req("SRS-MOD-024")

SEED = 2024  # lifelines' jitter seed for tied data


def lifelines_fits(rows: pd.DataFrame, tied: bool) -> tuple[pd.DataFrame, dict[int, AalenJohansenFitter]]:
    """lifelines on the pooled rows, one fit per cause, and the rows with the times lifelines used."""
    time, cause = rows["time"].to_numpy(float), rows["cause"].to_numpy()
    fits = {}
    for j in range(1, int(cause.max()) + 1):
        if tied:
            with pytest.warns(Warning, match="Tied event times"):
                fits[j] = AalenJohansenFitter(calculate_variance=True, seed=SEED).fit(time, cause, j)
        else:
            fits[j] = AalenJohansenFitter(calculate_variance=True).fit(time, cause, j)
    used = fits[1].durations
    assert all(np.array_equal(f.durations, used) for f in fits.values())
    return pd.DataFrame({"time": used, "cause": cause}), fits


@pytest.fixture(scope="module")
def tables(gbsg2_raw: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, dict[int, AalenJohansenFitter]]]:
    return {"synthetic": lifelines_fits(synthetic(), tied=False),
            "gbsg2-grade": lifelines_fits(gbsg2_by_grade(gbsg2_raw), tied=True)}


def fed_cif(parts: list[pd.DataFrame], cohort: CohortSpec, policy: DisclosurePolicy = PERMISSIVE,
            floors: SiteFloors | None = None, **study: object) -> CompetingFit:
    """The fit over one in-process site per part, secure aggregation on (what every site approved)."""
    sites = make_sites(parts, floors)
    protocol = approve(sites, [cohort], policy, secure=True, **study)
    return fit_aalen_johansen(Coordinator(InProcessTransport(sites), session="aj", protocol=protocol), cohort)


@pytest.mark.parametrize("name", ["synthetic", "gbsg2-grade"])
@pytest.mark.parametrize("n_sites", [2, 3, 4, 5, 6])
def test_exact_grid_equals_lifelines_on_pooled_rows(tables: dict, name: str, n_sites: int) -> None:
    rows, fits = tables[name]
    parts = split_frame(rows, n_sites, seed=20 + n_sites)
    assert len({len(p) for p in parts}) > 1  # uneven sites
    causes = sorted(fits)
    fit = fed_cif(parts, competing_cohort("time", "cause", causes, time_grid="exact"))
    assert fit.secure and fit.sites == tuple(f"site-{i}" for i in range(n_sites)) and not fit.dropped
    assert fit.n == len(rows) and fit.events == tuple(int((rows["cause"] == j).sum()) for j in causes)
    assert fit.time_grid == "exact" and fit.causes == tuple(str(j) for j in causes)
    curve = fit.incidence
    for j, ref in fits.items():
        times = ref.cumulative_density_.index.to_numpy()
        assert np.max(np.abs(curve.cif_at(times)[j - 1] - ref.cumulative_density_.to_numpy()[:, 0])) <= 1e-10
        variance = ref.variance_.to_numpy()
        known = np.isfinite(variance)  # lifelines: NaN where everyone at risk fails (0 · ∞)
        assert known.sum() >= times.size - 1
        assert np.max(np.abs(curve.variance_at(times)[j - 1] - variance)[known]) <= 1e-8
        lower, upper = curve.interval_at(times)
        ci = ref.confidence_interval_.to_numpy()  # lifelines 0.30: lower limit first, named "upper"
        finite = np.isfinite(ci[:, 0])
        assert finite.sum() >= 2
        assert np.max(np.abs(lower[j - 1] - ci[:, 0])[finite]) <= 1e-8
        assert np.max(np.abs(upper[j - 1] - ci[:, 1])[finite]) <= 1e-8
    assert np.max(np.abs(curve.survival + curve.cif.sum(axis=0) - 1.0)) <= 1e-12


@pytest.mark.parametrize("name", ["gbsg2-grade", "bmt"])
@pytest.mark.parametrize("n_sites", [2, 3, 4, 5, 6])
def test_tied_exact_grid_equals_scikit_survival(gbsg2_raw: pd.DataFrame, name: str, n_sites: int) -> None:
    """Tied times kept (no jitter), events at time 0 included (bmt)."""
    from sksurv.nonparametric import cumulative_incidence_competing_risks

    rows = gbsg2_by_grade(gbsg2_raw) if name == "gbsg2-grade" else bmt()
    time, cause = rows["time"].to_numpy(float), rows["cause"].to_numpy()
    causes = sorted(int(c) for c in np.unique(cause) if c > 0)
    assert np.unique(time[cause > 0]).size < int((cause > 0).sum())  # tied event times
    fit = fed_cif(split_frame(rows, n_sites, seed=n_sites), competing_cohort("time", "cause", causes,
                                                                             time_grid="exact"))
    assert fit.secure and len(fit.sites) == n_sites
    ref_times, ref_cif, ref_ci = cumulative_incidence_competing_risks(cause, time, conf_type="log-log",
                                                                      var_type="Dinse_Approx")
    curve = fit.incidence
    assert np.max(np.abs(curve.cif_at(ref_times) - ref_cif[1:])) <= 1e-10
    assert np.max(np.abs(1.0 - curve.survival_at(ref_times) - ref_cif[0])) <= 1e-10
    lower, upper = curve.interval_at(ref_times)
    finite = np.isfinite(ref_ci[1:, 0])  # scikit-survival: NaN where the incidence is 0 (row 0: all causes)
    assert np.max(np.abs(lower - ref_ci[1:, 0])[finite]) <= 1e-8
    assert np.max(np.abs(upper - ref_ci[1:, 1])[finite]) <= 1e-8


def coarse_reference(rows: pd.DataFrame, grid: str, unit: str, max_time: float) -> pd.DataFrame:
    """The pooled rows as every site puts them on ``grid``: censored at ``max_time``, times rounded up."""
    late = rows["time"].to_numpy(float) > max_time
    time = coarsen(np.minimum(rows["time"].to_numpy(float), max_time), grid, unit)
    return pd.DataFrame({"time": time, "cause": np.where(late, 0, rows["cause"].to_numpy())})


@pytest.mark.req("SRS-MOD-025")
@pytest.mark.parametrize(("n_sites", "seed", "dropped"), [(3, 3, ()), (4, 4, ("site-2",))])
def test_coarse_grid_with_k_cells_equals_the_pooled_fit_on_coarsened_times(
        n_sites: int, seed: int, dropped: tuple[str, ...]) -> None:
    """Default rules (k = 5, at least 3 sites): the sites climb from weeks to the rung where each of
    their atoms holds 0 or ≥ 5 patients; a site that accepts none is left out, named; the fit equals
    the pooled fit of the others' rows as they coarsened them."""
    from sksurv.nonparametric import cumulative_incidence_competing_risks

    parts = split_frame(synthetic(n=3000), n_sites, seed=seed)  # time in years, two causes
    cohort = competing_cohort("time", "cause", [1, 2], time_grid="week", time_unit="year", max_time=8.0)
    fit = fed_cif(parts, cohort, policy=DisclosurePolicy(), floors=SiteFloors())
    k = fit.min_cell_count
    assert k == 5 and fit.secure and fit.time_grid == "year"  # climbed from weeks
    assert tuple(fit.dropped) == dropped and all("k-cells" in why for why in fit.dropped.values())
    rows = pd.concat([p for i, p in enumerate(parts) if f"site-{i}" in fit.sites], ignore_index=True)
    pooled = coarse_reference(rows, fit.time_grid, "year", 8.0)
    time, cause = pooled["time"].to_numpy(), pooled["cause"].to_numpy()
    assert fit.n == len(rows) and fit.events == (int((cause == 1).sum()), int((cause == 2).sum()))
    curve = fit.incidence
    # k-cells at the source: every summed cell is 0 or ≥ k, so every event time is released, unmerged
    assert np.array_equal(curve.times, np.unique(time[cause > 0]))
    assert np.all((curve.events == 0) | (curve.events >= k)) and np.all(curve.at_risk >= k)
    ref_times, ref_cif, ref_ci = cumulative_incidence_competing_risks(cause, time, conf_type="log-log",
                                                                      var_type="Dinse_Approx")
    assert np.max(np.abs(curve.cif_at(ref_times) - ref_cif[1:])) <= 1e-10
    lower, upper = curve.interval_at(ref_times)
    finite = np.isfinite(ref_ci[1:, 0])  # scikit-survival: NaN where the incidence is 0
    assert finite.sum() >= 2 * curve.times.size
    assert np.max(np.abs(lower - ref_ci[1:, 0])[finite]) <= 1e-8
    assert np.max(np.abs(upper - ref_ci[1:, 1])[finite]) <= 1e-8
    pooled_fit = aalen_johansen(curve.times, *cause_counts(time, cause, curve.times, 2))
    assert np.max(np.abs(curve.variance - pooled_fit.variance)) <= 1e-12


@pytest.mark.parametrize("name", ["synthetic", "gbsg2-grade"])
def test_estimator_over_three_hospitals_equals_lifelines(tables: dict, name: str) -> None:
    rows, fits = tables[name]
    sites = [Site(f"h{i}", part) for i, part in enumerate(split_frame(rows, 3, seed=8))]
    rules = {"min_cell_count": 1, "min_patients_per_site": 0, "min_events_per_site": 0}
    for j, ref in fits.items():
        aj = FederatedAalenJohansen(time_grid="exact", allow_small_time_cells=True, policy=rules)
        aj.fit_sites(sites, "time", "cause", event_of_interest=j, causes=sorted(fits))
        assert aj.fit_.secure and len(aj.fit_.sites) == 3
        assert list(aj.cumulative_density_.columns) == list(ref.cumulative_density_.columns) == [f"CIF_{j}"]
        times = aj.cumulative_density_.index.to_numpy()
        assert aj.cumulative_density_.index.name == "event_at" and times[0] == 0.0
        theirs = ref.cumulative_density_.reindex(times, method="ffill").to_numpy()[:, 0]
        assert np.max(np.abs(aj.cumulative_density_.to_numpy()[:, 0] - theirs)) <= 1e-10
        variance = ref.variance_.reindex(times, method="ffill").to_numpy()
        known = np.isfinite(variance)
        assert np.max(np.abs(aj.variance_.to_numpy() - variance)[known]) <= 1e-8
        band = ref.confidence_interval_.reindex(times, method="ffill").to_numpy()  # lower, upper (misnamed)
        finite = np.isfinite(band[:, 0])
        assert list(aj.confidence_interval_.columns) == ["AJ_estimate_lower_0.95", "AJ_estimate_upper_0.95"]
        assert np.max(np.abs(aj.confidence_interval_.to_numpy() - band)[finite]) <= 1e-8
        between = np.linspace(0.0, times[-1], 101)  # lifelines has no cumulative_density_at_times
        theirs = ref.cumulative_density_.reindex(between, method="ffill").to_numpy()[:, 0]
        assert np.max(np.abs(aj.cumulative_density_at_times(between).to_numpy() - theirs)) <= 1e-10


def test_local_fit_equals_lifelines(tables: dict) -> None:
    rows, fits = tables["gbsg2-grade"]
    for j, ref in fits.items():
        aj = FederatedAalenJohansen().fit(rows["time"], rows["cause"], event_of_interest=j)
        assert aj.fit_.time_grid == "exact" and not aj.fit_.secure
        times = ref.cumulative_density_.index.to_numpy()
        assert np.max(np.abs(aj.cumulative_density_at_times(times).to_numpy()
                             - ref.cumulative_density_.to_numpy()[:, 0])) <= 1e-10
        variance = ref.variance_.to_numpy()
        known = np.isfinite(variance)
        assert np.max(np.abs(aj.fit_.incidence.variance_at(times)[j - 1] - variance)[known]) <= 1e-8


@pytest.mark.req("SRS-MOD-025")
def test_release_merges_steps_with_fewer_than_k_events_of_a_cause(tables: dict) -> None:
    """On the exact grid (small cells allowed) the released steps each hold 0 or ≥ k events of every
    cause, and the estimates at a released time are those of the unmerged fit."""
    rows, _ = tables["gbsg2-grade"]
    cohort = competing_cohort("time", "cause", [1, 2, 3], time_grid="exact")
    parts = split_frame(rows, 3, seed=4)
    full = fed_cif(parts, cohort).incidence
    k = 5
    fit = fed_cif(parts, cohort, policy=PERMISSIVE.model_copy(update={"min_cell_count": k}),
                  allow_small_time_cells=True)
    curve = fit.incidence
    assert fit.min_cell_count == k and 0 < curve.times.size < full.times.size
    assert np.all((curve.events == 0) | (curve.events >= k)) and np.all(curve.events.sum(axis=0) >= k)
    assert np.all(curve.at_risk >= k)
    idx = np.searchsorted(full.times, curve.times)
    assert np.array_equal(full.times[idx], curve.times)
    assert np.array_equal(curve.cif, full.cif[:, idx])
    assert np.array_equal(curve.variance, full.variance[:, idx])
    prev = np.concatenate(([-1], idx[:-1]))
    for m, (a, b) in enumerate(zip(prev, idx, strict=True)):
        assert np.array_equal(curve.events[:, m], full.events[:, a + 1:b + 1].sum(axis=1))


def test_complete_case_rows_are_left_out_and_counted(tables: dict) -> None:
    """A complete-case study: rows missing their cause are left out at their site and counted (a multiple
    of the site's k, here 1); the fit equals lifelines on the complete rows."""
    rows, _ = tables["synthetic"]
    parts = split_frame(rows, 3, seed=2)
    parts[1] = parts[1].astype({"cause": float})
    parts[1].loc[parts[1].index[:4], "cause"] = np.nan
    cohort = competing_cohort("time", "cause", [1, 2], time_grid="exact", missing="complete-case")
    fit = fed_cif(parts, cohort)
    assert fit.incomplete == {"site-0": 0, "site-1": 4, "site-2": 0}
    complete = pd.concat(parts, ignore_index=True).dropna()
    assert fit.n == len(rows) - 4 == len(complete)
    for j in (1, 2):
        ref = AalenJohansenFitter().fit(complete["time"], complete["cause"].astype(int), j)
        times, theirs = ref.cumulative_density_.index.to_numpy(), ref.cumulative_density_.to_numpy()[:, 0]
        assert np.max(np.abs(fit.incidence.cif_at(times)[j - 1] - theirs)) <= 1e-10

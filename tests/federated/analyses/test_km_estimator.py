"""FederatedKaplanMeier: lifelines' KaplanMeierFitter face, equal to it on the pooled rows."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test
from sklearn.base import clone

from federated.analyses.km_estimator import FederatedKaplanMeier
from federated.exceptions import DataError
from federated.site.handler import Site
from tests.conftest import split_frame

EXACT = 1e-10  # measured: 2e-15
pytestmark = pytest.mark.req("SRS-API-003")


def _assert_equals_lifelines(km: FederatedKaplanMeier, durations: pd.Series, events: pd.Series) -> None:
    """Survival, band and median equal lifelines' at every released time (and at 0)."""
    ref = KaplanMeierFitter().fit(durations, events)
    times = km.survival_function_.index.to_numpy()
    assert km.survival_function_.index.name == "timeline" and times[0] == 0.0
    theirs = ref.survival_function_at_times(times).to_numpy()
    assert np.max(np.abs(km.survival_function_["KM_estimate"].to_numpy() - theirs)) <= EXACT
    assert list(km.confidence_interval_.columns) == list(ref.confidence_interval_.columns)
    band = ref.confidence_interval_.loc[times].to_numpy()
    assert np.max(np.abs(km.confidence_interval_.to_numpy() - band)) <= EXACT
    assert km.median_survival_time_ == ref.median_survival_time_
    grid = np.linspace(0.0, times[-1], 97)  # between the steps too
    assert np.max(np.abs(km.survival_function_at_times(grid).to_numpy()
                         - ref.survival_function_at_times(grid).to_numpy())) <= EXACT


@pytest.mark.parametrize("name", ["rossi", "gbsg2"])
def test_fit_equals_lifelines(request: pytest.FixtureRequest, name: str) -> None:
    df = request.getfixturevalue(name)
    time, event = ("week", "arrest") if name == "rossi" else ("time", "event")
    km = FederatedKaplanMeier().fit(df[time], df[event])
    _assert_equals_lifelines(km, df[time], df[event])
    assert km.event_table_["observed"].sum() == df[event].sum()


def test_fit_sites_on_three_hospitals_equals_pooled_lifelines(gbsg2: pd.DataFrame) -> None:
    sites = [Site(f"h{i}", part) for i, part in enumerate(split_frame(gbsg2, 3, seed=5))]
    km = FederatedKaplanMeier(time_grid="exact", allow_small_time_cells=True,
                              policy={"min_cell_count": 1}).fit_sites(sites, time="time", event="event")
    assert km.fit_.secure and len(km.fit_.sites) == 3
    _assert_equals_lifelines(km, gbsg2["time"], gbsg2["event"])


def test_groups_and_log_rank_equal_lifelines(rossi: pd.DataFrame) -> None:
    sites = [Site(f"h{i}", part) for i, part in enumerate(split_frame(rossi, 3, seed=2))]
    km = FederatedKaplanMeier(group="fin", levels=["0", "1"], time_grid="exact", allow_small_time_cells=True,
                              policy={"min_cell_count": 1}).fit_sites(sites, "week", "arrest")
    for level in ("0", "1"):
        part = rossi[rossi["fin"] == int(level)]
        curve = km.group_survival_functions_[level]
        ref = KaplanMeierFitter().fit(part["week"], part["arrest"])
        theirs = ref.survival_function_at_times(curve.index.to_numpy()).to_numpy()
        assert np.max(np.abs(curve["KM_estimate"].to_numpy() - theirs)) <= EXACT
    a, b = rossi[rossi["fin"] == 0], rossi[rossi["fin"] == 1]
    ref_lr = logrank_test(a["week"], b["week"], a["arrest"], b["arrest"])
    assert km.logrank_ is not None and km.logrank_.df == 1
    assert km.logrank_.statistic == pytest.approx(ref_lr.test_statistic, rel=EXACT)
    assert km.logrank_.p_value == pytest.approx(ref_lr.p_value, rel=EXACT)


@pytest.mark.parametrize("sites", [
    pytest.param("frames", id="list-of-dataframes"),
    pytest.param("one-site", id="a-single-site"),
    pytest.param("path", id="a-path"),
])
def test_anything_but_sites_is_a_type_error_saying_what_is_wanted(rossi: pd.DataFrame, sites: str) -> None:
    parts = split_frame(rossi, 3, seed=1)
    given = {"frames": parts, "one-site": Site("a", parts[0]), "path": "hospital.csv"}[sites]
    wanted = {"frames": "want a list of fedprog.Site objects, got a list holding DataFrame",
              "one-site": "sites is one Site; pass a list of them",
              "path": "want a list of fedprog.Site objects (or a Transport), got str"}[sites]
    with pytest.raises(TypeError, match=re.escape(wanted)):
        FederatedKaplanMeier().fit_sites(given, "week", "arrest")  # type: ignore[arg-type]


@pytest.mark.req("SRS-API-001")
@pytest.mark.parametrize(("settings", "message"), [
    ({"time_grid": "days"}, "time_grid='days': want one of 'auto', 'exact'"),
    ({"group": 1}, "group=1: want None or a column name"),
    ({"policy": {"min_sites": 0}},
     "policy={'min_sites': 0}: min_sites: Input should be greater than or equal to 1"),
    ({"label": ""}, "label='': want a non-empty string"),
])
def test_a_bad_setting_is_refused_quoting_its_value(rossi: pd.DataFrame, settings: dict[str, object],
                                                    message: str) -> None:
    km = FederatedKaplanMeier(**settings)  # type: ignore[arg-type]
    assert clone(km).get_params() == km.get_params()
    with pytest.raises(ValueError, match=re.escape(message)):
        km.fit(rossi["week"], rossi["arrest"])


@pytest.mark.parametrize(("durations", "events", "message"), [
    ([1.0, -2.0, 3.0], [1, 0, 1], "durations: times must be finite and >= 0 (1 are not)"),
    ([1.0, 2.0, 3.0], [1, 2, 1], "event_observed: the event indicator must be boolean or 0/1"),
    ([1.0, 2.0, 3.0], [1, 0], "event_observed has 2 values, durations has 3"),
])
def test_bad_data_is_refused_in_one_line(durations: list[float], events: list[int], message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        FederatedKaplanMeier().fit(durations, events)


def test_every_duration_is_an_event_by_default() -> None:
    km = FederatedKaplanMeier().fit([3.0, 1.0, 2.0, 2.0])
    ref = KaplanMeierFitter().fit([3.0, 1.0, 2.0, 2.0])
    np.testing.assert_allclose(km.survival_function_["KM_estimate"].to_numpy(),
                               ref.survival_function_["KM_estimate"].to_numpy(), rtol=0, atol=EXACT)
    assert km.median_survival_time_ == ref.median_survival_time_ == 2.0


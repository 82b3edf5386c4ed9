"""Federated Kaplan–Meier and log-rank equal lifelines on the pooled data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test

from federated import CohortSpec, fit_km, kaplan_meier, logrank
from federated.exceptions import DataError
from tests.conftest import fed_km, split_frame

pytestmark = pytest.mark.req("SRS-FED-005")


def _check_curve(curve, times: np.ndarray, events: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    kmf = KaplanMeierFitter().fit(times, events)
    ref = kmf.survival_function_at_times(curve.times).to_numpy()
    assert np.max(np.abs(curve.survival - ref)) <= 1e-12
    ci = kmf.confidence_interval_.reindex(curve.times, method="ffill")
    finite = np.isfinite(ci.iloc[:, 0].to_numpy())
    assert finite.sum() >= len(curve.times) - 1
    assert np.max(np.abs(curve.ci_lower - ci.iloc[:, 0].to_numpy())[finite]) <= 1e-6
    assert np.max(np.abs(curve.ci_upper - ci.iloc[:, 1].to_numpy())[finite]) <= 1e-6
    t, e = np.asarray(times), np.asarray(events)
    assert curve.at_risk.tolist() == [int((t >= g).sum()) for g in curve.times]
    assert curve.events.tolist() == [int(((t == g) & (e == 1)).sum()) for g in curve.times]


@pytest.mark.parametrize("n_sites", [2, 4, 6])
def test_km_equals_lifelines(rossi: pd.DataFrame, n_sites: int) -> None:
    fit = fed_km(split_frame(rossi, n_sites, seed=n_sites),
                 CohortSpec(time="week", event="arrest"))
    _check_curve(fit.overall, rossi["week"], rossi["arrest"])
    assert fit.logrank is None and fit.groups == {}
    assert fit.n == len(rossi) and fit.events == int(rossi["arrest"].sum())


@pytest.mark.parametrize(("column", "n_sites"),
                         [("tgrade", 4), ("hormone_therapy", 3), ("postmenopausal", 5)])
def test_grouped_km_and_logrank_equal_lifelines(gbsg2: pd.DataFrame, column: str, n_sites: int) -> None:
    fit = fed_km(split_frame(gbsg2, n_sites, seed=1),
                 CohortSpec(time="time", event="event", partition=column,
                            levels=tuple(sorted(gbsg2[column].astype(str).unique()))))
    for label, curve in fit.groups.items():
        rows = gbsg2[gbsg2[column].astype(str) == label]
        _check_curve(curve, rows["time"], rows["event"])
    ref = multivariate_logrank_test(gbsg2["time"], gbsg2[column], gbsg2["event"])
    assert fit.logrank is not None
    assert fit.logrank.statistic == pytest.approx(ref.test_statistic, rel=1e-9)
    assert fit.logrank.df == gbsg2[column].nunique() - 1
    assert fit.logrank.p_value == pytest.approx(ref.p_value, rel=1e-7)


def test_logrank_many_groups(rossi: pd.DataFrame) -> None:
    fit = fed_km(split_frame(rossi, 3, seed=9),
                 CohortSpec(time="week", event="arrest", partition="prio",
                            levels=tuple(str(v) for v in sorted(rossi["prio"].unique()))))
    ref = multivariate_logrank_test(rossi["week"], rossi["prio"], rossi["arrest"])
    assert fit.logrank is not None
    assert fit.logrank.statistic == pytest.approx(ref.test_statistic, rel=1e-9)


def test_survival_reaching_zero_has_zero_interval() -> None:
    curve = kaplan_meier(np.array([1.0, 2.0]), np.array([3, 1]), np.array([2, 1]))
    assert curve.survival.tolist() == pytest.approx([1 / 3, 0.0])
    assert curve.ci_lower[-1] == 0.0 and curve.ci_upper[-1] == 0.0
    assert np.all(np.isfinite(curve.ci_lower)) and np.all(np.isfinite(curve.ci_upper))


@pytest.mark.req("SRS-FED-006")
def test_logrank_needs_two_groups() -> None:
    with pytest.raises(DataError, match="two groups"):
        logrank(np.array([[5, 4]]), np.array([[1, 1]]))


@pytest.mark.req("SRS-FED-006")
def test_no_events_is_an_error(rossi: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="no events"):
        fed_km([rossi.assign(arrest=0)], CohortSpec(time="week", event="arrest"))


def test_to_dict_has_the_contract_fields(gbsg2_raw: pd.DataFrame) -> None:
    body = fed_km(split_frame(gbsg2_raw, 2, seed=0),
                  CohortSpec(time="time", event="event", partition="tgrade",
                             levels=("1", "2", "3"))).to_dict()
    for key in ("times", "survival", "at_risk", "events", "ci_lower", "ci_upper"):
        assert key in body and all(key in g for g in body["groups"].values())  # type: ignore[union-attr]
    assert set(body["logrank"]) == {"statistic", "df", "p_value"}  # type: ignore[arg-type]


@pytest.mark.req("SRS-FED-013")
@pytest.mark.parametrize(("levels", "secure"), [(("0", "1"), True), (("0", "1", "2"), True),
                                                 (("0", "1", "2"), False), (("9", "0", "1"), True)])
def test_logrank_df_counts_only_groups_with_patients(rossi: pd.DataFrame, levels: tuple[str, ...],
                                                     secure: bool) -> None:
    """A declared level no site holds ("2", "9") leaves df and p as lifelines computes them."""
    fit = fed_km(split_frame(rossi, 3, seed=4),
                 CohortSpec(time="week", event="arrest", partition="fin", levels=levels), secure=secure)
    ref = multivariate_logrank_test(rossi["week"], rossi["fin"], rossi["arrest"])
    assert fit.logrank is not None
    assert ref.degrees_of_freedom == 1 and fit.logrank.df == 1
    assert abs(fit.logrank.statistic - ref.test_statistic) <= 1e-10
    assert abs(fit.logrank.p_value - ref.p_value) <= 1e-10
    assert fit.to_dict()["logrank"]["df"] == 1  # type: ignore[index]


@pytest.mark.req("SRS-FED-013")
def test_logrank_with_an_empty_middle_level_equals_lifelines(gbsg2_raw: pd.DataFrame) -> None:
    """Three groups present, one declared level empty between them: 2 df, lifelines' statistic and p."""
    fit = fed_km(split_frame(gbsg2_raw, 4, seed=2),
                 CohortSpec(time="time", event="event", partition="tgrade", levels=("1", "15", "2", "3")))
    ref = multivariate_logrank_test(gbsg2_raw["time"], gbsg2_raw["tgrade"], gbsg2_raw["event"])
    assert fit.logrank is not None and fit.logrank.df == ref.degrees_of_freedom == 2
    assert abs(fit.logrank.statistic - ref.test_statistic) <= 1e-10
    assert abs(fit.logrank.p_value - ref.p_value) <= 1e-10
    assert fit.groups["15"].times.size == 0  # the empty level's curve is reported, empty


@pytest.mark.req("SRS-FED-013")
def test_logrank_counts_ignore_empty_rows() -> None:
    """The same counts with an all-zero row added: same statistic, one df fewer than rows − 1."""
    n = np.array([[10, 8, 5, 2], [12, 9, 7, 3]])
    d = np.array([[2, 1, 2, 1], [1, 2, 1, 0]])
    base = logrank(n, d)
    padded = logrank(np.vstack([n[:1], np.zeros((1, 4), int), n[1:]]),
                     np.vstack([d[:1], np.zeros((1, 4), int), d[1:]]))
    assert padded == base and base.df == 1
    # lifelines on the patients these counts describe (times 1..4; censored just after the last event)
    times, events, groups = [], [], []
    for g in range(2):
        at_risk = np.append(n[g], 0)
        for k in range(4):
            leaving = at_risk[k] - at_risk[k + 1]
            times += [k + 1.0] * int(leaving)
            events += [1] * int(d[g, k]) + [0] * int(leaving - d[g, k])
            groups += [g] * int(leaving)
    ref = multivariate_logrank_test(times, groups, events)
    assert abs(base.statistic - ref.test_statistic) <= 1e-10 and abs(base.p_value - ref.p_value) <= 1e-10


@pytest.mark.req("SRS-FED-013")
def test_logrank_refuses_when_one_group_holds_patients() -> None:
    with pytest.raises(DataError) as err:
        logrank(np.array([[5, 4], [0, 0], [0, 0]]), np.array([[1, 1], [0, 0], [0, 0]]), ["0", "1", "2"])
    assert str(err.value) == "log-rank needs at least two non-empty groups; level(s) 1, 2 hold no patients"


@pytest.mark.req("SRS-FED-013")
def test_km_with_one_non_empty_level_is_refused(rossi: pd.DataFrame) -> None:
    with pytest.raises(DataError) as err:
        fed_km(split_frame(rossi[rossi["fin"] == 0], 2, seed=1),
               CohortSpec(time="week", event="arrest", partition="fin", levels=("0", "2")))
    assert str(err.value) == "log-rank needs at least two non-empty groups; level(s) 2 hold no patients"


@pytest.mark.req("SRS-FED-014")
def test_fit_km_on_a_list_of_sites_is_a_type_error(rossi: pd.DataFrame) -> None:
    from federated import Site

    sites = [Site(f"s{i}", part) for i, part in enumerate(split_frame(rossi, 2, seed=0))]
    with pytest.raises(TypeError, match=r"^fit_km takes a Coordinator; for in-process sites use "
                                        r"FederatedKaplanMeier\.fit_sites$"):
        fit_km(sites, CohortSpec(time="week", event="arrest"))  # type: ignore[arg-type]

"""Federated cause-specific Cox models over the wire and the absolute risk they combine into.

References: lifelines' CoxPHFitter on the pooled rows with the other causes censored (Putter, Fiocco &
Geskus 2007), converged to 1e-14; ``prognosis.competing.absolute_risk`` from those pooled fits (each
patient's cumulative hazards from lifelines' ``predict_cumulative_hazard``); and, for the reference
patient, the absolute risk summed by hand from the pooled rows' Breslow increments. Data: a seeded
synthetic cohort with two covariate-dependent competing causes (continuous times) and GBSG2 with each
event labelled by tumour grade (three "causes", integer days, tied times: Efron's ties as lifelines).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from sklearn.exceptions import NotFittedError

from federated.analyses.cause_specific import FederatedCauseSpecificCox
from federated.exceptions import DataError
from federated.study import CohortSpec
from prognosis.competing import absolute_risk
from tests.conftest import PERMISSIVE, make_sites, split_frame

pytestmark = pytest.mark.req("SRS-MOD-033")

EXACT = {"time_grid": "exact", "allow_small_time_cells": True, "policy": PERMISSIVE}


def synthetic(n: int = 600, seed: int = 7) -> pd.DataFrame:
    """Two competing causes with exponential cause-specific hazards depending on x1, x2; uniform censoring."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.binomial(1, 0.4, n).astype(float)
    t1 = rng.exponential(1.0 / (0.10 * np.exp(0.5 * x1 - 0.4 * x2)))
    t2 = rng.exponential(1.0 / (0.06 * np.exp(-0.3 * x1 + 0.6 * x2)))
    time = np.minimum.reduce([t1, t2, rng.uniform(0.0, 15.0, n)])
    return pd.DataFrame({"time": time, "cause": np.select([time == t1, time == t2], [1, 2], 0),
                         "x1": x1, "x2": x2})


def gbsg2_grades(gbsg2_raw: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"time": gbsg2_raw["time"].astype(float),
                         "cause": gbsg2_raw["event"] * gbsg2_raw["tgrade"],
                         "x1": gbsg2_raw["age"] / 10.0, "x2": gbsg2_raw["pnodes"].astype(float)})


def pooled_fit(rows: pd.DataFrame, code: int) -> CoxPHFitter:
    """lifelines on the pooled rows: events of ``code``, every other cause censored at its time."""
    frame = rows.assign(event=(rows["cause"] == code).astype(int)).drop(columns="cause")
    return CoxPHFitter().fit(frame, "time", "event", fit_options={"precision": 1e-14, "max_steps": 500})


@pytest.fixture(scope="module")
def tables(gbsg2_raw: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {"synthetic": synthetic(), "gbsg2-grade": gbsg2_grades(gbsg2_raw)}


@pytest.mark.parametrize("name", ["synthetic", "gbsg2-grade"])
@pytest.mark.parametrize("n_sites", [2, 3, 4, 5, 6])
def test_each_cause_and_the_absolute_risk_equal_pooled_lifelines(tables: dict, name: str,
                                                                 n_sites: int) -> None:
    rows = tables[name]
    parts = split_frame(rows, n_sites, seed=40 + n_sites)
    assert len({len(p) for p in parts}) > 1  # uneven sites
    codes = sorted(int(c) for c in np.unique(rows["cause"]) if c > 0)
    csc = FederatedCauseSpecificCox(**EXACT).fit_sites(make_sites(parts), "time", "cause", ["x1", "x2"],
                                                       event_of_interest=codes[0], causes=codes)
    assert csc.causes_ == tuple(str(c) for c in codes) and csc.time_grid_ == "exact"
    refs = {c: pooled_fit(rows, c) for c in codes}
    for c, ref in refs.items():
        fit = csc.fits_[str(c)]
        assert fit.secure and len(fit.sites) == n_sites and fit.n == len(rows)
        assert fit.events == int((rows["cause"] == c).sum())
        assert np.max(np.abs(fit.coef - ref.params_.to_numpy())) <= 1e-6
        assert np.max(np.abs(csc.summary_.loc[str(c), "se(coef)"].to_numpy()
                             - ref.standard_errors_.to_numpy())) <= 1e-6
    patients = rows.iloc[:7]
    horizon = float(np.quantile(rows["time"], 0.6))
    times = np.array([0.25, 0.5, 1.0]) * horizon
    hazards = [refs[c].predict_cumulative_hazard(patients[["x1", "x2"]]) for c in codes]
    grid = hazards[0].index.to_numpy()
    for j, code in enumerate(codes):
        expected = np.column_stack([  # one patient at a time, her own cumulative hazards, η = 0
            absolute_risk([grid] * len(codes), [h.iloc[:, i].to_numpy() for h in hazards],
                          np.zeros((len(codes), 1)), times, j)[0] for i in range(len(patients))]).T
        got = csc.predict_absolute_risk(patients, times, cause=code)
        assert got.shape == (len(patients), times.size)
        assert np.max(np.abs(got - expected)) <= 1e-6


def test_the_reference_patient_by_hand(tables: dict) -> None:
    """At the reference patient (x = 0, η_k = 0): ΔH0_k(u) = d_k(u) / Σ_{t_i ≥ u} exp(β_k·x_i) (no ties),
    S(u−) = exp(−Σ_k H0_k(u−)), F_1(t) = Σ_{u ≤ t} S(u−) ΔH0_1(u) — summed here from the pooled rows."""
    rows = tables["synthetic"]
    csc = FederatedCauseSpecificCox(**EXACT).fit_sites(make_sites(split_frame(rows, 4, seed=9)), "time",
                                                       "cause", ["x1", "x2"], event_of_interest=1,
                                                       causes=[1, 2])
    order = np.argsort(rows["time"].to_numpy())
    t, code = rows["time"].to_numpy()[order], rows["cause"].to_numpy()[order]
    x = rows[["x1", "x2"]].to_numpy()[order]
    jumps = np.zeros((2, t.size))
    for j, c in enumerate(("1", "2")):
        weight = np.exp(x @ csc.fits_[c].coef)
        at_risk = np.cumsum(weight[::-1])[::-1]  # Σ over t_i ≥ t (no ties)
        jumps[j] = np.where(code == j + 1, 1.0 / at_risk, 0.0)
    before = np.concatenate((np.zeros((2, 1)), np.cumsum(jumps, axis=1)[:, :-1]), axis=1)
    cif = np.cumsum(np.exp(-before.sum(axis=0)) * jumps[0])
    times = np.array([1.0, 3.0, 6.0, 10.0])
    expected = cif[np.searchsorted(t, times, side="right") - 1]
    got = csc.predict_absolute_risk(pd.DataFrame({"x1": [0.0], "x2": [0.0]}), times)[0]
    assert np.max(np.abs(got - expected)) <= 1e-8
    assert np.all(np.diff(got) > 0) and got[-1] < 1.0


def test_causes_are_fitted_on_one_rung() -> None:
    """Default rules (k = 5): every cause ends on the same rung of the ladder, over the same sites."""
    from federated.disclosure.policy import DisclosurePolicy
    from federated.site.handler import Site

    parts = split_frame(synthetic(n=3000, seed=3), 3, seed=3)
    csc = FederatedCauseSpecificCox(time_grid="week", time_unit="year", max_time=8.0,
                                    policy=DisclosurePolicy(), shift_sparse_censoring=True)
    csc.fit_sites([Site(f"h{i}", p) for i, p in enumerate(parts)], "time", "cause", ["x1", "x2"],
                  event_of_interest=2, causes=[1, 2])
    grids = {f.time_grid for f in csc.fits_.values()}
    sites = {f.sites for f in csc.fits_.values()}
    assert grids == {csc.time_grid_} and len(sites) == 1 and csc.time_grid_ != "week"


@pytest.mark.req("SRS-MOD-035")
def test_inconsistent_declarations_are_refused(tables: dict) -> None:
    base = {"time": "time", "event": "cause"}
    for bad in ({"cause": "3", "causes": ("1", "2")}, {"cause": "1", "causes": ()},
                {"cause": "0", "causes": ("0", "1")}, {"cause": "1", "causes": ("1", "1")},
                {"causes": ("1", "2")}, {"cause": "1", "causes": ("1",), "partition": "cause"}):
        with pytest.raises(ValueError):
            CohortSpec.model_validate({**base, **bad})
    CohortSpec.model_validate({**base, "cause": "1", "causes": ("1", "2")})
    sites = make_sites(split_frame(tables["synthetic"], 2, seed=1))
    with pytest.raises(DataError, match="event_of_interest=3: want one of the causes"):
        FederatedCauseSpecificCox(**EXACT).fit_sites(sites, "time", "cause", ["x1"], event_of_interest=3,
                                                     causes=[1, 2])
    with pytest.raises(DataError, match="causes=\\[0, 1\\]"):
        FederatedCauseSpecificCox(**EXACT).fit_sites(sites, "time", "cause", ["x1"], event_of_interest=1,
                                                     causes=[0, 1])
    with pytest.raises(NotFittedError):
        FederatedCauseSpecificCox().predict_absolute_risk(np.zeros((1, 1)), [1.0])

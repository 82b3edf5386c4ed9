"""Spline knots placed at quantiles of the securely summed histogram: where they go (known answers and a
slow reference on the pooled rows), the fit at them (equal to lifelines and statsmodels on the pooled rows
with the same basis), what the model records, and the one-line refusals of a study that cannot place them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter

from federated import FederatedCoxPH
from federated.analyses.knots import HARRELL_QUANTILES, place, placed_study
from federated.disclosure.dp import DPSettings
from federated.exceptions import DataError
from federated.study import StudySpec, load_study
from fedprog import FederatedLogisticRegression
from prognosis import CoxModel, InputSpec
from prognosis.design import rcs_basis
from prognosis.inputs import Spline
from tests.conftest import PERMISSIVE, make_sites, split_frame

LO, HI, BINS = 21.0, 80.0, 10  # GBSG2's ages are 21 … 80: nobody is clipped
INPUTS = {"age": InputSpec(min=LO, max=HI, reference=55, spline=Spline(quantiles=4)),
          "pnodes": InputSpec(min=1, max=51, reference=3)}


def reference_knots(values: np.ndarray, k: int, lo: float = LO, hi: float = HI,
                    bins: int = BINS) -> list[float]:
    """The slow, obvious way, from the pooled rows: numpy's histogram of [lo, hi], its quantile with the
    patients spread evenly over each bin (the inverse of its piecewise-linear distribution function),
    and the bin edge nearest that quantile."""
    counts, edges = np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))
    cdf = np.concatenate(([0.0], np.cumsum(counts))) / counts.sum()
    out = []
    for p in HARRELL_QUANTILES[k]:
        j = int(np.searchsorted(cdf, p))  # cdf[j-1] < p <= cdf[j]
        x = edges[j - 1] + (p - cdf[j - 1]) / (cdf[j] - cdf[j - 1]) * (edges[j] - edges[j - 1])
        out.append(float(edges[np.argmin(np.abs(edges - x))]))
    return out


def federated(table: pd.DataFrame, n_sites: int, inputs: dict[str, InputSpec] = INPUTS,
              **kw: object) -> FederatedCoxPH:
    est = FederatedCoxPH(inputs=inputs, policy=PERMISSIVE, time_grid="exact", allow_small_time_cells=True,
                         range_bins=BINS, **kw)  # type: ignore[arg-type]
    return est.fit_sites(make_sites(split_frame(table, n_sites, seed=70 + n_sites)), "time", "event",
                         ["age", "pnodes"])


@pytest.mark.req("SRS-MOD-030")
def test_harrells_quantiles_are_rcspline_evals() -> None:
    # Hmisc::rcspline.eval, nk = 3 … 7 (Harrell 2015, RMS 2nd ed., §2.4.6)
    assert HARRELL_QUANTILES == {3: (0.10, 0.50, 0.90), 4: (0.05, 0.35, 0.65, 0.95),
                                 5: (0.05, 0.275, 0.50, 0.725, 0.95), 6: (0.05, 0.23, 0.41, 0.59, 0.77, 0.95),
                                 7: (0.025, 0.1833, 0.3417, 0.50, 0.6583, 0.8167, 0.975)}


@pytest.mark.req("SRS-MOD-030")
@pytest.mark.parametrize(("name", "counts", "k", "want"), [
    # 100 patients over [0, 100] in 10 bins, 3 in the first, 17 in the second, …: F at the edges is
    # 0, .03, .20, .30, .42, .55, .66, .80, .88, .94, 1 → p .10 → .03 (edge 10), .50 → .55 (50),
    # .90 → .88 (80)
    ("uneven", [0, 3, 17, 10, 12, 13, 11, 14, 8, 6, 6, 0], 3, (10.0, 50.0, 80.0)),
    # 20 of 100 clipped below the range sit at its lower edge: F = .20, .28, …, .84 (80), .93 (90), .96
    # (100; 4 above) → p .10 → .20 (edge 0, the nearest), .50 → .52 (40), .90 → .93 (90)
    ("clipped-below", [20, 8, 8, 8, 8, 8, 8, 8, 8, 9, 3, 4], 3, (0.0, 40.0, 90.0)),
    # 100 patients in 6 bins: F = 0, .05, .27, .50, .72, .95, 1 → five knots on five distinct edges
    ("five-quantiles", [0, 5, 22, 23, 22, 23, 5, 0], 5, (10.0, 20.0, 30.0, 40.0, 50.0)),
])
def test_a_knot_is_the_edge_nearest_the_histograms_quantile(name: str, counts: list[int], k: int,
                                                            want: tuple[float, ...]) -> None:
    lo, hi = 0.0, 10.0 * (len(counts) - 2)
    assert place(np.array(counts), lo, hi, k, "x") == pytest.approx(want)


@pytest.mark.req("SRS-MOD-030")
def test_a_histogram_too_coarse_for_distinct_knots_names_the_input_and_what_to_change() -> None:
    with pytest.raises(DataError, match=r"^age: .*too coarse for 5 distinct knots.*raise range_bins"):
        place(np.array([0, 0, 50, 50, 0]), 0.0, 30.0, 5, "age")
    with pytest.raises(DataError, match="^age: .*holds no patients"):
        place(np.zeros(12), 0.0, 100.0, 4, "age")


@pytest.mark.req("SRS-MOD-030", "SRS-MOD-031")
@pytest.mark.parametrize("n_sites", [2, 3, 4, 5, 6])
def test_knots_at_quantiles_are_the_pooled_ones_and_the_fit_equals_pooled_lifelines(
        gbsg2_raw: pd.DataFrame, n_sites: int) -> None:
    table = gbsg2_raw[["age", "pnodes", "time", "event"]]
    est = federated(table, n_sites)
    age = table["age"].to_numpy(dtype=float)
    knots = reference_knots(age, 4)
    assert est.fit_.secure and est.fit_.converged
    assert list(est.fit_.placed_knots["age"]) == knots
    # the coordinator's summed histogram is the pooled one (no site suppressed a cell: k = 1 here)
    assert np.array_equal(est.fit_.range_counts["age"], np.histogram(age, bins=BINS, range=(LO, HI))[0])
    basis = rcs_basis(age, knots)
    pooled = pd.DataFrame({"age": basis[:, 0], "age'": basis[:, 1], "age''": basis[:, 2],
                           "pnodes": table["pnodes"].astype(float), "time": table["time"],
                           "event": table["event"]})
    ref = CoxPHFitter().fit(pooled, "time", "event", fit_options={"precision": 1e-12})
    assert list(est.params_.index) == list(ref.params_.index)
    assert np.max(np.abs(est.params_.to_numpy() - ref.params_.to_numpy())) <= 1e-6
    assert np.max(np.abs(est.standard_errors_.to_numpy() / ref.standard_errors_.to_numpy() - 1)) <= 1e-5


@pytest.mark.req("SRS-MOD-031")
def test_the_model_records_the_placed_knots_and_predicts_with_them(gbsg2_raw: pd.DataFrame) -> None:
    table = gbsg2_raw[["age", "pnodes", "time", "event"]]
    est = federated(table, 3, horizons=[1826.25])
    knots = reference_knots(table["age"].to_numpy(dtype=float), 4)
    artifact = est.to_artifact()
    assert artifact["inputs"][0]["spline"] == {"knots": knots, "quantiles": 4}
    model = CoxModel.from_artifact(artifact)
    assert model.inputs[0].knots == knots
    X = table[["age", "pnodes"]].to_numpy(dtype=float)
    assert np.max(np.abs(model.lp(X) - est.predict(X))) <= 1e-10
    # a declared spline is recorded as it was before quantiles existed: {knots}
    declared = {**INPUTS, "age": InputSpec(min=LO, max=HI, reference=55, spline=Spline(knots=knots))}
    same = federated(table, 3, inputs=declared, horizons=[1826.25])
    assert same.to_artifact()["inputs"][0]["spline"] == {"knots": knots}
    assert np.max(np.abs(same.params_.to_numpy() - est.params_.to_numpy())) <= 1e-12


@pytest.mark.req("SRS-MOD-031")
def test_a_logistic_fit_with_knots_at_quantiles_equals_pooled_statsmodels(gbsg2: pd.DataFrame) -> None:
    inputs = {"age": InputSpec(min=LO, max=HI, reference=55, spline=Spline(quantiles=3))}
    lr = FederatedLogisticRegression(horizon=1826.25, policy=PERMISSIVE, inputs=inputs)  # range_bins 10
    lr.fit_sites(make_sites(split_frame(gbsg2, 4, seed=9)), "tgrade", ["age", "pnodes"])
    knots = reference_knots(gbsg2["age"].to_numpy(dtype=float), 3)
    assert list(lr.fit_.placed_knots["age"]) == knots
    basis = rcs_basis(gbsg2["age"].to_numpy(), knots)
    X = pd.DataFrame({"age": basis[:, 0], "age'": basis[:, 1], "pnodes": gbsg2["pnodes"].astype(float)})
    ref = sm.GLM(gbsg2["tgrade"].astype(float), sm.add_constant(X),
                 family=sm.families.Binomial()).fit(tol=1e-13)
    assert np.max(np.abs(lr.coef_[0] - ref.params.iloc[1:].to_numpy())) <= 1e-6
    assert lr.to_artifact()["inputs"][0]["spline"] == {"knots": knots, "quantiles": 3}


@pytest.mark.req("SRS-MOD-030")
def test_a_fit_on_a_histogram_too_coarse_stops_with_one_line(gbsg2_raw: pd.DataFrame) -> None:
    table = gbsg2_raw[["age", "pnodes", "time", "event"]]
    est = FederatedCoxPH(inputs=INPUTS, policy=PERMISSIVE, time_grid="exact", allow_small_time_cells=True,
                         range_bins=4)  # F at the edges 21, 35.75, 50.5, 65.25, 80: .35 and .65 meet at 50.5
    with pytest.raises(DataError, match=r"^age: the summed histogram of its 4 bins is too coarse") as err:
        est.fit_sites(make_sites(split_frame(table, 3, seed=1)), "time", "event", ["age", "pnodes"])
    assert "\n" not in str(err.value)


@pytest.mark.req("SRS-MOD-030")
def test_a_study_declares_how_many_knots_not_where(tmp_path: Path) -> None:
    path = tmp_path / "study.toml"
    path.write_text('event = "event"\ntime = "time"\ncovariates = ["age"]\n'
                    '[inputs.age]\nmin = 21\nmax = 80\nspline = {quantiles = 4}\n')
    study = load_study(path)
    cohort = study.cohort()
    assert cohort.knot_quantiles == {"age": 4} and cohort.splines == {}
    placed = placed_study(study, {"age": (27.0, 45.0, 56.0, 68.0)})
    assert placed.cohort().splines == {"age": (27.0, 45.0, 56.0, 68.0)}
    assert placed.cohort().knot_quantiles == {"age": 4}
    for text, want in [("[inputs.age]\nspline = {quantiles = 4}\n", "declare min and max"),
                       ("range_bins = 2\n[inputs.age]\nmin = 21\nmax = 80\nspline = {quantiles = 4}\n",
                        "raise range_bins"),
                       ("[inputs.age]\nmin = 21\nmax = 80\nspline = {quantiles = 8}\n",
                        "less than or equal to 7"),
                       ("[inputs.age]\nmin = 21\nmax = 80\nspline = {knots = [30, 50, 70], quantiles = 4}\n",
                        "3 knots placed at 4 quantiles")]:
        path.write_text('event = "event"\ntime = "time"\ncovariates = ["age"]\n' + text)
        with pytest.raises(DataError, match=want) as err:
            load_study(path)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="linear covariates only"):
        StudySpec(event="event", time="time", covariates=["age"], inputs=INPUTS, dp=DPSettings(enabled=True))

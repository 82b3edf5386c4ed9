"""Federated Cox with a design (splines, dummy-coded categories, interactions) equals the pooled
lifelines fit on the same columns, and its released model predicts what lifelines predicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from statsmodels.duration.hazard_regression import PHReg

from federated import FederatedCoxPH
from prognosis import Coding, CoxModel, InputSpec
from prognosis.design import rcs_basis
from prognosis.inputs import Spline
from tests.conftest import PERMISSIVE, make_sites, split_frame

KNOTS = (35.0, 45.0, 55.0, 65.0)
GRADES = [Coding(system="urn:test:grade", code=c, display=f"grade {c}") for c in ("1", "2", "3")]
INPUTS = {
    "age": InputSpec(min=21, max=80, reference=55, spline=Spline(knots=list(KNOTS))),
    "grade": InputSpec(kind="category", categories=GRADES, min=0, max=2, reference=1),
    "pnodes": InputSpec(min=1, max=51, reference=3),
    "hormone_therapy": InputSpec(kind="boolean", min=0, max=1, reference=0),
}
COVARIATES = list(INPUTS)
#: lifelines' Newton-Raphson does not converge once age's spline columns interact with hormone therapy
#: (it stops 16.8 log-likelihood units short; statsmodels' PHReg agrees with us there to 2e-12), so the
#: lifelines comparison interacts grade, and the spline interaction is compared with statsmodels
INTERACTIONS = [("grade", "hormone_therapy")]
SPLINE_INTERACTION = [("age", "hormone_therapy"), ("grade", "hormone_therapy")]


@pytest.fixture(scope="module")
def table(gbsg2_raw: pd.DataFrame) -> pd.DataFrame:
    """GBSG2 with grade as the 0-based index of 1/2/3 (a category the study dummy-codes)."""
    return pd.DataFrame({"age": gbsg2_raw["age"], "grade": gbsg2_raw["tgrade"] - 1,
                         "pnodes": gbsg2_raw["pnodes"], "hormone_therapy": gbsg2_raw["hormone_therapy"],
                         "time": gbsg2_raw["time"], "event": gbsg2_raw["event"]})


def pooled_columns(df: pd.DataFrame, interactions: list[tuple[str, str]] = INTERACTIONS) -> pd.DataFrame:
    """The design columns written out by hand from their definitions (not by prognosis.design)."""
    basis = rcs_basis(df["age"].to_numpy(), KNOTS)
    h = df["hormone_therapy"].to_numpy(dtype=float)
    out = pd.DataFrame({"age": basis[:, 0], "age'": basis[:, 1], "age''": basis[:, 2],
                        "grade=2": (df["grade"] == 1).astype(float),
                        "grade=3": (df["grade"] == 2).astype(float),
                        "pnodes": df["pnodes"].astype(float), "hormone_therapy": h})
    for col in ("age", "age'", "age''") if ("age", "hormone_therapy") in interactions else ():
        out[f"{col}:hormone_therapy"] = out[col] * h
    for col in ("grade=2", "grade=3"):
        out[f"{col}:hormone_therapy"] = out[col] * h
    out["time"], out["event"] = df["time"].to_numpy(), df["event"].to_numpy()
    return out


def lifelines_fit(df: pd.DataFrame) -> CoxPHFitter:
    return CoxPHFitter().fit(pooled_columns(df), "time", "event", fit_options={"precision": 1e-12})


def federated(df: pd.DataFrame, n_sites: int, interactions: list[tuple[str, str]] = INTERACTIONS
              ) -> FederatedCoxPH:
    """The federated fit over ``n_sites`` uneven in-process hospitals, secure aggregation on."""
    est = FederatedCoxPH(inputs=INPUTS, interactions=interactions, policy=PERMISSIVE, time_grid="exact",
                         allow_small_time_cells=True, horizons=[1095.75, 1826.25])
    return est.fit_sites(make_sites(split_frame(df, n_sites, seed=40 + n_sites)), "time", "event", COVARIATES)


@pytest.mark.req("SRS-MOD-001", "SRS-MOD-002", "SRS-MOD-003")
@pytest.mark.parametrize("n_sites", [2, 3, 4, 5, 6])
def test_a_spline_dummy_and_interaction_fit_equals_pooled_lifelines(table: pd.DataFrame,
                                                                    n_sites: int) -> None:
    est = federated(table, n_sites)
    ref = lifelines_fit(table)
    assert est.fit_.secure and est.fit_.converged
    assert list(est.params_.index) == list(ref.params_.index)
    assert np.max(np.abs(est.params_.to_numpy() - ref.params_.to_numpy())) <= 1e-6
    assert np.max(np.abs(est.standard_errors_.to_numpy() / ref.standard_errors_.to_numpy() - 1)) <= 1e-5
    assert est.log_likelihood_ == pytest.approx(ref.log_likelihood_, abs=1e-8)


@pytest.mark.req("SRS-MOD-001", "SRS-MOD-003")
@pytest.mark.parametrize("n_sites", [2, 6])
def test_a_spline_interaction_fit_equals_pooled_statsmodels(table: pd.DataFrame, n_sites: int) -> None:
    est = federated(table, n_sites, SPLINE_INTERACTION)
    pooled = pooled_columns(table, SPLINE_INTERACTION)
    ref = PHReg(pooled["time"], pooled.drop(columns=["time", "event"]), status=pooled["event"],
                ties="efron").fit()
    assert list(est.params_.index) == list(pooled.columns[:-2])
    assert np.max(np.abs(est.params_.to_numpy() - ref.params)) <= 1e-6
    assert np.max(np.abs(est.standard_errors_.to_numpy() / ref.bse - 1)) <= 1e-5
    assert est.log_likelihood_ == pytest.approx(ref.llf, abs=1e-8)


@pytest.mark.req("SRS-MOD-001", "SRS-MOD-002", "SRS-MOD-003", "SRS-MOD-004")
def test_the_released_model_records_its_design_and_predicts_what_lifelines_predicts(
        table: pd.DataFrame) -> None:
    est = federated(table, 4)
    art = est.to_artifact()
    model = CoxModel.from_artifact(art)
    age = next(i for i in art["inputs"] if i["name"] == "age")
    grade = next(i for i in art["inputs"] if i["name"] == "grade")
    assert age["spline"] == {"knots": list(KNOTS)} and "ordinal" not in grade
    assert art["interactions"] == [list(p) for p in INTERACTIONS]
    assert list(art["coefficients"]) == list(model.columns) and len(art["covariance"]) == 9
    assert model.names == tuple(COVARIATES)
    assert model.effects == (*COVARIATES, "grade:hormone_therapy")
    ref = lifelines_fit(table)
    X = table[COVARIATES].to_numpy(dtype=float)[:200]
    ours = model.predict_survival(X, [1095.75, 1826.25])
    theirs = ref.predict_survival_function(pooled_columns(table.iloc[:200]), times=[1095.75,
                                                                                    1826.25]).to_numpy().T
    assert np.max(np.abs(ours - theirs)) <= 1e-6
    parts = model.contributions(X)
    assert parts.shape == (200, 5)
    np.testing.assert_allclose(parts.sum(axis=1), model.lp(X), rtol=1e-12, atol=1e-12)
    # the reference patient's design row is the centre: her every contribution is 0
    reference = np.array([[55.0, 1.0, 3.0, 0.0]])
    np.testing.assert_allclose(model.contributions(reference), 0.0, atol=1e-12)


@pytest.mark.req("SRS-MOD-002")
def test_an_ordinal_category_keeps_one_coefficient_and_says_so(gbsg2: pd.DataFrame) -> None:
    size = InputSpec(kind="category", ordinal=True, min=0, max=2, reference=1,
                     categories=[Coding(system="urn:t", code=c, display=c) for c in ("<=20", "20-50", ">50")])
    est = FederatedCoxPH(inputs={"tsize": size}, policy=PERMISSIVE, time_grid="exact",
                         allow_small_time_cells=True,
                         horizons=[1000.0])
    est.fit_sites(make_sites(split_frame(gbsg2, 3, seed=5)), "time", "event", ["tsize", "pnodes"])
    art = est.to_artifact()
    assert list(art["coefficients"]) == ["tsize", "pnodes"]
    assert art["inputs"][0]["ordinal"] is True
    ref = CoxPHFitter().fit(gbsg2[["tsize", "pnodes", "time", "event"]], "time", "event",
                            fit_options={"precision": 1e-12})
    assert np.max(np.abs(est.params_.to_numpy() - ref.params_.to_numpy())) <= 1e-6

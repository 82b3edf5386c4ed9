"""Federated logistic regression over real sites (secure aggregation on) equals the pooled binomial
GLM of statsmodels, with a design too; its artifact (kind "logistic") predicts what statsmodels does;
and a binary outcome is never made by cutting censored survival times at a horizon."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression

from federated.study import StudySpec
from fedprog import FederatedLogisticRegression
from prognosis import CoxModel, ModelError
from prognosis.design import rcs_basis
from prognosis.inputs import Coding, InputSpec, Spline
from prognosis.logistic import LogisticModel
from tests.conftest import PERMISSIVE, make_sites, split_frame

COVARIATES = ["age", "pnodes", "progrec", "estrec", "hormone_therapy"]
HORIZON = 1826.25


def glm(df: pd.DataFrame, X: pd.DataFrame) -> sm.GLM:
    return sm.GLM(df["tgrade"].astype(float), sm.add_constant(X.astype(float)),
                  family=sm.families.Binomial()).fit(tol=1e-13)


@pytest.mark.req("SRS-MOD-015")
@pytest.mark.parametrize("n_sites", [2, 3, 4, 5, 6])
def test_a_logistic_fit_over_the_sites_equals_pooled_statsmodels(gbsg2: pd.DataFrame, n_sites: int) -> None:
    lr = FederatedLogisticRegression(horizon=HORIZON, policy=PERMISSIVE)
    lr.fit_sites(make_sites(split_frame(gbsg2, n_sites, seed=60 + n_sites)), "tgrade", COVARIATES)
    ref = glm(gbsg2, gbsg2[COVARIATES])
    assert lr.fit_.secure and lr.fit_.fit.converged
    assert lr.fit_.sites == tuple(f"site-{i}" for i in range(n_sites))
    assert np.max(np.abs(lr.intercept_ - ref.params.iloc[:1].to_numpy())) <= 1e-6
    assert np.max(np.abs(lr.coef_[0] - ref.params.iloc[1:].to_numpy())) <= 1e-6
    assert np.max(np.abs(lr.fit_.fit.se - ref.bse.to_numpy())) <= 1e-6
    assert lr.log_likelihood_ == pytest.approx(ref.llf, abs=1e-8)
    assert lr.log_likelihood_null_ == pytest.approx(ref.llnull, abs=1e-8)
    assert np.max(np.abs(lr.predict_proba(gbsg2[COVARIATES])[:, 1]
                         - ref.predict(sm.add_constant(gbsg2[COVARIATES].astype(float))))) <= 1e-10


@pytest.mark.req("SRS-MOD-015", "SRS-MOD-001", "SRS-MOD-002", "SRS-MOD-003")
def test_a_logistic_fit_with_a_spline_dummies_and_an_interaction_equals_pooled_statsmodels(
        gbsg2: pd.DataFrame) -> None:
    sizes = [Coding(system="urn:t", code=c, display=c) for c in ("<=20", "20-50", ">50")]
    inputs = {"age": InputSpec(min=21, max=80, reference=55, spline=Spline(knots=[40, 50, 60])),
              "tsize": InputSpec(kind="category", categories=sizes, min=0, max=2, reference=1)}
    lr = FederatedLogisticRegression(horizon=HORIZON, policy=PERMISSIVE, inputs=inputs,
                                     interactions=[("tsize", "hormone_therapy")])
    lr.fit_sites(make_sites(split_frame(gbsg2, 4, seed=9)), "tgrade", ["age", "tsize", "hormone_therapy"])
    basis = rcs_basis(gbsg2["age"].to_numpy(), [40, 50, 60])
    X = pd.DataFrame({"age": basis[:, 0], "age'": basis[:, 1], "tsize=20-50": gbsg2["tsize"] == 1,
                      "tsize=>50": gbsg2["tsize"] == 2, "hormone_therapy": gbsg2["hormone_therapy"]})
    X["tsize=20-50:hormone_therapy"] = X["tsize=20-50"] * X["hormone_therapy"]
    X["tsize=>50:hormone_therapy"] = X["tsize=>50"] * X["hormone_therapy"]
    ref = glm(gbsg2, X)
    assert list(lr.params_.index[1:]) == list(X.columns)
    assert np.max(np.abs(lr.coef_[0] - ref.params.iloc[1:].to_numpy())) <= 1e-6
    assert np.max(np.abs(lr.fit_.fit.se - ref.bse.to_numpy())) <= 1e-6


@pytest.mark.req("SRS-MOD-015", "SRS-MOD-011")
def test_a_ridge_logistic_fit_over_the_sites_equals_scikit_learn(gbsg2: pd.DataFrame) -> None:
    X = gbsg2[COVARIATES].astype(float)
    Z = (X - X.mean()) / X.std()  # standardised, where lbfgs reaches the optimum (see test_logistic_math)
    frame = pd.concat([Z, gbsg2["tgrade"]], axis=1)
    lr = FederatedLogisticRegression(horizon=HORIZON, policy=PERMISSIVE, penalty=10.0)
    lr.fit_sites(make_sites(split_frame(frame, 3, seed=2)), "tgrade", COVARIATES)
    ref = LogisticRegression(C=0.1, l1_ratio=0.0, tol=1e-12, max_iter=10_000).fit(Z, gbsg2["tgrade"])
    assert np.max(np.abs(lr.coef_ - ref.coef_)) <= 1e-6
    assert abs(lr.intercept_[0] - ref.intercept_[0]) <= 1e-6


@pytest.mark.req("SRS-MOD-016")
def test_a_binary_outcome_is_never_made_by_cutting_survival_times_at_a_horizon() -> None:
    with pytest.raises(ValidationError, match="takes a recorded binary outcome .* no time column: cutting "
                                              "censored survival times at a horizon"):
        StudySpec(model="logistic", time="time", event="event", covariates=["age"], horizons=[HORIZON])
    with pytest.raises(ValidationError, match="the one horizon its binary outcome was recorded at"):
        StudySpec(model="logistic", event="event", covariates=["age"], horizons=[365.25, HORIZON])
    with pytest.raises(ValidationError, match="time: a Cox model needs the time column"):
        StudySpec(event="event", covariates=["age"])


@pytest.mark.req("SRS-MOD-017", "SRS-MOD-013")
def test_the_logistic_artifact_is_sealed_and_predicts_what_statsmodels_predicts(gbsg2: pd.DataFrame) -> None:
    inputs = {"age": InputSpec(min=21, max=80, reference=55), "pnodes": InputSpec(min=1, max=51, reference=3)}
    lr = FederatedLogisticRegression(horizon=HORIZON, policy=PERMISSIVE, inputs=inputs, model_id="grade-3")
    lr.fit_sites(make_sites(split_frame(gbsg2, 3, seed=4)), "tgrade", ["age", "pnodes"])
    art = lr.to_artifact()
    assert art["kind"] == "logistic" and art["outcome"]["horizons"] == [HORIZON]
    assert list(art["coefficients"]) == ["(intercept)", "age", "pnodes"] and len(art["covariance"]) == 3
    assert art["logistic"]["center"] == [55.0, 3.0] and "baseline_survival" not in art
    model = LogisticModel.from_artifact(art)
    ref = glm(gbsg2, gbsg2[["age", "pnodes"]])
    X = gbsg2[["age", "pnodes"]].to_numpy(dtype=float)
    p, lo, hi = model.probability_with_interval(model.design_matrix(X))
    frame = ref.get_prediction(sm.add_constant(X)).summary_frame(alpha=0.05)
    assert np.max(np.abs(p - frame["mean"].to_numpy())) <= 1e-8
    assert np.max(np.abs(lo - frame["mean_ci_lower"].to_numpy())) <= 1e-8
    assert np.max(np.abs(hi - frame["mean_ci_upper"].to_numpy())) <= 1e-8
    # the intercept is the reference patient's log-odds (age 55, 3 nodes), never a data mean
    assert art["coefficients"]["(intercept)"] == pytest.approx(ref.params @ [1.0, 55.0, 3.0], abs=1e-8)
    with pytest.raises(ModelError, match="kind 'logistic' is not a Cox model"):
        CoxModel.from_artifact(art)
    forged = {**art, "coefficients": {**art["coefficients"], "pnodes": 0.5}}
    with pytest.raises(ModelError, match="sha256 mismatch"):
        LogisticModel.from_artifact(forged)

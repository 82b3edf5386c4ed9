"""One released-model interface: an artifact is read as the model object of its kind, and the Cox and
logistic models state the same facts and per-effect contributions from one shared implementation."""

from __future__ import annotations

import numpy as np
import pytest

from prognosis import CoxModel, LogisticModel, ModelError, Released, load_released
from prognosis.cox import seal
from tests.device.logistic_model import COVARIATES, MODEL_ID, glm, glm_prediction, logistic_artifact, table
from tests.device.spline_model import spline_artifact

pytestmark = pytest.mark.req("SRS-MOD-026")

SHARED = ("names", "columns", "effects", "reference", "ref", "horizon_text", "design_matrix", "log_ratio",
          "se_log_ratio", "contributions")


def test_an_artifact_is_read_as_the_model_of_its_kind() -> None:
    logistic, cox = load_released(logistic_artifact()), load_released(spline_artifact())
    assert isinstance(logistic, LogisticModel) and isinstance(cox, CoxModel)
    assert logistic.to_artifact() == logistic_artifact() and cox.to_artifact() == spline_artifact()
    forged = {**logistic_artifact(), "model_id": "other"}
    with pytest.raises(ModelError, match="sha256 mismatch"):
        load_released(forged)
    two = {"name": "x", "time_unit": "day", "horizons": [1.0, 2.0]}
    broken = seal({**logistic_artifact(), "outcome": two})
    with pytest.raises(ModelError, match="outcome.horizons: a logistic model states the one horizon"):
        load_released(broken)


def test_both_kinds_share_one_implementation_of_the_facts() -> None:
    for name in SHARED:  # defined once, in prognosis.released, and not redefined by either model
        assert name in vars(Released) and name not in vars(CoxModel) and name not in vars(LogisticModel), name


def test_a_federated_logistic_model_states_the_device_facing_facts() -> None:
    model = load_released(logistic_artifact())
    assert isinstance(model, LogisticModel)
    assert model.names == COVARIATES and model.ref == f"{MODEL_ID}@1"
    assert model.sha256 == logistic_artifact()["sha256"]
    assert model.columns == ("age", "age'", "pnodes", "progrec", "hormone_therapy", "postmenopausal",
                             "hormone_therapy:postmenopausal")
    assert model.effects == (*COVARIATES, "hormone_therapy:postmenopausal")
    assert model.outcome == "grade 3 tumour" and model.horizons == (1.0,) and model.time_unit == "day"
    assert model.horizon_text(1.0) == "1 day" and model.stratified is False
    np.testing.assert_array_equal(model.reference, [55.0, 3.0, 30.0, 0.0, 1.0])  # the study's reference


def test_probability_from_raw_inputs_equals_statsmodels_and_contributions_sum_per_effect() -> None:
    model = load_released(logistic_artifact())
    assert isinstance(model, LogisticModel)
    X = table()[list(COVARIATES)].to_numpy(dtype=float)
    prob, lower, upper = model.probability_with_interval(X)
    ref = glm_prediction(X)
    assert np.max(np.abs(prob - ref["mean"].to_numpy())) <= 1e-8
    assert np.max(np.abs(lower - ref["mean_ci_lower"].to_numpy())) <= 1e-8
    assert np.max(np.abs(upper - ref["mean_ci_upper"].to_numpy())) <= 1e-8
    parts = model.contributions(X)
    assert parts.shape == (len(X), len(model.effects))
    assert np.max(np.abs(parts.sum(axis=1) - (model.lp(X) - model.intercept))) <= 1e-12
    # each effect sums its own columns: age's two spline columns, the interaction its product column
    b = glm().params
    age = b["age"] * (X[:, 0] - 55.0) + b["age'"] * (model.design_matrix(X)[:, 1] - model.center[1])
    np.testing.assert_allclose(parts[:, 0], age, rtol=0, atol=1e-6)
    both = b["hormone_therapy:postmenopausal"] * X[:, 3] * X[:, 4]
    np.testing.assert_allclose(parts[:, -1], both, atol=1e-6)
    assert np.all(model.contributions(model.reference[None, :]) == 0.0)
    # the standard error of the log odds ratio leaves the intercept out; that of the log-odds keeps it
    assert np.all(model.se_log_ratio(model.reference[None, :]) == 0.0)
    se_intercept = np.sqrt(model.covariance[0, 0])
    assert model.se_lp(model.reference[None, :])[0] == pytest.approx(se_intercept, rel=1e-12)


def test_a_cox_model_keeps_its_predictions_through_the_shared_code() -> None:
    cox = load_released(spline_artifact())
    assert isinstance(cox, CoxModel)
    X = np.repeat(cox.reference[None, :], 5, axis=0)
    X[:, 0] = [30, 45, 55, 65, 78]
    Z = cox.design_matrix(X) - cox.center
    np.testing.assert_array_equal(cox.lp(X), Z @ cox.beta)
    np.testing.assert_array_equal(cox.log_ratio(X), cox.lp(X))
    np.testing.assert_allclose(cox.contributions(X).sum(axis=1), cox.lp(X), rtol=0, atol=1e-12)
    se = np.sqrt(np.einsum("ij,jk,ik->i", Z, cox.covariance, Z))
    np.testing.assert_allclose(cox.se_lp(X), se, rtol=1e-12)


def test_a_logistic_model_built_from_arrays_takes_its_columns_as_inputs() -> None:
    model = LogisticModel.from_fit(["a", "b"], [0.5, 1.0, -2.0], np.eye(3) * 0.01, [1.0, 2.0])
    assert model.names == model.columns == model.effects == ("a", "b") and model.design is None
    assert model.intercept == pytest.approx(0.5 + 1.0 - 4.0)
    with pytest.raises(ModelError, match="not read from an artifact"):
        model.to_artifact()
    with pytest.raises(ValueError, match=r"X must have shape \(n, 2\)"):
        model.lp(np.zeros((1, 3)))

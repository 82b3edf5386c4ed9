"""Federated Cox PH equals the pooled fit of lifelines (Efron) and scikit-survival (Breslow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from federated import CohortSpec, DisclosurePolicy, FederatedCoxPH, Site, fit_cox
from federated.exceptions import DataError, SingularDesignError, SiteError
from tests.conftest import (
    GBSG2_COVARIATES,
    PERMISSIVE,
    PERMISSIVE_FLOORS,
    ROSSI_COVARIATES,
    approve,
    fed_cox,
    split_frame,
)

COHORTS = {
    "rossi": ("week", "arrest", ROSSI_COVARIATES),
    "gbsg2": ("time", "event", GBSG2_COVARIATES),
}


def _cohort(name: str, **kw: object) -> CohortSpec:
    time, event, cov = COHORTS[name]
    return CohortSpec(time=time, event=event, covariates=cov, **kw)  # type: ignore[arg-type]


def _frame(request: pytest.FixtureRequest, name: str) -> pd.DataFrame:
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def _lifelines(df: pd.DataFrame, name: str, **kw: object) -> CoxPHFitter:
    time, event, cov = COHORTS[name]
    cols = [time, event, *cov] + ([kw["strata"][0]] if "strata" in kw else [])  # type: ignore[index]
    cph = CoxPHFitter(**kw)  # type: ignore[arg-type]
    return cph.fit(df[list(dict.fromkeys(cols))], time, event, fit_options={"precision": 1e-12})


@pytest.mark.req("SRS-FED-001", "RC-FED-002")
@pytest.mark.parametrize("name", ["rossi", "gbsg2"])
@pytest.mark.parametrize("n_sites", [2, 3, 4, 5, 6])
def test_efron_equals_pooled_lifelines(request: pytest.FixtureRequest, name: str, n_sites: int) -> None:
    df = _frame(request, name)
    fit = fed_cox(split_frame(df, n_sites, seed=n_sites), _cohort(name), ties="efron")
    ref = _lifelines(df, name)
    assert fit.converged
    assert np.max(np.abs(fit.coef - ref.params_.to_numpy())) <= 1e-6
    assert np.max(np.abs(fit.se / ref.standard_errors_.to_numpy() - 1)) <= 1e-5
    assert fit.loglik == pytest.approx(ref.log_likelihood_, abs=1e-8)
    # predicted survival at every event time, for every patient
    est = FederatedCoxPH()._set(fit)
    times = fit.baselines[0].times
    _, _, cov = COHORTS[name]
    ours = est.predict_survival_function(df[list(cov)], times)
    theirs = ref.predict_survival_function(df[list(cov)], times=times).to_numpy().T
    assert np.max(np.abs(ours - theirs)) <= 1e-6


@pytest.mark.req("SRS-FED-002")
@pytest.mark.parametrize("name", ["rossi", "gbsg2"])
@pytest.mark.parametrize("n_sites", [2, 4, 6])
def test_breslow_equals_pooled_scikit_survival(request: pytest.FixtureRequest, name: str,
                                               n_sites: int) -> None:
    df = _frame(request, name)
    time, event, cov = COHORTS[name]
    fit = fed_cox(split_frame(df, n_sites, seed=10 + n_sites), _cohort(name),
                  ties="breslow")
    y = Surv.from_arrays(df[event] == 1, df[time])
    ref = CoxPHSurvivalAnalysis(ties="breslow", tol=1e-12).fit(df[list(cov)].astype(float), y)
    assert np.max(np.abs(fit.coef - ref.coef_)) <= 1e-6
    est = FederatedCoxPH(ties="breslow")._set(fit)
    times = ref.unique_times_
    ours = est.predict_survival_function(df[list(cov)], times)
    theirs = ref.predict_survival_function(df[list(cov)].astype(float), return_array=True)
    assert np.max(np.abs(ours - theirs)) <= 1e-6


@pytest.mark.req("SRS-FED-002")
@pytest.mark.parametrize("alpha", [0.5, 10.0])
def test_ridge_penalty_equals_scikit_survival_alpha(gbsg2: pd.DataFrame, alpha: float) -> None:
    time, event, cov = COHORTS["gbsg2"]
    fit = fed_cox(split_frame(gbsg2, 3, seed=1), _cohort("gbsg2"), ties="efron",
                  penalty=alpha)
    y = Surv.from_arrays(gbsg2[event] == 1, gbsg2[time])
    ref = CoxPHSurvivalAnalysis(alpha=alpha, ties="efron", tol=1e-12).fit(
        gbsg2[list(cov)].astype(float), y)
    assert np.max(np.abs(fit.coef - ref.coef_)) <= 1e-6


@pytest.mark.req("SRS-FED-003")
def test_stratified_by_column_equals_lifelines(rossi: pd.DataFrame) -> None:
    fit = fed_cox(split_frame(rossi, 4, seed=3),
                  CohortSpec(time="week", event="arrest", covariates=("fin", "age", "prio", "mar"),
                             partition="race", levels=("0", "1")))
    ref = CoxPHFitter(strata=["race"]).fit(rossi[["week", "arrest", "fin", "age", "prio", "mar", "race"]],
                                           "week", "arrest", fit_options={"precision": 1e-12})
    assert np.max(np.abs(fit.coef - ref.params_.to_numpy())) <= 1e-6
    assert np.max(np.abs(fit.se / ref.standard_errors_.to_numpy() - 1)) <= 1e-5
    assert [b.label for b in fit.baselines] == ["0", "1"]
    # ours is for the reference patient (0 here: nothing declared), lifelines' for the mean patient
    shift = np.exp(fit.coef @ (ref._norm_mean.to_numpy() - fit.center))
    assert np.array_equal(fit.center, np.zeros(4))
    for b in fit.baselines:
        their = ref.baseline_cumulative_hazard_[int(b.label)].dropna() / shift
        their = np.interp(b.times, their.index.to_numpy(), their.to_numpy())
        assert np.max(np.abs(b.cumulative_hazard - their)) <= 1e-6


@pytest.mark.req("SRS-FED-003")
def test_stratified_by_site_equals_lifelines_with_site_strata(rossi: pd.DataFrame) -> None:
    parts = split_frame(rossi, 3, seed=5)
    fit = fed_cox(parts, CohortSpec(time="week", event="arrest",
                                                 covariates=ROSSI_COVARIATES, partition_by_site=True))
    pooled = pd.concat([p.assign(site=i) for i, p in enumerate(parts)], ignore_index=True)
    ref = CoxPHFitter(strata=["site"]).fit(pooled, "week", "arrest", fit_options={"precision": 1e-12})
    assert np.max(np.abs(fit.coef - ref.params_.to_numpy())) <= 1e-6
    assert [b.label for b in fit.baselines] == ["site-0", "site-1", "site-2"]


@pytest.mark.req("SRS-FED-001")
def test_coarsened_grid_equals_pooled_fit_on_coarsened_times(gbsg2: pd.DataFrame) -> None:
    fit = fed_cox(split_frame(gbsg2, 4, seed=2),
                  _cohort("gbsg2", time_grid="month", time_unit="day"))
    coarse = gbsg2.assign(time=np.ceil(np.round(gbsg2["time"] / (365.25 / 12), 9)) * (365.25 / 12))
    ref = _lifelines(coarse, "gbsg2")
    assert np.max(np.abs(fit.coef - ref.params_.to_numpy())) <= 1e-6
    # monthly grid: no more grid points than months of follow-up
    assert fit.baselines[0].times.size <= int(np.ceil(gbsg2["time"].max() / 30.4375))


@pytest.mark.req("SRS-FED-001")
def test_wald_statistics_match_lifelines(rossi: pd.DataFrame) -> None:
    fit = fed_cox(split_frame(rossi, 2, seed=0), _cohort("rossi"))
    ref = _lifelines(rossi, "rossi")
    summary = ref.summary
    assert np.allclose(fit.p_value, summary["p"].to_numpy(), rtol=1e-5, atol=1e-12)
    assert np.allclose(fit.ci[:, 0], summary["coef lower 95%"].to_numpy(), atol=1e-6)
    assert np.allclose(fit.covariance, ref.variance_matrix_.to_numpy(), rtol=1e-5, atol=1e-12)


@pytest.mark.req("SRS-FED-006")
def test_constant_covariate_is_named(rossi: pd.DataFrame) -> None:
    df = rossi.assign(const=1.0)
    with pytest.raises(SingularDesignError, match="'const' is constant"):
        fed_cox(split_frame(df, 3, seed=0),
                CohortSpec(time="week", event="arrest", covariates=("age", "const")))


@pytest.mark.req("SRS-FED-006")
def test_collinear_covariates_are_named(rossi: pd.DataFrame) -> None:
    df = rossi.assign(age2=2 * rossi["age"] + 1)
    with pytest.raises(SingularDesignError, match="'age'.*'age2'.*collinear"):
        fed_cox(split_frame(df, 3, seed=0),
                CohortSpec(time="week", event="arrest", covariates=("age", "prio", "age2")))


@pytest.mark.req("SRS-PRIV-001", "SRS-FED-001")
def test_site_without_events_refused_unless_the_policy_allows(rossi: pd.DataFrame) -> None:
    parts = split_frame(rossi, 3, seed=4)
    parts[1] = parts[1].assign(arrest=0)
    with pytest.raises(SiteError, match="'site-1'.*rule min_events_per_site: fewer than 5 events"):
        fed_cox(parts, _cohort("rossi"), policy=DisclosurePolicy())
    fit = fed_cox(parts, _cohort("rossi"))  # policy with min_events_per_site = 0
    ref = _lifelines(pd.concat(parts, ignore_index=True), "rossi")
    assert np.max(np.abs(fit.coef - ref.params_.to_numpy())) <= 1e-6


@pytest.mark.req("SRS-FED-006")
def test_no_events_anywhere(rossi: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="no events"):
        fed_cox([rossi.assign(arrest=0)], _cohort("rossi"))


@pytest.mark.req("SRS-FED-001")
def test_separation_is_handled_by_step_halving() -> None:
    """A near-separating covariate drives β far out; halving keeps exp(β·x) finite."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    t = np.exp(-3 * x) * rng.exponential(size=200)
    df = pd.DataFrame({"t": t, "e": 1, "x": x * 100})
    fit = fed_cox(split_frame(df, 2, seed=0),
                  CohortSpec(time="t", event="e", covariates=("x",), time_grid="exact"))
    ref = CoxPHFitter().fit(df, "t", "e", fit_options={"precision": 1e-12})
    assert fit.coef[0] == pytest.approx(ref.params_["x"], abs=1e-6)


@pytest.mark.req("SRS-FED-012")
def test_estimator_face_works_with_scikit_survival_metrics(gbsg2: pd.DataFrame) -> None:
    from sksurv.metrics import concordance_index_censored, cumulative_dynamic_auc

    time, event, cov = COHORTS["gbsg2"]
    y = Surv.from_arrays(gbsg2[event] == 1, gbsg2[time])
    est = FederatedCoxPH().fit(gbsg2[list(cov)], y)
    ref = CoxPHSurvivalAnalysis(ties="efron", tol=1e-12).fit(gbsg2[list(cov)].astype(float), y)
    c_ours = concordance_index_censored(y["event"], y["time"], est.predict(gbsg2))[0]
    c_ref = concordance_index_censored(y["event"], y["time"], ref.predict(gbsg2[list(cov)].astype(float)))[0]
    assert c_ours == pytest.approx(c_ref, abs=1e-12)
    risk = est.predict_risk(gbsg2, [365.0, 1095.0])
    assert risk.shape == (len(gbsg2), 2) and np.all((risk >= 0) & (risk <= 1))
    assert np.all(risk[:, 1] >= risk[:, 0])
    auc, _ = cumulative_dynamic_auc(y, y, risk[:, 1], [1095.0])
    assert 0.6 < auc[0] < 0.9


@pytest.mark.req("SRS-FED-010", "SRS-FED-001")
def test_sites_from_files_csv_and_parquet(tmp_path, rossi: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    from federated import Coordinator, InProcessTransport

    a, b = split_frame(rossi, 2, seed=7)
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_parquet(tmp_path / "b.parquet")
    sites = [Site("a", tmp_path / "a.csv", floors=PERMISSIVE_FLOORS),
             Site("b", tmp_path / "b.parquet", floors=PERMISSIVE_FLOORS)]
    protocol = approve(sites, [_cohort("rossi")])
    coord = Coordinator(InProcessTransport(sites), session="files", protocol=protocol)
    fit = fit_cox(coord, _cohort("rossi"), policy=PERMISSIVE)
    assert np.max(np.abs(fit.coef - _lifelines(rossi, "rossi").params_.to_numpy())) <= 1e-6

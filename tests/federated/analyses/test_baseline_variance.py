"""The risk interval carries the baseline hazard's variance: the federated, released model against
a pooled row-level reference written from the textbook formula (HAZ-DEV-001)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from federated import CohortSpec, DisclosurePolicy
from federated.analyses.artifact import build_model
from federated.study import StudySpec
from prognosis import CoxModel, seal
from tests.conftest import GBSG2_COVARIATES, ROSSI_COVARIATES, fed_cox, split_frame

COHORTS = {"rossi": ("week", "arrest", ROSSI_COVARIATES), "gbsg2": ("time", "event", GBSG2_COVARIATES)}
K = 5  # released steps merge the grid times until ≥ 5 events


def pooled_variance(time: np.ndarray, event: np.ndarray, X: np.ndarray, beta: np.ndarray, cov: np.ndarray,
                    x: np.ndarray, t: float) -> tuple[float, float]:
    """Λ̂(t | x) and Var Λ̂(t | x) from the patients' rows (Breslow hazard), written out from
    Therneau & Grambsch (2000) §10.2 / Tsiatis (1981): e^{2η}[Σ dN/S0² + qᵀ I⁻¹ q],
    q = Σ (x − x̄(t_i)) dΛ0(t_i), x̄ = S1/S0, dΛ0 = dN/S0, sums over event times ≤ t."""
    m = X.mean(axis=0)  # any centre: the formula is invariant, and this one is the data's own
    r = np.exp((X - m) @ beta)
    hazard, var0, q = 0.0, 0.0, np.zeros(len(beta))
    for u in np.unique(time[(event == 1) & (time <= t)]):
        at_risk = time >= u
        d = float(np.sum((time == u) & (event == 1)))
        s0 = r[at_risk].sum()
        xbar = (r[at_risk, None] * X[at_risk]).sum(axis=0) / s0
        hazard += d / s0
        var0 += d / s0 ** 2
        q += (x - xbar) * d / s0
    eta = float((x - m) @ beta)
    return hazard * np.exp(eta), np.exp(2 * eta) * (var0 + q @ cov @ q)


def _study(name: str) -> StudySpec:
    time, event, cov = COHORTS[name]
    return StudySpec(time=time, event=event, covariates=list(cov),
                     policy=DisclosurePolicy(min_sites=1, min_patients_per_site=0, min_events_per_site=0,
                                             min_cell_count=K, min_events_per_covariate=0))


@pytest.fixture(scope="module", params=["rossi", "gbsg2"])
def released(request: pytest.FixtureRequest) -> tuple[str, pd.DataFrame, CoxModel]:
    name = request.param
    df: pd.DataFrame = request.getfixturevalue(name)
    time, event, cov = COHORTS[name]
    fit = fed_cox(split_frame(df, 3, seed=18), CohortSpec(time=time, event=event, covariates=cov),
                  ties="efron")
    return name, df, build_model(fit, _study(name))


def _rows(name: str, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    time, event, cov = COHORTS[name]
    return (df[time].to_numpy(float), df[event].to_numpy(int), df[list(cov)].to_numpy(float))


def _device_variance(model: CoxModel, X: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Λ̂(t | x) and its variance as the device computes them: Λ̂² · se(log Λ̂)²."""
    lam = -np.log(model.predict_survival(X, t))
    return lam, (lam * model.se_loglog(X, t)) ** 2


@pytest.mark.req("SRS-DEV-012", "RC-DEV-003")
def test_variance_equals_the_pooled_textbook_formula(released: tuple[str, pd.DataFrame, CoxModel]) -> None:
    """3 sites, k-merged steps, centre shifted to the reference patient: equal to the pooled
    row-level computation at the released times, to 1e-8 (relative), at the fit's β̂ and Σ."""
    name, df, model = released
    time, event, X = _rows(name, df)
    assert model.interval_includes_baseline
    times = model.baseline_times
    at = times[np.linspace(0, times.size - 1, 6).round().astype(int)]
    patients = np.vstack([X[::97], model.center])  # real patients and the reference patient
    lam, var = _device_variance(model, patients, at)
    for i, x in enumerate(patients):
        for j, t in enumerate(at):
            ref_lam, ref_var = pooled_variance(time, event, X, model.beta, model.covariance, x, t)
            assert lam[i, j] == pytest.approx(ref_lam, rel=1e-10)
            assert var[i, j] == pytest.approx(ref_var, rel=1e-8)


@pytest.mark.req("SRS-DEV-012", "RC-DEV-003")
def test_variance_agrees_with_the_fully_independent_pooled_fit(
        released: tuple[str, pd.DataFrame, CoxModel]) -> None:
    """β̂ and Σ from lifelines on the pooled rows too: the same variance, to the precision at which
    lifelines' estimate itself agrees with the federated one."""
    name, df, model = released
    time_col, event_col, cov = COHORTS[name]
    ref = CoxPHFitter().fit(df[[time_col, event_col, *cov]], time_col, event_col,
                            fit_options={"precision": 1e-12})
    time, event, X = _rows(name, df)
    at = model.baseline_times[[model.baseline_times.size // 2, -1]]
    _, var = _device_variance(model, X[::50], at)
    for i, x in enumerate(X[::50]):
        for j, t in enumerate(at):
            _, ref_var = pooled_variance(time, event, X, ref.params_.to_numpy(),
                                         ref.variance_matrix_.to_numpy(), x, t)
            assert var[i, j] == pytest.approx(ref_var, rel=1e-6)


@pytest.mark.req("SRS-DEV-012", "RC-DEV-003")
def test_the_interval_includes_what_the_beta_only_interval_left_out(
        released: tuple[str, pd.DataFrame, CoxModel]) -> None:
    """Older artifacts (no increments) still load, flagged, with the β-only interval; the full one
    is wider at and near the centre (where the old had zero width) and never narrower than the
    baseline's own share sqrt(V)/H0."""
    _, _, model = released
    art = model.to_artifact()
    for key in ("variance_increments", "xbar_increments"):
        del art["baseline_survival"][key]
    legacy = CoxModel.from_artifact(seal(art))
    assert not legacy.interval_includes_baseline
    t = model.baseline_times[-1:]
    X = model.center + np.linspace(0.0, 0.05, 5)[:, None] * (model.baseline_xbar[-1] / -np.log(
        model.baseline_survival[-1]))  # towards the data's hazard-weighted mean covariates
    old, new = legacy.se_loglog(X, t), model.se_loglog(X, t)
    np.testing.assert_array_equal(old[:, 0], legacy.se_lp(X))
    assert old[0, 0] == 0.0 and np.all(new > old)
    own = np.sqrt(model.baseline_variance[-1]) / -np.log(model.baseline_survival[-1])
    assert np.all(new >= own) and new[0, 0] > own
    _, lo_old, hi_old = legacy.risk_with_interval(legacy.lp(X), old, t)
    _, lo_new, hi_new = model.risk_with_interval(model.lp(X), new, t)
    assert np.all(lo_new < lo_old) and np.all(hi_new > hi_old)

"""FederatedCoxPH: scikit-learn's conventions, lifelines' tables, equal to lifelines and scikit-survival.

References: lifelines' CoxPHFitter (Efron ties) and scikit-survival's CoxPHSurvivalAnalysis (Breslow
ties) on the pooled rows; scikit-learn's own estimator checks.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks as checks
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from federated.analyses.artifact import verify_sha256
from federated.analyses.estimator import FederatedCoxPH
from federated.analyses.km_estimator import FederatedKaplanMeier
from federated.demo_study import gbsg2_table, split
from federated.exceptions import DataError
from federated.site.data import coarsen
from federated.site.handler import Site
from federated.study import StudySpec
from tests.conftest import GBSG2_COVARIATES, ROSSI_COVARIATES, split_frame

EXACT = 1e-10  # measured: 1e-12 or better (scikit-survival's own tolerance), 1e-14 against lifelines
pytestmark = pytest.mark.req("SRS-API-002")


def _lifelines(df: pd.DataFrame, time: str, event: str, cov: tuple[str, ...], **kw: Any) -> CoxPHFitter:
    cols = [time, event, *cov, *kw.get("strata", [])]
    # converged to machine precision: lifelines stops on a relative change of 1e-9 in ℓ by default
    return CoxPHFitter(**kw).fit(df[cols], time, event, fit_options={"precision": 1e-18, "r_precision": 0.0})


def _sites(parts: list[pd.DataFrame]) -> list[Site]:
    """One hospital per part, with the sites' own default floors."""
    return [Site(f"hospital-{i}", part) for i, part in enumerate(parts)]


def _assert_equals_lifelines(est: FederatedCoxPH, ref: CoxPHFitter, tol: float = EXACT) -> None:
    pd.testing.assert_series_equal(est.params_, ref.params_, check_exact=False, rtol=0, atol=tol)
    pd.testing.assert_series_equal(est.standard_errors_, ref.standard_errors_, check_exact=False,
                                   rtol=tol, atol=0)
    pd.testing.assert_frame_equal(est.summary_, ref.summary, check_exact=False, rtol=tol, atol=1e-12)
    assert est.log_likelihood_ == pytest.approx(ref.log_likelihood_, abs=tol)


@pytest.fixture(scope="module")
def rossi_sites_fit(rossi: pd.DataFrame) -> FederatedCoxPH:
    """Rossi on three hospitals, secure aggregation, default rules, the exact time grid (opted in)."""
    sites = _sites(split_frame(rossi, 3, seed=3))
    est = FederatedCoxPH(time_grid="exact", allow_small_time_cells=True)
    return est.fit_sites(sites, time="week", event="arrest", covariates=list(ROSSI_COVARIATES))


def test_fit_sites_on_three_hospitals_equals_pooled_lifelines(rossi: pd.DataFrame,
                                                              rossi_sites_fit: FederatedCoxPH) -> None:
    est, ref = rossi_sites_fit, _lifelines(rossi, "week", "arrest", ROSSI_COVARIATES)
    assert est.fit_.secure and len(est.fit_.sites) == 3 and not est.fit_.dropped
    _assert_equals_lifelines(est, ref)
    assert list(est.summary_.columns) == list(ref.summary.columns)  # the same names, in order
    assert est.params_.index.name == "covariate" and est.params_.name == ref.params_.name
    times = est.unique_times_
    ours = est.predict_survival_function(rossi, times)
    theirs = ref.predict_survival_function(rossi[list(ROSSI_COVARIATES)], times=times).to_numpy().T
    assert np.max(np.abs(ours - theirs)) <= EXACT


def test_likelihood_ratio_test_and_printed_summary_match_lifelines(
        rossi: pd.DataFrame, rossi_sites_fit: FederatedCoxPH, capsys: pytest.CaptureFixture[str]) -> None:
    from federated.analyses.summary import likelihood_ratio_test

    ref = _lifelines(rossi, "week", "arrest", ROSSI_COVARIATES)
    lr, theirs = likelihood_ratio_test(rossi_sites_fit.fit_), ref.log_likelihood_ratio_test()
    assert lr.statistic == pytest.approx(theirs.test_statistic, abs=EXACT)
    assert lr.df == theirs.degrees_freedom and lr.p_value == pytest.approx(theirs.p_value, rel=EXACT)
    rossi_sites_fit.print_summary()
    out = capsys.readouterr().out
    assert out.startswith("<fedprog.FederatedCoxPH: fitted over 3 site(s), 432 patients, 114 events>")
    assert f"Partial AIC = {ref.AIC_partial_:.2f}" in out
    assert f"log-likelihood ratio test = {theirs.test_statistic:.2f} on 7 df" in out
    row = next(ln.split() for ln in out.splitlines() if ln.startswith("prio "))
    assert row[1:4] == [f"{v:.2f}" for v in ref.summary.loc["prio", ["coef", "exp(coef)", "se(coef)"]]]
    assert ref.summary.loc["prio", "p"] < 0.005 and "<0.005" in row  # p printed as lifelines prints it


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_fit_X_y_equals_lifelines_and_scikit_survival(gbsg2: pd.DataFrame, ties: str) -> None:
    X, y = gbsg2[list(GBSG2_COVARIATES)], Surv.from_arrays(gbsg2["event"] == 1, gbsg2["time"])
    est = FederatedCoxPH(ties=ties).fit(X, y)
    ref = CoxPHSurvivalAnalysis(ties=ties, tol=1e-12).fit(X.astype(float), y)
    assert np.max(np.abs(est.coef_ - ref.coef_)) <= EXACT
    assert np.max(np.abs(est.predict(X) - ref.predict(X.astype(float)))) <= EXACT
    c_ref = concordance_index_censored(y["event"], y["time"], ref.predict(X.astype(float)))[0]
    assert est.score(X, y) == pytest.approx(c_ref, abs=1e-12)
    # survival functions: scikit-survival's StepFunctions, compared at every time both define
    times = ref.unique_times_[ref.unique_times_ <= est.unique_times_[-1]]
    ours, theirs = est.predict_survival_function(X.iloc[:50]), ref.predict_survival_function(X.iloc[:50])
    gap = max(np.max(np.abs(a(times) - b(times))) for a, b in zip(ours, theirs, strict=True))
    assert gap <= EXACT
    assert ours[0](0.0) == 1.0 and est.predict_survival_function(X, return_array=True).shape == \
        (len(X), est.unique_times_.size)
    if ties == "efron":
        _assert_equals_lifelines(est, _lifelines(gbsg2, "time", "event", GBSG2_COVARIATES))


def test_stratified_fit_equals_lifelines(rossi: pd.DataFrame) -> None:
    cov = ("fin", "age", "prio", "mar")
    X, y = rossi[[*cov, "race"]], Surv.from_arrays(rossi["arrest"] == 1, rossi["week"])
    est = FederatedCoxPH(strata="race").fit(X, y)
    _assert_equals_lifelines(est, _lifelines(rossi, "week", "arrest", cov, strata=["race"]))
    with pytest.raises(DataError, match="stratified model"):
        est.predict_survival_function(X)


def test_default_rules_fit_equals_lifelines_on_the_coarsened_times() -> None:
    """Secure aggregation and the default disclosure rules (k = 5): the fit is exact on the times
    coarsened to the rung every hospital accepted, administratively censored at max_time."""
    table = gbsg2_table()
    cov = ("age", "tsize", "pnodes", "progrec", "hormone_therapy")
    est = FederatedCoxPH(max_time=1826.25).fit_sites(_sites(split(table, (0.34, 0.33, 0.33))), "time",
                                                      "event", list(cov))
    assert est.fit_.time_grid != "day" and not est.fit_.dropped
    censored = np.minimum(table["time"].to_numpy(), 1826.25)
    pooled = table.assign(event=np.where(table["time"] > 1826.25, 0, table["event"]),
                          time=coarsen(censored, est.fit_.time_grid, "day"))
    # yearly times tie hundreds of events: summed in another order, z agrees to 2e-10 (relative)
    _assert_equals_lifelines(est, _lifelines(pooled, "time", "event", cov), tol=1e-8)


def test_to_artifact_is_the_sealed_model(rossi_sites_fit: FederatedCoxPH) -> None:
    art = rossi_sites_fit.to_artifact()
    assert art["schema"] == "fedprog.model/v1" and verify_sha256(art)
    assert art["coefficients"] == rossi_sites_fit.params_.to_dict()
    assert art["training"]["secure_aggregation"] is True and len(art["training"]["sites"]) == 3
    art["coefficients"]["age"] = 0.0
    assert rossi_sites_fit.to_artifact()["coefficients"]["age"] == rossi_sites_fit.params_["age"]


def test_a_private_fit_records_its_privacy_and_prints_noisy_counts(
        capsys: pytest.CaptureFixture[str]) -> None:
    """With ``dp`` the sites noise the statistics (noisy-Newton fit); the artifact records ε, δ and the
    summary marks every count as noisy and offers no likelihood-ratio test. (A large ε, within the
    sites' raised budgets, keeps the noise from hiding every interval, so the test is not random.)"""
    from federated.demo_study import DEMO_INPUTS, HOSPITALS
    from federated.disclosure.rules import SiteFloors

    cov, table = ["age", "pnodes", "hormone_therapy"], gbsg2_table()
    budget = SiteFloors(dp_epsilon=1e10)
    sites = [Site(n, t, floors=budget) for n, t in zip(HOSPITALS, split(table), strict=True)]
    est = FederatedCoxPH(dp={"enabled": True, "epsilon": 1e9}, time_grid="year", max_time=1826.25,
                         inputs={c: DEMO_INPUTS[c] for c in cov})
    privacy = est.fit_sites(sites, "time", "event", cov).to_artifact()["training"]["differential_privacy"]
    assert privacy["epsilon"] == 1e9 and privacy["delta"] == 1e-6
    est.print_summary()
    out = capsys.readouterr().out
    assert "patients, ≈" in out.splitlines()[0] and "differential privacy = epsilon = 1e+09" in out
    assert "log-likelihood ratio test = not available (noisy likelihood)" in out
    with pytest.raises(DataError, match="dp: differential privacy protects what leaves a site"):
        clone(est).fit(table[cov], Surv.from_arrays(table["event"] == 1, table["time"]))


def test_predict_reads_columns_by_name_and_refuses_the_wrong_shape(rossi: pd.DataFrame,
                                                                    rossi_sites_fit: FederatedCoxPH) -> None:
    shuffled = rossi[list(reversed(ROSSI_COVARIATES))]
    np.testing.assert_array_equal(rossi_sites_fit.predict(shuffled), rossi_sites_fit.predict(rossi))
    with pytest.raises(DataError, match="X lacks column 'prio'"):
        rossi_sites_fit.predict(rossi.drop(columns="prio"))
    with pytest.raises(DataError, match="X has 2 features, but FederatedCoxPH is expecting 7"):
        rossi_sites_fit.predict(np.zeros((3, 2)))
    with pytest.raises(DataError, match="NaN"):
        rossi_sites_fit.predict(np.full((1, 7), np.nan))


# ---------------------------------------------------------------------- settings (SRS-API-001)
BAD_SETTINGS = [
    ({"ties": "Efron"}, "ties='Efron': want 'efron' or 'breslow'"),
    ({"ties": "exact"}, "ties='exact': want 'efron' or 'breslow'"),
    ({"penalty": -5}, "penalty=-5: want a finite number >= 0"),
    ({"penalty": float("nan")}, "penalty=nan: want a finite number >= 0"),
    ({"penalty": "1"}, "penalty='1': want a finite number >= 0"),
    ({"time_grid": "days"}, "time_grid='days': want one of 'auto', 'exact', 'day'"),
    ({"time_unit": "hour"}, "time_unit='hour': want 'day', 'week', 'month' or 'year'"),
    ({"max_time": 0}, "max_time=0: want None or a finite number > 0"),
    ({"tol": 0.0}, "tol=0.0: want a finite number > 0"),
    ({"max_iter": 0}, "max_iter=0: want an integer >= 1"),
    ({"max_iter": 2.5}, "max_iter=2.5: want an integer >= 1"),
    ({"secure_aggregation": "yes"}, "secure_aggregation='yes': want True or False"),
    ({"strata": 3}, "strata=3: want None or a column name"),
    ({"horizons": [365, -1]}, "horizons=[365, -1]: want None or a list of finite numbers > 0"),
    ({"policy": {"min_cell_count": 0}}, "policy={'min_cell_count': 0}: min_cell_count: Input should be "
                                        "greater than or equal to 1"),
    ({"dp": {"epsilon": -1}}, "dp={'epsilon': -1}: epsilon: Input should be greater than 0"),
    ({"inputs": {"age": {"kind": "text"}}}, "inputs={'age': {'kind': 'text'}}: kind: Input should be"),
]


@pytest.mark.req("SRS-API-001")
@pytest.mark.parametrize(("settings", "message"), BAD_SETTINGS,
                         ids=[f"{next(iter(s))}-{i}" for i, (s, _) in enumerate(BAD_SETTINGS)])
def test_a_bad_setting_is_refused_when_fitting_quoting_its_value(
        rossi: pd.DataFrame, settings: dict[str, Any], message: str) -> None:
    est = FederatedCoxPH(**settings)  # scikit-learn's convention: __init__ stores, fit checks
    assert est.get_params()[next(iter(settings))] is settings[next(iter(settings))]
    y = Surv.from_arrays(rossi["arrest"] == 1, rossi["week"])
    with pytest.raises(ValueError, match=re.escape(message)):
        est.fit(rossi[["age", "prio"]], y)
    sites = _sites(split_frame(rossi, 3, seed=1))
    with pytest.raises(ValueError, match=re.escape(message)):
        est.fit_sites(sites, "week", "arrest", ["age", "prio"])
    assert all(s.local_summary is None for s in sites)  # refused before any site was asked


@pytest.mark.req("SRS-API-001")
@pytest.mark.parametrize(("X", "y", "error", "message"), [
    ("frame", "float", DataError, "y: want a structured array (event, time)"),
    ("frame", None, DataError, "requires y to be passed"),
    ("short", "surv", DataError, "y has 432 rows, X has 10"),
    ("nan", "surv", DataError, "X: Input contains NaN"),
    ("object", "surv", TypeError, "X: float() argument must be"),
    ("frame", "negative", DataError, "y['time']: times must be finite and >= 0 (1 are not)"),
])
def test_bad_data_for_fit_is_refused_in_one_line(rossi: pd.DataFrame, X: str, y: str | None,
                                                 error: type[Exception], message: str) -> None:
    frame = rossi[["age", "prio"]].astype(float)
    nan, obj = frame.copy(), frame.to_numpy(dtype=object)
    nan.iloc[3, 0], obj[3, 0] = np.nan, {"a": 1}
    xs = {"frame": frame, "short": frame.iloc[:10], "nan": nan, "object": obj}
    t = rossi["week"].to_numpy(dtype=float)
    ys = {"float": t, None: None, "surv": Surv.from_arrays(rossi["arrest"] == 1, t),
          "negative": Surv.from_arrays(rossi["arrest"] == 1, np.where(np.arange(t.size) == 5, -1.0, t))}
    with pytest.raises(error, match=re.escape(message)):
        FederatedCoxPH().fit(xs[X], ys[y])


@pytest.mark.req("SRS-API-001")
def test_every_study_setting_is_an_estimator_parameter() -> None:
    """The study file's settings, minus where the data are (sites, columns), what a workspace does
    after a consent withdrawal (revocation) and which model is fitted (the estimator's class: ``model``),
    are each an ``__init__`` argument."""
    not_settings = {"sites", "time", "event", "covariates", "group", "revocation", "model"}
    missing = set(StudySpec.model_fields) - not_settings - set(FederatedCoxPH().get_params())
    assert not missing, f"FederatedCoxPH lacks the study setting(s) {sorted(missing)}"
    km_missing = {"time_grid", "time_unit", "max_time", "secure_aggregation", "allow_small_time_cells",
                  "shift_sparse_censoring", "policy", "dp", "timeout", "group", "levels"} \
        - set(FederatedKaplanMeier().get_params())
    assert not km_missing


@pytest.mark.req("SRS-API-001")
def test_clone_and_set_params_round_trip(rossi: pd.DataFrame) -> None:
    est = FederatedCoxPH(ties="breslow", penalty=0.5, policy={"min_cell_count": 10}, horizons=[52.0])
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    assert clone(est.set_params(penalty=1.0)).penalty == 1.0
    y = Surv.from_arrays(rossi["arrest"] == 1, rossi["week"])
    fitted = est.fit(rossi[["age", "prio"]], y)
    fresh = clone(fitted)
    assert not hasattr(fresh, "fit_")
    with pytest.raises(NotFittedError):
        fresh.predict(rossi[["age", "prio"]])
    with pytest.raises(NotFittedError):
        fresh.to_artifact()
    np.testing.assert_array_equal(fresh.fit(rossi[["age", "prio"]], y).coef_, fitted.coef_)


class _SurvivalTarget(FederatedCoxPH):
    """FederatedCoxPH under scikit-learn's generated targets, which are classes or real numbers: each
    y becomes a survival target (every patient an event at time 1 + y − min y); X, the settings and
    every other method are FederatedCoxPH's own."""

    def fit(self, X: Any, y: Any = None) -> _SurvivalTarget:
        return super().fit(X, _as_survival(y))

    def score(self, X: Any, y: Any) -> float:
        return super().score(X, _as_survival(y))


def _as_survival(y: Any) -> Any:
    t = None if y is None else np.asarray(y)
    if t is None or t.dtype.names is not None or t.ndim != 1 or t.dtype.kind not in "biufO":
        return y
    t = t.astype(float)  # an object array of numbers too
    return Surv.from_arrays(np.ones(t.size, dtype=bool), 1.0 + t - t.min())


def _estimator_checks() -> list[Any]:
    """scikit-learn's estimator checks of the estimator, but the array-API one: fedprog takes NumPy and
    pandas input only, and that check runs only when SCIPY_ARRAY_API is set before SciPy is imported —
    left in, it would always be skipped, which verifies nothing."""
    out = []
    for estimator, check in checks.estimator_checks_generator(_SurvivalTarget(), legacy=True):
        name = getattr(check, "func", check).__name__
        if name != "check_array_api_input":
            out.append(pytest.param(estimator, check, id=f"{name}-{len(out)}"))
    return out


@pytest.mark.req("SRS-API-001")
@pytest.mark.parametrize(("estimator", "check"), _estimator_checks())
def test_scikit_learn_estimator_checks(estimator: FederatedCoxPH, check: Any) -> None:
    """Every check of ``sklearn.utils.estimator_checks`` but the array-API one passes (none is expected
    to fail)."""
    check(estimator)


API_CHECKS = [
    checks.check_estimator_cloneable, checks.check_estimator_repr, checks.check_no_attributes_set_in_init,
    checks.check_parameters_default_constructible, checks.check_get_params_invariance,
    checks.check_set_params, checks.check_do_not_raise_errors_in_init_or_set_params,
    checks.check_estimator_tags_renamed, checks.check_valid_tag_types, checks.check_mixin_order,
]


@pytest.mark.req("SRS-API-001")
@pytest.mark.parametrize("check", API_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("cls", [FederatedCoxPH, FederatedKaplanMeier])
def test_the_estimators_themselves_pass_the_api_checks(cls: type, check: Any) -> None:
    """The checks that fit nothing, on the public classes (no target adapter)."""
    check(cls.__name__, cls())

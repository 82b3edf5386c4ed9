"""Missing values, explicitly: refused by default in one line; with ``missing = "complete-case"`` each
site leaves out its incomplete rows, counts them (rounded to k) and the fit equals the pooled
complete-case fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from dossier.documents.model_card import training_summary
from federated import CohortSpec, DisclosurePolicy, FederatedCoxPH
from federated.exceptions import DataError, SiteError
from federated.study import StudySpec
from tests.conftest import PERMISSIVE, fed_cox, make_sites, split_frame

COVARIATES = ("age", "pnodes", "tsize")


@pytest.fixture(scope="module")
def holes(gbsg2: pd.DataFrame) -> pd.DataFrame:
    """GBSG2 with about 8 % of ages and of node counts missing, as a hospital export has them."""
    rng = np.random.default_rng(20)
    out = gbsg2.astype({"age": float, "pnodes": float})
    for col in ("age", "pnodes"):
        out.loc[rng.uniform(size=len(out)) < 0.08, col] = np.nan
    return out


@pytest.mark.req("SRS-MOD-008")
@pytest.mark.parametrize("n_sites", [2, 3, 4, 5, 6])
def test_a_complete_case_fit_equals_the_pooled_fit_on_the_complete_rows(holes: pd.DataFrame,
                                                                        n_sites: int) -> None:
    cohort = CohortSpec(time="time", event="event", covariates=COVARIATES, missing="complete-case")
    parts = split_frame(holes, n_sites, seed=n_sites)
    fit = fed_cox(parts, cohort)
    complete = holes[[*COVARIATES, "time", "event"]].dropna()
    ref = CoxPHFitter().fit(complete, "time", "event", fit_options={"precision": 1e-12})
    assert np.max(np.abs(fit.coef - ref.params_.to_numpy())) <= 1e-6
    assert fit.n == len(complete)
    per_site = {f"site-{i}": int(p[list(COVARIATES)].isna().any(axis=1).sum()) for i, p in enumerate(parts)}
    assert fit.incomplete == per_site  # k = 1 here: the exact counts


@pytest.mark.req("SRS-MOD-008")
def test_missing_values_are_refused_by_default_naming_the_column_and_the_way_out(holes: pd.DataFrame) -> None:
    cohort = CohortSpec(time="time", event="event", covariates=COVARIATES)
    with pytest.raises((DataError, SiteError), match=r"column 'age' has # missing or non-finite values.*"
                                                     r"missing = \"complete-case\""):
        fed_cox(split_frame(holes, 3, seed=1), cohort)


@pytest.mark.req("SRS-MOD-008", "RC-PRIV-003")
def test_the_counts_are_released_rounded_to_k_in_the_artifact_and_the_model_card(holes: pd.DataFrame) -> None:
    """Adversary: a reader of releases who differences two artifacts (before and after one patient's
    value went missing): each site's count is a multiple of k, so one row does not show."""
    policy = DisclosurePolicy(min_sites=2, min_patients_per_site=20, min_events_per_site=5, min_cell_count=5,
                              min_events_per_covariate=0)
    parts = split_frame(holes, 3, seed=7)
    est = FederatedCoxPH(missing="complete-case", time_grid="year", max_time=1826.25,
                         shift_sparse_censoring=True,
                         policy=policy, horizons=[1095.75])
    fit = est.fit_sites(make_sites(parts), "time", "event", COVARIATES).fit_
    exact = [int(p[list(COVARIATES)].isna().any(axis=1).sum()) for p in parts]
    assert all(n % 5 == 0 for n in fit.incomplete.values())
    assert all(abs(fit.incomplete[f"site-{i}"] - e) <= 2 for i,
               e in enumerate(exact) if f"site-{i}" in fit.incomplete)
    art = est.to_artifact()
    assert art["training"]["missing"]["rows_left_out"] == fit.incomplete
    assert art["training"]["missing"]["rounded_to_multiple_of"] == 5
    shown = dict(training_summary(art))["Missing values"]
    assert shown.startswith("complete-case analysis") and all(f"{s} {n}" in shown for s,
                                                              n in fit.incomplete.items())
    linear = FederatedCoxPH(policy=PERMISSIVE, time_grid="exact", allow_small_time_cells=True) \
        .fit_sites(make_sites(split_frame(holes, 2, seed=8)), "time", "event", ["tsize"]).to_artifact()
    assert "missing" not in linear["training"]  # a study that refuses missing values keeps its bytes
    assert dict(training_summary(linear))["Missing values"].startswith("refused")


@pytest.mark.req("SRS-MOD-008", "RC-PRIV-003")
def test_the_cohorts_of_one_complete_case_study_share_their_rows(holes: pd.DataFrame) -> None:
    """Adversary: an honest-but-curious coordinator differencing the Kaplan–Meier cohort (time and event
    only) with the Cox cohort of one study: if the first kept the women whose nodes are missing and the
    second left them out, the difference of their decoded counts would be those women. Each site leaves
    a row out of every cohort of the study alike."""
    study = StudySpec(time="time", event="event", covariates=list(COVARIATES), missing="complete-case",
                      policy=PERMISSIVE, allow_small_time_cells=True, time_grid="exact")
    sites = make_sites(split_frame(holes, 3, seed=5))
    km = fed_km_rows(sites, study)
    cox = FederatedCoxPH(missing="complete-case", policy=PERMISSIVE, time_grid="exact",
                         allow_small_time_cells=True).fit_sites(sites, "time", "event", COVARIATES)
    complete = int(holes[list(COVARIATES)].notna().all(axis=1).sum())
    assert km == cox.fit_.n == complete


def fed_km_rows(sites: list, study: StudySpec) -> int:  # type: ignore[type-arg]
    """The patients the study's Kaplan–Meier cohort counts over ``sites`` (its own protocol approved)."""
    from federated.analyses.runner import kaplan_meier

    return int(kaplan_meier(study, sites=sites).n)

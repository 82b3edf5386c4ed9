"""Disclosure rules: each refuses with a clear error naming the rule (and the site)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter

from federated import CohortSpec, DisclosurePolicy, PolicyError, SiteError
from federated.analyses.artifact import build_artifact
from federated.analyses.runner import train
from federated.demo_study import DEMO_INPUTS, write_demo_study
from federated.disclosure.policy import released_steps
from federated.disclosure.rules import SiteFloors
from federated.exceptions import DataError
from tests.conftest import ROSSI_COVARIATES, fed_cox, fed_km, split_frame

STRICT = DisclosurePolicy()
ROSSI = CohortSpec(time="week", event="arrest", covariates=ROSSI_COVARIATES)


@pytest.mark.req("SRS-PRIV-001")
def test_defaults_are_documented_values() -> None:
    assert STRICT.model_dump() == {"min_sites": 3, "min_patients_per_site": 20, "min_events_per_site": 5,
                                   "min_cell_count": 5, "min_events_per_covariate": 10.0}


@pytest.mark.req("SRS-PRIV-001")
def test_two_sites_are_refused_unless_opted_in(rossi: pd.DataFrame) -> None:
    parts = split_frame(rossi, 2, seed=0)
    with pytest.raises(PolicyError, match="rule min_sites: 2 site.*subtract its own share"):
        fed_cox(parts, ROSSI, policy=STRICT)
    fit = fed_cox(parts, ROSSI, policy=STRICT.model_copy(update={"min_sites": 2}))
    assert fit.secure and len(fit.sites) == 2


@pytest.mark.req("SRS-SEC-003")
def test_secure_sum_needs_two_sites_even_when_allowed(rossi: pd.DataFrame) -> None:
    with pytest.raises(PolicyError, match="secure aggregation needs at least 2 sites"):
        fed_cox([rossi], ROSSI, secure=True, policy=STRICT.model_copy(update={"min_sites": 1}))


@pytest.mark.req("SRS-PRIV-001", "SRS-PRIV-003", "RC-PRIV-002")
def test_small_site_refuses_itself_without_revealing_its_size(rossi: pd.DataFrame) -> None:
    parts = split_frame(rossi, 3, seed=0)
    parts.append(rossi.iloc[:13])
    with pytest.raises(SiteError, match="site 'site-3': refused by rule min_patients_per_site: "
                                        "fewer than 20 patients") as err:
        fed_cox(parts, ROSSI, policy=STRICT)
    assert "13" not in str(err.value)


@pytest.mark.req("SRS-PRIV-001")
def test_over_saturated_model_is_refused(rossi: pd.DataFrame) -> None:
    parts = split_frame(rossi, 3, seed=0)
    with pytest.raises(PolicyError, match=r"min_events_per_covariate: 114 events for 7 covariates "
                                          r"\(16.3 per covariate, 20 required\)"):
        fed_cox(parts, ROSSI, policy=STRICT.model_copy(update={"min_events_per_covariate": 20}))


@pytest.mark.req("SRS-PRIV-002", "SRS-PRIV-011")
def test_released_km_merges_small_cells_and_stays_exact(gbsg2: pd.DataFrame) -> None:
    """With the default rules the sites agree on a coarser rung of the time ladder, and the curve
    equals lifelines on the times coarsened (and censored at max_time) as the sites coarsened them."""
    from federated.site.data import coarsen

    cohort = CohortSpec(time="time", event="event", max_time=1826.25)
    fit = fed_km(split_frame(gbsg2, 3, seed=0), cohort, policy=STRICT, floors=SiteFloors())
    assert fit.time_grid in ("week", "month", "quarter", "year") and len(fit.sites) == 3
    curve = fit.overall
    assert np.all(curve.events >= 5) and np.all(curve.at_risk >= 5)
    assert curve.events.sum() <= fit.events
    late = gbsg2["time"] > 1826.25
    time = coarsen(np.minimum(gbsg2["time"].to_numpy(float), 1826.25), fit.time_grid, "day")
    ref = KaplanMeierFitter().fit(time, np.where(late, 0, gbsg2["event"]))
    assert np.max(np.abs(curve.survival - ref.survival_function_at_times(curve.times).to_numpy())) <= 1e-12
    assert fit.to_dict()["min_cell_count"] == 5 and fit.to_dict()["time_grid"] == fit.time_grid


@pytest.mark.req("SRS-PRIV-002")
def test_released_steps_rule() -> None:
    events = np.array([1, 2, 0, 3, 5, 1, 1])
    assert released_steps(events, 3).tolist() == [1, 3, 4]  # 1+2, 0+3, 5; the trailing 2 withheld
    assert released_steps(events, 1).tolist() == [0, 1, 3, 4, 5, 6]
    assert released_steps(events, 3, at_risk=np.array([20, 19, 17, 16, 2, 1, 1])).tolist() == [1, 3]


@pytest.mark.req("SRS-PRIV-002")
def test_artifact_baseline_is_released_with_small_cells_merged(tmp_path) -> None:  # type: ignore[no-untyped-def]
    study = write_demo_study(tmp_path)
    fit, art = train(study)
    base = art["baseline_survival"]
    full = fit.baselines[0]
    # on the yearly grid the sites agreed on, every step already holds at least 5 events
    assert base["min_cell_count"] == 5 and 0 < len(base["times"]) <= full.times.size
    idx = np.searchsorted(full.times, base["times"])
    assert np.array_equal(full.times[idx], base["times"])
    assert np.allclose(full.survival[idx], base["survival"], rtol=0, atol=0)
    prev = np.concatenate(([-1], idx[:-1]))
    assert all(full.events[a + 1:b + 1].sum() >= 5 for a, b in zip(prev, idx, strict=True))


@pytest.mark.req("SRS-PRIV-002", "SRS-PRIV-011")
def test_declared_ranges_are_reported_with_k_cells_at_the_source(tmp_path) -> None:  # type: ignore[no-untyped-def]
    study = write_demo_study(tmp_path)
    fit, art = train(study)
    age = next(i for i in art["inputs"] if i["name"] == "age")
    assert (age["min"], age["max"]) == (27.0, 79.0)  # declared, never a patient's value
    counts = age["coverage"]["counts"]
    # every site sent each bin as 0 or at least 5 women, so every summed bin is 0 or at least 5
    assert len(counts) == 10 and all(c is None or c == 0 or c >= 5 for c in counts)
    assert sum(c for c in counts if c) <= fit.n and counts[0] and counts[-1]
    # ground truth: the youngest bin (27–32.2) of each contributing hospital, as a site would send it
    from federated.demo_study import gbsg2_table, split

    parts = split(gbsg2_table())[:3]
    youngest = [int(((p["age"] >= 27) & (p["age"] < 27 + 5.2)).sum()) for p in parts]
    assert counts[0] == sum(c for c in youngest if c >= 5)
    # training patients outside the envelope are allowed: the envelope is where the model is used
    narrow = {**DEMO_INPUTS, "age": DEMO_INPUTS["age"].model_copy(update={"min": 45.0})}
    narrowed = train(study.model_copy(update={"inputs": narrow}))[1]
    assert narrowed["training"]["n"] == art["training"]["n"]
    assert build_artifact(fit, study) == art


@pytest.mark.req("SRS-PRIV-003")
def test_undeclared_levels_are_refused_in_secure_mode(gbsg2_raw: pd.DataFrame) -> None:
    parts = split_frame(gbsg2_raw, 3, seed=0)
    cohort = CohortSpec(time="time", event="event", covariates=("age", "tsize", "pnodes"), partition="tgrade")
    with pytest.raises(DataError, match="declare the levels of 'tgrade'"):
        fed_cox(parts, cohort)
    with pytest.raises(SiteError, match="outside the declared levels"):
        fed_cox(parts, cohort.model_copy(update={"levels": ("1", "2")}))
    assert len(fed_cox(parts, cohort, secure=False).baselines) == 3  # plaintext discovery allowed

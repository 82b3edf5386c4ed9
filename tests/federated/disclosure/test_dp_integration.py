"""Differential privacy in the engine: off by default, noise added by the sites, stated in the
outputs, no exact count beside a private release; Cox only by noisy Newton, never exact rounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from federated import CohortSpec, Coordinator, DisclosurePolicy, InProcessTransport, KMFit, fit_cox, fit_km
from federated.analyses.runner import kaplan_meier, train
from federated.demo_study import write_demo_study
from federated.disclosure.dp import DPSettings
from federated.disclosure.rules import SiteFloors
from federated.exceptions import DataError, SiteError
from federated.study import load_study
from fedprog.train_cmd import print_km_summary
from tests.conftest import PERMISSIVE, PERMISSIVE_FLOORS, approve, fed_km, make_sites, split_frame

# five years: on a yearly grid to ten years the tail cells of these sites hold fewer than 5 women
KM = CohortSpec(time="time", event="event", time_grid="year", max_time=1826.25)


@pytest.fixture
def seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic noise for these tests only (production draws a fresh OS seed per release)."""
    rng = np.random.default_rng(7)
    monkeypatch.setattr("federated.site.handler.fresh_generator", lambda: rng)


def dp_km(parts: list[pd.DataFrame], cohort: CohortSpec, dp: DPSettings,
          policy: DisclosurePolicy = PERMISSIVE, floors: SiteFloors = PERMISSIVE_FLOORS) -> KMFit:
    sites = make_sites(parts, floors.model_copy(update={"dp_epsilon": 1e12}))
    protocol = approve(sites, [cohort], policy, dp=dp)
    return fit_km(Coordinator(InProcessTransport(sites), session="dp", protocol=protocol), cohort)


@pytest.mark.req("SRS-PRIV-018")
def test_off_by_default(tmp_path: Path) -> None:
    assert DPSettings().enabled is False
    _, art = train(write_demo_study(tmp_path))
    assert art["training"]["differential_privacy"] is None


@pytest.mark.req("SRS-PRIV-016")
def test_km_counts_with_a_huge_budget_are_exact(gbsg2: pd.DataFrame) -> None:
    parts = split_frame(gbsg2, 3, seed=0)
    grid = KM.model_copy(update={"max_time": 1826.25})
    exact = fed_km(parts, grid)
    noisy = dp_km(parts, grid, DPSettings(enabled=True, epsilon=1e9))
    assert noisy.overall.survival.tolist() == exact.overall.survival.tolist()
    assert noisy.privacy is not None and noisy.privacy["epsilon"] == 1e9


@pytest.mark.req("SRS-PRIV-018")
@pytest.mark.parametrize(("epsilon", "bound"), [(1.0, 0.1), (5.0, 0.05)])
def test_km_counts_are_noisy_but_valid_and_stated(gbsg2: pd.DataFrame, seeded: None, epsilon: float,
                                                   bound: float, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid survival curve near the exact one (benchmarks/dp_utility.py measures the error); the
    release states ε, δ and the mechanism, and its totals are the noisy ones."""
    parts = split_frame(gbsg2, 3, seed=0)
    exact_fit = fed_km(parts, KM)
    exact = exact_fit.overall
    fit = dp_km(parts, KM, DPSettings(enabled=True, epsilon=epsilon), policy=DisclosurePolicy())
    curve = fit.overall
    assert np.all(np.diff(curve.survival) <= 0) and np.all((curve.survival >= 0) & (curve.survival <= 1))
    assert curve.survival.tolist() != exact.survival[: curve.survival.size].tolist()
    s_exact = np.array([np.append(1.0, exact.survival[exact.times <= t])[-1] for t in curve.times])
    assert np.max(np.abs(curve.survival - s_exact)) < bound
    body = fit.to_dict()
    record: dict[str, Any] = body["differential_privacy"]  # type: ignore[assignment]
    assert record["mechanism"] == "skellam" and record["epsilon"] == epsilon
    assert record["delta"] == 1e-6 and record["sites"] == 3
    assert {"n", "n_events", "at_risk", "events"} <= set(record["noisy"])
    # no exact count beside the private curve: the totals are the noisy ones (this seed moves them)
    assert (fit.n, fit.events) != (exact_fit.n, exact_fit.events)
    assert body["n"] == fit.n and abs(fit.n - exact_fit.n) < 100
    print_km_summary(fit, None)
    out = capsys.readouterr().out
    assert f"≈{fit.n} patients" in out and f"epsilon = {epsilon:g}" in out
    assert f"{exact_fit.n} patients" not in out


@pytest.mark.req("SRS-PRIV-016")
def test_km_dp_needs_a_public_grid(gbsg2: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="needs a public time grid"):
        dp_km(split_frame(gbsg2, 3, seed=0), KM.model_copy(update={"time_grid": "exact"}),
              DPSettings(enabled=True))


@pytest.mark.req("SRS-PRIV-016")
def test_the_study_file_switches_km_dp_on_through_the_approved_protocol(tmp_path: Path) -> None:
    study = write_demo_study(tmp_path).model_copy(update={"time_grid": "year", "max_time": 1826.25})
    private = kaplan_meier(study.model_copy(update={"dp": DPSettings(enabled=True, epsilon=2.0)}))
    assert private.privacy is not None and private.privacy["epsilon"] == 2.0
    assert kaplan_meier(study).privacy is None


@pytest.mark.req("SRS-PRIV-019")
@pytest.mark.req("SRS-PRIV-023")
def test_cox_with_dp_is_fitted_privately_and_a_fine_grid_refused_in_one_line(tmp_path: Path,
                                                                               seeded: None) -> None:
    """The demo study (day grid, 1827 intervals) is refused in one line; on a yearly grid it trains by
    noisy Newton and its artifact records the privacy and is a valid model artifact (three inputs: the
    demo's 686 patients are too few for eight at this ε, benchmarks/dp_utility.py)."""
    from device.model import Artifact

    three = ["pnodes", "progrec", "hormone_therapy"]
    study = write_demo_study(tmp_path).model_copy(update={"dp": DPSettings(enabled=True, epsilon=5.0),
                                                          "covariates": three})
    with pytest.raises(DataError, match="^differential privacy for Cox models uses at most 120") as info:
        train(study)
    assert "\n" not in str(info.value)
    fit, art = train(study.model_copy(update={"time_grid": "year"}))
    record = art["training"]["differential_privacy"]
    assert record["epsilon"] == 5.0 and record["delta"] == 1e-6 and record["mechanism"] == "skellam"
    assert record["iterations"] == 4 and record["bound_sum_abs_beta_standardised"] == 3.0
    assert record["quantisation_scale"] == 256 and record["releases"] == 5
    assert art["training"]["exact_on"].startswith("nothing: a noisy piecewise-exponential likelihood")
    assert art["training"]["release"]["exact"] == [] and "coefficients" in art["training"]["release"]["noisy"]
    Artifact.model_validate(art)
    assert fit.rounds >= 1 + 1 + 4 and fit.iterations == 4  # keys, pwe-events, T Newton rounds
    assert fit.n > 0 and art["training"]["n"] % study.policy.min_cell_count == 0


@pytest.mark.req("SRS-PRIV-019")
def test_sites_refuse_cox_rounds_in_a_private_study(gbsg2: pd.DataFrame) -> None:
    cox = KM.model_copy(update={"covariates": ("age", "pnodes")})
    sites = make_sites(split_frame(gbsg2, 3, seed=0))
    protocol = approve(sites, [cox], PERMISSIVE, dp=DPSettings(enabled=True))
    with pytest.raises(SiteError, match="not available for exact Cox rounds") as info:
        fit_cox(Coordinator(InProcessTransport(sites), session="c", protocol=protocol), cox,
                policy=PERMISSIVE)
    assert info.value.code == "not-approved"


@pytest.mark.req("SRS-PRIV-018")
@pytest.mark.parametrize(("line", "match"), [("seed = 3", "dp.seed is no longer accepted"),
                                             ("blocks = 10", "sample-and-aggregate"),
                                             ('mechanism = "gaussian"', "added noise at the coordinator")])
def test_old_study_files_fail_with_one_clear_line(tmp_path: Path, line: str, match: str) -> None:
    path = tmp_path / "study.toml"
    path.write_text(f'time = "time"\nevent = "event"\n[dp]\nenabled = true\n{line}\n')
    with pytest.raises(DataError, match=match) as info:
        load_study(path)
    assert "\n" not in str(info.value)

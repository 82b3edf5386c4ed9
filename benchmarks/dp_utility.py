"""Utility lost to differential privacy against the coordinator: Kaplan–Meier curves whose event and
censoring counts carry distributed Skellam noise added by the sites (federated.site.privacy).

Error of one private fit: max_t |S_dp(t) − S(t)| over the public grid up to five years (the curves as
step functions of the released times), against the exact federated curve on the same grid. Each cell
of the table is over ``--repeat`` fits with fresh noise (mean, and 95th percentile of the max error).

Data: GBSG2 (686 women, scikit-survival), and a synthetic cohort of 20 000 patients from a published
Cox model — the GBSG2 covariates resampled, β from the lifelines Cox fit of GBSG2 on the demo
covariates, an exponential baseline hazard at its maximum-likelihood rate given β, and uniform
administrative censoring over 8 years. Four sites each; maths floors (k = 1) so every released
step is compared. Usage: ``python benchmarks/dp_utility.py [--repeat 20]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from federated import CohortSpec, Coordinator, InProcessTransport, fit_km
from federated.demo_study import DEMO_INPUTS, gbsg2_table
from federated.disclosure.dp import DPSettings, release_mu
from federated.disclosure.policy import DisclosurePolicy
from federated.disclosure.rules import SiteFloors, StudyProtocol
from federated.site.handler import Site, approve_in_process
from federated.study import TimeGrid

FIVE_YEARS = 1826.25
OPEN = DisclosurePolicy(min_sites=1, min_patients_per_site=0, min_events_per_site=0, min_cell_count=1,
                        min_events_per_covariate=0)
FLOORS = SiteFloors(min_sites=1, min_patients_per_site=0, min_events_per_site=0, min_cell_count=1,
                    min_events_per_covariate=0, dp_epsilon=1e15)
EXACT = DPSettings(enabled=True, epsilon=1e9)  # μ ≈ 1e-9: no noise, the same grid and code path


def synthetic(n: int, seed: int) -> pd.DataFrame:
    """``n`` patients from the Cox model fitted to GBSG2 (exponential baseline, β from lifelines)."""
    from lifelines import CoxPHFitter

    table = gbsg2_table()
    cov = list(DEMO_INPUTS)
    beta = CoxPHFitter().fit(table[cov + ["time", "event"]], "time", "event").params_[cov].to_numpy()
    x = table[cov].to_numpy(float)
    lam = table["event"].sum() / float(np.sum(table["time"] * np.exp(x @ beta)))  # exponential MLE given β
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(table), n)
    lp = x[rows] @ beta
    t_event = rng.exponential(1.0 / (lam * np.exp(lp)))
    t_cens = rng.uniform(0, 8 * 365.25, n)
    time = np.maximum(np.ceil(np.minimum(t_event, t_cens)), 1.0)
    out = pd.DataFrame(x[rows], columns=cov)
    out["time"], out["event"] = time, (t_event <= t_cens).astype(int)
    return out


def km(parts: list[pd.DataFrame], cohort: CohortSpec, dp: DPSettings,
       session: str) -> tuple[np.ndarray, np.ndarray]:
    sites = [Site(f"site-{i}", p, floors=FLOORS) for i, p in enumerate(parts)]
    protocol = approve_in_process(sites, StudyProtocol(study_id="bench", cohorts=(cohort,), policy=OPEN,
                                                       allow_small_time_cells=True, dp=dp))
    fit = fit_km(Coordinator(InProcessTransport(sites), session=session, protocol=protocol), cohort)
    return fit.overall.times, fit.overall.survival


def step(times: np.ndarray, surv: np.ndarray, at: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(times, at, side="right") - 1
    return np.where(idx >= 0, surv[np.maximum(idx, 0)], 1.0)


def errors(parts: list[pd.DataFrame], grid: TimeGrid, eps: float, repeat: int) -> np.ndarray:
    cohort = CohortSpec(time="time", event="event", time_grid=grid, max_time=FIVE_YEARS)
    at = np.arange(cohort.n_bins()) * cohort.bin_width()
    exact = step(*km(parts, cohort, EXACT, "exact"), at)
    dp = DPSettings(enabled=True, epsilon=eps)
    return np.array([np.max(np.abs(step(*km(parts, cohort, dp, f"dp-{r}"), at) - exact))
                     for r in range(repeat)])


def split(table: pd.DataFrame, n_sites: int, seed: int) -> list[pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(table))
    return [table.iloc[part].reset_index(drop=True) for part in np.array_split(order, n_sites)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    data = {"GBSG2 (n=686)": split(gbsg2_table(), 4, 0),
            "synthetic (n=20000)": split(synthetic(20_000, 1), 4, 1)}
    print(f"KM max|S_dp(t) - S(t)| over the public grid to 5 years; 4 sites; {args.repeat} fits per cell; "
          "delta = 1e-6 per fit")
    print(f"{'data':<20} {'grid':<6} {'eps':>4} {'sigma/cell':>10} {'mean':>7} {'p95':>7}")
    for name, parts in data.items():
        grids: tuple[TimeGrid, ...] = ("month", "year")
        for grid in grids:
            for eps in (1.0, 5.0, 10.0):
                err = errors(parts, grid, eps, args.repeat)
                sigma = np.sqrt(2 * release_mu(DPSettings(enabled=True, epsilon=eps), "counts"))
                print(f"{name:<20} {grid:<6} {eps:>4g} {sigma:>10.2f} {err.mean():>7.4f} "
                      f"{np.quantile(err, 0.95):>7.4f}", flush=True)


if __name__ == "__main__":
    main()

"""Differential privacy against the coordinator: everything it decodes carries the sites' noise.

The coordinator below is the real one; it only keeps a copy of every value it decodes. The test
spies on each site's exact statistics just before the site adds its noise (ground truth the
coordinator never sees) and checks every decoded sum against them: a decoded sum is the exact sum
plus the sum of the sites' Skellam shares, never the exact sum alone, and over many real runs the
noise the coordinator is left with follows Sk(μ) (χ² at a fixed significance, which rejects a
wrong μ). Adversary: an honest-but-curious coordinator that decodes every round.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from federated import CohortSpec, Coordinator, InProcessTransport, fit_km
from federated.disclosure.dp import DPSettings, km_cells, release_mu
from federated.site import privacy as site_dp
from tests.conftest import PERMISSIVE, PERMISSIVE_FLOORS, approve, make_sites, split_frame
from tests.federated.disclosure.test_dp import ALPHA, skellam_chi2_p

FIVE_YEARS = 1826.25
YEAR = CohortSpec(time="time", event="event", time_grid="year", max_time=FIVE_YEARS)
MONTH = YEAR.model_copy(update={"time_grid": "month"})
DP = DPSettings(enabled=True, epsilon=1.0, delta=1e-6)
RICH = PERMISSIVE_FLOORS.model_copy(update={"dp_epsilon": 1e9})  # these tests run many fits


class Recording(Coordinator):
    """The honest coordinator, keeping every decoded total with its field name."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.decoded: list[tuple[str, np.ndarray]] = []

    def total(self, replies: dict[str, Any], field: str, shape: tuple[int, ...]) -> np.ndarray:
        out = super().total(replies, field, shape)
        self.decoded.append((field, out.copy()))
        return out


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any, Any]]:
    """Every (kind, exact reply, noisy reply) the sites produce; noise drawn from a seeded
    generator (the production sampler, only its seed fixed, so the test is deterministic)."""
    seen: list[tuple[str, Any, Any]] = []
    real = site_dp.noised
    rng = np.random.default_rng(151)

    def record(reply: Any, dp: DPSettings, n_sites: int, _: np.random.Generator) -> Any:
        out = real(reply, dp, n_sites, rng)
        seen.append((out[1], reply, out[0]))
        return out

    monkeypatch.setattr(site_dp, "noised", record)
    return seen


def _run(parts: list[pd.DataFrame], cohort: CohortSpec, session: str = "dp") -> Recording:
    sites = make_sites(parts, RICH)
    protocol = approve(sites, [cohort], PERMISSIVE, dp=DP)
    coord = Recording(InProcessTransport(sites), session=session, protocol=protocol)
    fit_km(coord, cohort)
    return coord


def _exact(seen: list[tuple[str, Any, Any]], kind: str, field: str) -> np.ndarray:
    return np.sum([getattr(exact, field).to_numpy() for k, exact, _ in seen if k == kind], axis=0)


@pytest.mark.req("SRS-PRIV-016")
def test_the_coordinator_decodes_no_sum_without_noise(gbsg2: pd.DataFrame,
                                                      spy: list[tuple[str, Any, Any]]) -> None:
    parts = split_frame(gbsg2, 3, seed=0)
    coord = _run(parts, YEAR)
    assert [k for k, _, _ in spy] == ["prepare"] * 3 + ["counts"] * 3  # every site noised both replies
    assert [f for f, _ in coord.decoded] == ["counts", "event_histogram", "sum_x", "sum_x2",
                                             "at_risk", "events"]
    got = dict(coord.decoded)
    # ground truth from the raw table: every woman, and the events within five years
    exact_counts = _exact(spy, "prepare", "counts")
    in_five = (gbsg2["event"] == 1) & (gbsg2["time"] <= FIVE_YEARS)
    assert exact_counts.tolist() == [len(gbsg2), int(in_five.sum())]
    # prepare: the exact totals plus the three shares, never the totals alone
    shares = np.sum([noisy.counts.to_numpy() - exact.counts.to_numpy()
                     for k, exact, noisy in spy if k == "prepare"], axis=0)
    assert np.array_equal(got["counts"], exact_counts + shares)
    assert not np.array_equal(got["counts"], exact_counts)
    assert got["sum_x"].size == got["sum_x2"].size == 0          # no covariates in a KM study
    assert not got["event_histogram"].any()                      # sent as zeros: the grid is public
    # counts: the decoded sums are (Σ_{j≥k}(d̃_j + c̃_j), d̃) of the exact cells plus the shares
    n, d = _exact(spy, "counts", "at_risk"), _exact(spy, "counts", "events")
    c = km_cells(n, d)
    noisy_d = got["events"].astype(np.int64)
    noisy_c = km_cells_from_wire(got["at_risk"].astype(np.int64), noisy_d)
    noise = np.concatenate([(noisy_d - d).ravel(), (noisy_c - c).ravel()])
    site_noise = sum(np.concatenate([(nz.events.to_numpy() - ex.events.to_numpy()).ravel(),
                                     (km_cells_from_wire(nz.at_risk.to_numpy(), nz.events.to_numpy())
                                      - km_cells(ex.at_risk.to_numpy(), ex.events.to_numpy())).ravel()])
                     for k, ex, nz in spy if k == "counts")
    assert np.array_equal(noise, site_noise)
    # each cell's noise is a sum of three Skellam shares: exactly 0 only by chance (P ≈ 0.08 each)
    assert np.mean(noise == 0) < 0.3 and noise.size == 2 * d.size


def km_cells_from_wire(at_risk: np.ndarray, events: np.ndarray) -> np.ndarray:
    """The cells behind a wire pair: c_k = N_k − N_{k+1} − d_k (any sign, noise included)."""
    nxt = np.concatenate([at_risk[:, 1:], np.zeros((at_risk.shape[0], 1), dtype=at_risk.dtype)], axis=1)
    return at_risk - nxt - events


@pytest.mark.req("SRS-PRIV-016")
def test_the_noise_left_at_the_coordinator_follows_the_mechanism(gbsg2: pd.DataFrame,
                                                                 spy: list[tuple[str, Any, Any]]) -> None:
    """60 real in-process fits on a monthly grid (61 intervals, 122 cells each): the decoded cells
    minus the exact ones follow Sk(μ) (χ², significance 1e-3) and not Sk(1.5 μ) (the test can fail)."""
    parts = split_frame(gbsg2, 3, seed=1)
    residuals = []
    for run in range(60):
        start = len(spy)
        coord = _run(parts, MONTH, session=f"dist-{run}")
        got = dict(coord.decoded)
        mine = spy[start:]
        n, d = _exact(mine, "counts", "at_risk"), _exact(mine, "counts", "events")
        noisy_d = got["events"].astype(np.int64)
        noisy_c = km_cells_from_wire(got["at_risk"].astype(np.int64), noisy_d)
        residuals.append(np.concatenate([(noisy_d - d).ravel(), (noisy_c - km_cells(n, d)).ravel()]))
    noise = np.concatenate(residuals)
    assert noise.size == 60 * 2 * 61
    mu = release_mu(DP, "counts")
    assert skellam_chi2_p(noise, mu) > ALPHA
    assert skellam_chi2_p(noise, 1.5 * mu) < ALPHA
    assert abs(noise.mean()) < 4 * np.sqrt(2 * mu / noise.size)

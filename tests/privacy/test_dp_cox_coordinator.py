"""Differentially private Cox against the coordinator: every sum it decodes carries the sites' noise.

The coordinator is the real one, keeping a copy of every value it decodes. The test spies on each
site's exact sums just before the site quantises and noises them (ground truth the coordinator never
sees): every decoded sum is γ × the exact sum plus the sites' rounding and Skellam shares, never the
exact sum, and the noise left has the calibrated spread. Adversary: an honest-but-curious
coordinator that decodes every round of a private Cox fit.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from federated import InProcessTransport
from federated.analyses.dp_cox import fit_dp_cox
from federated.disclosure import dp_cox
from federated.disclosure.dp import DPSettings
from federated.exceptions import DataError
from federated.site import privacy as site_dp
from tests.conftest import PERMISSIVE, PERMISSIVE_FLOORS, approve, make_sites, split_frame
from tests.federated.analyses.test_dp_cox import COX, K, P
from tests.privacy.test_dp_coordinator import Recording

DP = DPSettings(enabled=True, epsilon=5.0, delta=1e-6)
FIELDS = {"pwe-events": ("counts", "sum_event_x"), "pwe-round": ("sums",)}


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any, Any, float]]:
    """Every (kind, exact reply, noisy reply, μ) the sites produce, noise from a seeded generator."""
    seen: list[tuple[str, Any, Any, float]] = []
    real = site_dp.noised
    rng = np.random.default_rng(23)

    def record(reply: Any, dp: DPSettings, n_sites: int, _: np.random.Generator) -> Any:
        out = real(reply, dp, n_sites, rng)
        seen.append((out[1], reply, out[0], out[2]))
        return out

    monkeypatch.setattr(site_dp, "noised", record)
    return seen


@pytest.mark.req("SRS-PRIV-023")
def test_the_coordinator_decodes_no_cox_sum_without_noise(gbsg2: pd.DataFrame,
                                                          spy: list[tuple[str, Any, Any, float]]) -> None:
    rich = PERMISSIVE_FLOORS.model_copy(update={"dp_epsilon": 1e9})
    sites = make_sites(split_frame(gbsg2, 3, seed=2), rich)
    protocol = approve(sites, [COX], PERMISSIVE, dp=DP)
    coord = Recording(InProcessTransport(sites), session="dp-cox", protocol=protocol)
    with contextlib.suppress(DataError):  # a small cohort: the fit may end there, after every release
        fit_dp_cox(coord, COX)
    kinds = ["pwe-events"] + ["pwe-round"] * DP.cox_iterations
    assert [k for k, *_ in spy] == [k for k in kinds for _ in range(3)]  # every site noised every release
    assert [f for f, _ in coord.decoded] == [f for k in kinds for f in FIELDS[k]]
    decoded = iter(coord.decoded)
    for r, kind in enumerate(kinds):
        mine = spy[3 * r:3 * r + 3]
        mu = mine[0][3]
        for field in FIELDS[kind]:
            name, got = next(decoded)
            assert name == field
            exact = dp_cox.SCALE * sum(getattr(ex, field).to_numpy() for _, ex, _, _ in mine)
            sent = sum(getattr(nz, field).to_numpy() for _, _, nz, _ in mine)
            assert np.array_equal(got, sent)        # the masks cancel: the sum of the noisy replies
            noise = got - exact
            # the rounding adds less than 1 per site; the Skellam shares add Sk(μ) in all
            assert np.mean(np.abs(noise) > 3) > 0.8
            if noise.size >= 100:  # the rounds: K P coordinates, spread √(2μ) within sampling error
                assert 0.85 < float(np.std(noise)) / math.sqrt(2 * mu) < 1.15
    assert noise.size == K * (1 + P + P * (P + 1) // 2)
    assert dp_cox.release(DP, "pwe-round", K, P)[1] == pytest.approx(mu)

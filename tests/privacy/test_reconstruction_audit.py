"""The reconstruction audit: everything an honest-but-curious coordinator decodes in a default run.

The coordinator below is the real one; it only keeps a copy of every value it decodes. The test
knows the ground truth (which patients each site holds) and counts, for every decoded cell, the
patients of each contributing site behind it: none may be fewer than k. It then runs the auditor's
attack of issue 14 (a day with one event makes Efron's tie sum at beta = 0 that woman's centred
covariate vector; a risk-set difference with one censored woman gives hers) on the decoded sums.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from federated.analyses.cox import fit_cox
from federated.demo_study import DEMO_INPUTS, HOSPITALS, gbsg2_table, split
from federated.disclosure.rules import StudyProtocol
from federated.protocol.coordinator import Coordinator
from federated.protocol.transport import InProcessTransport
from federated.site.data import coarsen
from federated.site.handler import Site, approve_in_process
from federated.study import CohortSpec

K = 5
COVARIATES = tuple(DEMO_INPUTS)
COHORT = CohortSpec(time="time", event="event", covariates=COVARIATES, max_time=1826.25,
                    ranges={n: (float(s.min), float(s.max)) for n, s in DEMO_INPUTS.items()
                            if s.min is not None and s.max is not None})


class Recording(Coordinator):
    """The honest coordinator, keeping every decoded total with the round it came from."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.decoded: list[tuple[int, str, np.ndarray]] = []
        self.betas: dict[int, np.ndarray] = {}

    def broadcast(self, build: Any, reply_type: Any, **fields: Any) -> Any:
        if "beta" in fields and "efron" in fields:
            self.betas[self.rounds + (0 if self._peers else 1)] = fields["beta"].to_numpy()
        return super().broadcast(build, reply_type, **fields)

    def total(self, replies: dict[str, Any], field: str, shape: tuple[int, ...]) -> np.ndarray:
        out = super().total(replies, field, shape)
        self.decoded.append((self.rounds - 1, field, out.copy()))
        return out


@pytest.fixture(scope="module")
def run() -> tuple[Recording, Any, list[pd.DataFrame]]:
    parts = split(gbsg2_table())
    sites = [Site(name, part) for name, part in zip(HOSPITALS, parts, strict=True)]  # default floors
    protocol = approve_in_process(sites, StudyProtocol(study_id="audit", cohorts=(COHORT,)))
    coord = Recording(InProcessTransport(sites), session="audit", protocol=protocol)
    fit = fit_cox(coord, COHORT)
    return coord, fit, parts


def _site_rows(part: pd.DataFrame, grid: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A site's rows as it uses them (ground truth only the test knows)."""
    time = part["time"].to_numpy(float)
    event = np.where(time > 1826.25, 0, part["event"].to_numpy())
    time = coarsen(np.minimum(time, 1826.25), grid, "day")
    return time, event, part[list(COVARIATES)].to_numpy(float)


@pytest.mark.req("SRS-PRIV-011", "RC-PRIV-003")
def test_every_decoded_cell_covers_zero_or_at_least_k_patients_of_each_site(run: Any) -> None:
    coord, fit, parts = run
    assert fit.time_grid == "year" and fit.sites == ("hospital-a", "hospital-b", "hospital-c")
    grid = fit.baselines[0].times
    for name, part in zip(HOSPITALS, parts, strict=True):
        if name not in fit.sites:
            continue
        time, event, _ = _site_rows(part, fit.time_grid)
        edges = np.concatenate(([-np.inf], grid, [np.inf]))
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            # the cells every risk-set and tie sum is built from: events at a grid time, and the
            # patients leaving the risk set before the next grid time without an event there
            at = (time >= lo) & (time < hi)
            events_here = int((at & (time == lo) & (event == 1)).sum())
            others = int((at & ~((time == lo) & (event == 1))).sum())
            assert events_here == 0 or events_here >= K, (name, lo, events_here)
            assert others == 0 or others >= K, (name, lo, others)
    # every count the coordinator decoded is 0 or a sum of cells of at least k
    counts = [np.round(v).ravel() for _, field, v in coord.decoded if field in ("events", "event_histogram")]
    assert counts and all(np.all((c == 0) | (c >= K)) for c in counts)


@pytest.mark.req("SRS-PRIV-011", "RC-PRIV-003")
def test_the_auditors_attack_recovers_no_patient(run: Any) -> None:
    """At beta = 0 the decoded sums are plain counts and covariate sums; a cell of one patient would
    give her covariate vector. The attack finds none: every cell has at least k patients."""
    coord, fit, parts = run
    at_zero = [r for r, b in coord.betas.items() if not np.any(b)]
    assert at_zero, "the fit starts at beta = 0"
    first = min(at_zero)
    got = {field: value for r, field, value in coord.decoded if r == first}
    s0, s1, t0, t1 = got["s0"], got["s1"], got["t0"], got["t1"]
    rows = pd.concat([p for n, p in zip(HOSPITALS, parts, strict=True) if n in fit.sites])
    truth = rows[list(COVARIATES)].to_numpy(float) - fit.center
    recovered = 0
    leave0 = s0 - np.append(s0[1:], 0.0) - t0
    leave1 = s1 - np.vstack([s1[1:], np.zeros((1, s1.shape[1]))]) - t1
    for count, sums in [*zip(t0, t1, strict=True), *zip(leave0, leave1, strict=True)]:
        n = int(round(count))
        assert n == 0 or n >= K
        if n == 1 and np.any(np.all(np.abs(truth - sums) < 1e-9, axis=1)):
            recovered += 1
    assert recovered == 0


@pytest.mark.req("SRS-PRIV-011", "RC-PRIV-003")
def test_a_claimed_dropout_leaves_only_k_cell_sums_of_the_dropped_site() -> None:
    """A malicious coordinator fits with every site, then claims that one dropped and fits again
    among the others: the difference of the two runs is that site's statistics. With the default
    min_sites = 3 and three sites the re-run is refused; where two sites are allowed, the difference
    holds only cells of 0 or at least k of the dropped site's patients, and the attack on it
    recovers no patient."""
    from federated.disclosure.policy import DisclosurePolicy
    from federated.exceptions import FederatedError

    parts = split(gbsg2_table(), (0.4, 0.3, 0.3))
    runs = {}
    for min_sites in (3, 2):
        sites = [Site(f"h{i}", p, floors=_floors(min_sites)) for i, p in enumerate(parts)]
        protocol = approve_in_process(sites, StudyProtocol(study_id=f"claim-{min_sites}", cohorts=(COHORT,),
                                                           policy=DisclosurePolicy(min_sites=min_sites)))
        full = Recording(InProcessTransport(sites), session="full", protocol=protocol)
        fit = fit_cox(full, COHORT)
        rest = Recording(InProcessTransport(sites[:2]), session="claimed", protocol=protocol)
        if min_sites == 3:
            with pytest.raises(FederatedError, match="min_sites"):
                fit_cox(rest, COHORT)
            continue
        runs = {"full": (full, fit), "rest": (rest, fit_cox(rest, COHORT.model_copy(
            update={"time_grid": fit.time_grid})))}
    (full, fit), (rest, refit) = runs["full"], runs["rest"]
    assert refit.time_grid == fit.time_grid
    first = {f: v for r, f, v in full.decoded if r == min(r2 for r2, b in full.betas.items() if not b.any())}
    again = {f: v for r, f, v in rest.decoded if r == min(r2 for r2, b in rest.betas.items() if not b.any())}
    ds0, ds1 = first["s0"] - again["s0"], first["s1"] - again["s1"]
    dt0, dt1 = first["t0"] - again["t0"], first["t1"] - again["t1"]
    truth = parts[2][list(COVARIATES)].to_numpy(float) - fit.center
    leave0 = ds0 - np.append(ds0[1:], 0.0) - dt0
    leave1 = ds1 - np.vstack([ds1[1:], np.zeros((1, ds1.shape[1]))]) - dt1
    cells = [*zip(dt0, dt1, strict=True), *zip(leave0, leave1, strict=True)]
    assert any(round(c) >= K for c, _ in cells)  # the difference is the dropped site's statistics
    for count, sums in cells:
        n = int(round(count))
        assert n == 0 or n >= K
        assert not (n == 1 and np.any(np.all(np.abs(truth - sums) < 1e-9, axis=1)))


def _floors(min_sites: int) -> Any:
    from federated.disclosure.rules import SiteFloors

    return SiteFloors(min_sites=min_sites)

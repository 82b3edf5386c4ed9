"""Sparse censored cells at the source (``shift_sparse_censoring``): real hospital exports whose few
early losses to follow-up leave yearly cells of 1 to k − 1 censored patients.

Adversary: an **honest-but-curious coordinator** that decodes every secure sum (the recording
coordinator of the reconstruction audit). Without the study's opt-in every site refuses even the
yearly grid; with it, each site censors those patients at the start of their year, every decoded
count is 0 or at least k, the auditor's attack recovers nobody, and the fit equals lifelines on the
pooled, shifted and coarsened rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from federated.analyses.cox import fit_cox
from federated.disclosure.cells import shift_sparse_censoring
from federated.disclosure.policy import PolicyError
from federated.disclosure.rules import StudyProtocol
from federated.protocol.transport import InProcessTransport
from federated.site.data import coarsen
from federated.site.handler import Site, approve_in_process
from federated.site.tables import TableFormat, read_table
from federated.study import CohortSpec
from tests.privacy.test_reconstruction_audit import Recording

K = 5
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "own-study"
FORMATS = {"hospital-a": TableFormat(), "hospital-b": TableFormat(decimal=",", encoding="cp1252"),
           "hospital-c": TableFormat()}
COVARIATES = ("age", "nodes", "grade", "pgr", "hormon")
COHORT = CohortSpec(time="dtime", event="death", covariates=COVARIATES, max_time=3652.5)


def tables() -> dict[str, pd.DataFrame]:
    return {name: read_table(EXAMPLES / f"{name}.csv", fmt) for name, fmt in FORMATS.items()}


def fit(shift: bool) -> tuple[Recording, Any]:
    sites = [Site(name, EXAMPLES / f"{name}.csv", table_format=fmt) for name, fmt in FORMATS.items()]
    protocol = approve_in_process(sites, StudyProtocol(study_id="sparse", cohorts=(COHORT,),
                                                       shift_sparse_censoring=shift))
    coord = Recording(InProcessTransport(sites), session="sparse", protocol=protocol)
    return coord, fit_cox(coord, COHORT)


@pytest.fixture(scope="module")
def shifted_run() -> tuple[Recording, Any]:
    return fit(shift=True)


def site_rows(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A site's rows as it uses them on the yearly grid, shifted (ground truth only the test knows)."""
    time = table["dtime"].to_numpy(float)
    event = np.where(time > 3652.5, 0, table["death"].to_numpy())
    time = np.minimum(time, 3652.5)
    raw, kept = shift_sparse_censoring(time, event, np.zeros(time.size, dtype=np.int64), "year", "day", K)
    return coarsen(raw, "year", "day")[kept], event[kept], table[list(COVARIATES)].to_numpy(float)[kept]


@pytest.mark.req("SRS-PRIV-024")
def test_without_the_opt_in_every_site_refuses_even_yearly_cells() -> None:
    with pytest.raises(PolicyError) as caught:
        fit(shift=False)
    message = str(caught.value)
    assert caught.value.rule == "min_sites" and "0 site(s) taking part" in message
    refused = "fewer than k patients in a cell of every time grid up to 'year'"
    assert all(f"dropped site {name!r}: {refused}" in message for name in FORMATS)
    assert "shift_sparse_censoring = true" in message


@pytest.mark.req("SRS-PRIV-024", "SRS-PRIV-011")
def test_every_decoded_count_covers_zero_or_at_least_k(shifted_run: Any) -> None:
    coord, result = shifted_run
    assert result.time_grid == "year" and set(result.sites) == set(FORMATS)
    for name, table in tables().items():
        time, event, _ = site_rows(table)
        for t in np.unique(time):  # each site's yearly cells, events and censored apart
            for e in (0, 1):
                n = int(((time == t) & (event == e)).sum())
                assert n == 0 or n >= K, (name, t, e, n)
    counts = [np.round(v).ravel() for _, field, v in coord.decoded if field in ("events", "event_histogram")]
    assert counts and all(np.all((c == 0) | (c >= K)) for c in counts)


@pytest.mark.req("SRS-PRIV-024", "SRS-PRIV-011")
def test_the_auditors_attack_recovers_no_patient(shifted_run: Any) -> None:
    coord, result = shifted_run
    first = min(r for r, b in coord.betas.items() if not np.any(b))
    got = {field: value for r, field, value in coord.decoded if r == first}
    s0, s1, t0, t1 = got["s0"], got["s1"], got["t0"], got["t1"]
    truth = np.vstack([t[list(COVARIATES)].to_numpy(float) for t in tables().values()]) - result.center
    leave0 = s0 - np.append(s0[1:], 0.0) - t0
    leave1 = s1 - np.vstack([s1[1:], np.zeros((1, s1.shape[1]))]) - t1
    recovered = 0
    for count, sums in [*zip(t0, t1, strict=True), *zip(leave0, leave1, strict=True)]:
        n = int(round(count))
        assert n == 0 or n >= K
        recovered += n == 1 and bool(np.any(np.all(np.abs(truth - sums) < 1e-9, axis=1)))
    assert recovered == 0


@pytest.mark.req("SRS-PRIV-024", "SRS-FED-001")
def test_the_fit_equals_lifelines_on_the_shifted_coarsened_rows(shifted_run: Any) -> None:
    from lifelines import CoxPHFitter

    _, result = shifted_run
    parts = []
    for table in tables().values():
        time, event, x = site_rows(table)
        parts.append(pd.DataFrame(x, columns=list(COVARIATES)).assign(T=time, E=event))
    pooled = pd.concat(parts, ignore_index=True)
    ref = CoxPHFitter().fit(pooled, duration_col="T", event_col="E", fit_options={"precision": 1e-12})
    assert result.n == len(pooled) < sum(len(t) for t in tables().values())  # a few were left out
    np.testing.assert_allclose(result.coef, ref.params_[list(COVARIATES)].to_numpy(), rtol=0, atol=1e-8)
    se = ref.standard_errors_[list(COVARIATES)].to_numpy()
    np.testing.assert_allclose(result.se, se, rtol=0, atol=1e-8)

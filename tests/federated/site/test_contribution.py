"""The contribution rule: a site's patient set differs from every earlier job's by 0 or ≥ k."""

from __future__ import annotations

import itertools

import pytest

from federated.site.contribution import ContributionError, contribution, job_key

PATIENTS = [f"p{i:03d}" for i in range(200)]
KEY = job_key(b"s" * 32, "study", "job-2")


def _ok(chosen: frozenset[str], earlier: dict[str, frozenset[str]], k: int) -> bool:
    return all(len(chosen ^ used) in (0, *range(k, 10**6)) for used in earlier.values())


@pytest.mark.req("SRS-PRIV-022")
def test_nothing_is_withheld_without_an_earlier_job_or_a_change() -> None:
    assert contribution(PATIENTS, {}, 5, KEY) == frozenset(PATIENTS)
    same = {"job-1": frozenset(PATIENTS)}
    assert contribution(PATIENTS, same, 5, KEY) == frozenset(PATIENTS)


@pytest.mark.req("SRS-PRIV-022")
@pytest.mark.parametrize("revoked", [1, 2, 4])
def test_fewer_than_k_withdrawals_are_padded_to_k(revoked: int) -> None:
    earlier = {"job-1": frozenset(PATIENTS)}
    active = PATIENTS[revoked:]
    chosen = contribution(active, earlier, 5, KEY)
    withheld = set(active) - chosen
    assert len(chosen ^ earlier["job-1"]) == 5 and len(withheld) == 5 - revoked
    assert chosen == contribution(active, earlier, 5, KEY)  # the same job withholds the same patients
    other = contribution(active, earlier, 5, job_key(b"s" * 32, "study", "job-3"))
    assert other != chosen  # another job draws others (200 choose 4: a clash is vanishingly rare)


@pytest.mark.req("SRS-PRIV-022")
def test_k_or_more_withdrawals_or_new_consents_need_no_padding() -> None:
    earlier = {"job-1": frozenset(PATIENTS[:150])}
    assert contribution(PATIENTS[5:150], earlier, 5, KEY) == frozenset(PATIENTS[5:150])
    assert contribution(PATIENTS[:157], earlier, 5, KEY) == frozenset(PATIENTS[:157])
    one_new = contribution(PATIENTS[:151], earlier, 5, KEY)  # a single new consent is padded too
    assert len(one_new ^ earlier["job-1"]) >= 5 and "p150" in one_new


@pytest.mark.req("SRS-PRIV-022")
def test_every_earlier_job_is_respected_at_once() -> None:
    """A lineage of jobs with withdrawals and new consents between them: whatever the history, each
    new contribution differs from each earlier one by 0 or at least k."""
    earlier: dict[str, frozenset[str]] = {}
    active = set(PATIENTS[:120])
    for step in range(8):
        job = f"job-{step}"
        chosen = contribution(sorted(active), earlier, 5, job_key(b"s" * 32, "study", job))
        assert chosen <= active and _ok(chosen, earlier, 5)
        earlier[job] = chosen
        active -= {sorted(active)[step % len(active)]}  # one withdrawal
        active |= {PATIENTS[120 + step]} if step % 3 == 0 else set()  # now and then a new consent
    for a, b in itertools.combinations(earlier.values(), 2):
        assert len(a ^ b) == 0 or len(a ^ b) >= 5


@pytest.mark.req("SRS-PRIV-022")
def test_a_job_that_cannot_be_padded_is_refused() -> None:
    with pytest.raises(ContributionError, match="0 or at least k"):
        contribution(["p001"], {"job-1": frozenset({"p000", "p001"})}, 5, KEY)
    with pytest.raises(ValueError, match="k must be"):
        contribution(PATIENTS, {}, 0, KEY)


@pytest.mark.req("SRS-PRIV-022")
def test_padding_withholds_patients_whose_cells_stay_at_k_first() -> None:
    """Rows in cells of at least 2k are withheld first, so padding cannot make k-cells refuse."""
    import numpy as np
    import pandas as pd

    from federated.site.contribution import robust
    from federated.site.data import prepare_cohort
    from federated.study import CohortSpec

    rng = np.random.default_rng(3)
    n = 120
    table = pd.DataFrame({"t": rng.integers(1, 4, n) * 365.0, "e": rng.integers(0, 2, n),
                          "age": np.where(np.arange(n) < 6, 95.0, rng.uniform(40, 60, n))})
    spec = CohortSpec(time="t", event="e", covariates=("age",), time_grid="year",
                      ranges={"age": (20.0, 100.0)}, range_bins=4)
    cohort = prepare_cohort(table, spec, "s", where="table")
    ok = robust(cohort, spec, 5)
    ids = np.array([f"p{r:03d}" for r in cohort.rows])
    assert not ok[np.isin(cohort.rows, np.arange(6))].any()  # the six oldest share a bin of 6 < 2k
    assert ok.sum() > 50
    earlier = {"job-1": frozenset(ids.tolist())}
    for seed in range(20):  # whatever the draw, only robust patients are withheld
        active = [i for i in ids.tolist() if i != "p010"]
        chosen = contribution(active, earlier, 5, job_key(bytes([seed]) * 32, "s", "job-2"),
                              prefer=frozenset(ids[ok].tolist()))
        assert set(active) - chosen <= set(ids[ok].tolist()) and len(set(active) - chosen) == 4

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

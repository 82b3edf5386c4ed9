"""Property tests: the fit is a function of the pooled rows only, not of how they are split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federated import CohortSpec
from tests.conftest import fed_cox, fed_km

pytestmark = pytest.mark.req("SRS-FED-004")

# Ridge keeps the optimum finite on small random data (no separation); exactness vs
# lifelines/scikit-survival without penalty is covered in test_cox.py.
PENALTY = 0.5


@st.composite
def cohorts(draw: st.DrawFn) -> tuple[pd.DataFrame, list[int], str]:
    n = draw(st.integers(12, 60))
    p = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, p)).round(2), columns=[f"x{i}" for i in range(p)])
    df["t"] = rng.integers(1, 12, size=n).astype(float)  # many ties
    df["e"] = (rng.uniform(size=n) < 0.6).astype(int)
    df.loc[0, "e"] = 1
    n_sites = draw(st.integers(1, 4))
    cuts = sorted(draw(st.lists(st.integers(1, n - 1), min_size=n_sites - 1, max_size=n_sites - 1,
                                unique=True)))
    ties = draw(st.sampled_from(["efron", "breslow"]))
    return df, cuts, ties


def _fit(parts: list[pd.DataFrame], df: pd.DataFrame, ties: str) -> np.ndarray:
    cohort = CohortSpec(time="t", event="e", covariates=tuple(c for c in df.columns if c.startswith("x")))
    fit = fed_cox(parts, cohort, ties=ties, penalty=PENALTY)
    return np.concatenate([fit.coef, fit.se, fit.baselines[0].cumulative_hazard])


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(cohorts(), st.randoms(use_true_random=False))
def test_permuting_rows_and_sites_does_not_change_the_fit(case, rnd) -> None:  # type: ignore[no-untyped-def]
    df, cuts, ties = case
    parts = np.split(df, cuts)
    pooled = _fit([df], df, ties)
    shuffled = [p.sample(frac=1, random_state=rnd.randint(0, 10**6)) for p in parts]
    rnd.shuffle(shuffled)
    np.testing.assert_allclose(_fit(shuffled, df, ties), pooled, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(cohorts(), st.integers(0, 10**6))
def test_splitting_a_site_in_two_does_not_change_the_fit(case, seed: int) -> None:  # type: ignore[no-untyped-def]
    df, cuts, ties = case
    parts = [p for p in np.split(df, cuts) if len(p)]
    big = max(range(len(parts)), key=lambda i: len(parts[i]))
    if len(parts[big]) < 2:
        return
    a = parts[big].sample(frac=0.5, random_state=seed)
    b = parts[big].drop(a.index)
    split = [*parts[:big], a, b, *parts[big + 1:]]
    np.testing.assert_allclose(_fit(split, df, ties), _fit(parts, df, ties), rtol=1e-9, atol=1e-12)


@SETTINGS
@given(cohorts())
def test_a_site_with_zero_events_contributes_its_risk_sets(case) -> None:  # type: ignore[no-untyped-def]
    df, _, ties = case
    silent = df.assign(e=0, t=df["t"] + 0.5)
    pooled = pd.concat([df, silent], ignore_index=True)
    np.testing.assert_allclose(_fit([df, silent], pooled, ties), _fit([pooled], pooled, ties),
                               rtol=1e-9, atol=1e-12)


@SETTINGS
@given(cohorts())
def test_km_does_not_depend_on_the_split(case) -> None:  # type: ignore[no-untyped-def]
    df, cuts, _ = case
    cohort = CohortSpec(time="t", event="e")
    split = fed_km(np.split(df, cuts), cohort).to_dict()
    pooled = fed_km([df], cohort).to_dict()
    for key in ("sites", "secure_aggregation"):  # one site runs unmasked, several masked
        split.pop(key), pooled.pop(key)
    assert split == pooled

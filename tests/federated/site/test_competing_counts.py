"""A site's competing-risks counts: summed over sites they are the pooled counts, exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from federated.exceptions import DataError
from federated.site.competing_counts import cause_counts
from tests.conftest import split_frame

pytestmark = pytest.mark.req("SRS-MOD-023")


def synthetic(n: int = 500, seed: int = 7) -> pd.DataFrame:
    """Two competing causes with covariate-dependent exponential hazards and uniform censoring."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.binomial(1, 0.4, n)
    t1 = rng.exponential(1.0 / (0.10 * np.exp(0.5 * x1 - 0.4 * x2)))
    t2 = rng.exponential(1.0 / (0.06 * np.exp(-0.3 * x1 + 0.6 * x2)))
    censor = rng.uniform(0.0, 15.0, n)
    time = np.minimum.reduce([t1, t2, censor])
    cause = np.select([time == t1, time == t2], [1, 2], 0)
    return pd.DataFrame({"time": time, "cause": cause})


def gbsg2_by_grade(gbsg2_raw: pd.DataFrame) -> pd.DataFrame:
    """GBSG2 (integer days, tied times) with each event labelled by the tumour grade 1/2/3: three
    'causes' from a baseline covariate, nothing derived from the times."""
    return pd.DataFrame({"time": gbsg2_raw["time"], "cause": gbsg2_raw["event"] * gbsg2_raw["tgrade"]})


def bmt() -> pd.DataFrame:
    """The bone-marrow transplant competing-risks data scikit-survival ships (35 patients, ties,
    events at time 0)."""
    from sksurv.datasets import load_bmt

    _, y = load_bmt()
    return pd.DataFrame({"time": y["ftime"].astype(float), "cause": y["status"].astype(int)})


def brute_force(time: np.ndarray, cause: np.ndarray, grid: np.ndarray,
                n_causes: int) -> tuple[np.ndarray, np.ndarray]:
    """Counting by definition, one grid time at a time."""
    n = np.array([int((time >= g).sum()) for g in grid])
    d = np.array([[int(((time == g) & (cause == j)).sum()) for g in grid] for j in range(1, n_causes + 1)])
    return n, d


@pytest.fixture(scope="module")
def tables(gbsg2_raw: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {"synthetic": synthetic(), "gbsg2-grade": gbsg2_by_grade(gbsg2_raw), "bmt": bmt()}


@pytest.mark.parametrize("name", ["synthetic", "gbsg2-grade", "bmt"])
@pytest.mark.parametrize("n_sites", [2, 3, 4, 5, 6])
def test_site_counts_sum_to_the_pooled_counts(tables: dict[str, pd.DataFrame], name: str,
                                              n_sites: int) -> None:
    table = tables[name]
    time, cause = table["time"].to_numpy(), table["cause"].to_numpy()
    n_causes = int(cause.max())
    grid = np.unique(time[cause > 0])
    pooled_n, pooled_d = cause_counts(time, cause, grid, n_causes)
    ref_n, ref_d = brute_force(time, cause, grid, n_causes)
    assert pooled_n.tolist() == ref_n.tolist() and pooled_d.tolist() == ref_d.tolist()
    assert pooled_n.dtype == np.int64 and pooled_d.dtype == np.int64
    assert pooled_d.shape == (n_causes, grid.size)
    parts = split_frame(table, n_sites, seed=n_sites)
    assert len(parts) == n_sites and len({len(p) for p in parts}) > 1  # uneven sites
    site = [cause_counts(p["time"].to_numpy(), p["cause"].to_numpy(), grid, n_causes) for p in parts]
    assert np.sum([s[0] for s in site], axis=0).tolist() == pooled_n.tolist()
    assert np.sum([s[1] for s in site], axis=0).tolist() == pooled_d.tolist()


def test_a_grid_with_censoring_and_later_times(tables: dict[str, pd.DataFrame]) -> None:
    table = tables["gbsg2-grade"]
    time, cause = table["time"].to_numpy(), table["cause"].to_numpy()
    grid = np.concatenate((np.unique(time), [time.max() + 1.0, time.max() + 100.0]))
    n, d = cause_counts(time, cause, grid, 3)
    ref_n, ref_d = brute_force(time, cause, grid, 3)
    assert n.tolist() == ref_n.tolist() and d.tolist() == ref_d.tolist()
    assert n[-2:].tolist() == [0, 0] and d[:, -2:].sum() == 0
    assert d.sum() == int((cause > 0).sum())


def test_row_order_does_not_matter(tables: dict[str, pd.DataFrame]) -> None:
    table = tables["synthetic"]
    time, cause = table["time"].to_numpy(), table["cause"].to_numpy()
    grid = np.unique(time[cause > 0])
    order = np.argsort(time)
    shuffled = cause_counts(time, cause, grid, 2)
    ordered = cause_counts(time[order], cause[order], grid, 2)
    assert shuffled[0].tolist() == ordered[0].tolist() and shuffled[1].tolist() == ordered[1].tolist()


def test_a_site_without_some_cause_answers_in_the_study_shape() -> None:
    time = np.array([1.0, 2.0, 3.0, 5.0])
    n, d = cause_counts(time, np.array([1, 0, 1, 0]), np.array([1.0, 3.0, 4.0]), 3)
    assert n.tolist() == [4, 2, 1]
    assert d.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 0]]


@pytest.mark.parametrize(("time", "cause", "grid", "n_causes", "message"), [
    ([1.0, 2.5], [1, 1], [1.0, 2.0], 2, "not on the global grid"),
    ([1.0, 2.0], [1, 3], [1.0, 2.0], 2, "outside 0..2"),
    ([1.0, 2.0], [1, -1], [1.0, 2.0], 2, "outside 0..2"),
    ([1.0, 2.0], [1.0, 1.5], [1.0, 2.0], 2, "outside 0..2"),
    ([1.0, 2.0], [1], [1.0, 2.0], 2, "one length"),
    ([1.0, 2.0], [1, 2], [2.0, 1.0], 2, "strictly increasing"),
    ([1.0, 2.0], [1, 2], [1.0, 1.0, 2.0], 2, "strictly increasing"),
    ([1.0, 2.0], [0, 0], [1.0, 2.0], 0, "at least 1"),
])
def test_unusable_input_is_refused(time: list[float], cause: list[float], grid: list[float], n_causes: int,
                                   message: str) -> None:
    with pytest.raises(DataError, match=message):
        cause_counts(np.array(time), np.array(cause), np.array(grid), n_causes)

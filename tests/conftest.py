"""Shared fixtures: real cohorts shipped by lifelines and scikit-survival, split into sites."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from federated import Coordinator, InProcessTransport, Site


def split_frame(df: pd.DataFrame, n_sites: int, seed: int) -> list[pd.DataFrame]:
    """Shuffle rows and cut them into ``n_sites`` uneven, non-empty parts."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(df))
    weights = rng.uniform(0.3, 1.0, n_sites)
    cuts = np.round(np.cumsum(weights / weights.sum())[:-1] * len(df)).astype(int)
    return [df.iloc[part].reset_index(drop=True) for part in np.split(order, cuts)]


def coordinator(parts: Sequence[pd.DataFrame], session: str = "test") -> Coordinator:
    """An in-process coordinator over one site per part."""
    sites = [Site(f"site-{i}", part) for i, part in enumerate(parts)]
    return Coordinator(InProcessTransport(sites), session=session)


@pytest.fixture(scope="session")
def rossi() -> pd.DataFrame:
    """Rossi et al. (1980) recidivism data, 432 rows, time in weeks (lifelines)."""
    from lifelines.datasets import load_rossi

    return load_rossi()


@pytest.fixture(scope="session")
def gbsg2() -> pd.DataFrame:
    """GBSG2 breast-cancer cohort, 686 rows, time in days (scikit-survival)."""
    from federated.demo_study import gbsg2_table

    return gbsg2_table()


ROSSI_COVARIATES = ("fin", "age", "race", "wexp", "mar", "paro", "prio")
GBSG2_COVARIATES = ("age", "tsize", "tgrade", "pnodes", "progrec", "estrec", "hormone_therapy",
                    "postmenopausal")

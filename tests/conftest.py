"""Shared fixtures: real cohorts shipped by lifelines and scikit-survival, split into sites."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from federated import (
    CohortSpec,
    Coordinator,
    CoxFit,
    DisclosurePolicy,
    InProcessTransport,
    KMFit,
    Site,
    fit_cox,
    fit_km,
)


def split_frame(df: pd.DataFrame, n_sites: int, seed: int) -> list[pd.DataFrame]:
    """Shuffle rows and cut them into ``n_sites`` uneven, non-empty parts."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(df))
    weights = rng.uniform(0.3, 1.0, n_sites)
    cuts = np.round(np.cumsum(weights / weights.sum())[:-1] * len(df)).astype(int)
    return [df.iloc[part].reset_index(drop=True) for part in np.split(order, cuts)]


def coordinator(parts: Sequence[pd.DataFrame], session: str = "test",
                secure: bool | None = None) -> Coordinator:
    """An in-process coordinator over one site per part; secure by default with ≥ 2 sites."""
    sites = [Site(f"site-{i}", part) for i, part in enumerate(parts)]
    secure = len(parts) >= 2 if secure is None else secure
    return Coordinator(InProcessTransport(sites), session=session, secure=secure)


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


#: Maths tests switch the disclosure rules off (tiny random cohorts, 1–2 sites); the rules
#: have their own tests in tests/federated/test_privacy.py.
PERMISSIVE = DisclosurePolicy(min_sites=1, min_patients_per_site=0, min_events_per_site=0,
                              min_cell_count=1, min_events_per_covariate=0)


def fed_cox(parts: Sequence[pd.DataFrame], cohort: CohortSpec, *, secure: bool | None = None,
            **kw: Any) -> CoxFit:
    """Federated Cox over one in-process site per part (secure aggregation when ≥ 2 sites)."""
    kw.setdefault("policy", PERMISSIVE)
    return fit_cox(coordinator(parts, secure=secure), cohort, **kw)


def fed_km(parts: Sequence[pd.DataFrame], cohort: CohortSpec, *, secure: bool | None = None,
           **kw: Any) -> KMFit:
    """Federated Kaplan–Meier over one in-process site per part."""
    kw.setdefault("policy", PERMISSIVE)
    return fit_km(coordinator(parts, secure=secure), cohort, **kw)


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace after ``fedprog demo`` (run once per session: copy it with
    :func:`copy_workspace` before changing it)."""
    ws = tmp_path_factory.mktemp("demo") / "ws"
    res = subprocess.run([sys.executable, "-m", "fedprog", "demo", "--workspace", str(ws)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return ws


def copy_workspace(src: Path, dst: Path) -> Path:
    """A private copy of workspace ``src`` at ``dst`` (its sites' data paths rewritten)."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "workspace.json").read_text())
    for info in manifest["sites"].values():
        info["data"] = info["data"].replace(str(src), str(dst))
    (dst / "workspace.json").write_text(json.dumps(manifest))
    return dst

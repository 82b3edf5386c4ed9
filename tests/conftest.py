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
from federated.disclosure.rules import SiteFloors, StudyProtocol
from federated.site.handler import approve_in_process


def split_frame(df: pd.DataFrame, n_sites: int, seed: int) -> list[pd.DataFrame]:
    """Shuffle rows and cut them into ``n_sites`` uneven, non-empty parts."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(df))
    weights = rng.uniform(0.3, 1.0, n_sites)
    cuts = np.round(np.cumsum(weights / weights.sum())[:-1] * len(df)).astype(int)
    return [df.iloc[part].reset_index(drop=True) for part in np.split(order, cuts)]


#: Maths tests switch the disclosure rules off (tiny random cohorts, 1–2 sites); the rules
#: have their own tests in tests/privacy/ and tests/federated/test_privacy.py.
PERMISSIVE = DisclosurePolicy(min_sites=1, min_patients_per_site=0, min_events_per_site=0,
                              min_cell_count=1, min_events_per_covariate=0)
#: Maths tests switch the sites' own floors off too (the rules have their own tests in tests/privacy/)
PERMISSIVE_FLOORS = SiteFloors(min_sites=1, min_patients_per_site=0, min_events_per_site=0, min_cell_count=1,
                               min_events_per_covariate=0, max_abs_lp=690.0)


def make_sites(parts: Sequence[pd.DataFrame], floors: SiteFloors | None = None, **kw: Any) -> list[Site]:
    """One in-process site per part, named ``site-0``, ``site-1``, …"""
    return [Site(f"site-{i}", part, floors=floors or PERMISSIVE_FLOORS, **kw) for i, part in enumerate(parts)]


def approve(sites: Sequence[Site], cohorts: Sequence[CohortSpec], policy: DisclosurePolicy | None = None,
            secure: bool = True, **fields: Any) -> StudyProtocol:
    """Every site's operator approves one study over ``cohorts`` (the test acts as each operator)."""
    maths = policy is None or policy == PERMISSIVE
    fields.setdefault("max_abs_lp", 690.0 if maths else 30.0)
    fields.setdefault("allow_small_time_cells", maths)  # maths tests compare exact, per-day fits
    return approve_in_process(sites, StudyProtocol(study_id="test", cohorts=tuple(cohorts),
                                                   policy=policy or PERMISSIVE, secure=secure, **fields))


def coordinator(parts: Sequence[pd.DataFrame], cohort: CohortSpec, session: str = "test",
                secure: bool | None = None, policy: DisclosurePolicy | None = None,
                floors: SiteFloors | None = None) -> Coordinator:
    """An in-process coordinator over one approved site per part; secure by default with ≥ 2 sites."""
    sites = make_sites(parts, floors)
    secure = len(parts) >= 2 if secure is None else secure
    protocol = approve(sites, [cohort], policy, secure)
    return Coordinator(InProcessTransport(sites), session=session, protocol=protocol)


@pytest.fixture(scope="session")
def rossi() -> pd.DataFrame:
    """Rossi et al. (1980) recidivism data, 432 rows, time in weeks (lifelines)."""
    from lifelines.datasets import load_rossi

    return load_rossi()


@pytest.fixture(scope="session")
def gbsg2() -> pd.DataFrame:
    """GBSG2 breast-cancer cohort, 686 rows, time in days, in the demo study's coding (tumour size
    and grade banded as the external cohort records them)."""
    from federated.demo_study import gbsg2_table

    return gbsg2_table()


@pytest.fixture(scope="session")
def gbsg2_raw() -> pd.DataFrame:
    """GBSG2 as scikit-survival ships it: tumour size in mm, grade 1/2/3 (three groups)."""
    from federated.demo_study import gbsg2_table

    return gbsg2_table(banded=False)


ROSSI_COVARIATES = ("fin", "age", "race", "wexp", "mar", "paro", "prio")
GBSG2_COVARIATES = ("age", "tsize", "tgrade", "pnodes", "progrec", "estrec", "hormone_therapy",
                    "postmenopausal")


def fed_cox(parts: Sequence[pd.DataFrame], cohort: CohortSpec, *, secure: bool | None = None,
            floors: SiteFloors | None = None, **kw: Any) -> CoxFit:
    """Federated Cox over one in-process site per part (secure aggregation when ≥ 2 sites); the
    study's ``policy`` (default :data:`PERMISSIVE`) is what every site approved."""
    kw.setdefault("policy", PERMISSIVE)
    coord = coordinator(parts, cohort, secure=secure, policy=kw["policy"], floors=floors)
    return fit_cox(coord, cohort, **kw)


def fed_km(parts: Sequence[pd.DataFrame], cohort: CohortSpec, *, secure: bool | None = None,
           floors: SiteFloors | None = None, **kw: Any) -> KMFit:
    """Federated Kaplan–Meier over one in-process site per part."""
    kw.setdefault("policy", PERMISSIVE)
    coord = coordinator(parts, cohort, secure=secure, policy=kw["policy"], floors=floors)
    return fit_km(coord, cohort, **kw)


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace after ``fedprog demo`` (run once per session: copy it with
    :func:`copy_workspace` before changing it)."""
    ws = tmp_path_factory.mktemp("demo") / "ws"
    res = subprocess.run([sys.executable, "-m", "fedprog", "demo", "--workspace", str(ws)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return ws


@pytest.fixture(scope="session")
def second_model_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace after ``fedprog demo --second-model`` (the spline model released first, then the
    linear one; run once per session: copy it with :func:`copy_workspace` before changing it)."""
    ws = tmp_path_factory.mktemp("demo2") / "ws"
    res = subprocess.run([sys.executable, "-m", "fedprog", "demo", "--second-model", "--workspace", str(ws)],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    (ws / "demo-output.txt").write_text(res.stdout, encoding="utf-8")
    return ws


def copy_workspace(src: Path, dst: Path) -> Path:
    """A private copy of workspace ``src`` at ``dst`` (its sites' data paths rewritten)."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "workspace.json").read_text())
    for info in manifest["sites"].values():
        info["data"] = info["data"].replace(str(src), str(dst))
    (dst / "workspace.json").write_text(json.dumps(manifest))
    return dst


#: the demo's release approver (fedprog/demo_cmd.py pins them and keeps their key in the workspace)
DEMO_APPROVER = "Demo Release Approver (fedprog demo)"


def release_args(ws: Path) -> list[str]:
    """``fedprog model release`` options naming the demo workspace's approver and key."""
    return ["--approver", DEMO_APPROVER, "--key", str(Path(ws) / "demo-keys" / "release-approver.pem")]


def new_approver(name: str = "Dr. A. Approver", roles: Sequence[str] = ("approver",)) -> tuple[Any, Any]:
    """A fresh person and their private key (:mod:`ledger.signatures`), for registries built in tests."""
    from cryptography.hazmat.primitives import serialization

    from ledger.signatures import new_key

    pem, person = new_key(name, list(roles))  # type: ignore[arg-type]
    return person, serialization.load_pem_private_key(pem, password=None)


def signed_release(registry: Any, ref: str, person: Any, key: Any, **kw: Any) -> Any:
    """Release ``ref`` in ``registry`` with ``person``'s signature over its release subject."""
    from ledger.signatures import sign

    subject = registry.release_subject(ref, kw.get("significant_change", ""))  # refused here if the gate is
    approval = sign(key, person, "approver", subject, "2026-12-07T00:00:00Z")
    return registry.release(ref, approval, **kw)

"""A reader of releases differences a model and its successor retrained after one withdrawal.

Before issue 15 the artifact published exact n, events and the centre Σx / n, so
``n₁·c₁ − n₂·c₂`` was the withdrawn patient's covariate vector and the events' difference her
event flag. Now the centre is the study's reference patient, counts are rounded to multiples of k,
and each site pads a difference of fewer than k patients to k (:mod:`federated.site.contribution`):
whatever the reader computes from the two artifacts is a function of at least k patients' rows.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from federated.demo_study import DEMO_INPUTS
from tests.conftest import copy_workspace
from tests.fedprog.test_cli import run

K = 5
REVOKED = "A-0002"
Retrained = tuple[Path, dict[str, Any], dict[str, Any], tuple[str, str]]


def _cli(*args: str | Path) -> dict[str, Any]:
    res = run(*args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def _used(ws: Path, site: str, job: str) -> set[str]:
    """The patients ``site`` contributed to ``job`` (its private usage record: ground truth)."""
    db = sqlite3.connect(ws / "sites" / site / "consent.sqlite")
    out = {p for (p,) in db.execute("SELECT patient FROM usage WHERE job = ?", (job,))}
    db.close()
    return out


@pytest.fixture(scope="module")
def retrained(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Retrained:
    ws = copy_workspace(demo_workspace, tmp_path_factory.mktemp("revoke") / "ws")
    _cli("consent", "revoke", "--site", "hospital-a", "--patient", REVOKED, "--workspace", ws)
    _cli("model", "retrain", "gbsg2-recurrence@1", "--workspace", ws)
    models = {m["version"]: m for m in _cli("model", "list", "--workspace", ws)["models"]
              if m["model_id"] == "gbsg2-recurrence"}  # not the demo's model recalibrated at Rotterdam
    first, second = (json.loads((ws / "models" / f"{models[v]['sha256']}.json").read_text()) for v in "12")
    return ws, first, second, (models["1"]["job"], models["2"]["job"])


@pytest.mark.req("SRS-PRIV-020", "SRS-PRIV-021", "SRS-PRIV-022", "RC-PRIV-004")
def test_the_centre_attack_on_two_artifacts_recovers_nothing(retrained: Retrained) -> None:
    ws, first, second, jobs = retrained
    names = list(DEMO_INPUTS)
    table = pd.read_csv(ws / "sites" / "hospital-a" / "data.csv")
    her = table.loc[table["patient_id"] == REVOKED, names].to_numpy(float)[0]
    her = np.clip(her, [DEMO_INPUTS[n].min for n in names], [DEMO_INPUTS[n].max for n in names])
    c1, c2 = (np.array(a["baseline_survival"]["center"]) for a in (first, second))
    n1, n2 = first["training"]["n"], second["training"]["n"]
    attack = n1 * c1 - n2 * c2
    width = np.array([DEMO_INPUTS[n].max - DEMO_INPUTS[n].min for n in names])
    # the centre no longer moves with the data; the counts move by a multiple of k
    assert np.array_equal(c1, c2) and (n1 - n2) % K == 0
    assert (first["training"]["events"] - second["training"]["events"]) % K == 0
    assert not np.allclose(attack, her, atol=0.05 * width.max())
    # control (ground truth): on the old release — exact n and the data mean — the attack is the sum
    # over the patients who differ; with her alone that is her row exactly, now it is k patients' sum
    before, after = (_used(ws, "hospital-a", job) for job in jobs)
    rows = table.set_index("patient_id")[names].clip(lower=[DEMO_INPUTS[n].min for n in names],
                                                      upper=[DEMO_INPUTS[n].max for n in names], axis=1)
    old_attack = rows.loc[sorted(before)].sum().to_numpy() - rows.loc[sorted(after)].sum().to_numpy()
    alone = rows.loc[sorted(before)].sum().to_numpy() - rows.loc[sorted(before - {REVOKED})].sum().to_numpy()
    np.testing.assert_allclose(alone, her, atol=1e-9)  # the attack works on a one-patient difference
    assert not np.allclose(old_attack, her, atol=0.05 * width.max())  # not on a k-patient one


@pytest.mark.req("SRS-PRIV-022", "RC-PRIV-004")
def test_the_two_models_differ_by_at_least_k_patients_at_every_site(retrained: Retrained) -> None:
    """Ground truth, from the sites' private usage records: whatever differs between the two
    artifacts (coefficients, baseline, counts) is a function of at least k patients at each site."""
    ws, first, second, jobs = retrained
    assert second["training"]["sites"] == first["training"]["sites"]
    for site in first["training"]["sites"]:
        before, after = (_used(ws, site, job) for job in jobs)
        assert before and after
        diff = before ^ after
        if site == "hospital-a":
            assert REVOKED in before and REVOKED not in after
            assert len(diff) == K  # her and k − 1 others the site drew, the reader knows not whom
        else:
            assert len(diff) == 0

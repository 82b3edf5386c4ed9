"""``fedprog competing`` on the Rotterdam tumour bank split into three hospitals.

Causes as in ``tests/fedprog/models_example.py`` section 4: recurrence (1), or death without recurrence
first (2). Deaths without recurrence are rare in the first year (3 to 6 per hospital), so at the default
k = 5 every site refuses every rung up to yearly (README, "Competing risks"). The policy that works, and
what these tests run: k = 3 (``--min-cell-count 3``, the in-process sites' floor too), the yearly grid,
follow-up censored at 5 years, and ``--shift-sparse-censoring`` (a few women censored in years 1–4). The
references are the estimators run in this process over the same tables and settings (each pinned to
lifelines and scikit-survival on pooled rows in ``tests/federated/analyses``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federated.analyses.cause_specific import FederatedCauseSpecificCox
from federated.analyses.competing_estimator import FederatedAalenJohansen
from federated.demo_study import ROTTERDAM_CSV
from federated.disclosure.rules import SiteFloors
from federated.site.handler import Site
from tests.conftest import split_frame
from tests.fedprog.test_cli import run, site_args

pytestmark = pytest.mark.req("SRS-CLI-006")

SETTINGS = {"time_grid": "year", "time_unit": "year", "max_time": 5.0, "shift_sparse_censoring": True,
            "policy": {"min_cell_count": 3}}
FLAGS = ["--time", "years", "--cause", "status", "--causes", "1,2", "--event-of-interest", "1",
         "--time-unit", "year", "--time-grid", "year", "--max-time", "5", "--horizons", "1,3,5",
         "--min-cell-count", "3", "--shift-sparse-censoring"]


def rotterdam() -> pd.DataFrame:
    r = pd.read_csv(ROTTERDAM_CSV)
    relapse = r["recur"] == 1
    return pd.DataFrame({"years": np.where(relapse, r["rtime"], r["dtime"]) / 365.25,
                         "status": np.where(relapse, 1, np.where(r["death"] == 1, 2, 0)),
                         "age": r["age"].astype(float), "nodes": r["nodes"].astype(float)})


@pytest.fixture(scope="module")
def parts() -> list[pd.DataFrame]:
    return split_frame(rotterdam(), 3, seed=3)


@pytest.fixture(scope="module")
def paths(parts: list[pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("rotterdam")
    out = []
    for i, part in enumerate(parts):
        out.append(folder / f"h{i}.csv")
        part.to_csv(out[-1], index=False)
    return out


def sites(parts: list[pd.DataFrame]) -> list[Site]:
    return [Site(f"h{i}", p, floors=SiteFloors(min_cell_count=3)) for i, p in enumerate(parts)]


def test_without_covariates_the_aalen_johansen_incidence(parts: list[pd.DataFrame], paths: list[Path],
                                                        tmp_path: Path) -> None:
    res = run("competing", *site_args(paths), *FLAGS, "--json")
    assert res.returncode == 0, res.stderr
    body = json.loads(res.stdout)
    aj = FederatedAalenJohansen(**SETTINGS).fit_sites(sites(parts), "years", "status", event_of_interest=1,
                                                      causes=[1, 2])
    curve = aj.fit_.incidence
    lower, upper = curve.interval_at([1.0, 3.0, 5.0])
    assert body["kind"] == "aalen-johansen" and body["time_grid"] == "year" and body["min_cell_count"] == 3
    assert body["sites"] == ["h0", "h1", "h2"] and not body["dropped"] and body["secure_aggregation"]
    for j, code in enumerate(("1", "2")):
        got = body["causes"][code]
        assert got["events"] == aj.fit_.events[j]
        assert np.allclose(got["cif"], curve.cif_at([1.0, 3.0, 5.0])[j], rtol=0, atol=1e-12)
        assert np.allclose(got["ci_lower"], lower[j], rtol=0, atol=1e-12)
        assert np.allclose(got["ci_upper"], upper[j], rtol=0, atol=1e-12)
    assert 0.3 < body["causes"]["1"]["cif"][-1] < 0.5  # recurrence by 5 years (README: about 0.4)
    shown = run("competing", *site_args(paths), *FLAGS)
    assert shown.returncode == 0, shown.stderr
    assert "Aalen–Johansen cumulative incidence" in shown.stdout
    assert f"{body['causes']['1']['cif'][-1]:.3f}" in shown.stdout


def test_with_covariates_the_cause_specific_models_and_absolute_risk(
        parts: list[pd.DataFrame], paths: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "risk.json"
    res = run("competing", *site_args(paths), *FLAGS, "--covariates", "age,nodes",
              "--reference", "age=55,nodes=2", "--out", out)
    assert res.returncode == 0, res.stderr
    assert "cause-specific Cox model of cause 1" in res.stdout
    assert "absolute risk of the reference" in res.stdout
    body = json.loads(out.read_text())
    csc = FederatedCauseSpecificCox(**SETTINGS, inputs={"age": {"reference": 55}, "nodes": {"reference": 2}})
    csc.fit_sites(sites(parts), "years", "status", ["age", "nodes"], event_of_interest=1, causes=[1, 2])
    patient = pd.DataFrame({"age": [55.0], "nodes": [2.0]})
    assert body["kind"] == "cause-specific-cox" and body["reference"] == {"age": 55.0, "nodes": 2.0}
    for code in ("1", "2"):
        got = body["causes"][code]
        assert np.allclose([r["coef"] for r in got["summary"]], csc.params_[code], rtol=0, atol=1e-12)
        risk = csc.predict_absolute_risk(patient, [1.0, 3.0, 5.0], cause=code)[0]
        assert np.allclose(got["absolute_risk"], risk, rtol=0, atol=1e-12)
        assert f"{risk[-1]:.3f}" in res.stdout
    assert csc.time_grid_ == body["time_grid"] == "year"
    assert body["causes"]["2"]["summary"][0]["coef"] > 0  # death without recurrence rises with age


@pytest.mark.parametrize(("change", "message"), [
    ({"--causes": None}, "--causes is required"),
    ({"--event-of-interest": "3"}, "--event-of-interest '3': want one of --causes ['1', '2']"),
    ({"--horizons": "1,7"}, "--horizons 7 lies beyond --max-time 5"),
    ({"--horizons": "1,x"}, "--horizons '1,x': 'x' is not a number"),
    ({"--cause": "relapse"}, "unknown column 'relapse'"),
    ({"--covariates": "age", "--reference": "grade=2"}, "--reference 'grade=2': want NAME=VALUE"),
])
def test_bad_input_is_one_line_and_writes_nothing(paths: list[Path], tmp_path: Path,
                                                  change: dict[str, str | None], message: str) -> None:
    valued = FLAGS[:-1]  # the last flag is a switch
    flags: dict[str, str | None] = dict(zip(valued[::2], valued[1::2], strict=True)) | change
    args = [a for k, v in flags.items() if v is not None for a in (k, v)] + ["--shift-sparse-censoring"]
    out = tmp_path / "out.json"
    res = run("competing", *site_args(paths), *args, "--out", out)
    assert res.returncode == 2, res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedprog: error: ") and message in lines[0], res.stderr
    assert not out.exists()


def test_an_undeclared_code_is_one_line(parts: list[pd.DataFrame], tmp_path: Path) -> None:
    odd = [p.copy() for p in parts]
    odd[1].loc[odd[1].index[:4], "status"] = 3  # a third cause nobody declared
    paths = []
    for i, part in enumerate(odd):
        paths.append(tmp_path / f"h{i}.csv")
        part.to_csv(paths[-1], index=False)
    for extra in ([], ["--covariates", "age"]):
        out = tmp_path / "out.json"
        res = run("competing", *site_args(paths), *FLAGS, *extra, "--out", out)
        assert res.returncode == 2, res.stdout
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "h1" in lines[0] and "outside the declared" in lines[0], res.stderr
        assert not out.exists()

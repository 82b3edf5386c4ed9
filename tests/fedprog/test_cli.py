"""The ``fedprog`` command as a user runs it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federated.disclosure.policy import round_to_k
from tests.conftest import split_frame

FEDPROG = [sys.executable, "-m", "fedprog"]
#: width of each rung of the public time-grid ladder in days (Julian year; a quarter is three months)
GRID_DAYS = {"day": 1.0, "week": 7.0, "month": 365.25 / 12, "quarter": 365.25 / 4, "year": 365.25}


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*FEDPROG, *map(str, args)], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from lifelines.datasets import load_rossi

    folder = tmp_path_factory.mktemp("sites")
    paths = []
    for i, part in enumerate(split_frame(load_rossi(), 3, seed=0)):
        paths.append(folder / f"h{i}.csv")
        part.to_csv(paths[-1], index=False)
    return paths


def site_args(paths: list[Path]) -> list[str]:
    return [a for i, p in enumerate(paths) for a in ("--site", f"h{i}={p}")]


COV = "fin,age,race,wexp,mar,paro,prio"


@pytest.mark.req("SYS-FED-001")
@pytest.mark.req("SRS-CLI-002", "SRS-FED-001", "SRS-SEC-003")
def test_train_writes_the_artifact_and_matches_lifelines(sites: list[Path], tmp_path: Path) -> None:
    from lifelines import CoxPHFitter
    from lifelines.datasets import load_rossi

    out = tmp_path / "model.json"
    res = run("train", *site_args(sites), "--time", "week", "--event", "arrest", "--covariates", COV,
              "--horizons", "26,52", "--out", out)
    assert res.returncode == 0, res.stderr
    assert "HR 95% CI" in res.stdout and "converged" in res.stdout
    art = json.loads(out.read_text())
    # k-cells at the source: the sites answer on the finest rung of the ladder where every cell holds 0 or
    # >= 5 of their patients, and the fit is the pooled fit on times coarsened up to that rung's points
    grid = art["training"]["time_grid"]
    assert grid in GRID_DAYS and art["training"]["exact_on"] == f"event times coarsened to the {grid} grid"
    width = GRID_DAYS[grid]  # --time-unit defaults to day
    pooled = load_rossi().assign(week=lambda d: np.ceil(np.round(d["week"] / width, 9)) * width)
    ref = CoxPHFitter().fit(pooled, "week", "arrest", fit_options={"precision": 1e-12})
    assert max(abs(art["coefficients"][k] - ref.params_[k]) for k in ref.params_.index) <= 1e-6
    assert art["outcome"]["horizons"] == [26.0, 52.0]
    assert art["training"]["secure_aggregation"] is True  # on by default


@pytest.mark.req("SRS-CLI-002")
def test_train_json_and_study_file(sites: list[Path], tmp_path: Path) -> None:
    study = tmp_path / "study.toml"
    study.write_text(
        'time = "week"\nevent = "arrest"\ncovariates = ["fin", "age", "prio"]\nties = "breslow"\n'
        'time_unit = "week"\n'
        + "".join(f'[[sites]]\nname = "h{i}"\npath = "{p}"\n' for i, p in enumerate(sites)))
    res = run("train", "--study", study, "--ties", "efron", "--json", "--out", tmp_path / "m.json")
    assert res.returncode == 0, res.stderr
    art = json.loads(res.stdout)
    assert art["ties"] == "efron"  # the flag wins over the file
    assert [i["name"] for i in art["inputs"]] == ["fin", "age", "prio"]  # keys sort; inputs keep order
    assert set(art["coefficients"]) == {"fin", "age", "prio"}
    assert art == json.loads((tmp_path / "m.json").read_text())


@pytest.mark.req("SYS-PRIV-001")
@pytest.mark.req("SRS-PRIV-004")
def test_transcripts_are_written(sites: list[Path], tmp_path: Path) -> None:
    res = run("train", *site_args(sites), "--time", "week", "--event", "arrest", "--covariates", "age",
              "--transcript-dir", tmp_path / "tx", "--out", tmp_path / "m.json")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "tx").iterdir()) == ["h0.jsonl", "h1.jsonl", "h2.jsonl"]


@pytest.mark.req("SYS-FED-001")
@pytest.mark.req("SRS-CLI-002", "SRS-FED-005")
def test_km_json(sites: list[Path], tmp_path: Path) -> None:
    res = run("km", *site_args(sites), "--time", "week", "--event", "arrest", "--group", "fin",
              "--levels", "0,1", "--json", "--out", tmp_path / "km.json")
    assert res.returncode == 0, res.stderr
    body = json.loads(res.stdout)
    assert set(body["groups"]) == {"0", "1"} and body["logrank"]["df"] == 1
    assert body == json.loads((tmp_path / "km.json").read_text())


def _bad_inputs(sites: list[Path], tmp: Path) -> dict[str, tuple[list[str | Path], str]]:
    df = pd.read_csv(sites[0])
    text, no_events = tmp / "text.csv", tmp / "none.csv"
    df.assign(age=df["age"].astype(str) + " years").to_csv(text, index=False)
    df.assign(arrest=0).to_csv(no_events, index=False)
    dups = []
    for i, path in enumerate(sites):
        dups += ["--site", f"d{i}={tmp / f'dup{i}.csv'}"]
        part = pd.read_csv(path)
        part.assign(age2=part["age"] * 2).to_csv(tmp / f"dup{i}.csv", index=False)
    base = ["--time", "week", "--event", "arrest", "--out", tmp / "m.json"]
    return {
        "missing file": (["train", *site_args(sites), "--site", f"a={tmp / 'nope.csv'}", *base,
                          "--covariates", "age"], "nope.csv: file not found"),
        "unknown column": (["train", *site_args(sites), *base, "--covariates", "age,agee"],
                           "unknown column 'agee'"),
        # in a secure study a site's data error carries no number (value-free errors); in plaintext it does
        "non-numeric covariate": (["train", *site_args(sites), "--site", f"a={text}", *base,
                                   "--covariates", "age"],
                                  "column 'age' is not numeric (# non-numeric values)"),
        "non-numeric covariate, plaintext": (["train", *site_args(sites), "--site", f"a={text}", *base,
                                              "--covariates", "age", "--no-secure-agg"],
                                             f"column 'age' is not numeric ({len(df)} non-numeric values)"),
        "site with no events": (["train", *site_args(sites), "--site", f"x={no_events}", *base,
                                 "--covariates", "age"],
                                "site 'x': refused by rule min_events_per_site: fewer than 5 events"),
        "singular design": (["train", *dups, *base, "--covariates", "age,prio,age2"], "collinear"),
        "too few sites": (["train", "--site", f"a={sites[0]}", *base, "--covariates", "age"],
                          "refused by rule min_sites: 1 site(s) taking part, at least 3 required"),
        "undeclared levels": (["km", *site_args(sites), "--time", "week", "--event", "arrest",
                               "--group", "fin"], "declare the levels of 'fin'"),
        "bad site flag": (["train", "--site", "nameonly", *base], "--site 'nameonly': want NAME=PATH"),
        "bad ties": (["train", *site_args(sites), *base, "--covariates", "age", "--ties", "exact"],
                     "ties: Input should be 'efron' or 'breslow'"),
        "missing time": (["train", *site_args(sites), "--event", "arrest", "--out", tmp / "m.json"],
                         "--time is required"),
        "bad study file": (["train", "--study", tmp / "nope.toml", "--out", tmp / "m.json"],
                           "study file not found"),
        "km unknown group": (["km", *site_args(sites), "--time", "week", "--event", "arrest",
                              "--group", "colour", "--levels", "red,blue"], "unknown column 'colour'"),
    }


@pytest.mark.req("SYS-OPS-001")
@pytest.mark.req("SRS-CLI-001")
@pytest.mark.parametrize("case", ["missing file", "unknown column", "non-numeric covariate",
                                  "non-numeric covariate, plaintext", "site with no events",
                                  "singular design", "bad site flag", "bad ties", "missing time",
                                  "bad study file", "km unknown group", "too few sites", "undeclared levels"])
def test_bad_input_is_one_clear_line_and_exit_2(sites: list[Path], tmp_path: Path, case: str) -> None:
    args, message = _bad_inputs(sites, tmp_path)[case]
    res = run(*args)
    assert res.returncode == 2, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("fedprog: error:")]
    assert len(errors) == 1 and message in errors[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "m.json").exists()


def demo_training(revoked: tuple[str, ...] = (), consent: bool = True) -> tuple[dict[str, int], list[str]]:
    """Reference for the demo's training cohort, from the published split and consent draw: the
    consenting women (all women with ``consent=False``) of each hospital that can answer on the year
    grid, i.e. whose every cell (event status × year of follow-up, administratively censored at 5
    Julian years) holds 0 or ≥ k = 5 of them; and the hospitals that cannot (k-cells at the source)."""
    from federated.demo_study import HOSPITALS, declined, gbsg2_table, split

    year, k = 365.25, 5
    kept, dropped = {}, []
    for name, part in zip(HOSPITALS, split(gbsg2_table()), strict=True):
        ids = [f"{name[-1].upper()}-{i + 1:04d}" for i in range(len(part))]
        out = (declined(ids) if consent else set()) | set(revoked)
        rows = part[[p not in out for p in ids]]
        time = np.minimum(rows["time"].to_numpy(), 5 * year)
        event = np.where(rows["time"].to_numpy() > 5 * year, 0, rows["event"].to_numpy())
        _, counts = np.unique(np.column_stack([event, np.ceil(np.round(time / year, 9))]), axis=0,
                              return_counts=True)
        if np.any(counts < k):
            dropped.append(name)
        else:
            kept[name] = len(rows)
    return kept, dropped


@pytest.mark.req("SRS-CLI-003")
def test_demo_runs_and_prints_the_summary(tmp_path: Path) -> None:
    kept, dropped = demo_training()
    assert dropped == ["hospital-d"]
    res = run("demo", "--workspace", tmp_path / "ws")
    assert res.returncode == 0, res.stderr
    for text in ("hospital-a", "hospital-d", "pnodes", "HR 95% CI", "converged",
                 f"{sum(kept.values())} patients", "20 declined",
                 "dropped: fewer than k patients in a cell of every time grid up to 'year'",
                 "cosigned by all 4 site witnesses", "verified"):
        assert text in res.stdout
    art = json.loads(next((tmp_path / "ws" / "models").glob("*[0-9a-f].json")).read_text())
    assert art["model_id"] == "gbsg2-recurrence" and np.isfinite(art["coefficients"]["pnodes"])
    assert art["training"]["n"] == round_to_k(sum(kept.values()), 5)  # released rounded to a multiple of k
    assert art["training"]["consent_checkpoint"]["size"] == 686
    assert art["training"]["sites"] == list(kept)
    assert [d["site"] for d in art["training"]["dropped"]] == dropped
    assert art["training"]["time_grid"] == "year" and art["outcome"]["horizons"] == [1095.75, 1826.25]


@pytest.mark.req("SYS-OPS-001")
@pytest.mark.req("SRS-CLI-001")
def test_help_everywhere() -> None:
    for args in ([], ["train"], ["km"], ["demo"]):
        res = run(*args, "--help")
        assert res.returncode == 0 and "Usage" in res.stdout


@pytest.mark.req("SYS-PRIV-001")
@pytest.mark.req("SYS-SEC-001")
@pytest.mark.req("SRS-PRIV-004")
def test_audit_transcript_command(sites: list[Path], tmp_path: Path) -> None:
    res = run("train", *site_args(sites), "--time", "week", "--event", "arrest", "--covariates", "age,prio",
              "--transcript-dir", tmp_path / "tx", "--out", tmp_path / "m.json")
    assert res.returncode == 0, res.stderr
    ok = run("audit", "transcript", tmp_path / "tx")
    assert ok.returncode == 0 and ok.stdout.startswith("PASS: ")
    res = run("train", *site_args(sites), "--time", "week", "--event", "arrest", "--covariates", "age,prio",
              "--no-secure-agg", "--transcript-dir", tmp_path / "plain", "--out", tmp_path / "m.json")
    bad = run("audit", "transcript", tmp_path / "plain", "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["ok"] is False
    missing = run("audit", "transcript", tmp_path / "nowhere")
    assert missing.returncode == 2 and "not a folder" in missing.stderr

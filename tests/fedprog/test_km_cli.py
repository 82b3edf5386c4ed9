"""``fedprog km`` with a declared group level that no site holds (issue 17)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from lifelines.statistics import multivariate_logrank_test

from tests.conftest import split_frame
from tests.fedprog.test_cli import run, site_args


@pytest.fixture(scope="module")
def rossi() -> pd.DataFrame:
    from lifelines.datasets import load_rossi

    return load_rossi()


def _write_sites(frame: pd.DataFrame, folder: Path) -> list[Path]:
    paths = []
    for i, part in enumerate(split_frame(frame, 3, seed=0)):
        paths.append(folder / f"h{i}.csv")
        part.to_csv(paths[-1], index=False)
    return paths


@pytest.mark.req("SRS-FED-013")
def test_an_empty_declared_level_is_not_counted_in_the_df(rossi: pd.DataFrame, tmp_path: Path) -> None:
    sites = _write_sites(rossi, tmp_path)
    study = tmp_path / "study.toml"  # exact times (the study's opt-in) so that lifelines sees the same data
    study.write_text('time = "week"\nevent = "arrest"\ntime_grid = "exact"\nallow_small_time_cells = true\n'
                     + "".join(f'[[sites]]\nname = "h{i}"\npath = "{p}"\n' for i, p in enumerate(sites)))
    res = run("km", "--study", study, "--group", "fin", "--levels", "0,1,2")
    assert res.returncode == 0, res.stderr
    ref = multivariate_logrank_test(rossi["week"], rossi["fin"], rossi["arrest"])
    assert f"log-rank: chi2 = {ref.test_statistic:.4f} on 1 df, p = {ref.p_value:.4g}" in res.stdout


@pytest.mark.req("SRS-FED-013", "SRS-CLI-001")
def test_a_single_non_empty_level_is_one_clear_line(rossi: pd.DataFrame, tmp_path: Path) -> None:
    sites = _write_sites(rossi[rossi["fin"] == 0], tmp_path)
    res = run("km", *site_args(sites), "--time", "week", "--event", "arrest", "--group", "fin",
              "--levels", "0,2")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines() == [
        "fedprog: error: log-rank needs at least two non-empty groups; level(s) 2 hold no patients"]

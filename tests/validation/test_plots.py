"""The report's figures: PNG files, byte-identical for the same results."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from validation.plots import write_plots

pytestmark = pytest.mark.req("SRS-VAL-005")


def results() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    def group(k: int) -> dict[str, Any]:
        p = 0.1 * k
        return {"group": k, "n": 40, "events": 10 + k, "horizons": [1095.0, 1826.0],
                "predicted": [p, p + 0.1], "observed": [p + 0.02, p + 0.08], "observed_lower": [p - 0.05, p],
                "observed_upper": [p + 0.1, p + 0.2], "km_times": [365.25, 730.5, 1461.0],
                "km_survival": [1 - p / 2, 1 - p, 1 - 1.5 * p]}

    def auc(h: float, v: float) -> dict[str, Any]:
        return {"metric": "td_auc", "horizon": h, "estimate": v, "ci_lower": v - 0.05, "ci_upper": v + 0.05}

    sites = {"hospital-a": {"risk_groups": [group(k) for k in range(1, 6)],
                            "metrics": [auc(1095.0, 0.74), auc(1826.0, 0.76)]},
             "hospital-b": {"risk_groups": [], "metrics": []}}
    return sites, [auc(1095.0, 0.75), auc(1826.0, 0.77)]


def test_plots_are_pngs_with_identical_bytes_on_two_runs(tmp_path: Path) -> None:
    sites, pooled = results()
    runs = []
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir()
        runs.append(write_plots(folder, sites, pooled, [1095.0, 1826.0], "day"))
    assert [p["file"] for p in runs[0]] == ["calibration.png", "km_risk_groups.png", "td_auc.png"]
    for first, second in zip(*runs, strict=True):
        data = (tmp_path / "one" / first["file"]).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert data == (tmp_path / "two" / second["file"]).read_bytes()
        assert first["sha256"] == second["sha256"] == hashlib.sha256(data).hexdigest()
        assert b"matplotlib" not in data  # no software version in the metadata

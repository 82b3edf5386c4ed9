"""The report's figures: PNG files, byte-identical for the same results."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from validation.plots import calibration, calibration_caption, calibration_notes, write_plots

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


def _group(k: int, horizons: list[float], observed: list[float], km_times: list[float],
           km_survival: list[float]) -> dict[str, Any]:
    p = 0.1 * k
    return {"group": k, "n": 30, "events": 5 * k, "horizons": horizons, "predicted": [p] * len(horizons),
            "observed": observed, "observed_lower": [max(0.0, o - 0.05) for o in observed],
            "observed_upper": [o + 0.05 for o in observed], "km_times": km_times, "km_survival": km_survival}


def degenerate_sites() -> dict[str, Any]:
    """One plain group, one whose first released step is after 3 y (the report's observed risk is 0),
    one whose released curve ends before 5 y, a suppressed site and a site without groups."""
    return {
        "hospital-a": {"n": 90, "events": 30, "suppressed": None, "risk_groups": [
            _group(1, [1095.0, 1826.0], [0.2, 0.3], [365.0, 1095.0, 1826.0], [0.9, 0.8, 0.7]),
            _group(2, [1095.0], [0.0], [1461.0], [0.75]),
            _group(3, [1095.0], [0.4], [730.5], [0.6])]},
        "hospital-b": {"n": None, "events": None, "suppressed": "refused by rule min_patients_per_site",
                       "risk_groups": []},
        "hospital-c": {"n": 40, "events": 10, "suppressed": None, "risk_groups": []},
    }


@pytest.mark.req("SRS-VAL-009")
def test_the_caption_names_every_group_without_a_plain_point_with_reason_and_counts() -> None:
    notes = calibration_notes(degenerate_sites(), [1095.0, 1826.0], "day")
    got = {(n.site, n.group, n.horizon, n.kind) for n in notes}
    assert got == {("hospital-a", 2, 1095.0, "before first step"), ("hospital-a", 2, 1826.0, "not released"),
                   ("hospital-a", 3, 1826.0, "not released"), ("hospital-b", None, None, "suppressed"),
                   ("hospital-c", None, None, "no groups")}
    open_group = next(n for n in notes if n.kind == "before first step")
    assert open_group.bound == pytest.approx(0.25)  # 1 − KM at its first released step
    caption = calibration_caption(notes, "day")
    assert caption == [
        "every horizon — site suppressed by the disclosure policy, no risk groups: hospital-b (refused by "
        "rule min_patients_per_site).",
        "every horizon — no group of predicted risk meets the disclosure minimums (patients, events): "
        "hospital-c (n=40, 10 events).",
        "by 1095 days (3.0 y) — observed risk 0 in the report is no observation: no Kaplan–Meier step "
        "released by the horizon (a step needs enough events); drawn open, with its possible range: "
        "hospital-a g2 (n=30, 10 events; first step 1461 d; risk 0–0.25).",
        "by 1826 days (5.0 y) — not plotted: the group's released Kaplan–Meier curve ends before the horizon "
        "(later steps below the disclosure minimum): hospital-a g2 (n=30, 10 events; ends at 1461 d); "
        "hospital-a g3 (n=30, 15 events; ends at 730.5 d)."]
    # the plain group is in no note, at either horizon
    assert not any(n.group == 1 for n in notes)


@pytest.mark.req("SRS-VAL-009")
def test_the_calibration_figure_carries_its_caption_and_stays_deterministic(tmp_path: Path) -> None:
    sites = degenerate_sites()
    first = calibration(sites, [1095.0, 1826.0], "day", tmp_path / "one.png")
    second = calibration(sites, [1095.0, 1826.0], "day", tmp_path / "two.png")
    assert first["sha256"] == second["sha256"]
    assert first["caption"] == " ".join(calibration_caption(calibration_notes(sites, [1095.0, 1826.0], "day"),
                                                            "day"))
    assert "hospital-a g2" in first["caption"] and "hospital-b" in first["caption"]
    plain, _ = results()
    assert calibration(plain, [1095.0, 1826.0], "day", tmp_path / "plain.png")["caption"] == (
        "every horizon — no group of predicted risk meets the disclosure minimums (patients, events): "
        "hospital-b.")

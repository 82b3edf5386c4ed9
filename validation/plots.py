"""The validation report's figures as PNG files (matplotlib, Agg; no global pyplot state).

* ``calibration.png`` — per horizon, observed risk (1 − KM, log-log 95% CI) against mean
  predicted risk in each group of predicted risk at each site, with the diagonal of perfect
  calibration;
* ``km_risk_groups.png`` — per site, Kaplan–Meier curves of the groups of predicted risk at the
  released (disclosure-controlled) grid times;
* ``td_auc.png`` — per horizon, a forest plot of the time-dependent AUC at each site and pooled,
  with 95% CIs.

Output is deterministic: fixed size and resolution, and no software or date metadata in the
PNG, so the same results give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ledger.files import sha256_file

DPI = 100
#: PNG metadata: drop matplotlib's "Software" entry (its version) so bytes depend on data only
METADATA: dict[str, str | None] = {"Software": None}


def _save(fig: Figure, path: Path) -> dict[str, str]:
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=DPI, metadata=METADATA)
    return {"file": path.name, "sha256": sha256_file(path)}


def _years(t: float, unit: str) -> str:
    return f"{t:g} {unit}s" if unit != "day" else f"{t:g} days ({t / 365.25:.1f} y)"


def calibration(sites: dict[str, Any], horizons: list[float], unit: str, path: Path) -> dict[str, str]:
    """Observed against predicted risk per risk group, one panel per horizon."""
    fig = Figure(figsize=(5.0 * len(horizons), 4.6))
    for j, h in enumerate(horizons):
        ax = fig.add_subplot(1, len(horizons), j + 1)
        top = 0.05
        for name, site in sites.items():
            xs, ys, lo, hi = [], [], [], []
            for g in site.get("risk_groups", []):
                if h in g["horizons"]:
                    k = g["horizons"].index(h)
                    xs.append(g["predicted"][k])
                    ys.append(g["observed"][k])
                    lo.append(g["observed"][k] - g["observed_lower"][k])
                    hi.append(g["observed_upper"][k] - g["observed"][k])
            if xs:
                ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", capsize=3, label=name, alpha=0.85)
                top = max(top, *xs, *(y + e for y, e in zip(ys, hi, strict=True)))
        ax.plot([0, top], [0, top], "k--", linewidth=1, label="perfect calibration")
        ax.set(xlim=(0, top * 1.05), ylim=(0, top * 1.05), xlabel="mean predicted risk",
               ylabel="observed risk (1 − Kaplan–Meier)", title=f"by {_years(h, unit)}")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Calibration by group of predicted risk, per site")
    fig.tight_layout()
    return {**_save(fig, path), "title": "Calibration: observed vs predicted risk per risk group"}


def km_by_risk_group(sites: dict[str, Any], unit: str, path: Path) -> dict[str, str]:
    """Kaplan–Meier curves of the groups of predicted risk, one panel per site."""
    names = list(sites)
    cols = min(2, max(1, len(names)))
    rows = (len(names) + cols - 1) // cols or 1
    fig = Figure(figsize=(5.5 * cols, 4.0 * rows))
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        groups = sites[name].get("risk_groups", [])
        for g in groups:
            colour = colormaps["viridis"](0.9 * (g["group"] - 1) / max(1, len(groups) - 1))
            ax.step([0.0, *g["km_times"]], [1.0, *g["km_survival"]], where="post", color=colour,
                    label=f"risk group {g['group']} (n={g['n']})")
        if not groups:
            ax.text(0.5, 0.5, "risk groups suppressed (disclosure policy)", ha="center",
                    transform=ax.transAxes)
        ax.set(ylim=(0, 1.02), xlabel=f"time ({unit}s)", ylabel="survival (Kaplan–Meier)", title=name)
        if groups:
            ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("Kaplan–Meier by group of predicted risk (low → high)")
    fig.tight_layout()
    return {**_save(fig, path), "title": "Kaplan–Meier curves by group of predicted risk, per site"}


def td_auc(sites: dict[str, list[dict[str, Any]]], pooled: list[dict[str, Any]], horizons: list[float],
           unit: str, path: Path) -> dict[str, str]:
    """Forest plot of the time-dependent AUC per site and pooled, one panel per horizon."""
    fig = Figure(figsize=(5.0 * len(horizons), 0.5 * (len(sites) + 2) + 1.6))
    for j, h in enumerate(horizons):
        ax: Axes = fig.add_subplot(1, len(horizons), j + 1)
        rows = [(name, _find(entries, h)) for name, entries in sites.items()]
        rows.append(("pooled (fixed effect)", _find(pooled, h)))
        for y, (label, e) in enumerate(reversed(rows)):
            if e is None or e.get("ci_lower") is None:
                ax.text(0.42, y, "not available", va="center", fontsize=8, color="grey")
                continue
            marker = "D" if label.startswith("pooled") else "s"
            ax.errorbar([e["estimate"]], [y], xerr=[[e["estimate"] - e["ci_lower"]],
                                                    [e["ci_upper"] - e["estimate"]]],
                        fmt=marker, color="k" if marker == "D" else "C0", capsize=3)
        ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_yticks(range(len(rows)), [label for label, _ in reversed(rows)], fontsize=8)
        ax.set(xlim=(0.4, 1.0), xlabel="time-dependent AUC (95% CI)", title=f"by {_years(h, unit)}")
    fig.suptitle("Time-dependent AUC (cumulative/dynamic)")
    fig.tight_layout()
    return {**_save(fig, path), "title": "Time-dependent AUC per site and pooled, with 95% CIs"}


def _find(entries: list[dict[str, Any]], horizon: float) -> dict[str, Any] | None:
    for e in entries:
        if e["metric"] == "td_auc" and e["horizon"] is not None and abs(e["horizon"] - horizon) < 1e-9:
            return e
    return None


def write_plots(folder: Path, sites: dict[str, Any], pooled: list[dict[str, Any]], horizons: list[float],
                unit: str) -> list[dict[str, str]]:
    """Write the three figures into ``folder``; return their file names, titles and SHA-256."""
    folder = Path(folder)
    metrics = {name: s.get("metrics", []) for name, s in sites.items()}
    return [calibration(sites, horizons, unit, folder / "calibration.png"),
            km_by_risk_group(sites, unit, folder / "km_risk_groups.png"),
            td_auc(metrics, pooled, horizons, unit, folder / "td_auc.png")]

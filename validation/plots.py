"""The validation report's figures as PNG files (matplotlib, Agg; no global pyplot state).

* ``calibration.png`` — per horizon, observed risk (1 − KM, log-log 95% CI) against mean
  predicted risk in each group of predicted risk at each site, with the diagonal of perfect
  calibration;
* ``km_risk_groups.png`` — per site, Kaplan–Meier curves of the groups of predicted risk at the
  released (disclosure-controlled) grid times;
* ``td_auc.png`` — per horizon, a forest plot of the time-dependent AUC at each site and pooled,
  with 95% CIs.

A logistic model (a recorded binary outcome, one horizon) has instead:

* ``calibration.png`` — observed proportion (Wilson 95% CI, from the released rounded counts) against
  mean predicted probability in each group of predicted probability at each site, with the diagonal
  (:func:`binary_calibration`);
* ``c_statistic.png`` — a forest plot of the C statistic at each site and pooled, with 95% CIs.

Output is deterministic: fixed size and resolution, and no software or date metadata in the
PNG, so the same results give byte-identical files.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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


@dataclass(frozen=True)
class GroupNote:
    """A risk group (or a site's missing groups) the calibration figure cannot show as a plain point
    at one horizon (``None``: at every horizon), with the reason and the counts the report holds."""

    site: str
    group: int | None
    horizon: float | None
    kind: Literal["suppressed", "no groups", "not released", "before first step"]
    n: int | None
    events: int | None
    reason: str
    #: for ``before first step``: the upper bound of the observed risk (1 − KM at the first step)
    bound: float | None = None

    def text(self) -> str:
        """``site gK (n=…, … events; detail)`` as the caption lists it."""
        who = self.site if self.group is None else f"{self.site} g{self.group}"
        counts = "" if self.n is None else f"n={self.n}, {self.events} events"
        inner = "; ".join(p for p in (counts, self.reason) if p)
        return f"{who} ({inner})" if inner else who


#: caption heading of each kind of note
HEADINGS = {
    "suppressed": "site suppressed by the disclosure policy, no risk groups",
    "no groups": "no group of predicted risk meets the disclosure minimums (patients, events)",
    "before first step": "observed risk 0 in the report is no observation: no Kaplan–Meier step released by "
                         "the horizon (a step needs enough events); drawn open, with its possible range",
    "not released": "not plotted: the group's released Kaplan–Meier curve ends before the horizon "
                    "(later steps below the disclosure minimum)",
}


def calibration_caption(notes: list[GroupNote], unit: str) -> list[str]:
    """The figure's caption: one line per horizon and kind of note, naming each group with the
    report's counts (:func:`calibration_notes`)."""
    lines = []
    for horizon in sorted({n.horizon for n in notes}, key=lambda h: -1.0 if h is None else h):
        when = "every horizon" if horizon is None else f"by {_years(horizon, unit)}"
        for kind, heading in HEADINGS.items():
            these = [n.text() for n in notes if n.horizon == horizon and n.kind == kind]
            if these:
                lines.append(f"{when} — {heading}: " + "; ".join(these) + ".")
    return lines


def calibration_notes(sites: dict[str, Any], horizons: list[float], unit: str) -> list[GroupNote]:
    """Every group the calibration figure draws distinctly or leaves out, per horizon, and why:

    * a suppressed site, or a site where no group of predicted risk meets the disclosure minimums
      (``risk_groups`` empty): no points at all;
    * a group whose released Kaplan–Meier curve ends before the horizon (later steps would hold
      fewer events, or leave fewer at risk, than the disclosure minimum): no observed risk there;
    * a group whose first released step lies after the horizon (a step is released only once
      enough events have accumulated): the report's observed risk 0 is no observation, only
      ``0 ≤ risk ≤ 1 − KM(first step)``; drawn as an open marker with that range.
    """
    notes: list[GroupNote] = []
    for name, site in sites.items():
        groups = site.get("risk_groups") or []
        if site.get("suppressed"):
            notes.append(GroupNote(name, None, None, "suppressed", site.get("n"), site.get("events"),
                                   str(site["suppressed"])))
            continue
        if not groups:
            notes.append(GroupNote(name, None, None, "no groups", site.get("n"), site.get("events"), ""))
            continue
        for g in groups:
            steps = g.get("km_times") or []
            for h in horizons:
                if h not in g["horizons"]:
                    last = f"ends at {_when(steps[-1], unit)}" if steps else "no released step"
                    notes.append(GroupNote(name, g["group"], h, "not released", g["n"], g["events"], last))
                elif not any(t <= h for t in steps):
                    bound = 1.0 - g["km_survival"][0]
                    notes.append(GroupNote(name, g["group"], h, "before first step", g["n"], g["events"],
                                           f"first step {_when(steps[0], unit)}; risk 0–{bound:.2f}", bound))
    return notes


def _when(t: float, unit: str) -> str:
    return f"{t:g} {unit}s" if unit != "day" else f"{t:g} d"


def calibration(sites: dict[str, Any], horizons: list[float], unit: str, path: Path) -> dict[str, str]:
    """Observed against predicted risk per risk group, one panel per horizon; groups without an
    observed risk are drawn open or left out, and listed below with the reason
    (:func:`calibration_notes`)."""
    notes = calibration_notes(sites, horizons, unit)
    lines = calibration_caption(notes, unit)
    caption = "\n".join(textwrap.fill(line, 95 * len(horizons), subsequent_indent="    ") for line in lines)
    text_height = 0.12 * (caption.count("\n") + 2) + 0.15 if lines else 0.0  # inches at 7 pt
    height = 4.6 + text_height
    fig = Figure(figsize=(5.0 * len(horizons), height))
    open_groups = {(n.site, n.group, n.horizon): n for n in notes if n.kind == "before first step"}
    for j, h in enumerate(horizons):
        ax = fig.add_subplot(1, len(horizons), j + 1)
        top = 0.05
        for i, (name, site) in enumerate(sites.items()):
            colour = f"C{i % 10}"
            xs, ys, lo, hi, opened = [], [], [], [], []
            for g in site.get("risk_groups") or []:
                if h not in g["horizons"]:
                    continue
                k = g["horizons"].index(h)
                note = open_groups.get((name, g["group"], h))
                if note is not None:
                    opened.append((g["predicted"][k], note.bound or 0.0))
                    continue
                xs.append(g["predicted"][k])
                ys.append(g["observed"][k])
                lo.append(g["observed"][k] - g["observed_lower"][k])
                hi.append(g["observed_upper"][k] - g["observed"][k])
            if xs:
                ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", capsize=3, label=name, alpha=0.85, color=colour)
                top = max(top, *xs, *(y + e for y, e in zip(ys, hi, strict=True)))
            for x, bound in opened:
                ax.plot([x, x], [0.0, bound], ":", color=colour, linewidth=1.2)
                ax.plot([x], [0.0], "o", markerfacecolor="white", markeredgecolor=colour, markersize=7)
                top = max(top, x, bound)
        ax.plot([0, top], [0, top], "k--", linewidth=1, label="perfect calibration")
        if any(key[2] == h for key in open_groups):
            ax.plot([], [], "o:", markerfacecolor="white", color="grey",
                    label="not released by horizon (range)")
        ax.set(xlim=(0, top * 1.05), ylim=(-0.03 * top, top * 1.05), xlabel="mean predicted risk",
               ylabel="observed risk (1 − Kaplan–Meier)", title=f"by {_years(h, unit)}")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Calibration by group of predicted risk, per site")
    if lines:
        fig.text(0.01, 0.01, "Groups not shown as plain points:\n" + caption, fontsize=7, va="bottom",
                 ha="left", family="DejaVu Sans")
        fig.tight_layout(rect=(0.0, text_height / height, 1.0, 1.0))
    else:
        fig.tight_layout()
    return {**_save(fig, path), "title": "Calibration: observed vs predicted risk per risk group",
            "caption": " ".join(lines)}


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


def binary_calibration(sites: dict[str, Any], horizon: float, unit: str, path: Path) -> dict[str, str]:
    """A logistic model's calibration: observed proportion (Wilson 95% CI) against mean predicted
    probability per group of predicted probability at each site; sites without groups (suppressed,
    or no grouping meets the minimums) are listed below the plot."""
    none = "no group of predicted probability meets the disclosure minimums"
    missing = [f"{name} ({'suppressed: ' + str(site['suppressed']) if site.get('suppressed') else none})"
               for name, site in sites.items() if not site.get("risk_groups")]
    caption = textwrap.fill("Not shown: " + "; ".join(missing) + ".", 95) if missing else ""
    fig = Figure(figsize=(5.5, 5.0 + 0.12 * (caption.count("\n") + 2) * bool(caption)))
    ax = fig.add_subplot(1, 1, 1)
    top = 0.05
    for i, (name, site) in enumerate(sites.items()):
        groups = site.get("risk_groups") or []
        if not groups:
            continue
        xs = [g["predicted"][0] for g in groups]
        ys = [g["observed"][0] for g in groups]
        lo = [g["observed"][0] - g["observed_lower"][0] for g in groups]
        hi = [g["observed_upper"][0] - g["observed"][0] for g in groups]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", capsize=3, alpha=0.85, color=f"C{i % 10}",
                    label=f"{name} ({len(groups)} groups)")
        top = max(top, *xs, *(g["observed_upper"][0] for g in groups))
    top = min(1.0, top)
    ax.plot([0, top], [0, top], "k--", linewidth=1, label="perfect calibration")
    ax.set(xlim=(0, top * 1.05), ylim=(0, top * 1.05), xlabel="mean predicted probability",
           ylabel="observed proportion (Wilson 95% CI)", title=f"outcome recorded by {_years(horizon, unit)}")
    ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Calibration by group of predicted probability, per site")
    if caption:
        fig.text(0.01, 0.01, caption, fontsize=7, va="bottom", ha="left", family="DejaVu Sans")
        fig.tight_layout(rect=(0.0, 0.12 * (caption.count("\n") + 2) / 5.5, 1.0, 1.0))
    else:
        fig.tight_layout()
    return {**_save(fig, path), "title": "Calibration: observed proportion vs mean predicted probability "
            "per risk group", "caption": caption}


def td_auc(sites: dict[str, list[dict[str, Any]]], pooled: list[dict[str, Any]], horizons: list[float],
           unit: str, path: Path) -> dict[str, str]:
    """Forest plot of the time-dependent AUC per site and pooled, one panel per horizon."""
    return forest(sites, pooled, "td_auc", list(horizons), unit, path)


#: what a forest plot of each metric shows: axis label, figure title, report title
FORESTS = {
    "td_auc": ("time-dependent AUC (95% CI)", "Time-dependent AUC (cumulative/dynamic)",
               "Time-dependent AUC per site and pooled, with 95% CIs"),
    "c_statistic": ("C statistic (95% CI)", "C statistic (area under the ROC curve)",
                    "C statistic per site and pooled, with 95% CIs"),
}


def forest(sites: dict[str, list[dict[str, Any]]], pooled: list[dict[str, Any]], metric: str,
           horizons: Sequence[float | None], unit: str, path: Path) -> dict[str, str]:
    """Forest plot of a concordance ``metric`` (:data:`FORESTS`) per site and pooled, one panel per
    horizon (``[None]``: the metric has none)."""
    xlabel, suptitle, title = FORESTS[metric]
    fig = Figure(figsize=(5.0 * len(horizons), 0.5 * (len(sites) + 2) + 1.6))
    for j, h in enumerate(horizons):
        ax: Axes = fig.add_subplot(1, len(horizons), j + 1)
        rows = [(name, _find(entries, h, metric)) for name, entries in sites.items()]
        rows.append(("pooled (fixed effect)", _find(pooled, h, metric)))
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
        ax.set(xlim=(0.4, 1.0), xlabel=xlabel, title="" if h is None else f"by {_years(h, unit)}")
    fig.suptitle(suptitle)
    fig.tight_layout()
    return {**_save(fig, path), "title": title}


def _find(entries: list[dict[str, Any]], horizon: float | None, metric: str = "td_auc"
          ) -> dict[str, Any] | None:
    for e in entries:
        if e["metric"] != metric:
            continue
        if (horizon is None and e["horizon"] is None) or (
                horizon is not None and e["horizon"] is not None and abs(e["horizon"] - horizon) < 1e-9):
            return e
    return None


def write_plots(folder: Path, sites: dict[str, Any], pooled: list[dict[str, Any]], horizons: list[float],
                unit: str, kind: str = "cox-ph") -> list[dict[str, str]]:
    """Write the figures of a ``kind`` model into ``folder`` (three for a Cox model, two for a logistic
    one); return their file names, titles and SHA-256."""
    folder = Path(folder)
    metrics = {name: s.get("metrics", []) for name, s in sites.items()}
    if kind == "logistic":
        return [binary_calibration(sites, horizons[0], unit, folder / "calibration.png"),
                forest(metrics, pooled, "c_statistic", [None], unit, folder / "c_statistic.png")]
    return [calibration(sites, horizons, unit, folder / "calibration.png"),
            km_by_risk_group(sites, unit, folder / "km_risk_groups.png"),
            td_auc(metrics, pooled, horizons, unit, folder / "td_auc.png")]

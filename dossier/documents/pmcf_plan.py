"""FP-PMCF Post-market clinical follow-up plan (EU MDR Annex XIV part B; MDCG 2020-7).

The thresholds are data (``regulatory/clinical_evaluation.yaml``, block ``pmcf``), not constants:
input drift (the share of a site's requests refused as outside the intended use, an input's monthly
mean against the training data) and calibration at re-validation (E/O at each horizon, calibration
slope). Each is shown beside its value at release, read from the validation reports. The training
mean and SD of an input are read off the artifact's k-safe coverage histogram (bin midpoints weighted
by the released counts; suppressed bins left out), so they approximate the training data.
"""

from __future__ import annotations

import math
from typing import Any

from reportlab.platypus import Flowable

from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, heading, para, table

from ._clinical import evidence_of, pooled_value
from ._model_kind import terms_of
from .model_card import present, sig


def _point(lo: float, hi: float, last: bool, discrete: bool) -> float:
    """A bin's value: its only whole number for a discrete input (the last bin closed), else its midpoint."""
    if discrete:
        whole = [v for v in range(math.ceil(lo), math.floor(hi) + 1) if v < hi or (last and v == hi)]
        if len(whole) == 1:
            return float(whole[0])
    return (lo + hi) / 2


def histogram_moments(edges: list[float], counts: list[int | None],
                      discrete: bool = False) -> tuple[float, float] | None:
    """(mean, SD) of a histogram from its bins' values (:func:`_point`) weighted by count; None bins
    (suppressed) are left out; None when fewer than two patients remain."""
    last = len(edges) - 2
    pairs = [(_point(lo, hi, i == last, discrete), c)
             for i, (lo, hi, c) in enumerate(zip(edges, edges[1:], counts, strict=False)) if c]
    n = sum(c for _, c in pairs)
    if n < 2:
        return None
    mean = sum(x * c for x, c in pairs) / n
    var = sum(c * (x - mean) ** 2 for x, c in pairs) / (n - 1)
    return mean, math.sqrt(var)


def _input_rows(art: dict[str, Any], shift: float) -> list[list[object]]:
    rows: list[list[object]] = [["Input", "Training mean (SD)",
                                 f"Signal: monthly mean outside (mean ± {shift:g} SD)"]]
    for spec in art.get("inputs", []):
        cov = spec.get("coverage") or {}
        moments = histogram_moments(cov.get("edges") or [], cov.get("counts") or [],
                                    discrete=spec.get("kind") in ("boolean", "integer", "category"))
        label = spec.get("title") or spec["name"]
        if moments is None:
            rows.append([label, "no coverage recorded", "not applicable: judged on refusals only"])
            continue
        mean, sd = moments
        rows.append([label, f"{sig(mean, 3)} ({sig(sd, 3)}) {spec.get('unit', '')}".strip(),
                     f"below {sig(mean - shift * sd, 3)} or above {sig(mean + shift * sd, 3)}"])
    return rows


def _calibration_rows(inputs: DossierInputs) -> list[list[object]]:
    cal = present(inputs.clinical_evaluation).pmcf.calibration
    rep, terms = present(inputs.validation), terms_of(inputs)
    ext = evidence_of(inputs).external
    rows: list[list[object]] = [["Indicator", "Signal when outside", "Internal, pooled, at release",
                                 "External, at release"]]
    keys = [("e_o_ratio", h, cal.e_o_ratio) for h in rep.get("settings", {}).get("horizons", [])]
    keys.append(("calibration_slope", terms.kind.slope_at(list(terms.horizons)), cal.calibration_slope))
    for metric, h, (low, high) in keys:
        name = ("E/O" if metric == "e_o_ratio" else "Calibration slope") + (
            f" at {terms.horizon(h)}" if h is not None and metric == "e_o_ratio" else "")
        rows.append([name, f"[{low:g}, {high:g}]", pooled_value(rep, metric, h),
                     pooled_value(ext[-1].report, metric, h) if ext else "no external validation"])
    return rows


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    pm = present(inputs.clinical_evaluation).pmcf
    drift = pm.input_drift
    data: list[list[object]] = [["Source", "What", "Frequency"]]
    data += [[d.source, d.what, d.frequency] for d in pm.data]
    acts: list[list[object]] = [["Signal", "Action"], *[[a.signal, a.action] for a in pm.actions]]
    c = pm.complaints
    return [heading("1 Purpose and scope"),
            para(f"This plan follows {esc(inputs.device)} {esc(inputs.device_version)} with model "
                 f"{esc(present(inputs.model).ref)} in clinical use, to confirm its clinical performance and "
                 "safety through its life, as EU MDR Annex XIV part B requires; its findings update the "
                 "clinical evaluation (FP-CER) and the risk management file (FP-RMF) and are reported in the "
                 "periodic safety update report (FP-PMS). Objectives: " + esc("; ".join(pm.objectives))
                 + "."),
            heading("2 Thresholds"),
            para("A threshold crossed is a signal: it starts an investigation (section 5), not an automatic "
                 "action. The thresholds are stated in regulatory/clinical_evaluation.yaml (pmcf)."),
            para(f"<b>2.1 Refusals.</b> A signal when more than {drift.refused_share_per_month:.0%} of a "
                 "site's requests in a calendar month are refused as outside the intended use or the "
                 "model's ranges (HTTP 422, counted from the AuditEvents), over at least "
                 f"{drift.minimum_requests} requests (a quieter month is pooled with the next)."),
            para(f"<b>2.2 Input drift.</b> A signal when an input's monthly mean at a site lies more than "
                 f"{drift.mean_shift_sd:g} SD from its training mean, over at least {drift.minimum_requests} "
                 "requests. Training mean and SD approximated from the artifact's coverage histogram:"),
            table(_input_rows(present(inputs.artifact), drift.mean_shift_sd), widths=[45, 50, 75]),
            para("<b>2.3 Calibration at re-validation.</b> A signal when an indicator lies outside its range "
                 "at a site; at release:"),
            table(_calibration_rows(inputs), widths=[45, 30, 50, 45]),
            para("The acceptance criteria of the requirements (FP-PMS section 2.1) remain the release "
                 "gate's; these ranges are tighter signals for post-market review."),
            heading("3 Data collected and frequency"), table(data, widths=[38, 92, 40]),
            para(f"<b>Re-validation.</b> {esc(pm.revalidation)}."),
            heading("4 Complaint handling"),
            table([["Step", "How"], ["Who receives", c.receives], ["How it is recorded", c.records],
                   ["Trending", c.trends], ["Vigilance", c.vigilance]], widths=[35, 135]),
            heading("5 Actions"), table(acts, widths=[70, 100]),
            para("Every action goes through change control and the release gate; a recalibrated or retrained "
                 "version is a new model version with its own validation reports, documented in an updated "
                 "FP-CER.")]


SPEC = DocumentSpec(id="FP-PMCF", title="Post-market clinical follow-up plan", file="FP-PMCF-pmcf-plan.pdf",
                    needs=("model", "validation", "clinical_evaluation"), build=build)

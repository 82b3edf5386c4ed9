"""FP-CVR Clinical validation report, structured after TRIPOD+AI (Collins et al. 2024).

It reports one validation run (``report.json`` of the documented model, hash-checked by
:func:`dossier.inputs.gather` and its figures re-hashed here): acceptance verdicts, data and
participants, outcome, predictors, missing data, sample size, the full model specification (every
coefficient, the baseline survival), performance per site, pooled and leave-one-site-out, subgroups
(suppressed ones named with the rule), the figures, and the limitations. Nothing is computed beyond
presentation (hazard ratios as exp(β), the baseline read off its step function at each horizon).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reportlab.lib.units import mm
from reportlab.platypus import Flowable

from dossier.spec import DocumentSpec, DossierError, DossierInputs
from dossier.style import esc, figure, heading, para, table
from ledger.files import sha256_file

from ._model_kind import (
    Terms,
    calibration_by_group,
    center,
    horizon_label,
    interval_text,
    kind_caveats,
    kind_of,
    min_cell_count,
    recorded_at,
    reference_text,
    terms_of,
)
from .model_card import (
    Entry,
    ci_cell,
    coefficient_table,
    columns,
    fmt,
    fmt_ci,
    inputs_table,
    keyed,
    ordered,
    pairs,
    sig,
    training_summary,
)

_STAT = {"estimate": "", "ci_lower": ", lower 95% limit", "ci_upper": ", upper 95% limit"}
_SITES_PER_TABLE = 4


def rule(c: dict[str, Any], terms: Terms) -> str:
    """``Harrell's C, lower 95% limit >= 0.6 (pooled)`` — an acceptance criterion as text."""
    thr = c.get("threshold")
    cond = f"in [{thr[0]:g}, {thr[1]:g}]" if isinstance(thr, list | tuple) else f"{c.get('op')} {thr:g}"
    name = terms.metric({"metric": c["metric"], "horizon": c.get("horizon")})
    return f"{name}{_STAT.get(str(c.get('statistic')), '')} {cond} ({c.get('scope')})"


def verdict_rows(report: dict[str, Any], terms: Terms) -> list[list[object]]:
    """One row per check of every criterion: id, rule, where, value, PASS/FAIL."""
    rows: list[list[object]] = [["Criterion", "Rule", "Where", "Value", "Verdict"]]
    for c in report.get("criteria", []):
        text = c["title"] if c.get("metric") == "test_suite" else rule(c, terms)
        for chk in c.get("checks", []):
            value = chk.get("value")
            shown = fmt(value) if isinstance(value, int | float) else str(value or chk.get("reason", "—"))
            when = f", {terms.horizon(chk['horizon'])}" if chk.get("horizon") else ""
            rows.append([c["id"], text, f"{chk.get('where', '')}{when}", shown,
                         "PASS" if chk.get("passed") else "FAIL"])
    return rows


def _missing_text(record: dict[str, Any], training: dict[str, Any]) -> str:
    """The report's handling of missing values, in words (the study's ``missing`` setting)."""
    if record.get("policy") == "complete-case":
        left = (training.get("missing") or {}).get("rows_left_out") or {}
        counts = ", ".join(f"{esc(s)} {n}" for s, n in left.items()) or "none reported"
        return ("<b>Missing data.</b> Complete-case analysis, declared by the study (SRS-MOD-008): each site "
                "left out its rows missing a value of a model column and reported how many, rounded to a "
                f"multiple of k: in training {counts}. The rows a site left out when evaluating are not "
                "reported. Complete-case estimates are unbiased only when missingness does not depend on the "
                "outcome given the inputs; at run time a missing input is refused, never defaulted "
                "(RC-INPUT-002).")
    return ("<b>Missing data.</b> Missing values are refused, not imputed: a site holding a missing or "
            "non-finite value in a model column refuses the computation naming the column (SRS-FED-010), "
            "so training and validation are complete-case by construction; at run time a missing input "
            "is refused, never defaulted (RC-INPUT-002). How many patients a site left out of its table "
            "for missing values before registering it is not recorded.")


def _scope(inputs: DossierInputs) -> list[Flowable]:
    rep, art = inputs.validation or {}, inputs.artifact or {}
    sw, ver = rep.get("software", {}), rep.get("verification", {})
    dirty = " (from a source tree with uncommitted changes)" if sw.get("dirty") else ""
    overall = ("PASSED: every acceptance criterion met" if rep.get("passed")
               else "NOT PASSED: a criterion failed")
    return [heading("1 Purpose and scope"),
            para(f"This report presents the clinical performance validation of model {esc(rep.get('model'))} "
                 f"(artifact SHA-256 {art['sha256']}), run on {esc(rep.get('date'))} by fedprog at commit "
                 f"{esc(sw.get('commit'))}{dirty}, environment SHA-256 {esc(sw.get('environment_sha256'))}. "
                 f"Source: the sealed report {esc(rep.get('folder'))}/report.json. Every metric was computed "
                 "at the sites on their own consented patients; only aggregates left them (SRS-VAL-005). "
                 f"Software verification in that run: {esc(ver.get('status'))}"
                 + (f" ({esc(ver['reason'])})" if ver.get("reason") else "") + "."),
            heading("2 Acceptance criteria and verdicts"),
            para(f"<b>Overall: {overall}.</b> The criteria are those the requirements state (SRS-VAL-001 to "
                 "SRS-VAL-004), judged on the model under validation, one row per check."),
            table(verdict_rows(rep, terms_of(inputs)), widths=[25, 68, 36, 25, 14])]


def _count(value: Any) -> object:
    return value if value is not None else "withheld"


def _data(inputs: DossierInputs) -> list[Flowable]:
    rep, art = inputs.validation or {}, inputs.artifact or {}
    sites, tr, kind = rep.get("sites", {}), art["training"], kind_of(art)
    rows: list[list[object]] = [["Site", "Patients", kind.events, "Status"]]
    rows += [[n, _count(s.get("n")), _count(s.get("events")),
              f"suppressed: {s['suppressed']}" if s.get("suppressed") else "evaluated"]
             for n, s in sites.items()]
    rows += [[n, "—", "—", f"dropped: {why}"] for n, why in sorted((rep.get("dropped") or {}).items())]
    p, cp = len(columns(art)), rep.get("consent_checkpoint") or {}
    return [heading("3 Data sources and participants"),
            para(f"Participants: the patients of {len(sites)} sites whose consent was active at the "
                 f"witnessed ledger checkpoint of size {cp.get('size', '—')} "
                 f"(root {esc(cp.get('root', '—'))}). The model was trained at the same sites "
                 f"({esc(', '.join(tr.get('sites', [])))}): the per-site and pooled results are apparent "
                 "performance. The origin of each site's data (cohort, "
                 "recruitment period, eligibility, treatments) is not part of the validation record."),
            table(rows, widths=[45, 25, 25, 75]),
            heading("4 Outcome, horizons and predictors"),
            para(_outcome(art) + " Predictors (units in UCUM):"),
            inputs_table(art),
            para(_missing_text(rep.get("missing") or {}, tr)),
            heading("5 Sample size"),
            para(_sample_size(art, p))]


def _outcome(art: dict[str, Any]) -> str:
    out, tr = art["outcome"], art["training"]
    if kind_of(art).logistic:
        return (f"Outcome: {esc(out['name'])}, a binary outcome (present or absent) recorded at "
                f"{esc(recorded_at(art))}, the model's one horizon. The risk reported is π(x), the "
                "probability that the outcome is present; no time to an event is modelled or claimed.")
    return (f"Outcome: {esc(out['name'])}, time in {esc(out['time_unit'])}s. The risk reported is "
            "1 − S(h | x), the probability of the event by horizon h, at "
            + ", ".join(horizon_label(h, out["time_unit"]) for h in out["horizons"])
            + f". Time grid of the fit: {esc(tr.get('time_grid'))}.")


def _sample_size(art: dict[str, Any], p: int) -> str:
    """Events per coefficient (a logistic model: per slope, counting the smaller outcome class)."""
    tr = art["training"]
    least = f"least {sig((tr.get('policy') or {}).get('min_events_per_covariate'))}"
    if kind_of(art).logistic:
        fewer = min(tr["events"], tr["n"] - tr["events"])
        return (f"Training: {tr['n']} patients, {tr['events']} with the outcome and {tr['n'] - tr['events']} "
                f"without, {p} slopes and an intercept: {fewer / max(p, 1):.1f} patients of the smaller "
                f"outcome class per slope (the disclosure policy requires at {least} events per covariate).")
    return (f"Training: {tr['n']} patients, {tr['events']} events, {p} coefficients, "
            f"{tr['events'] / max(p, 1):.1f} events per coefficient (the disclosure policy requires at "
            f"{least}).")


def _baseline_at(times: list[float], surv: list[float], h: float) -> float:
    """The step function's value at ``h`` (1 before the first released time)."""
    before = [s for t, s in zip(times, surv, strict=True) if t <= h]
    return before[-1] if before else 1.0


def _curves(art: dict[str, Any]) -> list[tuple[str, list[float], list[float]]]:
    base = art["baseline_survival"]
    if base.get("strata"):
        return [(f"Stratum {s['label']}", s["times"], s["survival"]) for s in base["strata"]]
    return [("", base["times"], base["survival"])]


def _model(inputs: DossierInputs) -> list[Flowable]:
    art = inputs.artifact or {}
    if kind_of(art).logistic:
        return [heading("6 Model specification"),
                para("Logistic regression of the recorded binary outcome fitted federatedly (Newton–Raphson "
                     "on the exact pooled log-likelihood's score and information, summed securely over the "
                     "sites). The probability of the outcome for patient x is π(x) = expit(α + β·(d(x) − c)),"
                     " with the intercept α, the slopes β (log odds ratios) and the centre c (the study's "
                     "reference patient) of every column:"),
                coefficient_table(art), para(esc(reference_text(art))),
                para("<b>Fit.</b>"), pairs(training_summary(art))]
    unit, hs = art["outcome"]["time_unit"], art["outcome"]["horizons"]
    rows: list[list[object]] = [["Baseline", *[horizon_label(h, unit) for h in hs], "Last released time"]]
    rows += [[label or "S0(t)", *[fmt(_baseline_at(times, surv, h), 4) for h in hs],
              f"{sig(times[-1]) if times else '—'} {unit}s"] for label, times, surv in _curves(art)]
    return [heading("6 Model specification"),
            para("Cox proportional hazards model fitted federatedly (the exact pooled partial likelihood "
                 "from the sites' secure sums). The risk of patient x by horizon h is 1 − S<sub>0</sub>(h)"
                 "<super>exp(β·(x − c))</super>, with the coefficients β and centre c of every input:"),
            coefficient_table(art),
            para(f"Baseline survival S<sub>0</sub> (Breslow) at the centre, released only at times with at "
                 f"least {art['baseline_survival'].get('min_cell_count')} accumulated events; its value at "
                 "the horizons (the full table is annex A):"),
            table(rows, widths=[40, *[35] * len(hs), 40]),
            para("<b>Fit.</b>"), pairs(training_summary(art))]


def _metric_tables(blocks: dict[str, dict[str, Any]], pooled: list[Entry], terms: Terms) -> list[Flowable]:
    """Metric rows × site columns (in chunks of sites), the pooled value last."""
    every = [e for b in blocks.values() for e in b.get("metrics", [])]
    order = list(keyed(ordered(pooled or every, terms)))
    names = list(blocks)
    pool = keyed(pooled)
    out: list[Flowable] = []
    for start in range(0, max(len(names), 1), _SITES_PER_TABLE):
        chunk = names[start:start + _SITES_PER_TABLE]
        cols = [keyed(blocks[n].get("metrics", [])) for n in chunk]
        rows: list[list[object]] = [["Metric", *chunk, "Pooled"]]
        for m, h in order:
            cells = ["suppressed" if blocks[n].get("suppressed") else ci_cell(c.get((m, h)))
                     for n, c in zip(chunk, cols, strict=True)]
            rows.append([terms.metric({"metric": m, "horizon": h}), *cells, ci_cell(pool.get((m, h)))])
        out.append(table(rows, widths=[44, *[25] * (len(chunk) + 1)]))
    return out


def _performance(inputs: DossierInputs) -> list[Flowable]:
    rep, terms = inputs.validation or {}, terms_of(inputs)
    settings, pooled = rep.get("settings", {}), ordered(rep.get("pooled", {}).get("metrics", []), terms)
    het: list[list[object]] = [["Metric", "Fixed effect (95% CI)", "I²", "Random effects (95% CI)", "Sites"]]
    het += [[terms.metric(e), fmt_ci(e), fmt(e.get("i2"), 2), fmt_ci(e.get("random_effects")),
             e.get("k")] for e in pooled]
    notes = [f"{n}: {u.get('metric')} {u.get('reason')}" for n, s in rep.get("sites", {}).items()
             for u in s.get("unavailable", [])]
    return [heading("7 Performance at each site and pooled"),
            para(f"Estimate and percentile-bootstrap 95% CI ({settings.get('n_boot')} resamples per site, "
                 f"seed {settings.get('seed')}); pooling: {esc(settings.get('pooling'))}. Apparent "
                 "performance: the model was fitted on these patients."),
            *_metric_tables(rep.get("sites", {}), pooled, terms),
            para("Metrics a site could not compute: " + (esc("; ".join(notes)) if notes else "none.")),
            *calibration_by_group(rep, terms),
            para("<b>Heterogeneity between sites.</b>"), table(het, widths=[44, 36, 12, 36, 12])]


def _loso(inputs: DossierInputs) -> list[Flowable]:
    rep, terms = inputs.validation or {}, terms_of(inputs)
    lo = rep.get("leave_one_site_out", {})
    rows: list[list[object]] = [["Held-out site", "Refitted on", "Status"]]
    for name, e in lo.get("sites", {}).items():
        tr = e.get("training") or {}
        fit = (f"{', '.join(tr.get('sites', []))}: {tr.get('n')} patients, {tr.get('events')} events"
               if tr else "—")
        ok = e.get("possible") and not e.get("suppressed")
        rows.append([name, fit, "evaluated" if ok else str(e.get("reason") or e.get("suppressed") or "—")])
    apparent, held = keyed(rep.get("pooled", {}).get("metrics", [])), keyed(lo.get("pooled", []))
    opt: list[list[object]] = [["Metric", "Apparent", "Leave-one-site-out", "Apparent minus held-out"]]
    for d in ordered(lo.get("optimism", []), terms):
        key = (d["metric"], d.get("horizon"))
        opt.append([terms.metric(d), fmt_ci(apparent.get(key)), fmt_ci(held.get(key)),
                    fmt(d.get("difference"))])
    return [heading("8 Leave-one-site-out validation"),
            para("For each site a model was trained federatedly on the other sites with the same settings "
                 "and evaluated at the held-out site: performance at a hospital the model had not seen."),
            table(rows, widths=[35, 105, 30]),
            *_metric_tables(lo.get("sites", {}), lo.get("pooled", []), terms),
            para("<b>Optimism</b> (pooled apparent minus pooled held-out estimate)."),
            table(opt, widths=[45, 40, 40, 30])]


def _subgroups(inputs: DossierInputs) -> list[Flowable]:
    rep, terms = inputs.validation or {}, terms_of(inputs)
    horizons, concordance = rep.get("settings", {}).get("horizons", []), terms.kind.concordance
    cols = [concordance, ("calibration_slope", terms.kind.slope_at(horizons)),
            *[("e_o_ratio", h) for h in horizons]]
    pooled: list[list[object]] = [["Subgroup", "Sites pooled",
                                   *[terms.metric({"metric": m, "horizon": h}) for m, h in cols]]]
    groups = rep.get("subgroups", {})
    names = [g["name"] for g in rep.get("settings", {}).get("subgroups", []) if g["name"] in groups]
    for name in [*names, *sorted(set(groups) - set(names))]:
        g = groups[name]
        k = keyed(g.get("metrics", []))
        cells = [ci_cell(k.get(c)) for c in cols] if k else ["not pooled", *["—"] * (len(cols) - 1)]
        pooled.append([name, len(g.get("sites", [])), *cells])
    status: list[list[object]] = [["Site", "Subgroup", "Patients", terms.kind.events,
                                   terms.kind.concordance_name, "Status"]]
    for site, s in rep.get("sites", {}).items():
        for g in s.get("subgroups", []):
            state = (f"suppressed: {g['suppressed']}" if g.get("suppressed") else
                     "counts withheld (complementary suppression)" if g.get("n") is None else "evaluated")
            status.append([site, g["name"], g.get("n") if g.get("n") is not None else "—",
                           g.get("events") if g.get("events") is not None else "—",
                           fmt_ci(keyed(g.get("metrics", [])).get(concordance)), state])
    return [heading("9 Subgroups"),
            para("Pooled over the sites at which the subgroup met the disclosure minimums; a subgroup "
                 "reported by too few sites is not pooled. Every metric per subgroup is in report.json."),
            table(pooled, widths=[38, 14, *[28] * len(cols)]),
            para("<b>Per site.</b> A suppressed subgroup is reported by name and rule only."),
            table(status, widths=[24, 38, 17, 15, 34, 52])]


def _figures(inputs: DossierInputs) -> list[Flowable]:
    rep, folder = inputs.validation or {}, Path(inputs.validation_dir or ".")
    out: list[Flowable] = [heading("10 Figures")]
    for i, plot in enumerate(rep.get("plots", []), start=1):
        path = folder / plot["file"]
        if not path.is_file() or sha256_file(path) != plot.get("sha256"):
            raise DossierError(f"FP-CVR: figure {path} is missing or differs from the report's sha256")
        wide = "calibration" in plot["file"] or "auc" in plot["file"]
        caption = f"Figure {i}. {plot['title']} ({plot['file']}, SHA-256 {plot['sha256'][:16]}…)"
        out.append(figure(path, caption, width=(165 if wide else 140) * mm))
    return out


def _limitations(inputs: DossierInputs) -> list[Flowable]:
    rep, art = inputs.validation or {}, inputs.artifact or {}
    kind = kind_of(art)
    opt = keyed(rep.get("leave_one_site_out", {}).get("optimism", [])).get(kind.concordance, {})
    hidden = [f"{site} / {g['name']}" for site, s in rep.get("sites", {}).items()
              for g in s.get("subgroups", []) if g.get("suppressed")]
    items = [f"Apparent performance: the sites that validated the model also trained it. Leave-one-site-out "
             f"estimates are the better guide to a new hospital (optimism in {kind.concordance_name} "
             f"{fmt(opt.get('difference'))}), yet all sites share one source population: no external "
             "validation has been performed (HAZ-VAL-001; residual risk in FP-RMF).",
             f"{rep.get('settings', {}).get('n_boot')} bootstrap resamples per site: the CI limits carry "
             "Monte Carlo error, the larger the fewer resamples; the pooled CIs assume independent sites.",
             interval_text(art),
             *([esc(t) for t in kind_caveats(art)] if kind.logistic else
               [f"The baseline survival is released only where at least {min_cell_count(art)} events have "
                "accumulated: a step function on a coarsened grid; horizons beyond its last time are "
                "refused, not extrapolated (RC-DEV-002)."]),
             "Subgroups suppressed under the disclosure policy, whose performance is therefore unknown: "
             + (esc("; ".join(hidden)) if hidden else "none") + ".",
             f"Software verification in this run: {esc(rep.get('verification', {}).get('status'))}; the "
             "verification record of the software is FP-VER."]
    return [heading("11 Limitations"), *[para(f"{i}. {t}") for i, t in enumerate(items, start=1)]]


def _baseline_annex(art: dict[str, Any]) -> list[Flowable]:
    if kind_of(art).logistic:
        ref: list[list[object]] = [["Column", "Reference patient c"]]
        ref += [[name, sig(c)] for name, c in zip(columns(art), center(art), strict=True)]
        return [heading("Annex A Reference patient (centre)"),
                para("The design columns of the reference patient at which the intercept is her log-odds "
                     "(a logistic model has no baseline survival). " + esc(reference_text(art))),
                table(ref, widths=[60, 60])]
    out: list[Flowable] = [heading("Annex A Baseline survival (full table)")]
    for label, times, surv in _curves(art):
        cells = [(sig(t, 6), fmt(s, 5)) for t, s in zip(times, surv, strict=True)]
        n = -(-len(cells) // 3)
        rows: list[list[object]] = [[f"Time ({art['outcome']['time_unit']}s)", "S0(t)"] * 3]
        for i in range(n):
            row = [cells[i + j * n] if i + j * n < len(cells) else ("", "") for j in range(3)]
            rows.append([v for pair in row for v in pair])
        out += [*([para(f"<b>{esc(label)}</b>")] if label else []), table(rows)]
    return out


def _annexes(inputs: DossierInputs) -> list[Flowable]:
    rep = inputs.validation or {}
    settings, names = rep.get("settings", {}), terms_of(inputs).kind.names
    defs = [[names.get(k, k), v] for k, v in rep.get("definitions", {}).items()]
    return [*_baseline_annex(inputs.artifact or {}),
            heading("Annex B Metric definitions"),
            table([["Metric", "Definition"], *defs], widths=[40, 130]),
            heading("Annex C Settings of the run"), pairs([(k, _setting(k, v)) for k, v in settings.items()])]


def _setting(key: str, value: Any) -> str:
    if key == "subgroups":
        return "; ".join(g["name"] for g in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:g}" if isinstance(v, int | float) else f"{k} {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(f"{x:g}" if isinstance(x, int | float) else str(x) for x in value)
    return str(value)


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    return [*_scope(inputs), *_data(inputs), *_model(inputs), *_performance(inputs), *_loso(inputs),
            *_subgroups(inputs), *_figures(inputs), *_limitations(inputs), *_annexes(inputs)]


SPEC = DocumentSpec(id="FP-CVR", title="Clinical validation report", file="FP-CVR-clinical-validation.pdf",
                    needs=("model", "validation"), build=build, toc=True)

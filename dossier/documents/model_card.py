"""FP-MC Model card (Mitchell et al. 2019) of the documented model version.

Everything shown is read from the artifact, the registry entry and the validation report: model
details, intended use (the very note every RiskAssessment carries), factors, pooled metrics
(apparent and leave-one-site-out), evaluation and training data as aggregates only, ethical
considerations (consent, revocation, privacy) and caveats.

It also holds the presentation helpers FP-CVR and FP-PMS share: metric names and order, number
formats, and the coefficient, input and training tables.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

from reportlab.platypus import Flowable, Paragraph

from dossier.spec import DocumentSpec, DossierError, DossierInputs
from dossier.style import STYLES, esc, heading, para, table
from prognosis import Z95, ModelInput
from prognosis.design import Design

from . import _privacy, _revocation
from ._interval import includes_baseline, interval_statement

#: how each metric of the validation report is named, in the order the documents list them
METRICS: dict[str, str] = {
    "harrell_c": "Harrell's C", "uno_c": "Uno's C", "td_auc": "Time-dependent AUC", "e_o_ratio": "E/O ratio",
    "calibration_slope": "Calibration slope", "calibration_intercept": "Calibration-in-the-large, log(O/E)",
    "brier": "Brier score", "integrated_brier": "Integrated Brier score"}
Entry = dict[str, Any]
T = TypeVar("T")


def present(value: T | None) -> T:
    """An input :meth:`DossierInputs.require` has checked: never None here."""
    if value is None:
        raise DossierError("a dossier input was used without being required")
    return value


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals (no negative zero); an em dash for a missing value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    text = f"{float(value):.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def sig(value: Any, digits: int = 4) -> str:
    """A number to ``digits`` significant figures (coefficients, standard errors, p-values)."""
    return "—" if value is None else f"{float(value):.{digits}g}"


def fmt_ci(entry: Entry | None, digits: int = 3) -> str:
    """``estimate (lower–upper)`` of a metric entry; the estimate alone without a CI."""
    if not entry:
        return "—"
    if entry.get("ci_lower") is None:
        return fmt(entry.get("estimate"), digits)
    low, high = fmt(entry["ci_lower"], digits), fmt(entry["ci_upper"], digits)
    return f"{fmt(entry.get('estimate'), digits)} ({low}–{high})"


def ci_cell(entry: Entry | None) -> Paragraph:
    """A table cell: the estimate, its 95% CI on the line below (for narrow columns)."""
    text = fmt_ci(entry)
    return Paragraph(esc(text).replace(" (", "<br/>("), STYLES["cell"])


def horizon_label(horizon: float | str | None, unit: str) -> str:
    """``1095.75 days (3.0 y)``; ``each horizon`` for a criterion stated at every horizon of the model."""
    if horizon is None:
        return ""
    if isinstance(horizon, str):
        return "each horizon"
    years = f" ({horizon / 365.25:.1f} y)" if unit == "day" else ""
    return f"{horizon:g} {unit}s{years}"


def metric_label(entry: Entry, unit: str) -> str:
    """``Harrell's C`` or ``E/O ratio at 1095 days (3.0 y)``."""
    name = METRICS.get(entry["metric"], str(entry["metric"]))
    when = horizon_label(entry.get("horizon"), unit)
    return f"{name} at {when}" if when else name


def ordered(entries: list[Entry]) -> list[Entry]:
    """Metric entries in the documents' order: discrimination, calibration, overall accuracy."""
    rank = list(METRICS)
    return sorted(entries, key=lambda e: (rank.index(e["metric"]) if e["metric"] in rank else len(rank),
                                          e["metric"], e.get("horizon") or -1.0))


def keyed(entries: list[Entry]) -> dict[tuple[str, Any], Entry]:
    """Metric entries by (metric, horizon)."""
    return {(e["metric"], e.get("horizon")): e for e in entries}


def unit_of(inputs: DossierInputs) -> str:
    art = inputs.artifact or {}
    return str((inputs.validation or {}).get("settings", {}).get("time_unit")
               or art.get("outcome", {}).get("time_unit", "day"))


def coefficient_table(artifact: dict[str, Any]) -> Flowable:
    """Every coefficient (one per design column, in the artifact's order): β, SE, hazard ratio with its
    95% CI, p-value and the centre value."""
    cis, pvals = artifact.get("confidence_intervals") or {}, artifact.get("p_values") or {}
    center = artifact["baseline_survival"].get("center") or []
    rows: list[list[object]] = [["Column", "β (log HR)", "SE", "HR", "HR 95% CI", "p", "Centre c"]]
    for i, name in enumerate(columns(artifact)):
        beta, se = artifact["coefficients"][name], artifact["standard_errors"][name]
        low, high = cis.get(name) or (beta - Z95 * se, beta + Z95 * se)
        rows.append([name, sig(beta), sig(se), f"{math.exp(beta):#.4g}",
                     f"{math.exp(low):#.4g}–{math.exp(high):#.4g}", sig(pvals.get(name), 2),
                     sig(center[i]) if i < len(center) else "—"])
    return table(rows, widths=[30, 22, 20, 18, 30, 16, 20])


def columns(artifact: dict[str, Any]) -> tuple[str, ...]:
    """The coefficients' columns in their order (the covariance's and the centre's), not the JSON
    object's (canonical JSON sorts keys): each input's columns, then each interaction's."""
    names = [spec["name"] for spec in artifact["inputs"]]
    specs = [ModelInput.model_validate(spec) for spec in artifact["inputs"]]
    return Design.of(names, specs, artifact.get("interactions") or []).columns


def design_text(artifact: dict[str, Any]) -> str:
    """How the inputs become the coefficients' columns, in words (:mod:`prognosis.design`)."""
    parts = []
    for spec in artifact["inputs"]:
        label = spec.get("title") or spec["name"]
        if spec.get("spline"):
            knots = spec["spline"]["knots"]
            parts.append(f"{label} enters as a restricted cubic spline with knots at "
                         f"{', '.join(f'{k:g}' for k in knots)} (Harrell's basis: {spec['name']} and "
                         f"{len(knots) - 2} non-linear columns; linear beyond the outer knots)")
        elif spec["kind"] == "category" and not spec.get("ordinal"):
            parts.append(f"{label} is dummy-coded against its first level "
                         f"({spec['categories'][0]['code']}), one column per other level")
    parts += [f"the interaction {a} × {b} adds the products of their columns"
              for a, b in artifact.get("interactions") or []]
    if not parts:
        return "Each input enters linearly as one column (an ordinal category by its 0-based level index)."
    rest = "; ".join(parts)
    return (f"{rest[0].upper()}{rest[1:]}; every other input enters linearly. The device reports one "
            "contribution per input (the sum over its columns) and one per interaction.")


def inputs_table(artifact: dict[str, Any]) -> Flowable:
    """The model's inputs: code, UCUM unit, kind and the intended-use range."""
    rows: list[list[object]] = [["Input", "Code", "Unit", "Kind", "Range (intended use)"]]
    for spec in artifact["inputs"]:
        code = spec["code"]
        system = str(code.get("system", "")).rsplit("/", 1)[-1]
        rows.append([spec["name"], f"{system} {code.get('code')} {code.get('display', '')}", spec["unit"],
                     spec["kind"], f"{sig(spec.get('min'))} to {sig(spec.get('max'))}"])
    return table(rows, widths=[24, 70, 16, 17, 28])


def training_summary(artifact: dict[str, Any]) -> list[tuple[str, str]]:
    """The artifact's training record as (field, value) pairs — aggregates only."""
    tr = artifact["training"]
    cp = tr.get("consent_checkpoint") or {}
    dropped = tr.get("dropped") or []
    fit = (f"{tr.get('iterations')} Newton iterations in {tr.get('rounds')} rounds, "
           f"{'converged' if tr.get('converged') else 'NOT converged'}; ties {artifact.get('ties')}, "
           f"L2 penalty {artifact.get('penalty') or 0:g}")
    return [("Sites", ", ".join(tr.get("sites", []))), ("Patients (n)", str(tr.get("n"))),
            ("Events", str(tr.get("events"))), ("Fit", fit),
            ("Log partial likelihood",
             f"{sig(tr.get('loglik'), 8)} (null model {sig(tr.get('loglik_null'), 8)})"),
            ("Secure aggregation", "on" if tr.get("secure_aggregation") else "OFF"),
            ("Differential privacy", _privacy.cox_record(tr)), ("Time grid", str(tr.get("time_grid"))),
            ("Consent checkpoint", f"ledger size {cp.get('size')}, root {cp.get('root')}"),
            ("Sites dropped", "none" if not dropped else str(dropped)),
            ("Missing values", _missing(tr))]


def _missing(training: dict[str, Any]) -> str:
    """How rows missing a value were handled, with each site's count (rounded to k) when left out."""
    record = training.get("missing")
    if not record:
        return "refused: every training row had a value in every column of the study"
    left = record.get("rows_left_out") or {}
    counts = ", ".join(f"{site} {n}" for site, n in left.items()) or "none reported"
    return (f"complete-case analysis: rows missing a value left out at each site ({counts}; rounded to a "
            f"multiple of {record.get('rounded_to_multiple_of')})")


def pairs(rows: list[tuple[str, str]]) -> Flowable:
    return table([("Item", "Value"), *rows], widths=[45, 125])


def _details(inputs: DossierInputs) -> list[Flowable]:
    art, entry = inputs.artifact or {}, present(inputs.model)
    out = art["outcome"]
    rows = [("Model", f"{art['model_id']} version {art['version']} ({art['kind']}, schema {art['schema']})"),
            ("Artifact SHA-256", art["sha256"]),
            ("Registry status", f"{entry.status} (lifecycle {entry.lifecycle}; registered at ledger entry "
                                f"{entry.ledger_index})"),
            ("Predecessor", entry.predecessor or "none (first version)"),
            ("Validation report", f"SHA-256 {(entry.validation or {}).get('report_sha256', '—')}, "
                                  f"{(inputs.validation or {}).get('date', '—')}"),
            ("Outcome", f"{out['name']}; horizons "
                        + ", ".join(horizon_label(h, out["time_unit"]) for h in out["horizons"])),
            *training_summary(art)]
    return [heading("1 Model details"), pairs(rows),
            heading("2 Model specification"),
            para("S(t | x) = S<sub>0</sub>(t)<super>exp(β·(d(x) − c))</super> with d(x) the design "
                 "columns of the inputs, the coefficients β and the centre c below; hazard ratios are per "
                 "unit of each column. " + esc(design_text(art))
                 + " Baseline survival S<sub>0</sub>: FP-CVR, annex A."),
            coefficient_table(art)]


def _intended_use(inputs: DossierInputs) -> list[Flowable]:
    from device.fhir.resources import intended_use
    from device.model import load_model

    art = inputs.artifact or {}
    base = art["baseline_survival"]
    times = [*base.get("times", []), *(t for s in base.get("strata") or [] for t in s["times"])]
    last = max(times, default=0)
    return [heading("3 Intended use"), para(esc(intended_use(load_model(art)))),
            para(f"Out of scope, refused by the device rather than extrapolated: any input outside the range "
                 f"below (RC-INPUT-001), a missing input (RC-INPUT-002), a horizon beyond the last released "
                 f"baseline time, {sig(last)} {esc(art['outcome']['time_unit'])}s (RC-DEV-002)."),
            inputs_table(art)]


def _count(value: Any) -> object:
    return value if value is not None else "withheld"


def _factors_and_metrics(inputs: DossierInputs) -> list[Flowable]:
    rep, unit = inputs.validation or {}, unit_of(inputs)
    groups = [g["name"] for g in rep.get("settings", {}).get("subgroups", [])]
    loso = keyed(rep.get("leave_one_site_out", {}).get("pooled", []))
    rows: list[list[object]] = [["Metric", "Pooled, apparent (95% CI)", "Leave-one-site-out (95% CI)"]]
    rows += [[metric_label(e, unit), fmt_ci(e), fmt_ci(loso.get((e["metric"], e.get("horizon"))))]
             for e in ordered(rep.get("pooled", {}).get("metrics", []))]
    sites = rep.get("sites", {})
    data: list[list[object]] = [["Site", "Patients", "Events", "Status"]]
    data += [[n, _count(s.get("n")), _count(s.get("events")),
              f"suppressed: {s['suppressed']}" if s.get("suppressed") else "evaluated"]
             for n, s in sites.items()]
    return [heading("4 Factors"),
            para(f"Performance is reported per site ({len(sites)}) and for the subgroups "
                 f"{esc('; '.join(groups)) or 'none'} (FP-CVR, subgroups). A group below the disclosure "
                 "minimums is suppressed, never shown."),
            heading("5 Metrics"),
            para(f"Pooled over sites by inverse variance; {rep.get('settings', {}).get('n_boot')} bootstrap "
                 "resamples per site. Apparent values are measured on the patients the model was trained on; "
                 "leave-one-site-out values at a site the refitted model had not seen."),
            table(rows, widths=[70, 50, 50]),
            heading("6 Evaluation data"),
            para(f"The consented patients at each site at validation (consent as of ledger size "
                 f"{(rep.get('consent_checkpoint') or {}).get('size', '—')}), at the hospitals that trained "
                 "the model; counts as each site reported them:"),
            table(data, widths=[50, 30, 30, 60])]


def _analyses(inputs: DossierInputs) -> list[Flowable]:
    """Discrimination and calibration by factor: each site, each pooled subgroup."""
    rep, unit = inputs.validation or {}, unit_of(inputs)
    cols = [("harrell_c", None), *[("e_o_ratio", h) for h in rep.get("settings", {}).get("horizons", [])]]
    head = [metric_label({"metric": m, "horizon": h}, unit) for m, h in cols]
    rows: list[list[object]] = [["Factor", *head]]
    for name, s in rep.get("sites", {}).items():
        k = keyed(s.get("metrics", []))
        rows.append([f"site {name}", *[fmt_ci(k.get(c)) if not s.get("suppressed") else "suppressed"
                                       for c in cols]])
    for name, g in rep.get("subgroups", {}).items():
        k = keyed(g.get("metrics", []))
        rows.append([f"subgroup {name}", *[fmt_ci(k.get(c)) if k else "not pooled" for c in cols]])
    return [heading("8 Quantitative analyses"),
            para("Apparent performance per site and per subgroup (pooled over the sites reporting it):"),
            table(rows, widths=[50, *[40] * len(cols)])]


def _rounded(training: dict[str, Any]) -> str:
    """How exact the training counts are, as ``training.release`` states it (older artifacts: exact)."""
    rel = training.get("release") or {}
    if "training.n" not in rel.get("rounded", []):
        return ""
    return f" (counts rounded to a multiple of {rel.get('rounded_to_multiple_of')}, training.release)"


def _release(training: dict[str, Any]) -> str:
    """The artifact's protection against differencing two releases (RC-PRIV-004), if it records one."""
    rel = training.get("release") or {}
    if not rel:
        return ""
    return (f" Against a reader differencing two releases (RC-PRIV-004): counts rounded to multiples of "
            f"{esc(rel.get('rounded_to_multiple_of'))}; centre: {esc(rel.get('center', 'not recorded'))}; "
            "coefficients, covariance and baseline survival are exact (training.release).")


def _ethics_and_caveats(inputs: DossierInputs) -> list[Flowable]:
    art, entry, rep = inputs.artifact or {}, present(inputs.model), inputs.validation or {}
    tr, ver = art["training"], rep.get("verification", {})
    rules = ", ".join(f"{k} {v:g}" for k, v in sorted((tr.get("policy") or {}).items()))
    revoked = (f"A withdrawal after training is handled by the study's revocation policy, "
               f"{esc(_revocation.policy(inputs.revocation))} (FP-PMS section 2.3). At this release the "
               f"model is {esc(_revocation.state(entry, inputs.history))}.")
    sites = ", ".join(tr.get("sites", []))
    return [heading("7 Training data"),
            para(f"{tr.get('n')} patients with {tr.get('events')} events at {len(tr.get('sites', []))} sites "
                 f"({esc(sites)}){_rounded(tr)}; only aggregates left the sites. Per-site counts at training "
                 "are not part of the artifact; section 6 gives them at validation."),
            *_analyses(inputs),
            heading("9 Ethical considerations"),
            para(f"<b>Consent.</b> Each site trained only on patients whose consent was active at the "
                 f"witnessed ledger checkpoint of size {(tr.get('consent_checkpoint') or {}).get('size')} "
                 f"(RC-CONS-002). {revoked}"),
            para(f"<b>Privacy.</b> Secure aggregation {'on' if tr.get('secure_aggregation') else 'OFF'}; "
                 f"disclosure policy: {esc(rules) or 'not recorded'}; differential privacy "
                 f"{esc(_privacy.cox_record(tr))}. The ledger holds keyed "
                 "commitments under a fresh salt per consent event, never identifiers (RC-PRIV-001)."
                 f"{_release(tr)}"),
            heading("10 Caveats and recommendations"),
            para("• Apparent performance overstates performance at new hospitals; the leave-one-site-out "
                 "column is the better guide, and neither replaces external validation (HAZ-VAL-001)."),
            para("• " + interval_statement(includes_baseline(art))),
            para(f"• Software verification in the validation run: {esc(ver.get('status', '—'))}"
                 + (f" ({esc(ver['reason'])})" if ver.get("reason") else "") + "; see FP-VER."),
            para("• The model supports, never replaces, clinical judgement; its population is that of the "
                 "training sites, and the classification must be revisited for any other population.")]


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    return [*_details(inputs), *_intended_use(inputs), *_factors_and_metrics(inputs),
            *_ethics_and_caveats(inputs)]


SPEC = DocumentSpec(id="FP-MC", title="Model card", file="FP-MC-model-card.pdf",
                    needs=("model", "validation"), build=build)

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

from . import _revocation
from ._model_kind import (
    INTERCEPT,
    METRICS,
    Terms,
    calibration_by_group,
    center,
    interval_text,
    kind_caveats,
    kind_of,
    outcome_text,
    privacy_record,
    recorded_at,
    reference_text,
    terms_of,
)

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


def ordered(entries: list[Entry], terms: Terms | None = None) -> list[Entry]:
    """Metric entries in the documents' order: discrimination, calibration, overall accuracy."""
    rank = list(METRICS) if terms is None else list(terms.kind.names)
    return sorted(entries, key=lambda e: (rank.index(e["metric"]) if e["metric"] in rank else len(rank),
                                          e["metric"], e.get("horizon") or -1.0))


def keyed(entries: list[Entry]) -> dict[tuple[str, Any], Entry]:
    """Metric entries by (metric, horizon)."""
    return {(e["metric"], e.get("horizon")): e for e in entries}


def coefficient_table(artifact: dict[str, Any]) -> Flowable:
    """Every coefficient (one per design column, in the artifact's order): β, SE, the hazard ratio (Cox)
    or odds ratio (logistic) exp(β) with its 95% CI, p-value and the centre value; a logistic model's
    intercept first, on the log-odds scale (it is no ratio)."""
    cis, pvals = artifact.get("confidence_intervals") or {}, artifact.get("p_values") or {}
    centre, short = center(artifact), kind_of(artifact).short
    rows: list[list[object]] = [["Column", f"β (log {short})", "SE", short, f"{short} 95% CI", "p",
                                 "Centre c"]]
    if INTERCEPT in artifact["coefficients"]:
        alpha, se0 = artifact["coefficients"][INTERCEPT], artifact["standard_errors"][INTERCEPT]
        rows.append([INTERCEPT, sig(alpha), sig(se0), "—", "—", sig(pvals.get(INTERCEPT), 2), "—"])
    for i, name in enumerate(columns(artifact)):
        beta, se = artifact["coefficients"][name], artifact["standard_errors"][name]
        low, high = cis.get(name) or (beta - Z95 * se, beta + Z95 * se)
        rows.append([name, sig(beta), sig(se), f"{math.exp(beta):#.4g}",
                     f"{math.exp(low):#.4g}–{math.exp(high):#.4g}", sig(pvals.get(name), 2),
                     sig(centre[i]) if i < len(centre) else "—"])
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
    tr, logistic = artifact["training"], kind_of(artifact).logistic
    cp = tr.get("consent_checkpoint") or {}
    dropped = tr.get("dropped") or []
    ties = "" if logistic else f"ties {artifact.get('ties')}, "
    fit = (f"{tr.get('iterations')} Newton iterations in {tr.get('rounds')} rounds, "
           f"{'converged' if tr.get('converged') else 'NOT converged'}; {ties}"
           f"L2 penalty {artifact.get('penalty') or 0:g}")
    grid = ("Exact on", str(tr.get("exact_on"))) if logistic else ("Time grid", str(tr.get("time_grid")))
    return [("Sites", ", ".join(tr.get("sites", []))), ("Patients (n)", str(tr.get("n"))),
            ("Events (patients with the outcome)" if logistic else "Events", str(tr.get("events"))),
            ("Fit", fit),
            ("Log likelihood" if logistic else "Log partial likelihood",
             f"{sig(tr.get('loglik'), 8)} (null model {sig(tr.get('loglik_null'), 8)})"),
            ("Secure aggregation", "on" if tr.get("secure_aggregation") else "OFF"),
            ("Differential privacy", privacy_record(artifact)), grid,
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
    rows = [("Model", f"{art['model_id']} version {art['version']} ({art['kind']}, schema {art['schema']})"),
            ("Artifact SHA-256", art["sha256"]),
            ("Registry status", f"{entry.status} (lifecycle {entry.lifecycle}; registered at ledger entry "
                                f"{entry.ledger_index})"),
            ("Predecessor", entry.predecessor or "none (first version)"),
            ("Validation report", f"SHA-256 {(entry.validation or {}).get('report_sha256', '—')}, "
                                  f"{(inputs.validation or {}).get('date', '—')}"),
            ("Outcome", outcome_text(art)), *training_summary(art)]
    return [heading("1 Model details"), pairs(rows), heading("2 Model specification"),
            para(specification(art)), coefficient_table(art)]


def specification(art: dict[str, Any]) -> str:
    """The model's formula and how to read its coefficients (markup)."""
    if not kind_of(art).logistic:
        return ("S(t | x) = S<sub>0</sub>(t)<super>exp(β·(d(x) − c))</super> with d(x) the design "
                "columns of the inputs, the coefficients β and the centre c below; hazard ratios are per "
                "unit of each column. " + esc(design_text(art))
                + " Baseline survival S<sub>0</sub>: FP-CVR, annex A.")
    return ("logit π(x) = α + β·(d(x) − c): π(x) is the probability of the binary outcome (section 1), "
            "d(x) the design columns of the inputs, β the slopes and c the "
            "centre (the study's reference patient) below; odds ratios exp(β) are per unit of each column. "
            + esc(design_text(art)) + " " + esc(reference_text(art)))


def _intended_use(inputs: DossierInputs) -> list[Flowable]:
    from device.fhir.resources import intended_use
    from device.model import load_model

    art = inputs.artifact or {}
    return [heading("3 Intended use"), para(esc(intended_use(load_model(art)))), para(_out_of_scope(art)),
            inputs_table(art)]


def _out_of_scope(art: dict[str, Any]) -> str:
    refused = ("Out of scope, refused by the device rather than extrapolated: any input outside the range "
               "below (RC-INPUT-001), a missing input (RC-INPUT-002)")
    unit = esc(art["outcome"]["time_unit"])
    if kind_of(art).logistic:
        return (f"{refused}, any horizon but its one (the scorer refuses it). The model predicts the "
                f"outcome as recorded at {esc(recorded_at(art))} and nothing else: no risk by any other "
                "time, no time to an event.")
    base = art["baseline_survival"]
    times = [*base.get("times", []), *(t for s in base.get("strata") or [] for t in s["times"])]
    last = max(times, default=0)
    return (f"{refused}, a horizon beyond the last released baseline time, {sig(last)} {unit}s (RC-DEV-002).")


def _count(value: Any) -> object:
    return value if value is not None else "withheld"


def _factors_and_metrics(inputs: DossierInputs) -> list[Flowable]:
    rep, terms = inputs.validation or {}, terms_of(inputs)
    groups = [g["name"] for g in rep.get("settings", {}).get("subgroups", [])]
    loso = keyed(rep.get("leave_one_site_out", {}).get("pooled", []))
    rows: list[list[object]] = [["Metric", "Pooled, apparent (95% CI)", "Leave-one-site-out (95% CI)"]]
    rows += [[terms.metric(e), fmt_ci(e), fmt_ci(loso.get((e["metric"], e.get("horizon"))))]
             for e in ordered(rep.get("pooled", {}).get("metrics", []), terms)]
    sites = rep.get("sites", {})
    data: list[list[object]] = [["Site", "Patients", terms.kind.events, "Status"]]
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
    rep, terms = inputs.validation or {}, terms_of(inputs)
    cols = terms.kind.by_factor(rep.get("settings", {}).get("horizons", []))
    head = [terms.metric({"metric": m, "horizon": h}) for m, h in cols]
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
            table(rows, widths=[50, *[min(40.0, 120 / len(cols))] * len(cols)]),
            *calibration_by_group(rep, terms)]


def _rounded(training: dict[str, Any]) -> str:
    """How exact the training counts are, as ``training.release`` states it (older artifacts: exact)."""
    rel = training.get("release") or {}
    if "training.n" not in rel.get("rounded", []):
        return ""
    return f" (counts rounded to a multiple of {rel.get('rounded_to_multiple_of')}, training.release)"


def _release(art: dict[str, Any]) -> str:
    """The artifact's protection against differencing two releases (RC-PRIV-004), if it records one."""
    rel = art["training"].get("release") or {}
    if not rel:
        return ""
    exact = ("coefficients and covariance are" if kind_of(art).logistic
             else "coefficients, covariance and baseline survival are")
    return (f" Against a reader differencing two releases (RC-PRIV-004): counts rounded to multiples of "
            f"{esc(rel.get('rounded_to_multiple_of'))}; centre: {esc(rel.get('center', 'not recorded'))}; "
            f"{exact} exact (training.release).")


def _ethics_and_caveats(inputs: DossierInputs) -> list[Flowable]:
    art, entry, rep = inputs.artifact or {}, present(inputs.model), inputs.validation or {}
    tr, ver = art["training"], rep.get("verification", {})
    rules = ", ".join(f"{k} {v:g}" for k, v in sorted((tr.get("policy") or {}).items()))
    revoked = (f"A withdrawal after training is handled by the study's revocation policy, "
               f"{esc(_revocation.policy(inputs.revocation))} (FP-PMS section 2.3). At this release the "
               f"model is {esc(_revocation.state(entry, inputs.history))}.")
    sites = ", ".join(tr.get("sites", []))
    counted = (f"{tr.get('n')} patients, {tr.get('events')} with the outcome," if kind_of(art).logistic
               else f"{tr.get('n')} patients with {tr.get('events')} events")
    return [heading("7 Training data"),
            para(f"{counted} at {len(tr.get('sites', []))} sites "
                 f"({esc(sites)}){_rounded(tr)}; only aggregates left the sites. Per-site counts at training "
                 "are not part of the artifact; section 6 gives them at validation."),
            *_analyses(inputs),
            heading("9 Ethical considerations"),
            para(f"<b>Consent.</b> Each site trained only on patients whose consent was active at the "
                 f"witnessed ledger checkpoint of size {(tr.get('consent_checkpoint') or {}).get('size')} "
                 f"(RC-CONS-002). {revoked}"),
            para(f"<b>Privacy.</b> Secure aggregation {'on' if tr.get('secure_aggregation') else 'OFF'}; "
                 f"disclosure policy: {esc(rules) or 'not recorded'}; differential privacy "
                 f"{esc(privacy_record(art))}. The ledger holds keyed "
                 "commitments under a fresh salt per consent event, never identifiers (RC-PRIV-001)."
                 f"{_release(art)}"),
            heading("10 Caveats and recommendations"),
            para("• Apparent performance overstates performance at new hospitals; the leave-one-site-out "
                 "column is the better guide, and neither replaces external validation (HAZ-VAL-001)."),
            para("• " + interval_text(art)),
            *[para("• " + esc(t)) for t in kind_caveats(art)],
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

"""FP-CER Clinical evaluation report (EU MDR Art. 61, Annex XIV part A; MDCG 2020-1; MDCG 2020-13).

The report answers the plan's questions (FP-CEP) from the evidence in the workspace and the
clinical evaluation's data: the state of the art (literature figures only where a source confirmed
them), the valid clinical association of every input of the model, the technical performance
(software verification), the clinical performance (internal, leave-one-site-out, external, and the
recalibrated successor), the era of the cohorts, the calibration in each subgroup with its
discussion, and the benefit-risk. What only the manufacturer can conclude stays open; while any
gap is open the report is a DRAFT (manifest open_decisions).
"""

from __future__ import annotations

from typing import Any

from reportlab.platypus import Flowable

from dossier.clinical import UNCONFIRMED, decided
from dossier.clinical_gaps import subgroup_names
from dossier.evidence import ClinicalEvidence, Report
from dossier.manufacturer import MARKER
from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, heading, para, table

from ._clinical import counts, evidence_of, open_items, performance_table, pooled_value, status_line
from ._model_kind import Terms, outcome_text, terms_of
from ._risk import policy_of, region, risk
from .clinical_validation import verdict_rows
from .model_card import fmt_ci, keyed, present

#: the requirement whose children verify that the federated fit equals the pooled one
EXACTNESS = "SYS-FED-001"


def _state_of_the_art(inputs: DossierInputs) -> list[Flowable]:
    cef = present(inputs.clinical_evaluation)
    rows: list[list[object]] = [["Tool", "Figure", "Value", "Setting", "Source"]]
    for t in cef.state_of_the_art:
        for f in t.figures:
            rows.append([t.tool, f.what, f.value if f.confirmed else UNCONFIRMED, f.setting or "—",
                         f.source or "—"])
    tools: list[list[object]] = [["Tool", "Inputs", "Outcome", "References"]]
    tools += [[t.tool, t.inputs, t.outcome, " ".join(t.references)] for t in cef.state_of_the_art]
    return [heading("2 State of the art"),
            para(f"<b>Literature search.</b> {esc(cef.literature_search.method)}"),
            table(tools, widths=[30, 40, 30, 70]),
            para("Reported discrimination and calibration. A figure is given only where the source named "
                 "beside it was read and confirms it; otherwise the cell says so. Figures from different "
                 "outcomes, horizons and populations are not directly comparable with each other nor with "
                 "section 5."),
            table(rows, widths=[26, 38, 34, 36, 36])]


def _association(inputs: DossierInputs) -> list[Flowable]:
    cef, art = present(inputs.clinical_evaluation), present(inputs.artifact)
    rows: list[list[object]] = [["Model input", "Established prognostic factor", "Evidence", "References"]]
    for spec in art.get("inputs", []):
        label = spec.get("title") or spec["name"]
        f = cef.factor_of(spec["name"], spec.get("title") or "", (spec.get("code") or {}).get("display", ""))
        none = ["NO ASSOCIATION STATED (open item)", "—", "—"]
        found = [f.factor, f.evidence, "; ".join(f.references)] if f else none
        rows.append([f"{label} ({spec['name']})", *found])
    return [heading("3 Valid clinical association"),
            para(f"<b>Outcome.</b> {esc(cef.clinical_association.outcome)}"),
            para("<b>Inputs.</b> Each input of the model against the prognostic factor it measures:"),
            table(rows, widths=[34, 36, 68, 32])]


def _exactness(text: str) -> bool:
    """Whether a requirement states equality with a reference (the pooled fit, lifelines, scikit-survival)."""
    low = text.lower()
    return any(word in low for word in ("pooled", "lifelines", "scikit-survival"))


def _outcome_of(run: Any, item: str) -> str:
    tests = [t for t in run.tests if item in t.reqs]
    if not tests:
        return "no test in the run"
    failed = [t for t in tests if t.outcome != "passed"]
    return f"{len(tests) - len(failed)} of {len(tests)} passed"


def _technical(inputs: DossierInputs) -> list[Flowable]:
    reqs, run, kind = present(inputs.requirements), inputs.test_run, terms_of(inputs).kind
    rows: list[list[object]] = [["Requirement", "Title", "Tests"]]
    rows += [[c.id, c.title, _outcome_of(run, c.id) if run is not None else "no test run given"]
             for c in reqs.children(EXACTNESS) if c.type == "software" and _exactness(c.text)]
    return [heading("4 Technical performance"),
            para("The software computes the model as specified: a federated fit equals the pooled fit on the "
                 f"same data (coefficients to 1e-6 or better, against {kind.reference}), the "
                 "served risk equals the reference computation, and the same inputs give the same artifact "
                 f"SHA-256. The requirements of {EXACTNESS} and their tests in the run the dossier documents "
                 "(the full record is the verification report FP-VER and the trace matrix FP-TM):"),
            table(rows, widths=[28, 112, 30])]


def _internal(inputs: DossierInputs) -> list[Flowable]:
    rep, terms = present(inputs.validation), terms_of(inputs)
    lo = rep.get("leave_one_site_out") or {}
    held = [n for n, e in (lo.get("sites") or {}).items() if e.get("possible") and not e.get("suppressed")]
    refused = [n for n, e in (lo.get("sites") or {}).items() if n not in held]
    out: list[Flowable] = [heading("5.1 Internal validation", 2),
                           para(f"Report {esc(rep.get('folder'))} of {esc(rep.get('date'))}, at the training "
                                f"hospitals ({esc(counts(rep))}); apparent performance (FP-CVR):"),
                           performance_table(rep, terms), heading("5.2 Leave-one-site-out validation", 2)]
    if held:
        out += [para(f"Held-out hospitals evaluated: {esc(', '.join(held))}"
                     + (f"; not possible at {esc(', '.join(refused))} (FP-CVR section 8 gives the rule)"
                        if refused else "") + "."),
                performance_table(rep, terms, blocks={n: lo["sites"][n] for n in held},
                                  pooled=lo.get("pooled"))]
    else:
        out.append(para("No hospital could be held out under the disclosure rules (FP-CVR section 8)."))
    return out


def _external_report(r: Report, terms: Terms, title: str) -> list[Flowable]:
    rep = r.report
    verdict = "PASSED" if not r.failed() else f"NOT PASSED ({', '.join(r.failed())})"
    return [para(f"<b>{esc(title)}</b>: report {r.sha256[:16]}… (ledger entry {r.index}) of "
                 f"{esc(rep.get('date'))}, at {esc(counts(rep))}. Verdict: {esc(verdict)}."),
            performance_table(rep, terms),
            table(verdict_rows(rep, terms), widths=[25, 68, 36, 25, 14]) if rep.get("criteria") else
            para("The report judges no criterion.")]


def _external(inputs: DossierInputs, ev: ClinicalEvidence) -> list[Flowable]:
    terms = terms_of(inputs)
    out: list[Flowable] = [heading("5.3 External validation", 2)]
    if not ev.external:
        out.append(para("<b>No external validation has been performed.</b> The model has been evaluated "
                        "only on patients of the cohort it was trained on; its performance at a hospital and "
                        "in an era it never saw is unknown. This is an open gap (section 9): the report, and "
                        "the technical file, remain a draft until an external validation is anchored in the "
                        "ledger."))
    for r in ev.external:
        out += _external_report(r, terms, f"Released model at {', '.join(r.sites)}")
    out.append(heading("5.4 After recalibration", 2))
    if not ev.recalibrated:
        out.append(para("No recalibrated version of the model is registered."))
    for m in ev.recalibrated:
        how = m.recalibration
        shown = ("; ".join(f"{k}: {_short(v)}" for k, v in sorted(how.items())
                           if not isinstance(v, dict | list))
                 if how else "the artifact does not record how (no training.recalibration block)")
        out.append(para(f"<b>{esc(m.entry.ref)}</b> ({esc(m.entry.status)}, SHA-256 {m.entry.sha256}), "
                        f"recalibrated at {esc(m.site)}: {esc(shown)}."))
        out += [f for r in m.reports if r.setting == "external"
                for f in _external_report(r, terms, f"Recalibrated model at {', '.join(r.sites)}")]
        if not any(r.setting == "external" for r in m.reports):
            out.append(para("It has no external validation report."))
    return out


def _short(value: object) -> str:
    """A recorded value as a reader wants it: a float to four significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _era(inputs: DossierInputs, ev: ClinicalEvidence) -> list[Flowable]:
    era, terms = present(inputs.clinical_evaluation).era, terms_of(inputs)
    rows: list[list[object]] = [["Cohort", "Period", "Setting"]]
    rows += [[c.name, c.period, c.setting] for c in era.cohorts]
    seen = ""
    if ev.external:
        rep = ev.external[-1].report
        seen = " Observed at the external hospital: " + "; ".join(
            f"E/O {pooled_value(rep, 'e_o_ratio', h)} at {terms.horizon(h)}"
            for h in rep.get("settings", {}).get("horizons", []))
        seen += " (E/O above 1: the model over-estimates)."
    return [heading("6 Era of the cohorts and today's treatment"), table(rows, widths=[50, 25, 95]),
            para(f"<b>Today.</b> {esc(era.today)}"),
            para(f"<b>Expected consequence.</b> {esc(era.expectation)}{esc(seen)}")]


def _subgroups(inputs: DossierInputs, ev: ClinicalEvidence) -> list[Flowable]:
    cef, rep, terms = present(inputs.clinical_evaluation), present(inputs.validation), terms_of(inputs)
    ext = ev.external[-1].report if ev.external else None
    horizons = rep.get("settings", {}).get("horizons", [])
    rows: list[list[object]] = [["Subgroup", *[f"E/O at {terms.horizon(h)}" for h in horizons],
                                 "CI excludes 1", "Discussion"]]
    for name in subgroup_names(rep, ext):
        k = keyed((rep.get("subgroups") or {}).get(name, {}).get("metrics", []))
        text = (cef.subgroups.get(name) or "").strip() or "NO DISCUSSION (open item)"
        entries = [k.get(("e_o_ratio", h)) for h in horizons]
        rows.append([name, *[fmt_ci_or(e) for e in entries], bias(entries), text])
    return [heading("7 Calibration in subgroups"),
            para("Expected over observed risk (E/O, pooled over the training hospitals where the disclosure "
                 "rules allow) in each subgroup the validation reports, with the clinical evaluator's "
                 "discussion. E/O above 1: the model over-estimates the risk in that group."),
            table(rows, widths=[26, *[23] * len(horizons), 22, 122 - 23 * len(horizons)])]


def bias(entries: list[dict[str, Any] | None]) -> str:
    """``over-estimates`` when an E/O's CI lies above 1 at some horizon, ``under-estimates`` below,
    ``no`` when every CI holds 1, ``—`` without an interval."""
    found = [e for e in entries if e and e.get("ci_lower") is not None]
    over = any(e["ci_lower"] > 1 for e in found)
    under = any(e["ci_upper"] < 1 for e in found)
    words = [w for w, on in (("over-estimates", over), ("under-estimates", under)) if on]
    return " and ".join(words) if words else ("no" if found else "—")


def fmt_ci_or(entry: dict[str, Any] | None) -> str:
    """``estimate (lower–upper)``, or ``not pooled`` for a subgroup too few hospitals reported."""
    return fmt_ci(entry) if entry else "not pooled"


def _benefit_risk(inputs: DossierInputs) -> list[Flowable]:
    cef, reqs = present(inputs.clinical_evaluation), present(inputs.requirements)
    policy = policy_of(inputs)
    hazards = reqs.of_type("hazard")
    heavy = [h for h in hazards if region(h.severity, h.residual_probability, policy) != "acceptable"]
    rows: list[list[object]] = [["Hazard", "Severity", "Residual risk"]]
    rows += [[f"{h.id} {h.title}", h.severity, risk(h.severity, h.residual_probability, policy)]
             for h in heavy]
    br = cef.benefit_risk
    conclusion = br.conclusion if decided(br.conclusion) else MARKER
    evaluator = br.evaluator if decided(br.evaluator) else "not named: the report is not signed"
    return [heading("8 Benefit-risk"),
            para(f"<b>Benefit.</b> {esc(br.benefit)}"),
            para(f"<b>Residual risks</b> (FP-RMF, FP-RMR): {len(hazards)} hazards; those not in the "
                 f"acceptable region ({len(heavy)}):"),
            table(rows, widths=[120, 20, 30]) if heavy else para("None."),
            para(f"<b>Conclusion.</b> {esc(conclusion)}"),
            para(f"<b>Clinical evaluator.</b> {esc(evaluator)}.")]


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    ev = evidence_of(inputs)
    model, art = present(inputs.model), present(inputs.artifact)
    return [status_line(inputs, "This report"),
            heading("1 Scope"),
            para(f"The clinical evaluation of {esc(inputs.device)} {esc(inputs.device_version)} with model "
                 f"{esc(model.ref)} (SHA-256 {art['sha256']}), under the plan FP-CEP: state of the art, "
                 "valid clinical association, technical and clinical performance (MDCG 2020-1), the era of "
                 f"the cohorts, subgroups and the benefit-risk. Outcome: {esc(outcome_text(art))}; "
                 f"{len(ev.reports)} validation report(s) anchored in the ledger "
                 "for this model."),
            *_state_of_the_art(inputs), *_association(inputs), *_technical(inputs),
            heading("5 Clinical performance"), *_internal(inputs), *_external(inputs, ev), *_era(inputs, ev),
            *_subgroups(inputs, ev), *_benefit_risk(inputs), heading("9 Open items"), *open_items(inputs)]


SPEC = DocumentSpec(id="FP-CER", title="Clinical evaluation report",
                    file="FP-CER-clinical-evaluation-report.pdf",
                    needs=("model", "validation", "requirements", "safety", "clinical_evaluation"),
                    build=build, toc=True)

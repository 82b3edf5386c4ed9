"""Tables shared by the clinical evaluation documents (FP-CEP, FP-CER, FP-PMCF), built only on the
shared style: the acceptance criteria by scope, a validation report's headline performance per site
and pooled, and the open items of the clinical evaluation. Presentation only: every number is read
from a validation report, the requirements or ``regulatory/clinical_evaluation.yaml``.
"""

from __future__ import annotations

from typing import Any

from reportlab.platypus import Flowable

from dossier.clinical_gaps import clinical_gaps
from dossier.evidence import ClinicalEvidence
from dossier.spec import DossierInputs
from dossier.style import esc, para, table

from ._model_kind import Terms
from .clinical_validation import rule
from .model_card import ci_cell, fmt_ci, keyed

#: the scopes an acceptance criterion may have, and what each means
SCOPES = {"each-site": "every training hospital", "pooled": "pooled over the training hospitals",
          "external": "every external hospital (never trained the model)"}


def evidence_of(inputs: DossierInputs) -> ClinicalEvidence:
    """The gathered clinical evidence (none when it was not gathered)."""
    return inputs.evidence if isinstance(inputs.evidence, ClinicalEvidence) else ClinicalEvidence()


def criteria_rows(requirements: Any, terms: Terms) -> list[list[object]]:
    """Every acceptance criterion the requirements state: id, rule, scope in words."""
    rows: list[list[object]] = [["Criterion", "Rule", "Judged at"]]
    for item in sorted(requirements.items.values(), key=lambda i: i.id):
        for k, a in enumerate(item.acceptance, start=1):
            crit = a.model_dump()
            scope = str(crit.get("scope"))
            rows.append([f"{item.id}#{k}", rule(crit, terms), SCOPES.get(scope, scope)])
    return rows


def scopes_stated(requirements: Any) -> set[str]:
    return {str(a.scope) for item in requirements.items.values() for a in item.acceptance}


def headline_keys(report: dict[str, Any], terms: Terms) -> list[tuple[str, float | None]]:
    """(metric, horizon) of the headline metrics at the report's horizons (:meth:`Kind.headline`)."""
    return terms.kind.headline(report.get("settings", {}).get("horizons", []))


def performance_table(report: dict[str, Any], terms: Terms, blocks: dict[str, Any] | None = None,
                      pooled: list[dict[str, Any]] | None = None) -> Flowable:
    """Headline metrics (rows) at each site of ``blocks`` (default the report's sites) and pooled."""
    blocks = report.get("sites", {}) if blocks is None else blocks
    pooled = report.get("pooled", {}).get("metrics", []) if pooled is None else pooled
    names = list(blocks)[:5]
    cols = [keyed(blocks[n].get("metrics", [])) for n in names]
    pool = keyed(pooled)
    rows: list[list[object]] = [["Metric", *names, *(["Pooled"] if pooled else [])]]
    for key in headline_keys(report, terms):
        cells = ["suppressed" if blocks[n].get("suppressed") else ci_cell(c.get(key))
                 for n, c in zip(names, cols, strict=True)]
        rows.append([terms.metric({"metric": key[0], "horizon": key[1]}), *cells,
                     *([ci_cell(pool.get(key))] if pooled else [])])
    width = 126 / max(len(rows[0]) - 1, 1)
    return table(rows, widths=[44, *[width] * (len(rows[0]) - 1)])


def counts(report: dict[str, Any]) -> str:
    """``site: n patients, e events`` for each site of a report."""
    return "; ".join(f"{name}: {s.get('n', 'withheld')} patients, {s.get('events', 'withheld')} events"
                     for name, s in (report.get("sites") or {}).items()) or "no site"


def pooled_value(report: dict[str, Any], metric: str, horizon: float | None) -> str:
    """A pooled estimate with its CI, else the single site's, else an em dash."""
    entry = keyed(report.get("pooled", {}).get("metrics", [])).get((metric, horizon))
    if entry is None and len(report.get("sites") or {}) == 1:
        entry = keyed(next(iter(report["sites"].values())).get("metrics", [])).get((metric, horizon))
    return fmt_ci(entry)


def open_items(inputs: DossierInputs) -> list[Flowable]:
    """The gaps of the clinical evaluation, each with what closes it (or 'None.')."""
    gaps = clinical_gaps(inputs.clinical_evaluation, inputs.evidence, inputs.validation, inputs.artifact)
    if not gaps:
        return [para("None: every gap the evaluation checks for is closed.")]
    rows: list[list[object]] = [["#", "Open item", "Closed by"]]
    rows += [[n, where, what] for n, (where, what) in enumerate(gaps, start=1)]
    return [para(f"<b>{len(gaps)} open item(s)</b> keep the clinical evaluation, and so the technical file, "
                 "a draft (manifest open_decisions):"), table(rows, widths=[8, 70, 92])]


def status_line(inputs: DossierInputs, doc: str) -> Flowable:
    """``Status: DRAFT …`` while any gap is open, else proposed for the evaluator's signature."""
    gaps = clinical_gaps(inputs.clinical_evaluation, inputs.evidence, inputs.validation, inputs.artifact)
    if gaps:
        return para(f"<b>Status: DRAFT.</b> {esc(doc)} is not issued: {len(gaps)} open item(s), listed at "
                    "its end.")
    return para(f"<b>Status: proposed for signature.</b> {esc(doc)} has no open item; it is issued when the "
                "clinical evaluator signs it.")

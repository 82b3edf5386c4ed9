"""FP-PCCP Predetermined change control plan (FDA PCCP guidance for AI-enabled device software functions;
MDCG 2020-3; EU MDR Annex VI Part C 6.5.2).

Rendered from the plan file (``regulatory/change_control_plan.yaml``, read strictly by
:func:`device.change_control.load_plan` from the source checkout): the pre-authorised modification,
the significance reasoning, every clause with its bound, the modification protocol and what is a
significant change. For a successor, the assessment its ``release`` ledger entry records under
``change_control`` is shown as recorded; a release entry without one is reported as not assessed,
and a plan whose SHA-256 differs from the one the assessment names is said to differ.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from reportlab.platypus import Flowable

from device.change_control import RELATIVE_PATH, ChangeControlError, ChangeControlPlan, load_plan
from dossier.spec import DocumentSpec, DossierError, DossierInputs
from dossier.style import esc, heading, para, table

from ._model_kind import COX, Kind, kind_of
from .model_card import present


def plan_of(inputs: DossierInputs) -> ChangeControlPlan:
    """The plan in the source checkout the dossier is built from (one line naming the file if bad)."""
    if inputs.source is None:
        raise DossierError(f"FP-PCCP needs the change control plan ({RELATIVE_PATH}) of a source checkout")
    try:
        return load_plan(Path(inputs.source) / RELATIVE_PATH)
    except ChangeControlError as exc:
        raise DossierError(str(exc)) from None


def bound_of(plan: ChangeControlPlan, clause: str, kind: Kind = COX) -> str:
    """A clause's bound as the plan states it, in words, for the documented ``kind`` of model (its ratio,
    its concordance: device.change_control judges a logistic model's odds ratios and C statistic)."""
    b = plan.bounds
    slope, eo = b.calibration_slope, b.e_o_ratio
    return {
        "PCCP-DATA-COHORT": f"patients and events each at least {b.min_cohort_fraction:.0%} of the "
                            "released version's",
        "PCCP-COEF-SE": f"|β new − β released| ≤ {b.coefficient_z:g} × released SE",
        "PCCP-COEF-RANGE": f"|Δβ| × (max − min) ≤ {b.coefficient_range_log_hr:g}: the {kind.ratio} "
                           "across the declared range changes at most "
                           f"{math.exp(b.coefficient_range_log_hr):.2f}-fold",
        "PCCP-PERF-C": f"pooled {'C statistic' if kind.logistic else 'C'} ≥ released − "
                       f"{b.harrell_c_margin:g}",
        "PCCP-PERF-SLOPE": f"in [{slope.min:g}, {slope.max:g}] and within {slope.max_change:g} of the "
                           "released",
        "PCCP-PERF-EO": f"in [{eo.min:g}, {eo.max:g}] and |Δ ln E/O| ≤ {eo.max_log_change:g} "
                        f"({math.exp(eo.max_log_change) - 1:.0%})",
        "PCCP-VAL-PASSED": "passed: true",
    }.get(clause, "identical")


def _scope(plan: ChangeControlPlan) -> list[Flowable]:
    acc = plan.acceptance
    accepted = (f"accepted by {esc(acc.accepted_by)} (reference {esc(acc.reference or '—')})"
                if acc.accepted_by else
                "<b>not accepted by a notified body</b>: no acceptance is recorded in the plan file. "
                "Until one is, the plan does not on its own authorise a change: every successor remains "
                "subject to the manufacturer's change control and significance assessment")
    rows = [("Plan", f"{plan.id} version {plan.version}: {plan.title}"), ("File", str(RELATIVE_PATH)),
            ("Plan SHA-256", plan.sha256)]
    return [heading("1 Purpose and scope"),
            para("This plan states the one modification of the released prognostic model that the "
                 "manufacturer pre-authorises, the protocol by which it is made and verified, and the bounds "
                 "within which it remains the same device; everything else is a significant change. "
                 "Structure after the FDA guidance on predetermined change control plans for AI-enabled "
                 "device software functions (description of modifications, modification protocol, impact "
                 "assessment); significance after MDCG 2020-3 and EU MDR Annex VI Part C 6.5.2–6.5.3."),
            table([("Item", "Value"), *rows], widths=[35, 135]),
            para(f"<b>Acceptance.</b> {accepted}.")]


def _modification(plan: ChangeControlPlan) -> list[Flowable]:
    m = plan.modification
    return [heading("2 The pre-authorised modification"),
            para(f"<b>{esc(m.id)} {esc(m.name)}.</b> {esc(m.description)}"),
            para("<b>Triggers.</b>"), *[para(f"• {esc(t)}") for t in m.triggers],
            heading("3 Significance (MDCG 2020-3)"), para(esc(m.rationale))]


def _clauses(plan: ChangeControlPlan, kind: Kind) -> list[Flowable]:
    rows: list[list[object]] = [["Clause", "Requirement", "Bound"]]
    rows += [[c.id, f"{c.title}: {c.text}", bound_of(plan, c.id, kind)] for c in plan.clauses]
    return [heading("4 Impact assessment: the clauses every successor is judged on"),
            para("Each retrained successor is compared with the released version it succeeds, clause by "
                 "clause, from the two artifacts and their validation reports (device/change_control.py). It "
                 "is within the plan only if every clause passes; a clause whose evidence is missing fails."),
            table(rows, widths=[36, 86, 48])]


def _protocol(plan: ChangeControlPlan) -> list[Flowable]:
    p = plan.protocol
    out: list[Flowable] = [heading("5 Modification protocol")]
    for title, steps in (("5.1 Data management", p.data_management), ("5.2 Retraining", p.retraining),
                         ("5.3 Verification and validation", p.performance_evaluation),
                         ("5.4 Update procedure", p.update_procedure)):
        out += [heading(title, 2), *[para(f"• {esc(s)}") for s in steps]]
    return out


def _refused(plan: ChangeControlPlan) -> list[Flowable]:
    return [heading("6 Significant changes: not released as a routine update"),
            para("A successor that breaks any clause is outside the plan. So is any of the following, which "
                 "the plan does not pre-authorise:"),
            *[para(f"• {esc(s)}") for s in plan.significant_changes]]


def _recorded(inputs: DossierInputs) -> dict[str, Any] | None:
    """The ``change_control`` of the documented model's release, only from a release entry the registry
    honours (signed by a pinned approver): a ledger writer cannot plant a "within the plan"."""
    return inputs.release_change_control


def _assessment(inputs: DossierInputs, plan: ChangeControlPlan) -> list[Flowable]:
    entry = present(inputs.model)
    out: list[Flowable] = [heading(f"7 Assessment of {entry.ref}")]
    if entry.predecessor is None:
        return [*out, para(f"{esc(entry.ref)} is a first version (no predecessor): it is not a change, and "
                           "the plan applies to its retrained successors.")]
    released = any(a.get("kind") == "release" for a in present(inputs.ledger).anchors)
    cc = _recorded(inputs)
    if cc is None:
        why = ("its release entry in the ledger records no change control assessment" if released
               else "it has not been released, and an assessment is recorded only at release")
        return [*out, para(f"{esc(entry.ref)} succeeds {esc(entry.predecessor)}. <b>Not assessed</b>: {why}. "
                           "No claim is made here that it lies within the plan.")]
    verdict = "WITHIN the plan" if cc.get("within_plan") is True else "OUTSIDE the plan: a significant change"
    pred = cc.get("predecessor") or {}
    same = cc.get("plan_sha256") == plan.sha256
    plan_text = (f"{cc.get('plan', '—')} version {cc.get('plan_version', '—')}, SHA-256 "
                 f"{cc.get('plan_sha256', '—')}" + ("" if same else " — DIFFERS from the plan printed here"))
    rows: list[list[object]] = [
        ["Item", "Recorded"],
        ["Successor of", f"{pred.get('model', entry.predecessor)} (SHA-256 {pred.get('sha256', '—')})"],
        ["Plan", plan_text], ["Verdict", verdict]]
    checks: list[list[object]] = [["Clause", "Result", "Detail"]]
    checks += [[c, "passed", ""] for c in cc.get("passed", [])]
    checks += [[f.get("id"), "FAILED", f.get("detail", "")] for f in cc.get("failed", [])]
    return [*out, para(f"As recorded in the release entry of {esc(entry.ref)} in the ledger "
                       "(change_control):"),
            table(rows, widths=[35, 135]), table(checks, widths=[35, 20, 115])]


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    plan = plan_of(inputs)
    return [*_scope(plan), *_modification(plan), *_clauses(plan, kind_of(inputs.artifact)), *_protocol(plan),
            *_refused(plan), *_assessment(inputs, plan)]


SPEC = DocumentSpec(id="FP-PCCP", title="Predetermined change control plan",
                    file="FP-PCCP-change-control-plan.pdf", needs=("model", "ledger"), build=build,
                    sources=(str(RELATIVE_PATH),))

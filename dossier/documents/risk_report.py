"""FP-RMR Risk management report (ISO 14971:2019 §8–9; ISO/TR 24971:2020 §8; EU MDR Annex I §1–4).

The review of risk management before release: whether the plan (FP-RMP) was carried out, the
overall residual risk and the benefit-risk evaluated together, and the items still open. The
evaluation is the risk management team's judgement stated with its reasons: the test run is one
input among the hazards' residual estimates, the controls still planned, the usability evaluation
not yet run and the manufacturer's open decisions; a run where every test passes does not make
the overall residual risk acceptable. The report stays a DRAFT until the approver named in
``safety.yaml`` approves it.
"""

from __future__ import annotations

from typing import Any

from reportlab.platypus import Flowable

from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, heading, para, table

from ._risk import approval_block, approval_state, evidence, open_controls, planned, policy_of, region, risk
from .model_card import present
from .risk_plan import source

#: decisions only the manufacturer can take that this report depends on (where each is discussed)
DECISIONS = (
    ("Approval of the plan and this report, and acceptance of the residual risks in the justify region",
     "FP-RMP section 2; section 7 below"),
    ("Software safety class B, which credits clinician review as an external risk control while the "
     "severities here do not (class C must be considered)", "safety classification; FP-SDP"),
    ("The consent revocation policy (window or immediate)", "FP-RMF section 6"),
    ("Whether a study enables differential privacy, and with which epsilon and delta", "FP-RMF section 7"),
    ("Running the summative usability evaluation and accepting its results", "FP-UEF"),
)


def open_items(inputs: DossierInputs) -> list[tuple[str, str]]:
    """Every item that stops the overall residual risk from being accepted: (item, what closes it)."""
    reqs, policy = present(inputs.requirements), policy_of(inputs)
    def controls(h: Any) -> str:
        return ", ".join(c.id for c in reqs.children(h.id) if c.type == "risk-control")

    out = [(f"{h.id} {h.title}: residual risk {risk(h.severity, h.residual_probability, policy)}",
            f"implement the planned controls, or add controls, and re-estimate (now: {controls(h)})")
           for h in reqs.of_type("hazard")
           if region(h.severity, h.residual_probability, policy) in ("unacceptable", "unknown")]
    out += [(f"{rc.id} {rc.title}: planned, not implemented", "implement and verify it; re-estimate "
             + ", ".join(p for p in rc.parents if reqs.get(p).type == "hazard"))
            for rc in reqs.of_type("risk-control") if planned(rc)]
    out += [(f"{rc}: not verified in the test run", "a passing test carrying its id")
            for rc in open_controls(inputs)]
    return out


def _execution(inputs: DossierInputs, hazards: list[Any]) -> list[Flowable]:
    reqs = present(inputs.requirements)
    rcs = reqs.of_type("risk-control")
    count, _ = evidence(inputs, hazards)
    by_source: dict[str, int] = {}
    for h in hazards:
        by_source[source(h.id)] = by_source.get(source(h.id), 0) + 1
    return [heading("2 Execution of the plan"),
            para(f"Hazards identified: {len(hazards)} ("
                 + ", ".join(f"{n} {esc(s)}" for s, n in sorted(by_source.items())) + "), each with "
                 f"risk controls; {len(rcs)} risk controls, {sum(planned(rc) for rc in rcs)} of them planned "
                 "and not implemented. Severities are rated without credit for clinician oversight (FP-RMP "
                 f"section 3). Residual risks: {count['acceptable']} acceptable, {count['justify']} "
                 "acceptable "
                 f"only with justification, {count['unacceptable']} unacceptable, {count['unknown']} not "
                 "estimated (FP-RMF section 5). The test run of the risk controls is FP-RMF section 4; "
                 "the usability engineering file is FP-UEF.")]


def _evaluation(inputs: DossierInputs, hazards: list[Any], items: list[tuple[str, str]]) -> list[Flowable]:
    policy = policy_of(inputs)
    justify = [h.id for h in hazards if region(h.severity, h.residual_probability, policy) == "justify"]
    serious = [h.id for h in hazards if h.severity >= 4]
    if items:
        verdict = ("<b>Evaluation: the overall residual risk is NOT acceptable in this state</b>, and the "
                   f"device must not be used clinically: {len(items)} open item(s) (section 4).")
    else:
        verdict = ("<b>Evaluation proposed to the approver:</b> no residual risk is unacceptable, no "
                   "control is "
                   "planned or unverified; the team proposes that the overall residual risk is acceptable in "
                   "relation to the benefit, subject to the justifications below. It is not accepted until "
                   "the approver records the decision (section 7).")
    return [heading("3 Overall residual risk and benefit-risk"),
            para("ISO 14971 §8 asks for the residual risks to be evaluated together, not one by one. "
                 f"{len(serious)} of {len(hazards)} hazards end in the same harm, a wrong adjuvant treatment "
                 "decision (severity 4 or more), through different causes (inputs, use, data shift, "
                 "security); "
                 "their residual probabilities add up for one patient's decision, so a set of individually "
                 "tolerable risks is judged as a whole. Residual risks in the justify region, each needing "
                 f"the benefit-risk justification recorded with it (FP-RMF section 5): "
                 f"{esc(', '.join(justify)) or 'none'}."),
            para("<b>Benefit.</b> The intended benefit is an individual estimate of the risk of "
                 "recurrence or "
                 "death that supports, not replaces, the adjuvant treatment decision. Technical performance "
                 "(discrimination and calibration at the training hospitals, FP-CVR) is not a clinical "
                 "benefit: the benefit rests on the clinical evaluation under MDCG 2020-1 (valid clinical "
                 "association, external validation, the era of the training cohort), which this file does "
                 "not replace. Until it establishes the benefit, no residual risk of severity 4 is justified "
                 "by it."),
            para(verdict)]


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    hazards = present(inputs.requirements).of_type("hazard")
    items = open_items(inputs)
    run = present(inputs.test_run)
    rows: list[list[object]] = [["#", "Open item", "Closed by"]]
    rows += [[n, item, closes] for n, (item, closes) in enumerate(items, start=1)]
    decisions: list[list[object]] = [["Decision of the manufacturer", "Where"]]
    decisions += [list(d) for d in DECISIONS]
    return [para(f"<b>Status: {esc(approval_state(inputs))}.</b> This report is not issued until it is "
                 "approved."),
            heading("1 Scope"),
            para(f"The risk management review of fedprog {esc(inputs.device_version)} with model "
                 f"{esc(inputs.model.ref if inputs.model else '-')} under the plan FP-RMP, on the file "
                 "FP-RMF "
                 f"and the test run of commit {esc(run.commit)} ({esc(run.date)})."),
            *_execution(inputs, hazards), *_evaluation(inputs, hazards, items),
            heading("4 Open items"),
            para("Each item below keeps the overall residual risk from being accepted."),
            table(rows, widths=[8, 107, 55]) if items else para("None."),
            heading("5 Decisions of the manufacturer this report depends on"),
            table(decisions, widths=[120, 50]),
            heading("6 Production and post-production information"),
            para("ISO 14971 §9, §10: the methods to collect and review production and post-production "
                 "information are in place as FP-RMP section 8 and FP-PMS describe; drift thresholds "
                 "(RC-SHIFT-003) are among the open items until set."),
            heading("7 Approval"),
            para(f"{esc(approval_state(inputs))}. By approving, the approver accepts the evaluation of "
                 "section "
                 "3 and the justified residual risks, or records why not; an unacceptable residual risk "
                 "cannot be accepted (FP-RMP section 4)."),
            approval_block(inputs)]


SPEC = DocumentSpec(id="FP-RMR", title="Risk management report", file="FP-RMR-risk-management-report.pdf",
                    needs=("requirements", "test_run", "safety"), build=build)

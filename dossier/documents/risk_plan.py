"""FP-RMP Risk management plan (ISO 14971:2019 §4.4; ISO/TR 24971:2020 §4.4; IEC 62304 §5.1.7).

The plan the risk management file (FP-RMF) and report (FP-RMR) execute: scope, roles and their
holders, the severity and probability scales, the acceptability matrix and policy (all read from
``safety.yaml``, nothing kept in code), how hazards are identified (requirements, use, STRIDE
security threats, data and population shift), how risk controls are verified, and the production
and post-production activities. It is a draft until the approver named in ``safety.yaml`` approves.
"""

from __future__ import annotations

from typing import Any

from reportlab.platypus import Flowable, KeepTogether

from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, heading, para, table

from ._risk import approval_block, approval_state, matrix, planned, policy_of
from .cybersecurity import THREATS
from .model_card import present

#: where each hazard comes from, by its id's middle part (HAZ-<SOURCE>-000); the rest are failures of
#: requirements (software and interface failure analysis)
SOURCES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("Use (IEC 62366-1)", ("USE",), "the task analysis and known use errors of the usability engineering "
     "file (FP-UEF): each hazard-related use scenario is a hazard here"),
    ("Security (STRIDE)", ("SEC", "AUTH", "PRIV", "LEDG", "ART", "AUDIT"), "every threat of the STRIDE model "
     "of FP-CYB scored as a hazard with the harm it leads to (table below)"),
    ("Data and population shift", ("SHIFT", "VAL"), "the training cohort against the intended population, "
     "today's treatment and each site's case mix, and drift after release"),
)


def source(hazard_id: str) -> str:
    """The identification source of a hazard (:data:`SOURCES`), by its id."""
    part = hazard_id.split("-")[1]
    return next((name for name, parts, _ in SOURCES if part in parts), "Requirements (failure analysis)")


def stride_hazards(reqs: Any) -> list[tuple[str, str, list[str]]]:
    """Each STRIDE threat of FP-CYB with the hazards its controls trace to (empty: no hazard scored)."""
    controls = reqs.of_type("risk-control")
    out = []
    for category, threat, _asset, _control, evidence in THREATS:
        cited = set(evidence)
        found = sorted({p for rc in controls if rc.id in cited or cited & set(rc.parents)
                        for p in rc.parents if p in reqs and reqs.get(p).type == "hazard"})
        out.append((category, threat, found))
    return out


def _roles(inputs: DossierInputs) -> list[Flowable]:
    rm = present(inputs.safety).risk_management
    rows: list[list[object]] = [["Role", "Responsibilities and authority", "Held by"]]
    rows += [[r.role + (" (approver)" if r.role == rm.approver else ""), r.responsibilities,
              r.name or "not named: a decision of the manufacturer"] for r in rm.roles]
    unnamed = [r.role for r in rm.roles if not r.name]
    return [heading("2 Responsibilities and authorities"),
            para("ISO 14971 §4.4 b. Roles and their holders are data (safety.yaml, risk_management)."
                 + (f" <b>Not yet named by the manufacturer: {esc('; '.join(unnamed))}.</b> The plan is a "
                    "draft until they are." if unnamed else "")),
            table(rows, widths=[40, 95, 35])]


def _scales(inputs: DossierInputs) -> list[Flowable]:
    safety, policy = present(inputs.safety), policy_of(inputs)
    scale: list[list[object]] = [["Level", "Severity of harm", "Probability of occurrence"]]
    scale += [[lvl, safety.severity_scale[lvl], safety.probability_scale[lvl]] for lvl in range(1, 6)]
    regions: list[list[object]] = [["Region", "Meaning"]]
    regions += [[r.name, r.meaning] for r in policy.regions]
    return [heading("3 Severity and probability"),
            para("<b>Severity</b> is the worst credible harm of the hazardous situation, rated without "
                 "credit "
                 "for clinician oversight or any other risk control: a clinician who might catch a wrong "
                 "estimate changes the probability that harm follows, not how severe the harm is. A wrong "
                 "adjuvant treatment decision (an omitted treatment, a preventable recurrence; or an "
                 "avoidable "
                 "toxic one) is a serious injury (4). <b>Probability</b> is an ordinal estimate of the "
                 "hazardous situation leading to harm per use, by the development team."),
            table(scale, widths=[12, 79, 79]),
            heading("4 Risk acceptability criteria", 1),
            para(f"ISO 14971 §4.4 d. {esc(policy.policy)}"),
            table(regions, widths=[30, 140]),
            KeepTogether([para("<b>Acceptability matrix</b> (safety.yaml, acceptability.matrix; severity "
                               "rows "
                               "× probability columns, shaded by region):"), matrix(inputs)])]


def _identification(inputs: DossierInputs) -> list[Flowable]:
    reqs = present(inputs.requirements)
    hazards = reqs.of_type("hazard")
    rows: list[list[object]] = [["Source", "Method", "Hazards"]]
    for name, _parts, how in (*SOURCES, ("Requirements (failure analysis)", (),
                                         "each system and software requirement asked how its failure harms")):
        rows.append([name, how, ", ".join(h.id for h in hazards if source(h.id) == name) or "NONE"])
    stride: list[list[object]] = [["STRIDE", "Threat (FP-CYB)", "Scored as"]]
    stride += [[cat, threat, ", ".join(found) or "no hazard: review"] for cat, threat, found in
               stride_hazards(reqs)]
    return [heading("5 Hazard identification"),
            para("ISO 14971 §5.3–5.4. Hazards are identified from four sources, each reviewed at every "
                 "release "
                 "and whenever its input changes (a new input or user interface element, a new STRIDE "
                 "threat, "
                 "a new cohort or site). Each hazard is a sequence of events to a hazardous situation and "
                 "harm, traced to the requirements whose failure causes it (hazards.yaml)."),
            table(rows, widths=[32, 70, 68]),
            heading("Security threats scored as hazards", 2),
            para("Each threat of the STRIDE model is traced through the risk controls citing its evidence to "
                 "the hazards it can cause, which carry its severity and probability; a threat traced to no "
                 "hazard is reviewed."),
            table(stride, widths=[25, 110, 35])]


def _control(inputs: DossierInputs) -> list[Flowable]:
    reqs = present(inputs.requirements)
    rcs = reqs.of_type("risk-control")
    plan = [rc.id for rc in rcs if planned(rc)]
    by = {v: sum(1 for rc in rcs if rc.verification == v and not planned(rc))
          for v in ("test", "inspection", "analysis")}
    return [heading("6 Risk control and verification"),
            para("ISO 14971 §7.1–7.2. Controls are chosen in the order of §7.1: inherent safety by design, "
                 "protective measures in the device, information for safety. Each control is implemented by "
                 "the software requirements it names and verified: by the tests that carry its id in the "
                 "test run (fedprog trace check fails on a control verified by test without a passing test), "
                 "or by the inspection or analysis its rationale records. A control whose rationale says "
                 "PLANNED is not implemented: it earns no reduction of probability."),
            para(f"Today: {by['test']} verified by test, {by['inspection']} by inspection, "
                 f"{by['analysis']} by "
                 f"analysis, {len(plan)} planned ({esc(', '.join(plan)) or 'none'}).")]


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    safety = present(inputs.safety)
    return [para(f"<b>Status: {esc(approval_state(inputs))}.</b>"),
            heading("1 Scope"),
            para(f"Risk management of fedprog {esc(inputs.device_version)} ({esc(safety.standard)} class "
                 f"{esc(safety.safety_class)}) over its life cycle: design, verification, release of each "
                 "model "
                 "version, use and post-market surveillance, to withdrawal. It covers the software, its user "
                 "interfaces (risk page, CDS card, FHIR OperationOutcomes), its data (training cohorts, "
                 "patient records) and its federated network. The intended purpose is in FP-DD and FP-IFU. "
                 "This plan is executed in the risk management file (FP-RMF) and evaluated in the risk "
                 "management report (FP-RMR)."),
            *_roles(inputs), *_scales(inputs), *_identification(inputs), *_control(inputs),
            heading("7 Residual risk and overall evaluation"),
            para("ISO 14971 §7.3, §8. Each residual risk is judged by the matrix; the overall residual risk "
                 "and the benefit-risk are evaluated together in FP-RMR by the risk management team and "
                 "accepted, or not, by the approver. The evaluation is a judgement recorded with its reasons "
                 "and open items, never a verdict computed from test outcomes alone."),
            heading("8 Production and post-production activities"),
            para("ISO 14971 §10. Information is collected as FP-PMS plans it: complaints and incidents from "
                 "the sites, each served estimate's AuditEvent, calibration and input drift against "
                 "thresholds (RC-SHIFT-003), consent withdrawals, SOUP vulnerabilities against the SBOM. "
                 "Each item is reviewed for new hazards or changed estimates; the file, the report and, "
                 "where "
                 "needed, the model (a successor through the release gate, or a withdrawal recorded in the "
                 "ledger) are updated."),
            heading("9 Approval"),
            para(f"{esc(approval_state(inputs))}."), approval_block(inputs)]


SPEC = DocumentSpec(id="FP-RMP", title="Risk management plan", file="FP-RMP-risk-management-plan.pdf",
                    needs=("requirements", "safety"), build=build)

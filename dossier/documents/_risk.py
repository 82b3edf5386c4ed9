"""What the risk documents share (FP-RMP, FP-RMF, FP-RMR): the acceptability matrix read from the
safety classification data (safety.yaml), the risk index and region of a hazard, the verification
status of a risk control from the test run, and the state of the evidence (ISO 14971:2019 §4.4 d,
§7.2, §8).
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

from reportlab.lib import colors
from reportlab.platypus import Flowable, TableStyle

from dossier.spec import DossierInputs
from dossier.style import table
from traceability.safety import Acceptability, load_safety

from .model_card import present


@functools.cache
def _shipped() -> Acceptability:
    return load_safety().acceptability


def policy_of(inputs: DossierInputs) -> Acceptability:
    """The acceptability matrix the documents judge by: the safety classification's (safety.yaml)."""
    return present(inputs.safety).acceptability


def region(severity: int, probability: int | None, policy: Acceptability | None = None) -> str:
    """The region of a risk in the acceptability matrix (``policy``, by default the shipped
    safety.yaml's; ``unknown`` without a probability)."""
    return (policy or _shipped()).region(severity, probability)


def risk(severity: int, probability: int | None, policy: Acceptability | None = None) -> str:
    """``S×P (region)``: the risk index and its region, ``—`` without a probability."""
    if probability is None:
        return "—"
    return f"{severity * probability} ({region(severity, probability, policy)})"


def word(scale: dict[int, str], level: int) -> str:
    return scale.get(level, "").split(" - ")[0]


def control_status(rc: Any, tests: list[Any]) -> str:
    """verified, FAILED, SKIPPED, NOT VERIFIED, or by inspection/analysis."""
    outcomes = {t.outcome for t in tests}
    if outcomes & {"failed", "error"}:
        return "FAILED"
    if outcomes:  # verified only when every linked test ran and passed (traceability.check)
        return "verified" if outcomes == {"passed"} else "SKIPPED"
    return f"by {rc.verification}" if rc.verification != "test" else "NOT VERIFIED"


def verified(states: dict[str, str]) -> str:
    """Whether a hazard's controls are verified: ``yes``, or ``NO`` naming each open control."""
    if not states:
        return "NO: no risk control"
    bad = [f"{rc} {st}" for rc, st in states.items() if st in ("FAILED", "SKIPPED", "NOT VERIFIED")]
    if bad:
        return "NO: " + ", ".join(bad)
    other = [f"{rc} {st}" for rc, st in states.items() if st != "verified"]
    return "yes" + (f" ({', '.join(other)})" if other else "")


def grid(inputs: DossierInputs, hazards: list[Any], residual: bool) -> Flowable:
    """Severity rows × probability columns, hazard ids in their cell, the region shaded."""
    safety, policy = present(inputs.safety), policy_of(inputs)
    prob, sev = dict(safety.probability_scale), dict(safety.severity_scale)
    cells: dict[tuple[int, int | None], list[str]] = {}
    for h in hazards:
        cells.setdefault((h.severity, h.residual_probability if residual else h.probability), []).append(h.id)
    rows: list[list[object]] = [["Severity \\ probability", *[f"P{p} {word(prob, p)}" for p in range(1, 6)]]]
    style: list[tuple[Any, ...]] = []
    for r, s in enumerate(range(5, 0, -1), start=1):
        rows.append([f"S{s} {word(sev, s)}", *[", ".join(cells.get((s, p), [])) for p in range(1, 6)]])
        style += [("BACKGROUND", (p, r), (p, r), colors.HexColor(policy.named(region(s, p, policy)).shade))
                  for p in range(1, 6)]
    t = table(rows, widths=[30, 28, 28, 28, 28, 28])
    t.setStyle(TableStyle(style))
    return t


def matrix(inputs: DossierInputs) -> Flowable:
    """The acceptability matrix of safety.yaml: severity rows × probability columns, shaded by region."""
    return grid(inputs, [], residual=False)


def open_controls(inputs: DossierInputs) -> list[str]:
    """The risk controls whose verification by test failed, was skipped or is missing."""
    by_req = present(inputs.test_run).by_requirement()
    return [rc.id for rc in present(inputs.requirements).of_type("risk-control")
            if control_status(rc, by_req.get(rc.id, [])) in ("FAILED", "SKIPPED", "NOT VERIFIED")]


def evidence(inputs: DossierInputs, hazards: list[Any]) -> tuple[Counter[str], list[str]]:
    """Residual risks by region, and the reasons the evidence does not allow accepting the overall
    residual risk (unacceptable or unestimated residual risks, unverified controls); no reason does
    not make the overall residual risk acceptable: that is the evaluation of FP-RMR."""
    policy = policy_of(inputs)
    count = Counter(region(h.severity, h.residual_probability, policy) for h in hazards)
    bad = [h.id for h in hazards if region(h.severity, h.residual_probability, policy) == "unacceptable"]
    open_ = open_controls(inputs)
    why = [f"{count['unacceptable']} unacceptable residual risk(s): {', '.join(bad)}" if bad else "",
           f"{count['unknown']} hazard(s) without a residual estimate" if count["unknown"] else "",
           f"risk controls not verified: {', '.join(open_)}" if open_ else ""]
    return count, [w for w in why if w]


def planned(rc: Any) -> bool:
    """A risk control recorded as planned, not implemented (its rationale says ``PLANNED``): it earns no
    reduction of probability (FP-RMP)."""
    return "PLANNED" in (rc.rationale or "")


def approval_state(inputs: DossierInputs) -> str:
    """``DRAFT — …`` while the approver of safety.yaml has not approved, else who approved and when."""
    rm = present(inputs.safety).risk_management
    if rm.approval is None:
        return (f"DRAFT - not approved: the approval by the {rm.approver} (a decision of the manufacturer) "
                "is not recorded")
    a = rm.approval
    return f"Approved by {a.name} ({a.role}) on {a.date}: {a.decision}"


def approval_block(inputs: DossierInputs) -> Flowable:
    """The approval block: the approver's role, and name, decision, date and signature (empty in a draft)."""
    rm = present(inputs.safety).risk_management
    a = rm.approval
    signed = [a.name, a.decision, a.date] if a else ["", "", ""]
    rows: list[list[object]] = [["Role", "Name", "Decision", "Date", "Signature"], [rm.approver, *signed, ""]]
    return table(rows, widths=[40, 30, 55, 20, 25])

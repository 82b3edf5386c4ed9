"""FP-PMS Post-market surveillance plan (EU MDR Art. 83–86, Annex III; ISO/TR 20416).

The quantitative thresholds are the acceptance criteria the requirements state (the same the
release gate applies), each shown with its value at the documented model's validation; input
drift is judged against the training coverage the artifact records (declared ranges and the
securely summed histograms). Where the requirements state no number (input drift, complaints),
the plan says so and defines the signal, not an invented threshold.
"""

from __future__ import annotations

from typing import Any

from reportlab.platypus import Flowable

from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, heading, para, table

from . import _revocation
from ._model_kind import min_cell_count, terms_of
from .clinical_validation import rule
from .model_card import fmt, present, sig

#: what a drift in each metric means for the device
_SIGNAL = {"harrell_c": "Discrimination drop", "uno_c": "Discrimination drop",
           "td_auc": "Discrimination drop", "c_statistic": "Discrimination drop",
           "e_o_ratio": "Calibration drift", "calibration_slope": "Calibration drift",
           "calibration_intercept": "Calibration drift", "brier": "Accuracy loss",
           "integrated_brier": "Accuracy loss"}


def reference(check_list: list[dict[str, Any]]) -> str:
    """A criterion's value at release: the pooled value, or the range over the sites."""
    values = [c["value"] for c in check_list if isinstance(c.get("value"), int | float)]
    verdict = "PASS" if check_list and all(c.get("passed") for c in check_list) else "FAIL"
    if not values:
        return "not evaluated"
    shown = (fmt(values[0]) if len(values) == 1
             else f"{fmt(min(values))}–{fmt(max(values))} ({len(values)} checks)")
    return f"{shown}, {verdict}"


def _criteria(inputs: DossierInputs) -> list[list[object]]:
    terms = terms_of(inputs)
    checks = {c["id"]: c.get("checks", []) for c in (inputs.validation or {}).get("criteria", [])}
    rows: list[list[object]] = [["Indicator", "Threshold: a signal when not met", "At release", "Source"]]
    for item in present(inputs.requirements).items.values():
        for k, a in enumerate(item.acceptance, start=1):
            cid = f"{item.id}#{k}"
            crit = a.model_dump()
            rows.append([_SIGNAL.get(a.metric, a.metric), rule(crit, terms),
                         reference(checks.get(cid, [])) if cid in checks else "not evaluated", cid])
    return [rows[0], *sorted(rows[1:], key=lambda r: str(r[3]))]


def _sparse(spec: dict[str, Any], min_cell: Any) -> str:
    """Where in its declared range an input had no, or too few to release, training patients."""
    cov = spec.get("coverage") or {}
    edges, counts = cov.get("edges") or [], cov.get("counts") or []
    seen = [i for i, c in enumerate(counts) if c]
    if not seen:
        return "no coverage recorded"
    if spec.get("kind") == "boolean":
        return "both values represented" if counts[0] and counts[-1] else "only one value represented"
    lo, hi = seen[0], seen[-1]
    span = lambda a, b: f"{sig(edges[a])}–{sig(edges[b])}"  # noqa: E731
    parts = [f"data from {span(lo, hi + 1)}"]
    parts += [f"none or fewer than {min_cell} below {sig(edges[lo])}"] if lo > 0 else []
    parts += [f"none or fewer than {min_cell} above {sig(edges[hi + 1])}"] if hi < len(counts) - 1 else []
    few = [span(i, i + 1) for i in range(lo, hi + 1) if counts[i] is None]
    empty = sum(1 for i in range(lo, hi + 1) if counts[i] == 0)
    parts += [f"fewer than {min_cell} in {', '.join(few)}"] if few else []
    parts += [f"{empty} empty bin(s) inside (levels of a discrete input, or a gap)"] if empty else []
    return "; ".join(parts)


def _indicators(inputs: DossierInputs) -> list[Flowable]:
    art = inputs.artifact or {}
    min_cell = min_cell_count(art) or "the minimum cell count"
    cover: list[list[object]] = [["Input", "Declared range", "Training coverage (unit of the input)"]]
    cover += [[s["name"], f"{sig(s.get('min'))} to {sig(s.get('max'))} {s['unit']}", _sparse(s, min_cell)]
              for s in art.get("inputs", [])]
    return [heading("2 Indicators and thresholds"),
            para("<b>2.1 Clinical performance.</b> Each acceptance criterion of the requirements is a "
                 "post-market threshold, evaluated by periodic re-validation at the sites (section 3) "
                 "exactly as at release; a criterion not met is a signal (section 5)."),
            table(_criteria(inputs), widths=[28, 80, 38, 24]),
            para("<b>2.2 Input drift against the training coverage.</b> A value outside the declared range "
                 "is refused (RC-INPUT-001) and counted from the audit trail; inputs falling where training "
                 "data were absent or too few to release are tracked per site. " + _drift(inputs)),
            table(cover, widths=[26, 40, 104]),
            *_revocations(inputs),
            para("<b>2.4 Complaints and incidents.</b> Every complaint, user report and malfunction is "
                 "recorded and triaged within the complaint-handling process; any suspected serious incident "
                 "is reported under EU MDR Art. 87 (at the latest 15 days after awareness; 10 days for a "
                 "death or unanticipated serious deterioration; 2 days for a serious public health threat). "
                 "No complaint rate threshold is set: every complaint is assessed individually and trends "
                 "under Art. 88."),
            para("<b>2.5 Integrity and security.</b> A failed <i>fedprog ledger verify</i>, a witness "
                 "reporting a fork, an artifact refused for its SHA-256, or a vulnerability in a SOUP item "
                 "(FP-SOUP, FP-CYB) is a signal in itself.")]


def _drift(inputs: DossierInputs) -> str:
    """The input-drift thresholds: FP-PMCF's (regulatory/clinical_evaluation.yaml), when stated."""
    cef = inputs.clinical_evaluation
    if cef is None:
        return ("No numerical drift threshold is stated: any refusal pattern or any use in the gaps below is "
                "reviewed monthly, and a sustained shift triggers an unscheduled re-validation, whose "
                "acceptance criteria decide.")
    d = cef.pmcf.input_drift
    return (f"Signals (FP-PMCF section 2): more than {d.refused_share_per_month:.0%} of a site's requests "
            f"in a month refused, or an input's monthly mean more than {d.mean_shift_sd:g} SD from its "
            "training mean; either triggers an unscheduled re-validation, whose acceptance criteria decide.")


def _revocations(inputs: DossierInputs) -> list[Flowable]:
    """Section 2.3: the revocation policy, its deadline, the monitoring of flagged models, the state."""
    entry = present(inputs.model)
    return [para("<b>2.3 Consent revocation.</b> A withdrawal takes the patient's data out of every "
                 "future computation at once (RC-CONS-002). What it does to a released model trained on "
                 "them is the study's revocation policy (RC-CONS-001, RC-CONS-003). Under <i>window</i> "
                 "(the default) the model stays in service, flagged <i>retrain due</i> (in fedprog model "
                 "list and model due, the CapabilityStatement and the risk page); a successor is due once "
                 "min_revocations withdrawals name its training job (default: the study's minimum cell "
                 "count) or at the deadline, window_days (default 30) after the window opened, whichever "
                 "comes first. If the deadline passes without a released successor the model becomes "
                 "<i>affected</i> and the server answers 503. Under <i>immediate</i> the model is affected "
                 "at once and the server answers 503 until a successor is released. A released successor "
                 "(fedprog model retrain, then validation and the release gate) clears the flag; its "
                 "predecessor is then affected and never served again. The choice between the two "
                 "policies is the manufacturer's (FP-RMF); the study of this model declares "
                 f"<b>{esc(_revocation.policy(inputs.revocation))}</b>."),
            para("<b>Monitoring.</b> fedprog model due lists every flagged model with its revocations, the "
                 "number needed and the deadline; it is run at every revocation and in the weekly review. "
                 "A model whose successor is due is retrained at once; a deadline that passes without a "
                 "released successor (an outage of the device) is a signal (section 5). The revocation "
                 "rate per site and month is reported. At this release the model is "
                 f"<b>{esc(_revocation.state(entry, inputs.history))}</b>.")]


_SOURCES = [
    ("Audit trail", "AuditEvent per request (who, patient, model SHA-256, outcome), incl. refusals 401/403/"
                    "422", "GET /fhir/AuditEvent (system/AuditEvent.rs)", "monthly"),
    ("Risk assessments", "Stored RiskAssessments: distribution of predicted risks per site and horizon",
     "GET /fhir/RiskAssessment", "monthly"),
    ("Re-validation", "Performance at each site on newly consented patients with follow-up, pooled, "
                      "leave-one-site-out; every criterion of section 2.1",
     "fedprog validate MODEL (report anchored in the ledger)", "yearly, and on any signal"),
    ("Consent", "Revocations; models flagged retrain due (revocations, number needed, deadline); affected "
                "models", "fedprog consent status; fedprog model due; fedprog model list",
     "at every revocation; weekly review"),
    ("Ledger", "Integrity of the shared record, witness cosignatures", "fedprog ledger verify; fedprog "
                                                                       "ledger show", "daily"),
    ("Complaints, literature", "Complaints, user feedback, published evidence on similar tools and the "
                               "population", "complaint handling; literature search", "continuous; yearly"),
]

_ROLES = [
    ("PMS manager (QA/RA)", "Owns this plan; compiles the indicators; writes the PSUR and trend reports; "
                            "decides on CAPA and field safety corrective actions."),
    ("Clinical lead per site", "Runs re-validation at the site, reviews its results and complaints, reports "
                               "incidents."),
    ("Site data steward", "Keeps the consent registry and the site's data current; answers revocations."),
    ("IT operator", "Runs the server, keeps the audit trail, verifies the ledger."),
    ("Software maintenance", "Problem resolution and change control (IEC 62304 §6, §9); updates FP-RMF and "
                             "the requirements."),
]


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    model = inputs.model.ref if inputs.model else "—"
    return [heading("1 Purpose and scope"),
            para(f"This plan describes how the performance and safety of {esc(inputs.device)} "
                 f"{esc(inputs.device_version)} with model {esc(model)} are monitored once in use, as EU MDR "
                 "Art. 84 and Annex III require, and how findings feed back into risk management (FP-RMF, "
                 "ISO 14971 §10) and clinical evaluation (FP-CVR)."),
            *_indicators(inputs),
            heading("3 Data collection"),
            table([["Source", "What", "How", "Frequency"], *[list(s) for s in _SOURCES]],
                  widths=[28, 64, 48, 30]),
            heading("4 Responsibilities and reporting"),
            table([("Role", "Responsibility"), *_ROLES], widths=[40, 130]),
            para("A periodic safety update report (Art. 86) is issued yearly, which meets class IIa (every "
                 "two years) and class IIb (yearly) alike (classification: FP-DD); post-market clinical "
                 "follow-up (Annex XIV part B) is planned in FP-PMCF, with the re-validation of section 3."),
            heading("5 Actions on a signal"),
            para("1. Record and investigate; 2. assess the risk in FP-RMF; 3. if a criterion fails or safety "
                 "is in doubt, withdraw the version (fedprog model withdraw: the server stops serving it at "
                 "the next request, RC-REG-001) and inform the sites (field safety notice); 4. correct "
                 "(retrain, fix, re-validate) through change control; 5. release only through the release "
                 "gate."),
            heading("6 Limitations"),
            para("Re-validation needs follow-up: a drift in the 5-year risk shows only years after the "
                 "patients were scored, so the earlier signals (inputs, predicted-risk distribution, "
                 "complaints) matter. No complaint rate threshold is set: complaints are judged case by "
                 "case and trended (section 2.4).")]


SPEC = DocumentSpec(id="FP-PMS", title="Post-market surveillance plan",
                    file="FP-PMS-post-market-surveillance.pdf", needs=("model", "requirements", "validation"),
                    build=build)

"""FP-DD — Device description and intended use (EU MDR Annex II §1.1, Annex VIII Rule 11).

Everything model-specific (inputs, ranges, horizons, training summary, coefficients) is read
from the released artifact; the helpers :func:`prognostic`, :func:`horizon_label` and
:func:`input_table` are shared with the instructions for use (FP-IFU) so both documents show the
inputs exactly as the device enforces them.
"""

from __future__ import annotations

import math
from typing import Any

from reportlab.platypus import Flowable

from device.fhir.resources import event
from device.model import InputSpec, ModelError, PrognosticModel, load_model
from dossier.documents._layout import code, fit, section
from dossier.documents._model_kind import INTERCEPT, kind_of, model_interval, privacy_record
from dossier.documents.model_card import design_text
from dossier.spec import DocumentSpec, DossierError, DossierInputs
from dossier.style import MARGIN, PAGE, esc, para, table

#: terminology URIs and the names a clinician knows them by
CODE_SYSTEMS = {"http://loinc.org": "LOINC", "http://snomed.info/sct": "SNOMED CT",
                "http://unitsofmeasure.org": "UCUM"}


def prognostic(inputs: DossierInputs, doc_id: str) -> PrognosticModel:
    """The documented model as the device loads it (hash and contract checked)."""
    try:
        return load_model(inputs.artifact or {})
    except ModelError as exc:
        raise DossierError(f"{doc_id}: the model artifact does not load: {exc}") from None


def horizon_label(model: PrognosticModel, h: float) -> str:
    """``1095 days (3 years)``: the artifact's value and the wording of the CDS card."""
    return f"{h:g} {model.time_unit}s ({model.horizon_text(h)})"


def horizons_text(model: PrognosticModel) -> str:
    return ", ".join(horizon_label(model, h) for h in model.horizons)


def _bound(v: float | None) -> str:
    return "open" if v is None else f"{v:g}"


def value_range(spec: InputSpec) -> str:
    """The intended-use envelope of one input as the device enforces it."""
    if spec.kind == "boolean":
        return "0 = no, 1 = yes (valueBoolean or SNOMED CT Yes/No)"
    if spec.kind == "category":
        return "one of: " + "; ".join(f"{c.code} {c.display}" for c in spec.categories or [])
    unit = "" if spec.unit == "1" else f" {spec.unit}"
    return f"{_bound(spec.min)} to {_bound(spec.max)}{unit}"


def input_table(model: PrognosticModel) -> Flowable:
    """Name, code (system|code), clinical label and code display, UCUM unit and range of every input
    (the label is what the risk page and the refusals call the input)."""
    head: list[object] = ["Input", "Code (system|code)", "Label (code display)", "Unit", "Intended-use range"]
    rows: list[list[object]] = [head]
    tokens = [f"{s.code.system}|{s.code.code}" for s in model.inputs]
    for s, token in zip(model.inputs, tokens, strict=True):
        system = CODE_SYSTEMS.get(s.code.system, s.code.system)
        label = f"{s.title} ({s.code.display})" if s.title else s.code.display
        rows.append([s.name, code(token, f"({esc(system)})"), label, s.unit, value_range(s)])
    name = max(fit(s.name for s in model.inputs), fit(head[:1], "head"))
    unit = max(fit(s.unit for s in model.inputs), fit(head[3:4], "head"))
    token = min(fit(tokens, mono=True), 0.4 * (PAGE[0] - 2 * MARGIN))
    rest = PAGE[0] - 2 * MARGIN - name - unit - token
    return table(rows, widths=[name, token, rest * 0.55, unit, rest * 0.45])


def _identification(inputs: DossierInputs, model: PrognosticModel) -> list[Flowable]:
    t: dict[str, Any] = dict(inputs.artifact["training"]) if inputs.artifact else {}
    entry: Any = inputs.model
    checkpoint = t.get("consent_checkpoint") or {}
    rows: list[list[object]] = [
        ["Item", "Value"],
        ["Device (software)", f"{inputs.device} {inputs.device_version}, commit {inputs.commit}"],
        ["Prognostic model", f"{model.ref}, kind {model.artifact.kind}"
                             + (f", ties {model.artifact.ties}" if model.artifact.ties else "")],
        ["Model artifact SHA-256", code(model.sha256)],
        ["Release state (ledger)", f"{entry.status} (registered at ledger index {entry.ledger_index}; "
                                   f"transitions {', '.join(f'{s} at {i}' for i, s in entry.history)})"],
        ["Outcome", f"{model.outcome}; time unit {model.time_unit}"],
        ["Horizons", horizons_text(model)],
        ["Training", f"{t.get('n')} patients, {t.get('events')} events, {len(t.get('sites') or [])} sites "
                     f"({', '.join(t.get('sites') or [])}); secure aggregation "
                     f"{'on' if t.get('secure_aggregation') else 'OFF'}; "
                     + (f"time grid {t.get('time_grid')}; " if "time_grid" in t else "") +
                     f"{'converged' if t.get('converged') else 'NOT converged'} in {t.get('rounds')} rounds"],
        ["Consent checkpoint", code(f"ledger size {checkpoint.get('size')}, root {checkpoint.get('root')}")],
    ]
    return [*section("2 Device identification"), table(rows, widths=[40, 130])]


def _purpose(inputs: DossierInputs, model: PrognosticModel) -> list[Flowable]:
    need = inputs.requirements.get("UN-CLIN-001") if inputs.requirements is not None else None
    out: list[Flowable] = [
        *section("3 Intended purpose"), *section("3.1 Medical purpose", 2),
        para(f"{esc(inputs.device)} estimates, for one adult patient whose inputs lie inside the model's "
             f"intended-use ranges (section 6), {_returns(model)}. The estimate "
             "supports, and does not replace, the clinician's judgement in planning adjuvant treatment "
             "and follow-up. The device does not diagnose, does not recommend a treatment and does not "
             "deliver or withhold any therapy.")]
    if need is not None:
        out.append(para(f"The clinical need it answers is recorded as {esc(need.id)} "
                        f"(\u201c{esc(need.title)}\u201d): {esc(need.text)}"))
    out += [
        *section("3.2 Intended users", 2),
        para("Clinical users: physicians treating the patient (oncologists, surgeons, members of a "
             "multidisciplinary tumour board) who are trained in the interpretation of prognostic "
             "estimates. Technical users: hospital IT staff who integrate the FHIR endpoint or the CDS "
             "Hooks service into the electronic health record (EHR) and operate the site software; the "
             "quality assurance (QA) lead who validates, releases and withdraws model versions. "
             "Patients do not use the risk function; they may read and withdraw their consent through "
             "the consent endpoint."),
        *section("3.3 Use environment", 2),
        para("Hospitals. The risk is requested by the EHR (CDS Hooks patient-view) or by an integrating "
             "system (FHIR R4 operation $predict-risk) from data already recorded; the device runs on "
             "hospital-managed servers. Training runs across hospitals; each hospital's site software "
             "runs inside that hospital and patient-level data never leave it."),
        *section("3.4 Patient population", 2),
        para("Adult patients with the condition the model was trained for, whose every input lies inside "
             "the ranges of section 6, and who resemble the training population: "
             f"{esc(model.artifact.training.get('n'))} consenting patients at "
             f"{len(model.artifact.training.get('sites') or [])} hospitals (FP-DD section 2). The "
             "clinical validation report (FP-CVR) describes that population and the performance per hospital "
             "and subgroup."),
        *section("3.5 Contraindications and exclusions", 2),
        para("The device shall not be used: (a) for a patient with any input outside its intended-use "
             "range (the device refuses to compute, it never clamps or extrapolates); (b) for patients "
             "unlike the training population, including children and populations or care settings not "
             "represented at the training hospitals; (c) as the sole basis of a treatment decision, "
             "autonomously, or without independent clinical review of the inputs shown with the "
             "estimate; (d) for horizons other than those released with the model; (e) with a model "
             "version that is not released, or is withdrawn or affected by a consent revocation (the "
             "device refuses to serve such a version)."),
    ]
    return out


def _returns(model: PrognosticModel) -> str:
    """What the device returns for one patient, in words (markup)."""
    if model.kind == "logistic":
        return (f"the probability of {esc(event(model))} at the model's one horizon "
                f"({esc(horizons_text(model))}, when the outcome is recorded), with a 95% interval, the risk "
                "ratio against the model's reference patient and each input's log odds ratio contribution")
    return (f"the absolute risk of {esc(event(model))} "
            f"by each horizon of the released model ({esc(horizons_text(model))}), with a 95% interval, "
            "the hazard ratio against the model's centre and each input's contribution")


def _classification(inputs: DossierInputs) -> list[Flowable]:
    safety = inputs.safety
    return [
        *section("4 Classification"),
        *section("4.1 EU MDR 2017/745, Annex VIII Rule 11", 2),
        para("(a) Qualification. The software calculates a patient-specific prognosis from the patient's "
             "own data for a medical purpose (Article 2(1): prediction and prognosis of disease); it is "
             "medical device software (MDCG 2019-11), not software for storage, communication or simple "
             "search."),
        para("(b) Rule 11, first indent. Software intended to provide information used to take decisions "
             "with diagnostic or therapeutic purposes is class IIa, unless those decisions have an impact "
             "that may cause death or an irreversible deterioration of health (class III), or a serious "
             "deterioration of health or a surgical intervention (class IIb). The estimate informs "
             "decisions on adjuvant treatment, a therapeutic purpose, so the device is class IIa at least."),
        para("(c) Impact of the decisions. The information informs, and does not drive, clinical "
             "management: the decision is taken by a clinician, usually a tumour board, on established "
             "prognostic factors the device shows beside the estimate, and it is not time-critical. On "
             "this basis the manufacturer's candidate classification is <b>class IIa</b>. Because an "
             "under- or over-estimated risk could contribute to an omitted or unnecessary systemic "
             "treatment, an assessor may argue a serious deterioration of health (class IIb)."),
        para("<b>The manufacturer must confirm this classification</b> (and agree it with the notified "
             "body) before placing the device on the market; it must be re-assessed if the intended use "
             "changes, for example to autonomous use or use without clinical review."),
        *section("4.2 IEC 62304 software safety class", 2),
        para(f"Independently of the MDR class, the software system is IEC 62304 software safety class "
             f"<b>{esc(safety.safety_class if safety else '(not classified)')}</b>; the rationale is in "
             "the software development plan (FP-SDP section 2)."),
    ]


def _operation(model: PrognosticModel) -> list[Flowable]:
    t, kind = model.artifact.training, kind_of(model.to_artifact())
    record = privacy_record(model.to_artifact())
    pooled = (f"The federated fit equals the fit on the pooled data (verified against {kind.reference})."
              if not t.get("differential_privacy") else
              "This model was trained with differential privacy, so it is not the fit on the pooled data.")
    where = "" if "FP-CYB" in record else " (FP-CYB section 4.7)"
    return [
        *section("5 Principles of operation"),
        *section("5.1 Federated training", 2),
        para(f"The model is {_fitted(model)} fitted by "
             "Newton-Raphson across hospitals. Each hospital's site software computes, on its consenting "
             f"patients only, aggregate statistics ({_sums(model)}, information matrices); with secure "
             f"aggregation (on for this model: {'yes' if t.get('secure_aggregation') else 'no'}) each "
             "statistic is masked with pairwise masks that cancel only in the sum over all sites, so the "
             f"coordinator learns the sum and no single hospital's contribution. {pooled} Differential "
             f"privacy for this model: {esc(record)}{where}."),
        *section("5.2 The model", 2), para(_the_model(model)),
        *section("5.3 What a RiskAssessment means", 2), para(_the_resource(model)),
        *section("5.4 Release and service", 2),
        para("A version is served only after it passed every validation acceptance criterion and was "
             "released; release, withdrawal and consent revocations are entries in the witnessed ledger, "
             "and the server re-reads the ledger at every request, so a withdrawal of the model takes "
             "effect at once; a consent revocation takes effect by the study's revocation policy (FP-PMS "
             "section 2.3)."),
    ]


def _fitted(model: PrognosticModel) -> str:
    if model.kind == "logistic":
        return "a logistic regression of its recorded binary outcome"
    return f"a Cox proportional-hazards model ({esc(model.artifact.ties)} ties)"


def _sums(model: PrognosticModel) -> str:
    return "score vectors" if model.kind == "logistic" else "risk-set sums"


def _the_model(model: PrognosticModel) -> str:
    """Section 5.2: the formula the device evaluates (markup)."""
    if model.kind == "logistic":
        return ("For a patient with inputs x (in the units of section 6), intercept \u03b1, slopes \u03b2 "
                "and centre c (the study's reference patient): \u03c0(x) = expit(\u03b1 + \u03b2\u00b7(d(x) "
                "\u2212 c)), the probability of the outcome recorded at the model's one horizon; \u03b1 is "
                "the reference patient's log-odds and exp(\u03b2) the odds ratios. The artifact, sealed by "
                "its SHA-256, holds \u03b1 and \u03b2, their covariance and c; it has no baseline survival "
                "and predicts no time to an event.")
    return ("For a patient with inputs x (in the units of section 6), coefficients \u03b2, centre c and "
            "released baseline survival S0: S(t | x) = S0(t)<super>exp(\u03b2\u00b7(x \u2212 c))</super>; "
            "the risk by horizon h is 1 \u2212 S(h | x). The artifact, sealed by its SHA-256, holds "
            "\u03b2, their covariance, c and S0 released only at times where enough events accumulated.")


def _the_resource(model: PrognosticModel) -> str:
    """Section 5.3: what the device's RiskAssessment carries (device.fhir.resources), in words (markup)."""
    interval = "a 95% interval (" + model_interval(model) + "); "
    if model.kind == "logistic":
        return ("The RiskAssessment gives one prediction, at the model's one horizon: "
                "<i>probabilityDecimal</i>, the estimated probability (a fraction) of the outcome when it is "
                "recorded; " + interval + "<i>relativeRisk</i>, the risk ratio \u03c0(x)/\u03c0(c) against "
                "the reference patient (a ratio of probabilities, not the odds ratio); and, per input, its "
                "log odds ratio contribution \u03b2<sub>j</sub>(x<sub>j</sub> \u2212 c<sub>j</sub>), which "
                "sum to the log-odds minus the intercept. <i>method</i> names the model id, version and "
                "artifact SHA-256.")
    return ("For each horizon the RiskAssessment gives <i>probabilityDecimal</i>, the estimated "
            "probability (a fraction) that the event occurs within that time; " + interval
            + "<i>relativeRisk</i>, the hazard ratio against a patient at the centre; "
            "and, per input, its log-hazard contribution \u03b2<sub>j</sub>(x<sub>j</sub> \u2212 "
            "c<sub>j</sub>). <i>method</i> names the model id, version and artifact SHA-256.")


def _parameters(model: PrognosticModel) -> list[Flowable]:
    art, short = model.artifact, kind_of(model.to_artifact()).short
    ratio = "Odds ratio" if short == "OR" else "Hazard ratio"
    rows: list[list[object]] = [["Column", "\u03b2", "SE", ratio, f"95% CI of {short}", "Centre"]]
    if INTERCEPT in art.coefficients:
        rows.append([INTERCEPT, f"{art.coefficients[INTERCEPT]:.6g}", f"{art.standard_errors[INTERCEPT]:.4g}",
                     "\u2014 (log-odds of the reference patient)", "\u2014", "\u2014"])
    for j, name in enumerate(model.columns):
        ci = (art.confidence_intervals or {}).get(name)
        ci_text = f"{math.exp(ci[0]):.3f} to {math.exp(ci[1]):.3f}" if ci else "not released"
        rows.append([name, f"{art.coefficients[name]:.6g}", f"{art.standard_errors[name]:.4g}",
                     f"{math.exp(art.coefficients[name]):.3f}", ci_text, f"{model.center[j]:.4g}"])
    return [*section("7 Model parameters"),
            para("Per unit of each column, as released in the artifact. "
                 + esc(design_text(model.to_artifact()))),
            table(rows, widths=[30, 28, 24, 26, 36, 26])]



def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    model = prognostic(inputs, SPEC.id)
    return [
        *section("1 Scope"),
        para(f"This document describes the device {esc(inputs.device)} {esc(inputs.device_version)} with "
             f"its released prognostic model {esc(model.ref)} (SHA-256 {esc(model.sha256)}): identification, "
             "intended purpose, users, patient population, contraindications, classification, principles "
             "of operation, inputs and outputs (EU MDR Annex II section 1.1)."),
        *_identification(inputs, model), *_purpose(inputs, model), *_classification(inputs),
        *_operation(model),
        *section("6 Model inputs"),
        para(f"The model takes {len(model.inputs)} inputs. A FHIR Observation counts for an input when one "
             "of its codings equals the code below; quantities in another compatible UCUM unit are "
             "converted; a value outside its range is refused. Horizons: "
             f"{esc(horizons_text(model))}."),
        input_table(model), *_parameters(model),
    ]


SPEC = DocumentSpec(id="FP-DD", title="Device description and intended use",
                    file="FP-DD-device-description.pdf", needs=("model", "requirements", "safety"),
                    build=build)

"""FP-IFU — Instructions for use (EU MDR Annex I §23.4).

How a clinician reads the RiskAssessment and the CDS card, the inputs with their codes, units and
ranges (from the released artifact), the limitations and warnings, and, briefly, how an
integrator obtains a token and calls the endpoint. The wording the device itself shows (the
intended-use note, the card's risk bands, the extension URLs, the prefetch templates) is taken
from the device code, so this document and the device cannot drift apart.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from reportlab.platypus import Flowable, KeepTogether

from device.fhir.cds import RISK_BANDS, SERVICE_ID, prefetch_templates
from device.fhir.page import STATIC
from device.fhir.resources import (
    CONTRIBUTION_URL,
    INTERVAL_URL,
    LOG_ODDS_URL,
    MODEL_SYSTEM,
    RETRAIN_DUE_URL,
    SHA256_SYSTEM,
    event,
    intended_use,
)
from device.model import PrognosticModel
from device.revocation import RetrainDue
from dossier.documents import _privacy
from dossier.documents._it_environment import it_environment
from dossier.documents._layout import code, section
from dossier.documents._model_kind import model_interval, privacy_record
from dossier.documents.device_description import horizon_label, input_table, prognostic
from dossier.spec import DocumentSpec, DossierError, DossierInputs
from dossier.style import STYLES, esc, para, table


def _bands() -> str:
    """The card indicator per risk band: ``below 10%: info; 10% to below 30%: warning; …``."""
    out, low = [], 0.0
    for bound, name in RISK_BANDS:
        if low == 0.0:
            out.append(f"below {bound:.0%}: {name}")
        elif math.isinf(bound):
            out.append(f"{low:.0%} and above: {name}")
        else:
            out.append(f"{low:.0%} to below {bound:.0%}: {name}")
        low = bound
    return "; ".join(out)


MONO = STYLES["mono"].fontName


def retrain_notice() -> tuple[str, str]:
    """(heading, text) of the notice the risk page shows while the model in service is flagged
    ``retrain due``: the heading from the page itself, the text from the device code for one
    withdrawal, its deadline replaced by a placeholder."""
    found = re.search(r'id="retrain-title">([^<]+)<', (STATIC / "index.html").read_text(encoding="utf-8"))
    when = datetime(2000, 1, 1, tzinfo=UTC)
    text = RetrainDue(1, 1, 30.0, 0, when, when, True, False, None).notice()
    shown = when.strftime("%Y-%m-%d %H:%M UTC")
    if found is None or shown not in text:
        raise DossierError("FP-IFU cannot quote the risk page's retrain-due notice: its heading or "
                           "deadline changed in the device code")
    return found.group(1).strip(), text.replace(shown, "[deadline, UTC]")


def _notice() -> list[Flowable]:
    title, text = retrain_notice()
    return [
        *section("3.4 The retraining-due notice", 2),
        para("When a patient whose data trained the model in service withdraws her consent, her data leave "
             "every future computation at once; what happens to the model is the study's revocation policy "
             "(FP-PMS section 2.3). Under the default policy, <i>window</i>, the model stays in service, "
             f"flagged <i>retrain due</i>, and the risk page shows above the result a notice headed "
             f"“{esc(title)}”: <i>{esc(text)}</i>"),
        para("<b>What it means for you.</b> The notice concerns consent, not performance: the model is "
             "still the released, validated version (FP-CVR) and remains valid for use within its intended "
             "use; no action is needed. A successor, retrained without the withdrawn patients' data and "
             "passing the same validation and release gate, is due to replace it by the deadline at the "
             "latest; results then name the successor's version (section 5, model version). If no "
             "successor is released by the deadline, the device stops serving the model (section 5, "
             "HTTP 503)."),
        para("The notice is shown on the risk page only: the CDS card and the RiskAssessment do not carry "
             "it. Integrators read the flag in the server's CapabilityStatement (section 6); the hospital's "
             "QA lead lists flagged models with fedprog model due."),
    ]


def _elements(model: PrognosticModel) -> list[list[object]]:
    """What the RiskAssessment's model-specific elements mean (device.fhir.resources)."""
    interval = [code(INTERVAL_URL), "The 95% interval of the risk. " + model_interval(model)]
    if model.kind == "logistic":
        return [
            ["prediction[].probabilityDecimal", "The estimated probability, as a fraction (0.25 = 25%), of "
             f"{event(model)}, when the outcome is recorded. One prediction: the model's one horizon."],
            ["prediction[].whenRange", "From 0 to that horizon, in UCUM time units (d = days)."], interval,
            ["prediction[].relativeRisk", "The risk ratio of this patient against the model's reference "
             "patient (FP-DD section 7): her probability divided by the reference patient's. A ratio of "
             "probabilities, not the odds ratio; above 1 means a higher probability than the reference."],
            [code(LOG_ODDS_URL), "On each basis reference: the input's log odds ratio contribution "
             "\u03b2(x \u2212 centre). Positive values raise the probability; they sum to the patient's "
             "log-odds minus the reference patient's, not to log(relativeRisk)."]]
    return [
        ["prediction[].probabilityDecimal", "The estimated absolute risk, as a fraction (0.25 = 25%), that "
         f"{event(model)} occurs within the horizon. One prediction per horizon."],
        ["prediction[].whenRange", "From 0 to the horizon, in UCUM time units (d = days)."], interval,
        ["prediction[].relativeRisk", "The hazard ratio of this patient against a patient at the model's "
         "centre (FP-DD section 7): above 1 means a higher hazard than that reference patient."],
        [code(CONTRIBUTION_URL), "On each basis reference: the input's log-hazard contribution "
         "\u03b2(x \u2212 centre). Positive values raise the risk; they sum to log(relativeRisk)."]]


def _reading(model: PrognosticModel) -> list[Flowable]:
    main = horizon_label(model, model.horizons[-1])
    rows: list[list[object]] = [
        ["Element", "What it means"], *_elements(model),
        ["method", f"The model id and version ({MODEL_SYSTEM}) and the artifact SHA-256 ({SHA256_SYSTEM}). "
         f"For the version this document describes it must read {model.sha256}."],
        ["note", "The intended-use statement (section 1)."],
    ]
    return [
        *section("3 Reading the result"),
        *section("3.1 The RiskAssessment", 2),
        para("The FHIR endpoint answers a request with a RiskAssessment resource. Its elements mean:"),
        table(rows, widths=[62, 108]),
        *section("3.2 The CDS card", 2),
        para(f"In the EHR, the patient-view service shows one card. Its summary states the risk at the main "
             f"horizon, {esc(main)}, with its 95% interval. Its indicator follows the risk at that horizon: "
             f"{esc(_bands())}. The indicator is a display setting of the device, not a treatment threshold. "
             f"The source names the model (fedprog {esc(model.ref)}); the detail lists the risk and interval "
             "at every horizon, every input value used with its unit, the intended use and the model "
             "SHA-256."),
        para("When an input is missing or out of range the card has no percentage: its summary says that the "
             "risk is not shown and names the inputs, and its detail gives each reason. The card's link "
             "opens the risk page for the patient."),
        para("<b>The risk page</b> (opened from the card or the EHR's app list, SMART App Launch) shows the "
             "inputs the clinician confirms, the risk at each horizon as a percentage with its 95% interval "
             "and as a number of 100 patients like this one, "
             + ("" if model.kind == "logistic" else "the event-free survival curve with its interval band, ")
             + "each input's contribution (raising or lowering the risk), the model, its SHA-256 and "
             "release date, the intended use and the limitations. Every number on it is the server's stored "
             "RiskAssessment; a missing or out-of-range input shows a refusal naming it and no number. The "
             "page prints for the record."),
        *section("3.3 Interpretation", 2),
        para("The risk is an estimate for a population of patients with the same inputs, not a certainty for "
             "this patient. Read it together with the inputs it was based on: if an input shown does not "
             "match the record, do not use the estimate. Use the contributions to see which inputs drive the "
             "estimate, not as causal effects of a treatment."),
        *_notice(),
    ]


def _warnings(model: PrognosticModel) -> list[Flowable]:
    items = [
        "Not for patients outside the input ranges of section 4, nor for patients unlike the training "
        "population. The device refuses such a patient; it never clamps or extrapolates. Do not enter "
        "approximate or substitute values to obtain an estimate.",
        model_interval(model),
        "The estimate supports, and does not replace, clinical judgement; the treatment decision rests on "
        "established prognostic factors reviewed independently of the device.",
        "Refusals. A request with a missing, conflicting or out-of-range input, or a unit that cannot be "
        "converted, is refused (HTTP 422, OperationOutcome naming every offending element; in the EHR a card "
        "without a percentage). Correct the record, or decide without the device.",
        f"Model version. Every result names its model version and SHA-256. The version described here is "
        f"{model.ref}, SHA-256 {model.sha256}. A result naming another version is described by the "
        "instructions for use of that version.",
        "No model in service (HTTP 503) or withdrawn model. The device stops serving the released version "
        "at the next request when: the version is withdrawn; or a consent revocation names its training "
        "job and either the study's revocation policy is immediate or the deadline of its revocation window "
        "has passed without a released successor. It then serves the newest remaining released version "
        "that no revocation affects (normally the version the withdrawn one succeeded; every result names "
        "its version), and answers 503 when there is none, until a successor is released. A version "
        "flagged retrain due (section 3.4) is still served. "
        "Do not use results previously obtained from a withdrawn version; contact the hospital's "
        "responsible person (QA) and decide without the device meanwhile.",
        _horizons(model),
        "Performance. The clinical validation report (FP-CVR) states the discrimination and calibration "
        "measured at each training hospital and leave-one-hospital-out; performance in other populations is "
        "not established.",
    ]
    return [*section("5 Limitations and warnings"),
            *[para(f"<b>WARNING {n}.</b> {esc(text)}") for n, text in enumerate(items, start=1)]]


def _integration(model: PrognosticModel) -> list[Flowable]:
    prefetch = prefetch_templates(model)
    errors: list[list[object]] = [
        ["Status", "Meaning", "What to do"],
        ["400", "Unparseable or invalid FHIR", "Fix the request (OperationOutcome names the element)."],
        ["401 / 403", "No or invalid token / missing scope", "Obtain a token with the scopes below."],
        ["412", "CDS Hooks prefetch missing (the service never queries the EHR)",
         "Configure both prefetch keys."],
        ["422", "Business rule: missing input, out of range, unit not convertible", "Correct the record; the "
         "issue expression names every offending element."],
        ["503", "No released model in service: withdrawn, or affected by a consent revocation (immediate "
         "policy, or the revocation window's deadline passed)", "Do not retry in a loop; inform QA."],
    ]
    return [
        *section("6 For integrators: token and call"),
        para("An administrator issues a bearer token (ES256-signed JWT, one hour by default) with SMART v2 "
             "scopes; its audience must equal the server's public FHIR base URL (--audience):"),
        para(esc("fedprog token --workspace W --scope 'user/RiskAssessment.c user/RiskAssessment.rs' "
                 "--audience https://HOST/fhir"), "mono"),
        para("The risk of one patient is requested with a Parameters resource whose patient part holds a "
             "Bundle of the Patient and the Observations coded as in section 4 (or that Bundle alone):"),
        para(esc("curl -X POST 'https://HOST/fhir/Patient/$predict-risk' -H 'Authorization: Bearer TOKEN' "
                 "-H 'Content-Type: application/fhir+json' --data @request.json"), "mono"),
        para(f"CDS Hooks: discovery at /cds-services, service /cds-services/{esc(SERVICE_ID)} (hook "
             "patient-view, scope user/RiskAssessment.c), with the prefetch templates:"),
        *[para(esc(f"{key}: {value}"), "mono") for key, value in prefetch.items()],
        table(errors, widths=[18, 72, 80]),
        para("While the model in service is flagged retrain due (section 3.4), the public "
             "CapabilityStatement (GET /fhir/metadata) says RETRAIN DUE in its implementation description "
             f"and carries the extension <font name='{MONO}'>{esc(RETRAIN_DUE_URL)}</font> "
             "with the model, the revocations, the number needed, the deadline and whether a successor is "
             "due now."),
    ]


def _privacy_for_studies(model: PrognosticModel) -> list[Flowable]:
    """For the people who run a study: what differential privacy does to the curves, the noisy counts,
    and each hospital's budget (SRS-PRIV-016 to SRS-PRIV-019)."""
    study, floors = _privacy.defaults()
    sd = ", ".join(f"{_privacy.noise_sd(e):.1f} at \u03b5 = {e}" for e in _privacy.EPSILONS)
    return [
        *section("7 For study operators and statisticians: differential privacy"),
        para("This section is for the hospital staff who set up and run a federated study (fedprog km, "
             "fedprog train); it does not concern the clinical use of sections 1 to 5. The model these "
             "instructions describe records differential privacy "
             f"{esc(privacy_record(model.to_artifact()))}."),
        para("<b>What it is.</b> A study may enable differential privacy in study.toml ([dp] enabled = true, "
             f"epsilon and delta: the privacy cost of {_privacy.fit_cost()}; defaults \u03b5 = "
             f"{study.epsilon:g}, \u03b4 = {study.delta:g}); it is off unless the study enables it, and it "
             "is part of the study every hospital's operator approves. The sites then add random noise to "
             "their counts before anything leaves the hospital, so that what the curves reveal about any one "
             "patient is bounded by \u03b5 and \u03b4, even to the coordinator (the precise guarantee and "
             "its limits are in FP-CYB section 4.7). This section describes it for Kaplan\u2013Meier "
             "curves and the log-rank test (fedprog km) on a public time grid (month or year). For Cox "
             f"models (fedprog train), {_privacy.cox_quoted()}. In a private study the sites refuse the "
             "evaluations of validation."),
        para("<b>What it does to the curves.</b> Every point of a private curve is estimated from noisy "
             f"counts: each event or censoring count carries noise of standard deviation about {sd}. The "
             "curve deviates from the exact one the more, the smaller \u03b5, the finer the time grid and "
             "the smaller the cohort."),
        KeepTogether([para("Largest deviation of a private curve from the exact one, measured (survival "
                           "probability, 0 to 1):"),
                      _privacy.utility_table(), para(_privacy.UTILITY_METHOD, "small")]),
        para("<b>The counts shown beside a private curve are noisy.</b> Numbers of patients, events and "
             "patients at risk, the curves, their intervals and the log-rank test are all computed from the "
             "noisy counts; fedprog km marks the counts with \u201c\u2248\u201d and states \u03b5, "
             "\u03b4 and the mechanism, and the JSON output records them under differential_privacy. Do "
             "not report them as exact counts, and do not compare them with exact counts of the same "
             "cohort."),
        para("<b>Each hospital's budget can be spent.</b> Every hospital keeps its own account of the "
             "privacy spent by every private fit of every study on its data "
             "(sites/&lt;name&gt;/privacy.json) and refuses, with the code budget, a fit that would "
             f"exceed the budget its operator set (dp_epsilon = {floors.dp_epsilon:g}, dp_delta = "
             f"{floors.dp_delta:g} by default). "
             f"{_privacy.budget_sentence()} Spent budget is not restored: plan the private analyses of a "
             "hospital's data as a whole, and do not delete or replace privacy.json: the hospital would "
             "forget what it spent and could answer beyond the budget it set."),
        *(_private_cox() if _privacy.cox_private() else []),
    ]


def _private_cox() -> list[Flowable]:
    """For study operators and statisticians: a Cox model trained with differential privacy (fedprog
    train with [dp] enabled), while the training code fits one (SRS-PRIV-023)."""
    dp = _privacy.defaults()[0]
    return [
        para("<b>Cox models with differential privacy.</b> With [dp] enabled, fedprog train fits the model "
             "privately and the \u03b5 and \u03b4 are the cost of the whole fit. "
             f"{esc(_privacy.cox_model())} The study sets T (dp.cox_iterations, default "
             f"{dp.cox_iterations}) and the bound (dp.cox_bound, default {dp.cox_bound:g}). The artifact "
             "records \u03b5, \u03b4, the mechanism, T, the bound and that the model is not the exact Cox "
             f"fit. {esc(_privacy.COX_SE)}"),
        KeepTogether([para("Utility of a private Cox model, measured (mean absolute error of the "
                           "standardised coefficients / Harrell's C; 0.5 is chance):"),
                      _privacy.cox_utility_table(), para(_privacy.COX_UTILITY_METHOD, "small")]),
        para("<b>Limitations.</b> " + esc(_privacy.sentence(_privacy.cox_limits()))),
        para(f"<b>Before clinical use.</b> {esc(_privacy.COX_RISK)} {esc(_privacy.COX_DECISION)} On a cohort "
             "of a few hundred patients, expect discrimination close to chance at every \u03b5 measured."),
    ]


def _horizons(model: PrognosticModel) -> str:
    """The warning on horizons: the released ones (Cox), or the one the outcome is recorded at (logistic)."""
    if model.kind == "logistic":
        return (f"Horizon. The probability is given only at the model's one horizon, "
                f"{horizon_label(model, model.horizons[0])}, when its outcome is recorded; any other horizon "
                "is refused. The model says nothing of when an event occurs.")
    return ("Horizons. Risks are given only for the released horizons: "
            f"{', '.join(horizon_label(model, h) for h in model.horizons)}. The device does not extrapolate "
            "beyond its released follow-up.")


def _freshness(model: PrognosticModel) -> str:
    """What the device does with an old result (the model's intended use, SRS-DEV-013)."""
    use = model.artifact.intended_use
    days = None if use is None else use.max_observation_age_days
    return "" if days is None else (f", and it is refused when it is more than {days} days old on the day "
                                    "of the assessment (or undated)")


def _sex(model: PrognosticModel) -> str:
    """What the device does with the patient's sex (SRS-DEV-011)."""
    use = model.artifact.intended_use
    if use is None or use.sex is None:
        return ""
    return (f" A patient whose recorded sex (Patient.gender) is not {use.sex}, or is not recorded, is "
            "refused.")


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    model = prognostic(inputs, SPEC.id)
    return [
        *section("1 Intended use"),
        para("Every RiskAssessment and every card carries this statement, which governs the use of the "
             "device:"),
        para(f"<i>{esc(intended_use(model))}</i>"),
        para("The device description (FP-DD) states the intended users, patient population and "
             "contraindications in full."),
        *section("2 Users and training"),
        para("Clinical users are physicians treating the patient, trained in the interpretation of "
             "prognostic estimates and familiar with these instructions. The result is shown inside the EHR "
             "(CDS card), on the risk page the EHR launches as a SMART app, or in a system that calls the "
             "FHIR endpoint. Section 6 addresses integrators, section 7 the staff who run federated "
             "studies, section 8 the hospital's IT operators."),
        *_reading(model),
        *section("4 Inputs, codes, units and ranges"),
        para("An Observation counts for an input when one of its codings equals the code below, its status "
             "is final, amended or corrected, and it belongs to the patient; the most recent one counts"
             + _freshness(model) + ". Quantities in another UCUM unit of the same dimension are converted to "
             "the unit below; age may come from Patient.birthDate. Values outside the range are refused."
             + _sex(model)),
        input_table(model),
        *_warnings(model), *_integration(model), *_privacy_for_studies(model), *it_environment(),
    ]


SPEC = DocumentSpec(id="FP-IFU", title="Instructions for use", file="FP-IFU-instructions-for-use.pdf",
                    needs=("model",), build=build)

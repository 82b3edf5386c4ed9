"""FP-RMF Risk management file (ISO 14971:2019 §4.2, §5–8; IEC 62304 §7).

From the traceability data only: the hazards with their severity and probability before control
(``hazards.yaml``), the risk controls that reduce them (``risk_controls.yaml``), the verification of
each control by the tests carrying its id in the test run, the residual probability each hazard
states and the resulting residual risk, judged against the acceptability matrix of the risk
management plan (FP-RMP), which ``safety.yaml`` holds as data. The overall evaluation of residual
risk and benefit-risk is the risk management report's (FP-RMR), not a verdict computed here.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from reportlab.platypus import Flowable, KeepTogether

from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, heading, para, table

from . import _privacy, _revocation
from ._model_kind import privacy_record
from ._risk import control_status, evidence, grid, matrix, policy_of, region, risk, verified, word
from .model_card import present
from .trace_matrix import function, results

__all__ = ["SPEC", "control_status", "region", "risk", "verified"]



def _policy(inputs: DossierInputs) -> list[Flowable]:
    policy = policy_of(inputs)
    return [heading("2 Risk acceptability"),
            para("The scales, the acceptability matrix and the policy for accepting residual risk are those "
                 "of the risk management plan (FP-RMP), read from the safety classification data "
                 "(safety.yaml): " + ", ".join(f"<b>{esc(r.name)}</b>: {esc(r.meaning)}"
                                              for r in policy.regions) + "."),
            KeepTogether([para("<b>Acceptability matrix.</b>"), matrix(inputs)])]


def _analysis(inputs: DossierInputs, hazards: list[Any]) -> list[Flowable]:
    reqs, policy = present(inputs.requirements), policy_of(inputs)
    rows: list[list[object]] = [["Hazard", "Title", "S", "P", "Risk before control", "Risk controls"]]
    for h in hazards:
        rcs = [c.id for c in reqs.children(h.id) if c.type == "risk-control"]
        rows.append([h.id, h.title, h.severity, h.probability, risk(h.severity, h.probability, policy),
                     ", ".join(rcs) or "NONE"])
    details: list[Flowable] = []
    for h in hazards:
        details += [para(f"<b>{esc(h.id)} {esc(h.title)}</b> (traced to {esc(', '.join(h.parents))}). "
                         f"{esc(h.text)}"),
                    para(f"<i>Estimation:</i> {esc(h.rationale or 'no rationale recorded')}", "small")]
    return [heading("3 Hazard analysis and risk estimation"),
            para(f"{len(hazards)} hazards, each a sequence of events from a software or use failure to a "
                 "hazardous situation and harm (ISO 14971 §5.4–5.5), traced to the requirements whose "
                 "failure causes it. S severity (the worst credible harm, rated without credit for "
                 "clinician oversight, FP-RMP), P probability before risk control."),
            table(rows, widths=[24, 58, 8, 8, 30, 42]),
            KeepTogether([para("<b>Risk before control.</b>"), grid(inputs, hazards, residual=False)]),
            heading("Hazards in detail", 2), *details]


def _controls(inputs: DossierInputs) -> list[Flowable]:
    reqs, run = present(inputs.requirements), present(inputs.test_run)
    by_req = run.by_requirement()
    rows: list[list[object]] = [["Risk control", "Controls", "Implemented by", "Method", "Tests", "Status"]]
    detail: list[list[object]] = [["Risk control", "Test (parametrised cases counted)", "Result"]]
    for rc in reqs.of_type("risk-control"):
        tests = by_req.get(rc.id, [])
        hazards = [p for p in rc.parents if reqs.get(p).type == "hazard"]
        impl = [p for p in rc.parents if p not in hazards]
        rows.append([f"{rc.id} {rc.title}", ", ".join(hazards), ", ".join(impl) or "—", rc.verification,
                     results(Counter(t.outcome for t in tests)) or "—", control_status(rc, tests)])
        groups: dict[str, Counter[str]] = {}
        for t in tests:
            groups.setdefault(function(t.nodeid), Counter())[t.outcome] += 1
        detail += [[rc.id, fn + (f" (×{sum(c.values())})" if sum(c.values()) > 1 else ""), results(c)]
                   for fn, c in sorted(groups.items())]
    open_ = [r[0] for r in rows[1:] if r[-1] in ("FAILED", "SKIPPED", "NOT VERIFIED")]
    verdict = ("Every risk control verified by test passed all its tests." if not open_ else
               f"<b>Not verified:</b> {esc('; '.join(str(o) for o in open_))}. The residual risk of the "
               "hazards they control is not established until this is resolved.")
    return [heading("4 Risk controls and their verification"),
            para(f"Risk control measures by design (ISO 14971 §7.1 a), each implemented by the software "
                 f"requirements named and verified (§7.2) by the tests carrying its id in the test run of "
                 f"commit {esc(run.commit)} ({esc(run.date)}, environment SHA-256 "
                 f"{esc(run.environment_sha256)}; record FP-VER). {verdict}"),
            table(rows, widths=[44, 24, 34, 17, 27, 20]),
            heading("Verification record of each risk control", 2), table(detail, widths=[24, 122, 24])]


def _residual(inputs: DossierInputs, hazards: list[Any]) -> list[Flowable]:
    reqs, by_req = present(inputs.requirements), present(inputs.test_run).by_requirement()
    policy = policy_of(inputs)
    rows: list[list[object]] = [["Hazard", "S", "Residual P", "Residual risk", "Controls verified"]]
    justify: list[Flowable] = []
    for h in hazards:
        states = {c.id: control_status(c, by_req.get(c.id, [])) for c in reqs.children(h.id)
                  if c.type == "risk-control"}
        rows.append([h.id, h.severity, h.residual_probability or "not stated",
                     risk(h.severity, h.residual_probability, policy), verified(states)])
        if region(h.severity, h.residual_probability, policy) != "acceptable":
            justify.append(para(f"<b>{esc(h.id)}</b> (residual risk "
                                f"{risk(h.severity, h.residual_probability, policy)}): "
                                f"{esc(h.rationale or 'no justification recorded')}"))
    return [heading("5 Residual risk evaluation"),
            para("Residual probability as each hazard states it after its risk controls (ISO 14971 §7.3); "
                 "the residual risk holds only if every control of the hazard is verified."),
            table(rows, widths=[30, 10, 22, 50, 58]),
            KeepTogether([para("<b>Residual risk.</b>"), grid(inputs, hazards, residual=True)]),
            heading("Residual risks needing justification", 2),
            *(justify or [para("None: every residual risk lies in the acceptable region.")])]


#: the hazards a study's revocation policy trades against each other (hazards.yaml)
POLICY_HAZARDS = ("HAZ-CONS-001", "HAZ-CONS-002", "HAZ-PRIV-004")
#: what each of them becomes under each policy (device.revocation; federated.site.contribution)
_UNDER = {
    "HAZ-CONS-001": ("Present by design: her data stay in the served model until a successor is released, "
                     "at most window_days (30 by default) after the window opened; every future computation "
                     "excludes them at once.",
                     "The model leaves service at the next request: her data are in no served model; every "
                     "future computation excludes them at once."),
    "HAZ-CONS-002": ("Only when the deadline passes without a released successor (RC-CONS-003); the QA lead "
                     "sees the deadline in fedprog model due.",
                     "After every withdrawal naming the served model's training job: 503 for every clinician "
                     "until a successor is trained, validated and released."),
    "HAZ-PRIV-004": ("RC-PRIV-004 (counts rounded to k, reference centre, each site's contribution padded to "
                     "differ by 0 or at least k patients); a successor may also follow several withdrawals.",
                     "RC-PRIV-004 alone: a successor follows every withdrawal, padded by each site to differ "
                     "by 0 or at least k patients."),
}


def _estimate(inputs: DossierInputs, hazard: str, residual: bool = True) -> str:
    """``P1 improbable``: a hazard's residual (or initial) probability as hazards.yaml states it."""
    reqs, safety = present(inputs.requirements), present(inputs.safety)
    if hazard not in reqs:
        return "not in hazards.yaml"
    h = reqs.get(hazard)
    p = h.residual_probability if residual else h.probability
    return "not stated" if p is None else f"P{p} {word(dict(safety.probability_scale), p)}"


def _revocation_policy(inputs: DossierInputs) -> list[Flowable]:
    """The revocation policy weighed: HAZ-CONS-001 against HAZ-CONS-002 and HAZ-PRIV-004 (a draft
    until the manufacturer decides)."""
    reqs = present(inputs.requirements)
    found = [reqs.get(h) for h in POLICY_HAZARDS if h in reqs]
    rows: list[list[object]] = [["Hazard", "Residual (hazards.yaml)", "Under window (default)",
                                 "Under immediate"]]
    rows += [[f"{h.id} {h.title}", risk(h.severity, h.residual_probability, policy_of(inputs)), *_UNDER[h.id]]
             for h in found]
    return [heading("6 Consent revocation policy: a decision for the manufacturer (draft)"),
            para("A study declares what a consent withdrawal does to a released model trained on the "
                 "patient's data (RC-CONS-001, RC-CONS-003): <i>window</i>, the default, keeps the model in "
                 "service flagged retrain due until a successor is released or the window's deadline passes; "
                 "<i>immediate</i> takes it out of service at once. The two policies trade these hazards "
                 "against each other:"),
            table(rows, widths=[34, 22, 57, 57]),
            para("<b>The weighing.</b> The window keeps a withdrawn patient's data in a served model for up "
                 "to window_days (30 by default). Whether that is compatible with GDPR Art. 7(3) (withdrawal "
                 "of consent) and Art. 17 (erasure without undue delay) is a legal question that the "
                 "manufacturer and the data-protection officer must decide; this file does not answer it. "
                 "The immediate policy removes that question but takes the device out of service for every "
                 "clinician after a single withdrawal naming the served model's training job, until a "
                 "successor is released: a clinical hazard (HAZ-CONS-002), since clinicians then decide "
                 "without the estimate."),
            para("<b>Residual estimates.</b> Under the window the hazardous situation of HAZ-CONS-001 occurs "
                 "by design after every withdrawal naming the served model's training job, for up to "
                 "window_days; its residual estimate in section 5 "
                 f"({esc(_estimate(inputs, 'HAZ-CONS-001'))}) therefore rests on the judgement that this "
                 "is acceptable, not on a risk control that prevents it, and must be re-examined with the "
                 "decision. Under immediate the outage of HAZ-CONS-002 follows every such withdrawal, as its "
                 "probability before control "
                 f"({esc(_estimate(inputs, 'HAZ-CONS-002', residual=False))}) assumes."),
            para("<b>Decision (DRAFT). The choice of revocation policy is the manufacturer's</b>, with the "
                 "data-protection officer; this section remains a draft until that decision, its legal basis "
                 "and the resulting residual estimates are recorded here. The study of this model declares "
                 f"{esc(_revocation.policy(inputs.revocation))}; that is the study's setting, not a "
                 "documented decision of the manufacturer.")]


#: the privacy hazards differential privacy bears on, and what it changes for each (federated.site.privacy)
PRIVACY_HAZARDS = ("HAZ-PRIV-002", "HAZ-PRIV-003", "HAZ-PRIV-004")
#: the requirements that specify the option (SRS-PRIV-016 to 019, and SRS-PRIV-023 for Cox models)
DP_REQUIREMENTS = ("SRS-PRIV-016", "SRS-PRIV-017", "SRS-PRIV-018", "SRS-PRIV-019", "SRS-PRIV-023")


def with_dp() -> dict[str, tuple[str, str]]:
    """For each hazard of :data:`PRIVACY_HAZARDS`: what differential privacy changes, and what it does
    not cover, as the training code stands (a private Cox fit or its refusal, :mod:`._privacy`)."""
    if not _privacy.cox_private():
        return {
            "HAZ-PRIV-002": ("Every Kaplan-Meier count the coordinator decodes or a release shows "
                             "carries the sites' noise: what one patient changes is bounded by "
                             "(\u03b5, \u03b4).",
                             "Refusals at the source (a count below a threshold); Cox models; the plaintext "
                             "evaluations of validation."),
            "HAZ-PRIV-003": ("Whatever Kaplan-Meier questions a malicious coordinator asks, under any number "
                             "of studies, sessions, retries and dropouts, each answer is charged to the "
                             "site's accountant, which refuses beyond its operator's budget.",
                             "Cox rounds (the Cox statement above; without differential privacy, RC-PRIV-003 "
                             "alone); sites colluding with the coordinator (noise left "
                             "Sk(\u03bc(n \u2212 t)/n))."),
            "HAZ-PRIV-004": ("Two private Kaplan-Meier releases (before and after a withdrawal) are both "
                             "noisy and both charged: their difference is covered.",
                             "A model and its successor (Cox models: the statement above; without "
                             "differential privacy, RC-PRIV-004 alone)."),
        }
    return {
        "HAZ-PRIV-002": ("Every Kaplan-Meier count and every sum of a private Cox fit that the coordinator "
                         "decodes or a release shows carries the sites' noise: what one patient changes is "
                         "bounded by (\u03b5, \u03b4).",
                         "Refusals at the source (a count below a threshold); the plaintext evaluations of "
                         "validation; studies without differential privacy."),
        "HAZ-PRIV-003": ("Whatever Kaplan-Meier questions or Cox rounds (within the bound on the "
                         "coefficients) a malicious coordinator asks, under any number of studies, "
                         "sessions, retries and dropouts, each answer is charged to the site's accountant, "
                         "which refuses beyond its operator's budget; exact Cox rounds are refused "
                         "(SRS-PRIV-019).",
                         "Cox rounds of studies without differential privacy (RC-PRIV-003 alone); sites "
                         "colluding with the coordinator (noise left Sk(\u03bc(n \u2212 t)/n))."),
        "HAZ-PRIV-004": ("Two private releases, Kaplan-Meier curves or Cox models (before and after a "
                         "withdrawal), are both noisy and both charged: their difference is covered.",
                         "A model and its successor trained without differential privacy (RC-PRIV-004 "
                         "alone)."),
    }


def _differential_privacy(inputs: DossierInputs) -> list[Flowable]:
    """The optional differential privacy of a study: what it guarantees, against whom, what it costs
    (the measured utility) and who decides to use it."""
    reqs = present(inputs.requirements)
    found = [reqs.get(h) for h in PRIVACY_HAZARDS if h in reqs]
    rows: list[list[object]] = [["Hazard", "Residual (hazards.yaml)", "With differential privacy on",
                                 "Not covered"]]
    rows += [[f"{h.id} {h.title}", risk(h.severity, h.residual_probability, policy_of(inputs)),
              *with_dp()[h.id]] for h in found]
    controls = sorted(rc.id for rc in reqs.of_type("risk-control")
                      if set(rc.parents) & set(DP_REQUIREMENTS))
    relied = (f"Risk controls citing them: {', '.join(controls)}." if controls else
              "No risk control of risk_controls.yaml cites them: the residual estimates of section 5 do not "
              "rely on differential privacy, which is off unless a study enables it.")
    study, floors = _privacy.defaults()
    private_cox = _privacy.cox_private()
    scope = ("The guarantee below holds for Kaplan\u2013Meier fits and for Cox models: "
             f"{_privacy.cox_quoted()}." if private_cox else
             f"The guarantee below is stated for Kaplan\u2013Meier fits; {_privacy.cox_quoted()}.")
    cox_guarantee = f" {esc(_privacy.cox_guarantee())}" if private_cox else ""
    record = privacy_record(inputs.artifact) if inputs.artifact else None
    model = ("" if record is None else f" The model this file covers records differential privacy "
             f"{esc(record)}" + (", so no risk estimate the device serves from it depends on it."
                                 if record.startswith("off") else "."))
    return [heading("7 Differential privacy: an option of the study (a decision for the manufacturer)"),
            para("<b>The option.</b> A study may enable differential privacy ([dp] in study.toml: enabled, "
                 f"epsilon and delta of {_privacy.fit_cost()}, part of the study each site's operator "
                 f"approves, so no request can change them); the default is off (enabled = "
                 f"{str(study.enabled).lower()}). When it is on, {_privacy.MECHANISM} (SRS-PRIV-016). Each "
                 "site keeps an accountant over every study in its own folder and refuses beyond the budget "
                 f"its operator set (dp_epsilon {floors.dp_epsilon:g}, dp_delta {floors.dp_delta:g} by "
                 "default; SRS-PRIV-017); a private release states \u03b5, \u03b4 and the mechanism and "
                 f"shows only noisy counts (SRS-PRIV-018). {scope}{model} {esc(relied)}"),
            para(f"<b>Guarantee, and against whom.</b> {_privacy.GUARANTEE}{cox_guarantee}"),
            para("<b>Not covered.</b> " + _privacy.sentence(_privacy.not_covered())),
            para("<b>What it changes for the privacy hazards</b> (residual risks as section 5 states them, "
                 "without differential privacy):"),
            table(rows, widths=[34, 22, 62, 52]),
            KeepTogether([
                para("<b>What it costs: the utility measured.</b> The noise makes the curves less accurate, "
                     "the more so the smaller \u03b5, the finer the time grid and the smaller the cohort. "
                     "Largest deviation of a private Kaplan\u2013Meier survival curve from the exact one:"),
                _privacy.utility_table(), para(_privacy.UTILITY_METHOD, "small")]),
            para("Each event or censoring count carries noise of standard deviation "
                 + ", ".join(f"{_privacy.noise_sd(e):.1f} at \u03b5 = {e}" for e in _privacy.EPSILONS)
                 + f" (\u03b4 = {study.delta:g}). {_privacy.budget_sentence()}"),
            *(_private_cox() if private_cox else []),
            para("<b>Decision (open). Whether a study enables differential privacy, and with which \u03b5 "
                 "and \u03b4, is the manufacturer's and the study's decision</b>, with the data-protection "
                 "officer's assessment, weighing the utility above against the disclosure it bounds; each "
                 "hospital's operator decides its own budget. This file chooses no \u03b5 and does not "
                 "recommend enabling it; the default is off."
                 + (f" {esc(_privacy.COX_DECISION)}" if private_cox else ""))]


def _private_cox() -> list[Flowable]:
    """A private Cox model: what it is, its limits, its standard errors, the clinical hazard of poor
    utility and its controls, and the utility measured (while the training code fits one)."""
    return [
        para(f"<b>A private Cox model.</b> {esc(_privacy.cox_model())} {esc(_privacy.COX_SE)} "
             "<i>Limitations:</i> " + esc(_privacy.sentence(_privacy.cox_limits()))),
        para(f"<b>Clinical risk of a private Cox model.</b> {esc(_privacy.COX_RISK)}"),
        KeepTogether([
            para("<b>What it costs a Cox model: the utility measured.</b> Mean absolute error of the "
                 "standardised coefficients caused by the noise, and Harrell's C of the private model, "
                 "against the exact Cox model's:"),
            _privacy.cox_utility_table(), para(_privacy.COX_UTILITY_METHOD, "small")]),
    ]


def _overall(inputs: DossierInputs, hazards: list[Any]) -> list[Flowable]:
    count, why = evidence(inputs, hazards)
    state = (f"On this evidence the <b>overall residual risk is NOT acceptable in this state</b> "
             f"({esc('; '.join(why))})." if why else
             "No residual risk lies in the unacceptable region and every risk control verified by test "
             "passed; that is a precondition of accepting the overall residual risk, not the acceptance.")
    return [heading("8 Overall residual risk: the state of the evidence"),
            para(f"Residual risks: {count['acceptable']} acceptable, {count['justify']} acceptable only with "
                 f"justification (section 5), {count['unacceptable']} unacceptable, {count['unknown']} not "
                 f"estimated. {state}"),
            para("The evaluation of the overall residual risk and the benefit-risk (ISO 14971 §8), its open "
                 "items and its approval are the risk management report's (FP-RMR), subject to the "
                 "justifications of section 5, the manufacturer's decision on the revocation policy "
                 "(section 6, draft) and the post-market follow-up of FP-PMS; this file computes no "
                 "conclusion from test outcomes."),
            heading("9 Information for safety and disclosure of residual risks"),
            para("Residual risks are disclosed to users in the instructions for use (FP-IFU) and on every "
                 "result: the intended use, and what the 95% interval includes (labelled coefficient "
                 "uncertainty only when the artifact does not carry the baseline hazard's variance, "
                 "HAZ-DEV-001); apparent and "
                 "leave-one-site-out performance are distinguished in FP-CVR; a model kept in service after "
                 "a consent withdrawal is flagged retrain due on the risk page, in the CapabilityStatement "
                 "and in fedprog model list (FP-IFU section 3.4); a private Kaplan\u2013Meier release states "
                 "its \u03b5 and \u03b4 and shows only noisy counts"
                 + (", a private Cox model's artifact records its \u03b5, \u03b4, T and bound and states "
                    "that it is not the exact Cox fit" if _privacy.cox_private() else "")
                 + ", and the study operator's instructions "
                 "give the utility and the budget (FP-IFU section 7). Production and post-production "
                 "information is collected as planned in FP-PMS and fed back into this file (ISO 14971 "
                 "§10)."),
            heading("10 Limitations of this analysis"),
            para("Probabilities are ordinal estimates by the development team, not measured frequencies; "
                 "residual probabilities are claims the tests support but do not measure. The analysis "
                 "covers the software and its interfaces; the hosting IT environment is the operator's "
                 "(FP-IFU).")]


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    hazards = present(inputs.requirements).of_type("hazard")
    return [heading("1 Scope"),
            para(f"The risk management file of fedprog {esc(inputs.device_version)} with model "
                 f"{esc(inputs.model.ref if inputs.model else '—')}: risk analysis, evaluation, control and "
                 "residual risk under ISO 14971:2019, applied to the software under IEC 62304 §7. Every "
                 "entry comes from the traceability data (hazards.yaml, risk_controls.yaml, safety.yaml) "
                 "and the test run; the links are traced in FP-TM."),
            *_policy(inputs), *_analysis(inputs, hazards), *_controls(inputs), *_residual(inputs, hazards),
            *_revocation_policy(inputs), *_differential_privacy(inputs), *_overall(inputs, hazards)]


SPEC = DocumentSpec(id="FP-RMF", title="Risk management file", file="FP-RMF-risk-management.pdf",
                    needs=("requirements", "test_run", "safety"), build=build, toc=True)

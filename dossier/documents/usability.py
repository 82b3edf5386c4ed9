"""FP-UEF Usability engineering file (IEC 62366-1:2015+A1:2020 §5; EU MDR Annex I §5, §22).

The use specification, the user-interface specification (risk page, CDS card, FHIR
OperationOutcomes), the known use errors and the hazard-related use scenarios (each linked to a
hazard of ``hazards.yaml``), the formative evidence the browser tests give for each scenario (with
their outcome in the test run), and the summative evaluation protocol with its record template
for the manufacturer to run. The summative evaluation has not been run, and the file says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from reportlab.platypus import Flowable

from device.fhir.cds import RISK_BANDS
from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, heading, para, table

from .model_card import present

#: the browser tests (formative evidence) and the file holding them
BROWSER_TESTS = "tests/device/fhir/test_page_browser.py"


@dataclass(frozen=True)
class Evidence:
    """A browser test exercising a scenario, and a phrase of its file the claim rests on (a test checks
    that both still exist)."""

    test: str
    checks: str
    shows: str


@dataclass(frozen=True)
class Scenario:
    """A hazard-related use scenario (IEC 62366-1 §5.5): task, use error, hazard, formative evidence."""

    id: str
    task: str
    use_error: str
    hazard: str
    evidence: tuple[Evidence, ...]


_SHOWN = "test_the_page_shows_the_stored_risk_assessment"
_REFUSED = "test_an_out_of_range_input_is_refused_by_name_and_no_number_is_shown"
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("US-01", "T2 confirm the patient", "The page is read for another patient than the one launched "
             "or typed.", "HAZ-USE-003",
             (Evidence(_SHOWN, 'f"Patient {patient}" in', "the launch context's patient shown in #context"),
              Evidence(_SHOWN, '"result-patient"', "her name, date of birth and sex shown with the estimate"),
              Evidence("test_stand_alone_the_page_takes_a_pasted_token", '"Demonstration mode" in box.text',
                       "stand-alone use announced as demonstration mode"))),
    Scenario("US-02", "T3 enter the inputs", "A value is entered in the wrong field, unit or sense.",
             "HAZ-USE-004",
             (Evidence(_SHOWN, "not any(display in form", "clinical labels on every field, no LOINC "
                                                          "display name"),
              Evidence("test_the_page_loads_nothing_from_another_origin_and_prints", "labelled is True",
                       "every input has a label"),
              Evidence(_REFUSED, '"is not a number"', "a non-number refused by the page"))),
    Scenario("US-03", "T4 act on a refusal", "A refusal is not understood and worked around by changing the "
             "input until an estimate appears.", "HAZ-USE-006",
             (Evidence(_REFUSED, "developed for node-positive patients", "the refusal states the clinical "
                                                                         "reason"),
              Evidence(_REFUSED, '"aria-invalid"', "the field marked invalid; no risk, curve or "
                                                   "contribution"))),
    Scenario("US-04", "T3 enter the inputs", "A patient outside the indication (node-negative, a man) is "
             "entered.", "HAZ-SHIFT-002",
             (Evidence(_REFUSED, '"aria-invalid"', "0 positive nodes refused, no number shown"),
              Evidence("test_a_patient_of_another_or_no_recorded_sex_is_refused_in_words", "developed for "
                                                                                           "women",
                       "a man, or a patient without a recorded sex, refused in words"))),
    Scenario("US-05", "T5 read the estimate", "The estimate is followed instead of judged against the "
             "established factors (automation bias).", "HAZ-USE-001",
             (Evidence(_SHOWN, '"Intended use" in about', "the intended use and the model in #about; one "
                       "contribution per input; numbers equal to the stored RiskAssessment"),
              Evidence(_SHOWN, "each caveat stated once", "each intended-use caveat stated once"))),
    Scenario("US-06", "T5 read the estimate", "The 95% interval is read as the full uncertainty.",
             "HAZ-DEV-001", (Evidence(_SHOWN, '"95% interval" in card.text', "the interval shown with "
                                                                             "every risk"),)),
    Scenario("US-07", "T5 read the estimate", "The outcome is read as death only, or distant recurrence "
                                              "only.",
             "HAZ-USE-005",
             (Evidence(_SHOWN, "have recurrence or death within", "the risk as a natural frequency of "
                       "'recurrence or death'"),)),
    Scenario("US-08", "T6 read the CDS card", "The 'critical' indicator is read as an alarm calling for more "
             "treatment.", "HAZ-USE-002", ()),
    Scenario("US-09", "T7 notice the model's state", "A model kept in service after a consent withdrawal is "
             "not noticed, or read as out of service.", "HAZ-CONS-002",
             (Evidence("test_a_model_flagged_retrain_due_shows_a_notice_and_stays_usable",
                       '"Retraining due" in notice.text',
                       "the retrain-due notice; the form still offered"),)),
)

#: the tasks of the task analysis (IEC 62366-1 §5.1, primary operating functions)
TASKS = (("T1", "Open the page from the EHR (SMART launch) or the CDS card's link"),
         ("T2", "Confirm the patient"), ("T3", "Enter or check the inputs"), ("T4", "Act on a refusal"),
         ("T5", "Read the estimate, its interval, curve and contributions"), ("T6", "Read the CDS card"),
         ("T7", "Notice the model's state (retrain due, out of service)"), ("T8", "Print for the tumour "
                                                                                  "board"))


def outcome(inputs: DossierInputs, test: str) -> str:
    """The test's outcomes in the run (``not in this run`` when it did not run)."""
    found = [t.outcome for t in present(inputs.test_run).tests
             if t.nodeid.split("::")[0] == BROWSER_TESTS and t.nodeid.split("::")[-1].split("[")[0] == test]
    return ", ".join(f"{found.count(o)} {o}" for o in sorted(set(found))) or "not in this run"


def _use_spec(inputs: DossierInputs) -> list[Flowable]:
    labels = [f"{i.get('title') or i['code'].get('display') or i['name']} ({i['unit']})"
              for i in (inputs.artifact or {}).get("inputs", [])]
    bands = ", ".join(f"{name} below {bound:.0%}" if bound != float("inf") else f"{name} above"
                      for bound, name in RISK_BANDS)
    ui: list[list[object]] = [["Element", "What the user sees and does"],
        ["Risk page: context (#context), token box", "The patient id of the launch; demonstration mode and a "
         "pasted token when opened stand-alone."],
        ["Risk page: identity and inputs (#fields, #submit)", "The patient's name, date of birth and sex; "
         "one labelled field per model input (the model's clinical label, else the code's display): "
         + "; ".join(labels) + "."],
        ["Risk page: refusal (#refusal)", "The server's OperationOutcome or the page's own check, naming the "
         "input; no number shown."],
        ["Risk page: result (#headlines, #curve, #drivers)", "Risk at each horizon as a percentage with "
                                                             "its 95% "
         "interval and as 'N of 100 patients like this one'; the curve with its band; each input's "
         "contribution."],
        ["Risk page: about (#about), notice (#retrain-notice)", "Intended use, model and SHA-256, release; a "
         "retrain-due notice when a withdrawal flagged the model."],
        ["CDS card (patient-view)", f"Summary with the main horizon's risk; indicator by risk: {bands} (a "
                                    "device "
         "setting, not a clinical threshold); detail with every horizon and input; a link to the page."],
        ["FHIR OperationOutcome", "401/403 (token, scope), 412 (CDS prefetch missing), 422 naming the "
                                  "element "
         "(missing input, out of range, unit not convertible), 503 (no model in service)."]]
    return [heading("1 Use specification"),
            para("IEC 62366-1 §5.1. <b>Medical purpose:</b> an individual estimate of the risk of "
                 "recurrence or "
                 "death to support the adjuvant treatment decision for women with primary, node-positive, "
                 "non-metastatic breast cancer (the intended purpose, FP-DD). <b>Users:</b> oncologists, "
                 "breast surgeons and tumour-board members, trained clinicians but not statisticians. "
                 "<b>Environment:</b> a hospital workstation inside the EHR (SMART launch, CDS Hooks "
                 "card) or "
                 "a tumour-board meeting; not time-critical. <b>Operating principle:</b> inputs from the "
                 "record or typed, an estimate computed by the released model, shown with its inputs."),
            table([["Task", "Description"], *[list(t) for t in TASKS]], widths=[15, 155]),
            heading("2 User-interface specification"),
            para("IEC 62366-1 §5.6. The elements below are the user interface whose use is evaluated."),
            table(ui, widths=[50, 120])]


def _scenarios(inputs: DossierInputs) -> list[Flowable]:
    reqs = present(inputs.requirements)
    rows: list[list[object]] = [["Scenario", "Task", "Use error", "Hazard", "Risk controls"]]
    for s in SCENARIOS:
        title = reqs.get(s.hazard).title if s.hazard in reqs else "NOT IN hazards.yaml"
        kids = reqs.children(s.hazard) if s.hazard in reqs else []
        controls = [c.id for c in kids if c.type == "risk-control"]
        rows.append([s.id, s.task, s.use_error, f"{s.hazard} {title}", ", ".join(controls) or "NONE"])
    evid: list[list[object]] = [["Scenario", "Browser test", "What it shows", "Outcome in the run"]]
    for s in SCENARIOS:
        evid += [[s.id, e.test, e.shows, outcome(inputs, e.test)] for e in s.evidence] or \
                [[s.id, "none", "not exercised by a browser test", "-"]]
    return [heading("3 Known use errors and hazard-related use scenarios"),
            para("IEC 62366-1 §5.2–5.5. Each scenario is a use error in a task of section 1 leading to a "
                 "hazard "
                 "of the risk management file (FP-RMF), where its severity, probability and controls are."),
            table(rows, widths=[16, 25, 60, 40, 29]),
            heading("4 Formative evaluation evidence"),
            para(f"IEC 62366-1 §5.7. The browser tests ({esc(BROWSER_TESTS)}) drive the real page in "
                 "headless "
                 "Chromium and check what each scenario relies on. They are automated evidence that the user "
                 "interface presents what the scenario needs, <b>not an evaluation with users</b>: they show "
                 "neither that users notice it nor that it prevents the use error."),
            table(evid, widths=[16, 64, 62, 28])]


def _summative() -> list[Flowable]:
    record: list[list[object]] = [["Participant (role)", "Scenario", "Outcome", "What was observed",
                                   "Root cause", "Action"]]
    record += [["", s.id, "", "", "", ""] for s in SCENARIOS]
    return [heading("5 Summative evaluation protocol (NOT YET RUN)"),
            para("IEC 62366-1 §5.7.3, §5.9. <b>Status: not yet run; the manufacturer runs it</b> before "
                 "clinical "
                 "release, and its results re-estimate the probability of each use-related hazard "
                 "(RC-USE-002)."),
            para("<b>Objective:</b> show that the hazard-related use scenarios of section 3 do not lead "
                 "to use "
                 "errors with unacceptable risk. <b>Participants:</b> at least 15 per user group "
                 "(oncologists; breast surgeons; tumour-board members), none involved in the design. "
                 "<b>Environment:</b> the production page and CDS card in a test EHR, on hospital "
                 "workstations. <b>Training:</b> as users would receive it (the IFU only). <b>Tasks:</b> "
                 "each scenario of section 3 on prepared patients, including one of another patient, a "
                 "node-negative woman, an out-of-range and a stale value, a high-risk ('critical') card. "
                 "<b>Data:</b> task outcome (success, use error, close call, difficulty), the participant's "
                 "reading of the estimate, interval and outcome in their own words, debriefing on each "
                 "error. "
                 "<b>Acceptance:</b> no use error in a scenario whose hazard has severity 4 or more "
                 "without a "
                 "root cause analysed and a control added or the residual risk re-evaluated in FP-RMR."),
            para("<b>Record template</b> (one row per participant and scenario):"),
            table(record, widths=[28, 16, 22, 48, 28, 28])]


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    return [*_use_spec(inputs), *_scenarios(inputs), *_summative(),
            heading("6 Open items"),
            para("The summative evaluation (section 5) has not been run, so no use-related control has shown "
                 "that it prevents its use error. US-08 (the 'critical' band) has a planned control and no "
                 "browser test.")]


SPEC = DocumentSpec(id="FP-UEF", title="Usability engineering file", file="FP-UEF-usability-engineering.pdf",
                    needs=("requirements", "test_run"), build=build, toc=True)

"""FP-CEP Clinical evaluation plan (EU MDR Art. 61(12), Annex XIV part A §1(a); MDCG 2020-1 for
device software; MDCG 2020-13 section A).

The plan states what the evaluation must show and how: the intended purpose it evaluates (read from
``regulatory/manufacturer.yaml``), the evaluation questions, the sources of evidence (internal,
leave-one-site-out and external validation, software verification, literature), the acceptance
criteria (read from the requirements, as the validation run judges them) and the post-market
clinical follow-up (FP-PMCF). Its open items are the clinical evaluation's gaps.
"""

from __future__ import annotations

from reportlab.platypus import Flowable

from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, heading, para, table

from ._clinical import SCOPES, criteria_rows, open_items, scopes_stated, status_line
from ._model_kind import terms_of
from .model_card import present


def _scope(inputs: DossierInputs) -> list[Flowable]:
    art, mf = present(inputs.artifact), inputs.manufacturer
    out: list[Flowable] = [heading("1 Scope and intended purpose"),
                           para(f"This plan covers {esc(inputs.device)} {esc(inputs.device_version)} with "
                                f"model {esc(present(inputs.model).ref)} (SHA-256 {art['sha256']}), "
                                f"predicting {esc(art['outcome']['name'])}.")]
    if mf is None:
        return [*out, para("<b>The intended purpose is not stated</b>: regulatory/manufacturer.yaml was not "
                           "read. The evaluation cannot be planned without it.")]
    ip = mf.intended_purpose
    ind = ip.indication
    rows: list[list[object]] = [["Element", "Stated by the manufacturer (regulatory/manufacturer.yaml)"],
                                ["Medical purpose", ip.medical_purpose],
                                ["Population", f"{ind.population}" + (f", {ind.sex}" if ind.sex else "")
                                 + (f", aged {ind.age_years.min:g} to {ind.age_years.max:g} years"
                                    if ind.age_years else "")],
                                ["Condition and stage", f"{ind.condition}; {ind.stage}"],
                                ["Contra-indications", "; ".join(ip.contraindications)],
                                ["Intended users", "; ".join(ip.intended_users)],
                                ["Use environment", ip.use_environment]]
    return [*out, table(rows, widths=[38, 132])]


def _questions(inputs: DossierInputs) -> list[Flowable]:
    cef = present(inputs.clinical_evaluation)
    rows: list[list[object]] = [["Id", "Question"], *[[q.id, q.question] for q in cef.questions]]
    src: list[list[object]] = [["Source", "What it shows", "Where it is reported"]]
    src += [[s.source, s.what, s.where] for s in cef.evidence_sources]
    return [heading("2 Clinical evaluation questions"),
            para("MDCG 2020-1 asks three things of device software: a valid clinical association of its "
                 "output with the clinical condition, its technical (analytical) performance, and its "
                 "clinical performance in the intended population. The questions the report (FP-CER) "
                 "answers:"),
            table(rows, widths=[16, 154]),
            heading("3 Sources of clinical evidence"),
            table(src, widths=[42, 80, 48]),
            para(f"<b>Literature.</b> {esc(cef.literature_search.method)}")]


def _criteria(inputs: DossierInputs) -> list[Flowable]:
    reqs = present(inputs.requirements)
    stated = scopes_stated(reqs)
    missing = [f"{scope} ({SCOPES[scope]})" for scope in SCOPES if scope not in stated]
    note = ("Every scope has at least one criterion." if not missing else
            "<b>No requirement states a criterion of scope " + esc(", ".join(missing)) + "</b>: performance "
            "there is reported, but nothing judges it until a requirement does.")
    return [heading("4 Acceptance criteria"),
            para("The criteria are those the requirements state (traceability/requirements), the same the "
                 "validation run and the release gate apply: a value that could not be computed fails. "
                 "Criteria of scope external are judged on validation reports of setting external."),
            table(criteria_rows(reqs, terms_of(inputs)), widths=[25, 95, 50]), para(note)]


def _pmcf(inputs: DossierInputs) -> list[Flowable]:
    pm = present(inputs.clinical_evaluation).pmcf
    return [heading("5 Post-market clinical follow-up"),
            para("The evaluation is updated with post-market data as FP-PMCF plans it: "
                 + esc("; ".join(pm.objectives)) + f". Re-validation: {esc(pm.revalidation)}. Its thresholds "
                 "(input drift, calibration) and actions are in FP-PMCF; the report is updated at every "
                 "re-validation and at least yearly (FP-PMS).")]


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    return [status_line(inputs, "This plan"), *_scope(inputs), *_questions(inputs), *_criteria(inputs),
            *_pmcf(inputs), heading("6 Open items"), *open_items(inputs)]


SPEC = DocumentSpec(id="FP-CEP", title="Clinical evaluation plan", file="FP-CEP-clinical-evaluation-plan.pdf",
                    needs=("model", "requirements", "clinical_evaluation"), build=build)

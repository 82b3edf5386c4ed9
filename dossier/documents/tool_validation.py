"""FP-TVAL — Validation of the QMS software tools (ISO 13485:2016 §4.1.6, §7.5.6; ISO/TR 80002-2:2017).

Each computer software tool the quality system relies on — the traceability checks, the pytest
plugin that records the verification evidence, the SOUP list and SBOM generator, the validation
report generator and the dossier builder — is listed with its intended use, what its failure could
cause and the resulting level of validation effort (ISO/TR 80002-2 risk-based approach), and its
validation record: its own tests in the test run, counted by outcome (never assumed).
"""

from __future__ import annotations

from reportlab.platypus import Flowable

from dossier.documents import _tests
from dossier.documents._layout import section
from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, para, table

from .model_card import present

#: tool, intended use, failure and its consequence, risk (effort), its code, its tests (node-id prefixes)
TOOLS: tuple[tuple[str, str, str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("fedprog trace check / matrix / impact / review",
     "Name every traceability gap (untested requirement, uncontrolled hazard, unmarked test, suspect link); "
     "print the trace matrix; list what a change affects; record a review.",
     "A gap not reported: a requirement or risk control released unverified; a suspect link cleared "
     "without review.", "High: the tool's output replaces a manual review of traceability (IEC 62304 "
     "\u00a75.1.1, \u00a77.3.3).",
     ("traceability/check.py", "traceability/matrix.py", "traceability/review.py", "traceability/load.py"),
     ("tests/traceability/test_check.py", "tests/traceability/test_matrix.py",
      "tests/traceability/test_review.py", "tests/traceability/test_load.py",
      "tests/traceability/test_requirements_content.py")),
    ("pytest plugin and JUnit reader",
     "Record for each test the requirement ids it verifies (refusing unknown ids) and read the run back as "
     "the verification record.", "A test credited to the wrong requirement, or an outcome misread: the "
     "verification record (FP-VER, FP-TM) claims evidence that does not exist.", "High: every verification "
     "claim of the file rests on it.", ("traceability/pytest_plugin.py", "traceability/results.py"),
     ("tests/traceability/test_plugin.py",)),
    ("fedprog trace soup / sbom",
     "List every third-party package with version, licence, purpose and risk note; write the CycloneDX SBOM.",
     "A component missing or a wrong version: a vulnerable SOUP item not monitored (FP-CYB section 6).",
     "Medium: the list is also compared with the installed environment by its tests; advisories are "
     "checked against it by people.",
     ("traceability/soup.py", "traceability/sbom.py", "traceability/installed.py"),
     ("tests/traceability/test_soup.py",)),
    ("fedprog validate (validation report generator)",
     "Compute the clinical performance at each site and pooled and judge it against the acceptance "
     "criteria; the release gate requires its passing report.",
     "A wrong metric or verdict: a model released that does not meet its criteria (HAZ-VAL-001).",
     "High: its verdict gates the release; its metrics are checked against reference implementations.",
     ("validation/",), ("tests/validation/",)),
    ("fedprog dossier build / verify",
     "Generate the technical file from the controlled records; anchor its manifest; check a built file.",
     "A document stating what the records do not show, or a changed file not detected.",
     "Medium: the documents are reviewed and approved by people; their content is asserted by tests and "
     "their integrity by the anchored manifest.", ("dossier/",), ("tests/dossier/",)),
)


def _record(inputs: DossierInputs) -> list[Flowable]:
    run = present(inputs.test_run)
    rows: list[list[object]] = [["Tool", *_tests.TALLY_HEAD]]
    every = []
    for name, *_, files in TOOLS:
        tests = _tests.of_files(run, files)
        every += tests
        rows.append([name, *_tests.tally(tests).cells()])
    total = _tests.tally({t.nodeid: t for t in every}.values())
    out: list[Flowable] = [
        *section("3 Validation record"),
        para(f"The tools' own tests in the test run of commit {esc(run.commit)} ({esc(run.date)}; FP-VER), "
             "by tool. A tool is validated for this version only with verdict PASSED: NO EVIDENCE (none of "
             "its tests in the run), INCOMPLETE (a test skipped) and NOT PASSED (a failure) each leave the "
             "tool unvalidated, an open anomaly to resolve before the file is issued."),
        table(rows, widths=[52, 16, 16, 16, 16, 16, 38]),
        para(f"All tool tests: {esc(total.text())}; verdict <b>{total.verdict}</b>.")]
    bad = [t for t in every if t.outcome != "passed"]
    if bad:
        failed: list[list[object]] = [["Not passed", "Requirements"]]
        failed += [[_tests.listed([t]), ", ".join(t.reqs) or "\u2014"] for t in bad]
        out.append(table(failed, widths=[120, 50]))
    return out


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    rows: list[list[object]] = [["Tool", "Intended use", "Failure and consequence", "Risk and effort",
                                 "Code"]]
    rows += [[name, use, failure, risk, para("<br/>".join(esc(c) for c in code), "small")]
             for name, use, failure, risk, code, _ in TOOLS]
    return [
        *section("1 Purpose and scope"),
        para("ISO 13485 \u00a74.1.6 asks that computer software used in the quality management system be "
             "validated for its application before first use and after changes, with an approach "
             "proportionate to the risk of its use. This document lists the QMS tools of this repository, "
             "the risk of each failing and its validation record (ISO/TR 80002-2: intended use, risk, "
             "validation activities, record). Tools of third parties (pytest, ruff, mypy, reportlab) are "
             "SOUP of kind dev in FP-SOUP."),
        *section("2 Tools, intended use and risk"),
        para("Risk is judged by what an undetected failure of the tool could let through into a released "
             "device. High: the tool's result is relied on without an independent manual check; every "
             "behaviour it is relied on for is a tested requirement (SRS-TRACE, SRS-DOS, SRS-VAL). Medium: "
             "people review its output as well. The validation activities are the tool's automated tests, "
             "run in make test on every change (revalidation after change, \u00a74.1.6)."),
        table(rows, widths=[30, 38, 38, 36, 28]),
        *_record(inputs),
    ]


SPEC = DocumentSpec(id="FP-TVAL", title="QMS tool validation", file="FP-TVAL-tool-validation.pdf",
                    needs=("test_run",), build=build)

"""FP-VER Software verification report: the test run as evidence (IEC 62304 §5.6.7, §5.7.5, §5.8.2).

Read from :class:`traceability.results.TestRun` (the JUnit file the project's pytest plugin
wrote): where and when the suite ran (commit, date, environment SHA-256), the counts per outcome,
the anomalies (every failed, erroneous or skipped test), and every test with its outcome and the
requirement ids it verifies, grouped by test package.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from reportlab.platypus import Flowable

from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, heading, para, table

from .model_card import present

OUTCOMES = ("passed", "failed", "error", "skipped")


def area(nodeid: str) -> str:
    """The test package a test belongs to: ``tests/ledger``, ``tests/device`` …"""
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else (parts[0] if len(parts) > 1 else "(top level)")


def shown(outcome: str) -> str:
    """An outcome as printed: failures in capitals so that they stand out in a long record."""
    return outcome.upper() if outcome in ("failed", "error") else outcome


def _environment(inputs: DossierInputs, run: Any) -> list[Flowable]:
    rows = [("Commit", run.commit), ("Date", run.date),
            ("Environment SHA-256", run.environment_sha256 or "—"), ("Python", run.python or "—"),
            ("Platform", run.platform or "—"),
            ("JUnit file", run.source.name if run.source is not None else "—")]
    tested = run.commit.removesuffix("-dirty")
    notes = []
    if tested != inputs.commit:
        notes.append(f"The test run's commit {esc(tested)} is not the documented software commit "
                     f"{esc(inputs.commit)}: this evidence verifies that commit, and the changes between the "
                     "two must be covered by a new run before release.")
    if run.commit.endswith("-dirty"):
        notes.append("The run was made from a working tree with uncommitted changes (commit suffix "
                     "<i>-dirty</i>): the tested code is not exactly the committed revision.")
    if not run.environment_sha256:
        notes.append("The run does not record the environment SHA-256.")
    return [heading("2 Test environment"),
            para("The environment SHA-256 is the hash of the sorted <i>name==version</i> list of the "
                 "installed Python distributions; with the commit it identifies what was tested (SOUP "
                 "versions: FP-SOUP)."),
            table([("Item", "Value"), *rows], widths=[40, 130]),
            *[para(n) for n in notes]]


def _summary(run: Any) -> list[Flowable]:
    count = Counter(t.outcome for t in run.tests)
    by_area: dict[str, Counter[str]] = {}
    for t in run.tests:
        by_area.setdefault(area(t.nodeid), Counter())[t.outcome] += 1
    rows: list[list[object]] = [["Test package", *OUTCOMES, "Total"]]
    rows += [[name, *[c[o] for o in OUTCOMES], sum(c.values())] for name, c in sorted(by_area.items())]
    rows.append(["All tests", *[count[o] for o in OUTCOMES], len(run.tests)])
    linked = sum(1 for t in run.tests if t.reqs)
    ids = {r for t in run.tests for r in t.reqs}
    bad = count["failed"] + count["error"]
    verdict = ("<b>Verdict: PASSED</b>: every test passed or was skipped." if not bad and run.tests else
               f"<b>Verdict: NOT PASSED</b>: {bad} test(s) failed or erred (section 4)." if bad else
               "<b>Verdict: NO EVIDENCE</b>: the run holds no tests.")
    return [heading("3 Results"), para(verdict),
            table(rows, widths=[50, 20, 20, 20, 20, 20]),
            para(f"{linked} of {len(run.tests)} tests name the requirements they verify ({len(ids)} distinct "
                 "requirement ids); coverage of each requirement is analysed in FP-TM.")]


def _anomalies(run: Any) -> list[Flowable]:
    bad = [t for t in run.tests if t.outcome in ("failed", "error")]
    skipped = [t for t in run.tests if t.outcome == "skipped"]
    out: list[Flowable] = [heading("4 Anomalies"),
                           para(f"{len(bad)} failed or erroneous and {len(skipped)} skipped test(s). A "
                                "failed test is a known anomaly (IEC 62304 §5.8.2): it must be resolved, or "
                                "evaluated and justified in the release notes (FP-REL), before release.")]
    rows: list[list[object]] = [["Test", "Outcome", "Requirements"]]
    rows += [[t.nodeid, shown(t.outcome), ", ".join(t.reqs) or "—"] for t in [*bad, *skipped]]
    if len(rows) > 1:
        out.append(table(rows, widths=[120, 18, 32]))
    return out


def _record(run: Any) -> list[Flowable]:
    out: list[Flowable] = [heading("5 Test record"),
                           para("Every test of the run in run order, grouped by test package, with its "
                                "outcome and the requirement ids it carries (@pytest.mark.req).")]
    groups: dict[str, list[Any]] = {}
    for t in run.tests:
        groups.setdefault(area(t.nodeid), []).append(t)
    for name, tests in sorted(groups.items()):
        rows: list[list[object]] = [["Test", "Outcome", "Requirements"]]
        rows += [[t.nodeid, shown(t.outcome), ", ".join(t.reqs) or "—"] for t in tests]
        out += [heading(f"{name} ({len(tests)} tests)", 2), table(rows, widths=[120, 18, 32])]
    return out


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    run = present(inputs.test_run)
    return [heading("1 Purpose and scope"),
            para(f"This report is the software verification record of fedprog {esc(inputs.device_version)}: "
                 f"the execution of its automated test suite ({len(run.tests)} tests: unit, integration and "
                 "system tests, including the exactness checks against lifelines and scikit-survival), with "
                 "the outcome of every test and the requirements it verifies. The run was recorded in JUnit "
                 "XML by the project's pytest plugin (SRS-TRACE-002)."),
            *_environment(inputs, run), *_summary(run), *_anomalies(run), *_record(run)]


SPEC = DocumentSpec(id="FP-VER", title="Verification report", file="FP-VER-verification-report.pdf",
                    needs=("test_run",), build=build, toc=True)

"""FP-REL Release notes and version history (IEC 62304 §5.8.4, §5.8.2, §8.3; EU MDR Annex II §1.1).

The model's history is the registry's, replayed from the ledger (every version with its status,
lifecycle transitions by ledger index, predecessor, revocation flag and SHA-256); the anchors are
the ledger entries of the documented model as :func:`dossier.inputs.summarise_ledger` found them,
with the ledger's size, root and witnesses at that point; the software changes are the git log of
the source checkout. Every known anomaly is evaluated (impact, whether it blocks release): the tests
of the run that did not pass by requirement, failed criteria, a revocation, the interval defect
(HAZ-DEV-001) and the cybersecurity residual risks of FP-CYB (same data, :mod:`._threats`).
"""

from __future__ import annotations

from typing import Any

from reportlab.platypus import Flowable

from dossier.manufacturer import MARKER
from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, heading, para, table

from . import _interval, _revocation, _tests, _threats
from ._model_kind import LOGISTIC_INTERVAL, kind_of
from .model_card import present


def _release(inputs: DossierInputs) -> list[Flowable]:
    entry, rep = present(inputs.model), inputs.validation or {}
    anchors = inputs.ledger.anchors if inputs.ledger else []
    released = [a for a in anchors if a.get("kind") == "release"]
    rel = (f"ledger entry {released[-1]['index']}, approved by {released[-1].get('approved_by') or '—'}: "
           f"{released[-1].get('reason') or '—'}" if released else "not released")
    val = entry.validation or {}
    rows = [("Software", f"{inputs.device} {inputs.device_version}, commit {inputs.commit}"),
            ("Model", f"{entry.ref} ({(inputs.artifact or {}).get('kind', '—')})"),
            ("Model SHA-256", entry.sha256),
            ("Status", f"{entry.status} (lifecycle {entry.lifecycle})"),
            ("Consent revocation", _revocation.state(entry, inputs.history)),
            ("Release", rel),
            ("Validation", f"report SHA-256 {val.get('report_sha256', '—')}, ledger entry "
                           f"{val.get('ledger_index', '—')}, "
                           f"{'passed' if val.get('passed') else 'NOT passed'} ({rep.get('date', '—')})"),
            ("Predecessor", entry.predecessor or "none: first version"),
            ("Consent checkpoint", _checkpoint(entry.consent_checkpoint))]
    return [heading("2 This release"), table([("Item", "Value"), *rows], widths=[35, 135]),
            *_change_control(inputs), *_anomalies(inputs)]


def _checkpoint(cp: dict[str, Any] | None) -> str:
    return "—" if not cp else f"ledger size {cp.get('size')}, root {cp.get('root')}"


def _anomalies(inputs: DossierInputs) -> list[Flowable]:
    """Every known anomaly evaluated: its impact and whether it blocks release (IEC 62304 §5.8.2, §5.8.3)."""
    rows: list[list[object]] = [["Anomaly", "Evidence", "Impact", "Blocks release"]]
    rows += _test_anomalies(inputs)
    rows += [[f"Acceptance criterion {c['id']} failed", "FP-CVR", "The clinical performance criterion is not "
              "met by this model.", "yes: the release gate refuses a model whose validation did not pass"]
             for c in (inputs.validation or {}).get("criteria", []) if not c.get("passed")]
    entry = present(inputs.model)
    if entry.affected_by_revocation:
        rows.append(["Consent revocation names the training job", "ledger; FP-PMS",
                     f"The model is {_revocation.state(entry, inputs.history)}.",
                     "no while the revocation window runs; the model is not served once affected"])
    rows.append(_interval_row(inputs))
    rows += _security_rows(inputs)
    blocking = [r for r in rows[1:] if str(r[3]).startswith("yes")]
    verdict = (f"<b>{len(blocking)} of {len(rows) - 1} anomalies block release</b>: this version must not be "
               "issued until each is resolved." if blocking else
               f"<b>None of the {len(rows) - 1} anomalies blocks release</b>; each is evaluated below.")
    return [heading("Known anomalies and their evaluation", 2),
            para("Every open anomaly of this version: each test of the run that did not pass (grouped by the "
                 "requirement it verifies; a failed or skipped test of a requirement blocks issuing), each "
                 "failed acceptance criterion, a consent revocation, the known interval defect and the "
                 f"cybersecurity residual risks (FP-CYB). {verdict}"),
            table(rows, widths=[42, 40, 58, 30])]


def _test_anomalies(inputs: DossierInputs) -> list[list[object]]:
    run = inputs.test_run
    if run is None:
        return [["No test run available to this build", "FP-VER", "Verification is not evidenced.",
                 "yes: no verification record"]]
    reqs = inputs.requirements
    out: list[list[object]] = []
    for req, tests in _tests.by_requirement(_tests.open_tests(run)).items():
        failing = [t for t in tests if t.outcome in ("failed", "error")]
        if req == _tests.UNLINKED:
            impact = "The tests verify no requirement."
            blocks = ("yes: a failing test means the software does not behave as tested" if failing else
                      "no: it verifies no requirement")
        else:
            item = reqs.get(req) if reqs is not None and req in reqs else None
            what = f"{req} ({item.title})" if item is not None else req
            impact = (f"{what} is shown not to hold." if failing else f"{what} is not verified by this run.")
            if item is not None and item.type == "risk-control":
                impact += f" Hazards it controls are not shown controlled: {', '.join(item.parents)}."
            blocks = "yes: a requirement without passing verification"
        out.append([f"{len(tests)} test(s) not passed: {req}", _tests.listed(tests), impact, blocks])
    return out


def _interval_row(inputs: DossierInputs) -> list[object]:
    """The known interval defect (HAZ-DEV-001) and whether this model carries it."""
    reqs = inputs.requirements
    hazard = reqs.get("HAZ-DEV-001").text if reqs is not None and "HAZ-DEV-001" in reqs else (
        "The 95% interval omits the variance of the baseline hazard.")
    if kind_of(inputs.artifact).logistic:
        return ["Interval defect HAZ-DEV-001: " + hazard, "FP-MC",
                "Not applicable to this model: a logistic model has no baseline hazard. " + LOGISTIC_INTERVAL,
                "no"]
    if _interval.includes_baseline(inputs.artifact):
        return ["Interval defect HAZ-DEV-001: " + hazard, "SRS-DEV-012, RC-DEV-003; FP-MC",
                "Resolved for this model: its artifact carries the baseline hazard's variance. "
                + _interval.interval_statement(True) + " A model without it is still served with a "
                "coefficient-only interval, so labelled.", "no"]
    return ["Interval defect HAZ-DEV-001: " + hazard, "SRS-DEV-004; FP-MC; FP-RMF",
            _interval.interval_statement(False),
            "no by itself: the device labels the interval coefficient-only; the risk is evaluated in FP-RMF"]


def _security_rows(inputs: DossierInputs) -> list[list[object]]:
    """The cybersecurity residual risks, from the same data as FP-CYB (:mod:`._threats`)."""
    block = getattr(inputs.manufacturer, "cybersecurity", None)
    accepted = getattr(block, "residual_risk_acceptance", None)
    accepted = None if accepted == MARKER else accepted
    out: list[list[object]] = []
    for n, t in _threats.high_residual():
        score = _threats.cvss_score(_threats.vectors(t).residual)
        grade = _threats.rating(score)
        out.append([f"Threat T{n} ({t.category}): {t.threat}",
                    f"FP-CYB section 3.1; residual CVSS {score:.1f} {grade}",
                    f"Control: {t.control} It remains {grade}.",
                    f"no: accepted by the manufacturer ({accepted})" if accepted else
                    "yes until the manufacturer accepts it (regulatory/manufacturer.yaml "
                    "cybersecurity.residual_risk_acceptance)"])
    for n, (risk, consequence, measure) in enumerate(_threats.residual_risks(), start=1):
        out.append([f"Residual risk R{n}: {risk}", "FP-CYB section 5", f"{consequence} Measure: {measure}",
                    "no: a known limitation stated to the hospitals with the measure it requires"])
    return out


def _checks(cc: dict[str, Any]) -> str:
    """The checks of a change-control record: ``passed`` ids and ``failed`` {id, detail} (the registry's
    form, :meth:`device.change_control.Assessment.to_ledger`), or a ``checks`` mapping or list."""
    if "passed" in cc or "failed" in cc:
        failed = [f"{f.get('id')} FAILED ({f.get('detail')})" if isinstance(f, dict) else f"{f} FAILED"
                  for f in cc.get("failed") or []]
        return "; ".join([*(f"{c} passed" for c in cc.get("passed") or []), *failed]) or "none"
    checks = cc.get("checks")
    if isinstance(checks, dict):
        return "; ".join(f"{k}: {v}" for k, v in checks.items())
    return "; ".join(str(c) for c in checks) if isinstance(checks, list) else str(checks or "none")


def _change_control(inputs: DossierInputs) -> list[Flowable]:
    """The release's change assessment under a predetermined change control plan (from its ledger entry)."""
    entry = present(inputs.model)
    cc = inputs.release_change_control  # only from a release the registry honours (signed by an approver)
    if isinstance(cc, dict):
        plan = cc.get("plan") or cc.get("plan_id") or "?"
        inside = "within the plan" if cc.get("within_plan") else "NOT within the plan"
        text = (f"The release records its change assessment under plan {esc(plan)} (FP-PCCP): {inside}. "
                f"Checks: {esc(_checks(cc))}.")
    elif entry.predecessor:
        text = (f"This version changes {esc(entry.predecessor)}; its release records no assessment under a "
                "predetermined change control plan: the change was not assessed under a plan.")
    else:
        text = "First version of the model: there is no change to assess under a change control plan."
    return [heading("Change control", 2), para(text)]


def _history(inputs: DossierInputs) -> list[Flowable]:
    doc = present(inputs.model).sha256
    rows: list[list[object]] = [["Version", "Status", "Lifecycle", "Registered at", "Predecessor",
                                 "Consent revocation"]]
    hashes: list[list[object]] = [["Version", "Artifact SHA-256"]]
    steps: list[list[object]] = [["Version", "Ledger entry", "State reached"]]
    for m in inputs.history:
        mark = " (this file)" if m.sha256 == doc else ""
        rows.append([f"{m.ref}{mark}", m.status, m.lifecycle, m.ledger_index, m.predecessor or "—",
                     _revocation.short(m)])
        hashes.append([m.ref, m.sha256])
        steps += [[m.ref, index, state] for index, state in m.history]
    return [heading("3 Model version history"),
            para(f"{len(inputs.history)} model version(s) registered, oldest first, each state replayed from "
                 "the ledger: candidate → validated → released → withdrawn. A consent revocation naming the "
                 "training job makes a model <i>affected</i> (never released or served) in any state but "
                 "withdrawn, except a released model under the window policy: it stays released and served, "
                 "flagged <i>retrain due</i>, until a successor is released (it is then affected) or the "
                 "window's deadline passes (affected)."),
            table(rows, widths=[38, 20, 20, 20, 38, 24]), table(hashes, widths=[38, 132]),
            para("<b>Lifecycle transitions.</b>"), table(steps, widths=[50, 40, 80])]


def _ledger(inputs: DossierInputs) -> list[Flowable]:
    led = present(inputs.ledger)
    rows: list[list[object]] = [["Ledger entry", "Kind", "Recorded"]]
    for a in led.anchors:
        rest = "; ".join(f"{k} {v}" for k, v in a.items()
                         if k not in ("index", "kind", "change_control") and v is not None)
        rows.append([a.get("index"), a.get("kind"), rest or "—"])
    kinds = ", ".join(f"{k} {n}" for k, n in led.entries_by_kind.items())
    summary = [("Origin", led.origin), ("Size", str(led.size)), ("Root", led.root),
               ("Entries by kind", kinds), ("Signed checkpoints", f"{led.checkpoints}, latest at size "
                                                                 f"{led.latest_checkpoint_size}"),
               ("Cosigned by", f"{len(led.cosigners)} of {len(led.witnesses)} site witnesses: "
                               f"{', '.join(led.cosigners) or 'none'}"),
               ("Verified", "yes: every leaf, node, root and signed checkpoint recomputed" if led.verified
                else "NO")]
    return [heading("4 Ledger anchors"),
            para("Every step of the documented model is an entry of the witnessed ledger; the ledger as of "
                 "the first signed checkpoint covering them:"),
            table(rows, widths=[22, 22, 126]), table([("Ledger", "Value"), *summary], widths=[35, 135])]


def _git(inputs: DossierInputs) -> list[Flowable]:
    rows: list[list[object]] = [["Commit", "Date", "Change"]]
    rows += [[c.commit[:12], c.date[:10], c.subject] for c in inputs.git]
    return [heading("5 Software changes"),
            para(f"The {len(inputs.git)} most recent commits of the source checkout, newest first (git log); "
                 "each commit's full change analysis is in the repository."),
            table(rows, widths=[24, 18, 128])]


def build(inputs: DossierInputs) -> list[Flowable]:
    inputs.require(SPEC.needs, SPEC.id)
    return [heading("1 Scope"),
            para(f"Release notes of {esc(inputs.device)} {esc(inputs.device_version)} with model "
                 f"{esc(present(inputs.model).ref)}: what is released, the known anomalies, every model "
                 "version and its lifecycle as the ledger records it, the ledger anchors of this model, and "
                 "the software changes."),
            *_release(inputs), *_history(inputs), *_ledger(inputs), *_git(inputs)]


SPEC = DocumentSpec(id="FP-REL", title="Release notes and version history", file="FP-REL-release-notes.pdf",
                    needs=("model", "history", "ledger", "git"), build=build, toc=True)

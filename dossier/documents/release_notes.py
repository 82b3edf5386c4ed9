"""FP-REL Release notes and version history (IEC 62304 §5.8.4, §5.8.2, §8.3; EU MDR Annex II §1.1).

The model's history is the registry's, replayed from the ledger (every version with its status,
lifecycle transitions by ledger index, predecessor, revocation flag and SHA-256); the anchors are
the ledger entries of the documented model as :func:`dossier.inputs.summarise_ledger` found them,
with the ledger's size, root and witnesses at that point; the software changes are the git log of
the source checkout.
"""

from __future__ import annotations

from typing import Any

from reportlab.platypus import Flowable

from dossier.spec import DocumentSpec, DossierInputs
from dossier.style import esc, heading, para, table

from . import _revocation
from .model_card import present


def _release(inputs: DossierInputs) -> list[Flowable]:
    entry, rep = present(inputs.model), inputs.validation or {}
    anchors = inputs.ledger.anchors if inputs.ledger else []
    released = [a for a in anchors if a.get("kind") == "release"]
    rel = (f"ledger entry {released[-1]['index']}, by {released[-1].get('by') or '—'}: "
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
            *_anomalies(inputs)]


def _checkpoint(cp: dict[str, Any] | None) -> str:
    return "—" if not cp else f"ledger size {cp.get('size')}, root {cp.get('root')}"


def _anomalies(inputs: DossierInputs) -> list[Flowable]:
    """Known anomalies: failing tests of the run, failed criteria, a revocation (IEC 62304 §5.8.2)."""
    items = []
    run = inputs.test_run
    if run is None:
        items.append("No test run was available to this build: verification evidence missing (FP-VER).")
    else:
        bad = [t.nodeid for t in run.tests if t.outcome in ("failed", "error")]
        items += [f"Failing test {esc(b)} (FP-VER)." for b in bad]
    for c in (inputs.validation or {}).get("criteria", []):
        if not c.get("passed"):
            items.append(f"Acceptance criterion {esc(c['id'])} failed (FP-CVR).")
    entry = present(inputs.model)
    if entry.affected_by_revocation:
        items.append(f"A consent revocation names the training job: the model is "
                     f"{esc(_revocation.state(entry, inputs.history))}.")
    return [heading("Known anomalies", 2),
            *([para(f"• {i}") for i in items] or [para("None known: every test of the run passed, every "
                                                       "acceptance criterion was met and no revocation "
                                                       "affects the model.")])]


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
        rest = "; ".join(f"{k} {v}" for k, v in a.items() if k not in ("index", "kind") and v is not None)
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

"""The model registry: every model version is anchored in the ledger, artifacts kept by hash.

A model enters as a ``candidate`` (a ``model`` ledger entry naming its sha256, the training
job, the consent checkpoint it was trained under and its predecessor, if any). The release
gate moves it on, every step a ledger entry of its own::

    candidate ──validation (passed)──► validated ──release──► released ──withdrawal──► withdrawn
        ▲   └──────────────────────── withdrawal ───────────────────────────────────────┘
        └── validation (failed) demotes a validated model back to candidate

Only a model whose latest validation report passed (the report kept by its SHA-256 beside the
ledger entry and re-hashed at release) can be released. A consent revocation whose ledger
entry names the model's training job touches the model by the study's revocation policy
(:mod:`device.revocation`, issue 15): under ``window`` (the default) a *released* model stays
released and served, flagged ``retrain due``, until a successor is released or its deadline
passes; under ``immediate``, and for a model not released, its status is ``affected`` at once
(withdrawn excepted). An affected model is never released or served — it is retrained under
today's consent into a successor that links back to it (ISO 14971 risk control for "a model
trained on revoked consent is served"); once a successor is released the predecessor is affected.
The state is always derived from the ledger (and the registry's clock, for deadlines), never
stored elsewhere, so every hospital's witness sees the same history.

The replay trusts no cell of the ledger file on its own (issue 16, H2). The adversary is
someone with write access to ``ledger.sqlite`` (an insider, or malware on the coordinator
host) who is not the witnesses: editing one character of a withdrawal's ``kind`` would
otherwise put a withdrawn model back in service. Every replay goes through
:func:`ledger.trusted.read_verified`: each entry's leaf is recomputed from its kind and body,
the root from those leaves, and — given the workspace's :class:`~ledger.anchors.TrustAnchors`
— checked against the latest checkpoint a quorum of pinned witnesses cosigned and each
witness's own state. A ledger that fails is not replayed: :class:`LedgerUntrusted`.

A release is honoured only with the signature of a pinned approver over the model, its report and,
for a successor, its change-control verdict, and with software verification that passed
(:mod:`device.release_gate`; issue 19).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.anchors import TrustAnchors
from ledger.canonical import sealed_sha256
from ledger.files import write_json_atomic
from ledger.log import Ledger, Receipt
from ledger.signatures import Approval, Person
from ledger.trusted import UntrustedLedger, read_verified

from .model_entry import ModelEntry
from .release_gate import (
    LedgerUntrusted,
    RegistryError,
    approval_problems,
    assess_successor,
    check_envelope,
    release_subject,
    release_verification,
)
from .revocation import (
    RETRAIN_DUE,
    Revocations,
    flag_body,
    flag_terms,
    iso,
    revocations_by_job,
    terms_of,
    window,
)

#: listings of models and of receipts (``list`` is a method name inside :class:`ModelRegistry`)
Models = list[ModelEntry]
Receipts = list[Receipt]
Entries = list[tuple[int, str, dict[str, Any]]]

#: the reasons something is refused, one line each
Problems = list[str]
#: SHA-256 an artifact is sealed with (canonical JSON without its ``sha256`` field)
canonical_sha256 = sealed_sha256


def utc_now() -> datetime:
    return datetime.now(UTC)


class ModelRegistry:
    """Models of a workspace: artifacts in ``<workspace>/models/<sha256>.json``, history in the ledger.

    ``clock`` (aware UTC datetimes) times releases and windows and decides when a revocation
    window's deadline has passed; tests inject one to simulate time. ``anchors`` (keys pinned
    outside the ledger file, the witnesses' states) are what the replayed ledger is checked
    against; without them only its leaves, root and own checkpoints are.
    """

    def __init__(self, folder: Path, ledger: Ledger, reports: Path | None = None,
                 clock: Callable[[], datetime] = utc_now, anchors: TrustAnchors | None = None,
                 people: Mapping[str, Person] | None = None, demonstration: bool = False,
                 plan: Path | None = None) -> None:
        self.folder = Path(folder)
        self.ledger = ledger
        self.reports = Path(reports) if reports is not None else self.folder.parent / "validation"
        self.clock = clock
        self.anchors = anchors
        #: the approvers pinned outside the ledger (``workspace.json`` ``trust.people``): a ``release``
        #: entry counts only with an approval that verifies under one of their keys
        self.people: dict[str, Person] = dict(people or {})
        #: a demonstration workspace (``fedprog demo``) may release with the software verification
        #: waived, and every such release says so; a clinical workspace never can
        self.demonstration = demonstration
        #: the predetermined change control plan a successor is assessed against at release (read only
        #: then); None: every successor is a significant change
        self.plan = plan

    def entries(self, kind: str | None = None) -> Entries:
        """The ledger's entries (of ``kind``) as ``(index, kind, body)``, only from a ledger that
        passes :func:`ledger.trusted.read_verified`; else :class:`LedgerUntrusted`."""
        try:
            return read_verified(self.ledger, self.anchors).entries(kind)
        except UntrustedLedger as exc:
            raise LedgerUntrusted(f"refusing to replay the ledger: {exc}") from exc

    def register(self, artifact: dict[str, Any], job: str, predecessor: str | None = None,
                 study: dict[str, Any] | None = None) -> Receipt:
        """Store the artifact (content-addressed) and anchor a ``model`` entry.

        ``study`` (the training settings, kept beside the artifact) lets a successor be
        retrained the same way.
        """
        sha = artifact.get("sha256")
        if artifact.get("schema") != "fedprog.model/v1" or canonical_sha256(artifact) != sha:
            raise RegistryError("not a sealed fedprog.model/v1 artifact (sha256 mismatch)")
        if any(b.get("sha256") == sha for _, _, b in self.entries("model")):
            raise RegistryError(f"model {sha[:16]}… is already registered (a version is registered once)")
        write_json_atomic(self.folder / f"{sha}.json", artifact)
        if study is not None:
            write_json_atomic(self.folder / f"{sha}.study.json", study)
        body = {"model_id": artifact["model_id"], "version": artifact["version"], "sha256": sha, "job": job,
                "consent_checkpoint": artifact["training"].get("consent_checkpoint"),
                "predecessor": predecessor, "status": "candidate"}
        return self.ledger.append("model", body)

    def list(self) -> list[ModelEntry]:
        """Every registered version, oldest first, its state replayed from the ledger as of the clock."""
        return self._list(self.clock())

    def _list(self, now: datetime) -> Models:
        models: dict[str, dict[str, Any]] = {}
        revocations: list[tuple[int, dict[str, Any]]] = []
        flags: dict[str, tuple[int, dict[str, Any]]] = {}
        for idx, kind, b in self.entries():
            if kind == "model" and b.get("sha256") in models:
                continue  # registered once: a second `model` entry never resets a model's history
            if kind == "model":
                models[b["sha256"]] = {"body": b, "index": idx, "state": "candidate",
                                       "history": [(idx, "candidate")], "validation": None}
            elif kind == "release" and b.get("sha256") in models and self.release_problems(b):
                continue  # a release without a valid approver's signature is not honoured
            elif kind in ("validation", "release", "withdrawal") and b.get("sha256") in models:
                _replay(models[b["sha256"]], idx, kind, b)
            elif kind == "revocation":
                revocations.append((idx, b))
            elif kind == RETRAIN_DUE and b.get("sha256") in models:
                flags.setdefault(b["sha256"], (idx, b))  # the first opens the window
        by_job = revocations_by_job(revocations)
        entries = [ModelEntry(m["body"]["model_id"], m["body"]["version"], sha, m["body"]["job"], m["state"],
                              m["index"], m["body"].get("consent_checkpoint"), m["body"].get("predecessor"),
                              m["body"]["job"] in by_job, tuple(m["history"]), m["validation"])
                   for sha, m in models.items()]
        superseded = _superseded(entries)
        return [self._flagged(e, by_job[e.job], flags.get(e.sha256), now)
                if e.affected_by_revocation and e.lifecycle == "released" and e.ref not in superseded else e
                for e in entries]

    def _flagged(self, entry: ModelEntry, revocations: Revocations, flag: tuple[int, dict[str, Any]] | None,
                 now: datetime) -> ModelEntry:
        """A released model named by revocations, with its ``retrain due`` flag under a window
        policy (the terms its ``retrain-due`` entry recorded, else the study's); unchanged —
        hence ``affected`` — under ``immediate``."""
        terms = flag_terms(flag[1]) if flag is not None else terms_of(self._study_or_none(entry))
        if terms.policy == "immediate":
            return entry
        return replace(entry, retrain=window(revocations, terms, flag, now))

    def _study_or_none(self, entry: ModelEntry) -> dict[str, Any] | None:
        try:
            return self.study_of(entry)
        except RegistryError:
            return None

    def note_revocations(self) -> Receipts:
        """Open the revocation window of every released model newly flagged ``retrain due``: one
        ``retrain-due`` ledger entry each (time, deadline, terms; no patient). The ledger has no
        clock, so the window counts from this entry: call it where revocations are recorded (and
        the server does on the next request). Idempotent; the first entry of a model wins on replay.
        """
        now = self.clock()
        return [self.ledger.append(RETRAIN_DUE, flag_body(e.ref, e.sha256, e.job, e.retrain, now))
                for e in self._list(now) if e.retrain is not None and e.retrain.since is None]

    def retrain_due(self) -> Models:
        """Released models flagged ``retrain due`` (in their window, or past its deadline without
        a released successor), oldest first."""
        return [e for e in self.list() if e.retrain is not None]

    def get(self, ref: str) -> ModelEntry:
        """A model by ``model_id@version``, ``model_id`` (latest version) or sha256 (prefix ≥ 8)."""
        models = self.list()
        found = [m for m in models
                 if ref in (m.ref, m.sha256) or (len(ref) >= 8 and m.sha256.startswith(ref))]
        if not found:
            found = [m for m in models if m.model_id == ref]
        if not found:
            raise RegistryError(f"no model {ref!r} (see fedprog model list)")
        return found[-1]

    def study_of(self, entry: ModelEntry) -> dict[str, Any]:
        """The training settings a model was registered with."""
        path = self.folder / f"{entry.sha256}.study.json"
        if not path.is_file():
            raise RegistryError(f"{entry.ref} was registered without its study settings: cannot retrain")
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def artifact(self, ref: str) -> dict[str, Any]:
        """The artifact of a model, its sha256 recomputed (a mismatch is refused)."""
        entry = self.get(ref)
        path = self.folder / f"{entry.sha256}.json"
        if not path.is_file():
            raise RegistryError(f"artifact of {entry.ref} is missing ({path})")
        artifact: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if canonical_sha256(artifact) != entry.sha256 or artifact.get("sha256") != entry.sha256:
            raise RegistryError(f"artifact of {entry.ref} does not match its sha256: refusing it")
        return artifact

    # ------------------------------------------------------------ release gate
    def record_validation(self, ref: str, report: dict[str, Any]) -> Receipt:
        """Keep a validation report (by its SHA-256) and anchor its verdict in the ledger.

        ``report`` must say ``passed`` (bool) and list its acceptance ``criteria``; a passing
        report moves a candidate to ``validated``, a failing one moves a validated model back
        to ``candidate``. The ledger entry carries only aggregates and the report's hash.
        """
        entry = self.get(ref)
        if not isinstance(report.get("passed"), bool) or not isinstance(report.get("criteria"), list):
            raise RegistryError("a validation report needs 'passed' (true/false) and its 'criteria'")
        if entry.lifecycle in ("released", "withdrawn"):
            raise RegistryError(f"{entry.ref} is {entry.lifecycle}: validate a new version instead")
        report = {**report, "model": entry.ref, "sha256": entry.sha256}
        digest = sealed_sha256(report)
        write_json_atomic(self.reports / f"{digest}.json", report)
        body = {"model": entry.ref, "sha256": entry.sha256, "report_sha256": digest,
                "passed": report["passed"], "criteria": report["criteria"]}
        return self.ledger.append("validation", body)

    def record_external(self, ref: str, report: dict[str, Any]) -> Receipt:
        """Keep an external validation report (``setting: external``) by its SHA-256 and anchor its
        verdict in the ledger as an ``external-validation`` entry. It is clinical evidence about the
        model (for the clinical evaluation report and post-market follow-up), not a gate: the
        model's release state does not change, so a released model can be validated externally."""
        entry = self.get(ref)
        if report.get("setting") != "external" or not isinstance(report.get("passed"), bool):
            raise RegistryError("an external validation report says setting 'external' and 'passed'")
        report = {**report, "model": entry.ref, "sha256": entry.sha256}
        digest = sealed_sha256(report)
        write_json_atomic(self.reports / f"{digest}.json", report)
        body = {"model": entry.ref, "sha256": entry.sha256, "report_sha256": digest,
                "sites": sorted(report.get("sites") or {}), "passed": report["passed"],
                "criteria": report.get("criteria", [])}
        return self.ledger.append("external-validation", body)

    def external_reports(self, entry: ModelEntry) -> tuple[dict[str, Any], ...]:
        """Every external validation report of ``entry``, oldest first, each checked against the
        hash its ledger entry anchors (a report that does not match is refused)."""
        out = []
        for _, kind, body in self.entries():
            if kind != "external-validation" or body.get("sha256") != entry.sha256:
                continue
            path = self.reports / f"{body['report_sha256']}.json"
            report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            if sealed_sha256(report) != body["report_sha256"]:
                raise RegistryError(f"external validation report {body['report_sha256'][:16]}… of "
                                    f"{entry.ref} is missing or does not match its ledger hash: refusing it")
            out.append(report)
        return tuple(out)

    def report(self, entry: ModelEntry) -> dict[str, Any]:
        """The latest validation report of a model, its hash checked against the ledger."""
        if entry.validation is None:
            raise RegistryError(f"{entry.ref} has no validation report (run the validation first)")
        digest = entry.validation["report_sha256"]
        path = self.reports / f"{digest}.json"
        if not path.is_file():
            raise RegistryError(f"validation report of {entry.ref} is missing ({path})")
        report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if sealed_sha256(report) != digest:
            raise RegistryError(f"validation report of {entry.ref} does not match its ledger hash: "
                                "refusing it")
        return report

    def release(self, ref: str, approval: Approval, *, reason: str = "", significant_change: str = ""
                ) -> Receipt:
        """Release a validated model for clinical use (IEC 62304 §5.8). The gate: a passing, intact
        validation report whose software verification passed (waived only in a demonstration
        workspace, and then recorded as waived); no consent revocation touching the model; its
        artifact intact and inside its training data's envelope; and ``approval``, signed by a pinned
        person holding the ``approver`` role over :func:`release_subject` (:mod:`ledger.signatures`).
        A successor is assessed against the change control plan (:meth:`change_control`, RC-REG-002)."""
        subject = self.release_subject(ref, significant_change)
        entry = self.get(ref)
        problems = approval_problems(approval, self.people, subject)
        if problems:
            raise RegistryError(f"release of {entry.ref} refused: {problems[0]}")
        body: dict[str, Any] = {"model": entry.ref, "sha256": entry.sha256, "at": iso(self.clock()),
                                "report_sha256": subject["report_sha256"], "reason": reason,
                                "approval": approval.model_dump(mode="json"),
                                "verification": subject["verification"]}
        if subject.get("change_control") is not None:
            body["change_control"] = subject["change_control"]
        return self.ledger.append("release", body)

    def release_subject(self, ref: str, significant_change: str = "") -> dict[str, Any]:
        """What the approver of a release of ``ref`` signs (:func:`device.release_gate.release_subject`),
        once every rule of the gate holds — so nobody signs a release the gate would refuse."""
        entry = self.get(ref)
        if entry.status == "affected":
            raise RegistryError(f"{entry.ref} is affected by a consent revocation: retrain it "
                                f"(fedprog model retrain {entry.model_id}) and release the successor")
        if entry.lifecycle != "validated":
            raise RegistryError(f"{entry.ref} is {entry.lifecycle}: only a validated model (one whose latest "
                                "validation report passed) can be released")
        report = self.report(entry)
        if report.get("passed") is not True:
            raise RegistryError(f"the validation report of {entry.ref} did not pass")
        verification = release_verification(report, self.demonstration)
        check_envelope(self.artifact(entry.ref))
        change_control = self.change_control(entry.ref, significant_change)
        report_sha256 = entry.validation["report_sha256"] if entry.validation else None
        return release_subject(entry.ref, entry.sha256, report_sha256, verification, change_control)

    def change_control(self, ref: str, significant_change: str = "") -> dict[str, Any] | None:
        """The change-control record a release of ``ref`` carries (None: a first version is not a
        change): :func:`device.release_gate.assess_successor` against its nearest released ancestor."""
        entry = self.get(ref)
        ever = [m for m in self.list() if m.model_id == entry.model_id and m.sha256 != entry.sha256
                and any(state == "released" for _, state in m.history)]
        if entry.predecessor is None and not ever:
            return None  # a first version of this model id is not a change
        base = self._released_ancestor(entry) if entry.predecessor is not None else ever[-1]
        return assess_successor(self.plan, entry.ref, (base.ref, self.artifact(base.ref), self.report(base)),
                                self.artifact(entry.ref), self.report(entry), significant_change)

    def _released_ancestor(self, entry: ModelEntry) -> ModelEntry:
        """The nearest predecessor of ``entry`` that was ever released, else its direct predecessor."""
        by_ref = {m.ref: m for m in self.list()}
        ref, first = entry.predecessor, None
        while ref is not None and ref in by_ref:
            m = by_ref[ref]
            first = first or m
            if "released" in (state for _, state in m.history):
                return m
            ref = m.predecessor
        if first is None:
            raise RegistryError(f"{entry.ref}: its predecessor {entry.predecessor} is not registered")
        return first

    def release_problems(self, body: dict[str, Any]) -> Problems:
        """Why a ``release`` entry is not honoured (``[]``: it is): its approval must verify under a
        pinned approver's key for exactly this model and report, and its verification must have
        passed (or been waived in a demonstration workspace). Adversary: whoever can append to the
        ledger but holds no approver's key."""
        subject = release_subject(body.get("model"), body.get("sha256"), body.get("report_sha256"),
                                  body.get("verification"), body.get("change_control"))
        problems = approval_problems(body.get("approval"), self.people, subject)
        status = (body.get("verification") or {}).get("status")
        if status != "passed" and not (status == "waived" and self.demonstration):
            problems.append(f"its software verification is {status or 'absent'}")
        return problems

    def withdraw(self, ref: str, *, reason: str, by: str = "") -> Receipt:
        """Withdraw a model from use (any state but withdrawn); the server stops serving it."""
        entry = self.get(ref)
        if entry.lifecycle == "withdrawn":
            raise RegistryError(f"{entry.ref} is already withdrawn")
        if not reason.strip():
            raise RegistryError("withdrawing a model needs a reason (it is recorded in the ledger)")
        return self.ledger.append("withdrawal", {"model": entry.ref, "sha256": entry.sha256,
                                                 "reason": reason, "by": by})

    def released(self, model_id: str | None = None) -> ModelEntry:
        """The newest released (and not affected) version, of ``model_id`` if given — one flagged
        ``retrain due`` inside its window included (it stays in service until its deadline)."""
        live = [m for m in self.list() if m.status == "released"
                and (model_id is None or m.model_id == model_id)]
        if not live:
            which = f" of {model_id}" if model_id else ""
            raise RegistryError(f"no released model{which}: release a validated model first "
                                "(fedprog model release REF)")
        return live[-1]


def _superseded(entries: Models) -> set[str]:
    """Refs of the models a released successor descends from (``predecessor`` links): a released
    successor clears the lineage's ``retrain due`` flag (the server serves the newest released
    version, :meth:`ModelRegistry.released`, so a predecessor is served again only if its successor is
    withdrawn and no revocation affects it)."""
    by_ref = {e.ref: e for e in entries}
    out: set[str] = set()
    for e in entries:
        if "released" in (state for _, state in e.history):
            ref = e.predecessor
            while ref is not None and ref not in out:
                out.add(ref)
                ref = by_ref[ref].predecessor if ref in by_ref else None
    return out


def _replay(model: dict[str, Any], idx: int, kind: str, body: dict[str, Any]) -> None:
    """Apply one release-gate ledger entry to a model's replayed state."""
    state = model["state"]
    if kind == "validation":
        if state in ("candidate", "validated"):
            model["validation"] = {"ledger_index": idx, "report_sha256": body.get("report_sha256"),
                                   "passed": bool(body.get("passed"))}
            model["state"] = "validated" if body.get("passed") else "candidate"
    elif kind == "release" and state == "validated" and \
            body.get("report_sha256") == (model["validation"] or {}).get("report_sha256"):
        model["state"] = "released"
    elif kind == "withdrawal" and state != "withdrawn":
        model["state"] = "withdrawn"
    if model["state"] != state:
        model["history"].append((idx, model["state"]))

"""The clinical evidence in the workspace: every validation report of a model, by setting, and the
models recalibrated from it.

A validation report (``fedprog.validation/v1``) says in ``setting`` where it was obtained:
``internal`` (the training sites and leave-one-site-out; a report without the field is internal) or
``external`` (a hospital that never trained the model, judged on criteria of scope ``external``).
Reports are found as the registry anchors them: each ``validation`` or ``external-validation`` ledger
entry names the
model's SHA-256 and the report's, and the report (``<workspace>/validation/<sha256>.json``) must
seal to that hash. A recalibrated model is a separate model id ``<model_id>-recalibrated-<site>``
whose artifact's ``training.recalibration`` says how (MDCG 2020-1 clinical performance; Royston and
Altman 2013 on recalibrating a Cox model in a new population). Nothing is computed here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from device.registry import ModelEntry, ModelRegistry, RegistryError
from ledger.canonical import sealed_sha256

from .spec import DossierError

INTERNAL, EXTERNAL = "internal", "external"
#: ledger entries anchoring a validation report: the release gate's, and an external validation's
#: (``ModelRegistry.record_external``: evidence about a model that leaves its release state unchanged)
KINDS = ("validation", "external-validation")
#: how a recalibrated model's id is formed from the model it recalibrates
RECALIBRATED = "-recalibrated-"


def setting(report: dict[str, Any]) -> str:
    """A report's setting: its ``setting`` field, ``internal`` when absent."""
    return str(report.get("setting") or INTERNAL)


@dataclass(frozen=True)
class Report:
    """One validation report anchored in the ledger (``index``) for a model."""

    report: dict[str, Any]
    sha256: str
    index: int

    @property
    def setting(self) -> str:
        return setting(self.report)

    @property
    def sites(self) -> list[str]:
        return list(self.report.get("sites") or {})

    def failed(self) -> list[str]:
        """Ids of the criteria this report judged and did not pass."""
        return [str(c.get("id")) for c in self.report.get("criteria", []) if not c.get("passed")]


@dataclass(frozen=True)
class Recalibrated:
    """A model recalibrated from the documented one, with its anchored reports."""

    entry: ModelEntry
    artifact: dict[str, Any]
    reports: list[Report]

    @property
    def recalibration(self) -> dict[str, Any] | None:
        value = (self.artifact.get("training") or {}).get("recalibration")
        return value if isinstance(value, dict) else None

    @property
    def site(self) -> str:
        return self.entry.model_id.split(RECALIBRATED, 1)[-1]


@dataclass(frozen=True)
class ClinicalEvidence:
    """The documented model's reports (oldest first) and the models recalibrated from it."""

    reports: list[Report] = field(default_factory=list)
    recalibrated: list[Recalibrated] = field(default_factory=list)

    def of(self, kind: str) -> list[Report]:
        return [r for r in self.reports if r.setting == kind]

    @property
    def external(self) -> list[Report]:
        return self.of(EXTERNAL)

    @property
    def internal(self) -> list[Report]:
        return self.of(INTERNAL)


def reports_of(registry: ModelRegistry, sha256: str) -> list[Report]:
    """Every validation report the ledger anchors for the model ``sha256``, oldest first; a report
    missing or not sealing to its anchored hash raises :class:`DossierError`."""
    out = []
    for index, kind, body in registry.entries():
        if kind not in KINDS or body.get("sha256") != sha256 or not isinstance(body.get("report_sha256"),
                                                                                str):
            continue
        digest = body["report_sha256"]
        path = registry.reports / f"{digest}.json"
        if not path.is_file():
            raise DossierError(f"validation report {digest[:16]}… anchored at ledger entry {index} is "
                               f"missing ({path})")
        report = json.loads(path.read_text(encoding="utf-8"))
        if sealed_sha256(report) != digest:
            raise DossierError(f"{path} does not match the hash anchored at ledger entry {index}: "
                               "refusing it")
        out.append(Report(report, digest, index))
    return out


def _recalibrated(registry: ModelRegistry, entry: ModelEntry) -> list[Recalibrated]:
    """The newest version of each ``<model_id>-recalibrated-<site>`` model derived from ``entry``
    (its predecessor is ``entry``, or it names none)."""
    newest: dict[str, ModelEntry] = {}
    for m in registry.list():
        if m.model_id.startswith(entry.model_id + RECALIBRATED) and m.predecessor in (None, entry.ref):
            newest[m.model_id] = m
    out = []
    for model_id in sorted(newest):
        m = newest[model_id]
        try:
            artifact = registry.artifact(m.ref)
        except RegistryError as exc:
            raise DossierError(str(exc)) from None
        out.append(Recalibrated(m, artifact, reports_of(registry, m.sha256)))
    return out


def gather_evidence(registry: ModelRegistry, entry: ModelEntry) -> ClinicalEvidence:
    """The clinical evidence of ``entry`` in the registry's workspace."""
    return ClinicalEvidence(reports_of(registry, entry.sha256), _recalibrated(registry, entry))


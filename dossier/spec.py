"""What a dossier document is, and what every document may read.

The dossier computes nothing itself (DESIGN.md): :class:`DossierInputs` is everything it reads
— the registry, the validation report, the ledger, the traceability data, SOUP/SBOM and git
history — gathered once by :func:`dossier.inputs.gather`. Each document module under
``dossier/documents/`` exposes ``SPEC = DocumentSpec(...)`` whose ``build`` turns the inputs into
reportlab flowables; ``needs`` names the inputs it cannot do without, so a missing one stops
the build with an error naming it instead of printing an empty section.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reportlab.platypus import Flowable

#: inputs a document can declare it needs
Need = Literal["model", "validation", "ledger", "requirements", "test_run", "safety", "soup", "sbom", "git",
               "history", "clinical_evaluation"]


class DossierError(ValueError):
    """An input the dossier needs is missing or inconsistent (one line naming it)."""


@dataclass(frozen=True)
class LedgerSummary:
    """The ledger as the dossier reports it (no entry bodies beyond the model's anchors)."""

    size: int
    root: str
    origin: str
    checkpoints: int
    latest_checkpoint_size: int
    cosigners: list[str]
    witnesses: list[str]
    entries_by_kind: dict[str, int]
    #: ledger indices of this model's anchors: model, validation(s), release, withdrawal …
    anchors: list[dict[str, Any]]
    verified: bool


@dataclass(frozen=True)
class GitCommit:
    commit: str
    date: str
    subject: str


@dataclass(frozen=True)
class DossierInputs:
    """Everything a document may show, read from the workspace and the source checkout."""

    workspace: Path
    #: fixed from the workspace's data (the model's validation report), never the clock
    date: str
    revision: str
    device: str
    device_version: str
    commit: str
    model: Any | None = None  # device.registry.ModelEntry of the documented model
    artifact: dict[str, Any] | None = None
    history: list[Any] = field(default_factory=list)  # every ModelEntry, oldest first
    #: device.revocation.RevocationTerms the model's study declares (None: no study settings kept
    #: beside the model, the registry's defaults apply)
    revocation: Any | None = None
    validation: dict[str, Any] | None = None  # report.json of the model's latest validation
    validation_dir: Path | None = None  # its folder (PNG plots)
    ledger: LedgerSummary | None = None
    requirements: Any | None = None  # traceability.load.Requirements
    test_run: Any | None = None  # traceability.results.TestRun
    safety: Any | None = None  # traceability.safety.SafetyClassification
    soup: list[Any] = field(default_factory=list)  # traceability.soup.SoupItem
    sbom: dict[str, Any] | None = None  # {"spec_version", "components", "sha256", "file"}
    git: list[GitCommit] = field(default_factory=list)
    #: the source checkout the git history comes from, and whether its tree had changes (the
    #: manifest records it; it is not printed, so editing does not change the documents)
    source: Path | None = None
    dirty: bool | None = None
    #: dossier.manufacturer.ManufacturerFile: the intended purpose and the manufacturer's decisions
    manufacturer: Any | None = None
    #: dossier.clinical.ClinicalEvaluationFile: the clinical evaluation's data (literature, discussions, PMCF)
    clinical_evaluation: Any | None = None
    #: dossier.evidence.ClinicalEvidence: every anchored validation report of the model by setting, and
    #: the models recalibrated from it (None: not gathered, read as no evidence)
    evidence: Any | None = None
    #: the CycloneDX JSON the ``sbom`` summary describes (the builder writes it as ``sbom["file"]``)
    sbom_json: str | None = field(default=None, repr=False)
    #: every ``document-approval`` entry of the ledger as (index, body), whatever it claims: the
    #: builder keeps only those that verify (:mod:`dossier.approvals`)
    approvals: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    #: the people pinned in ``workspace.json`` (``trust.people``: name → ledger.signatures.Person),
    #: the only keys an approval is checked against
    people: dict[str, Any] = field(default_factory=dict)
    #: the ``verification`` of the documented model's latest ``release`` entry (None: none recorded)
    release_verification: dict[str, Any] | None = None
    #: the change-control assessment the honoured (approver-signed) release of the model records
    release_change_control: dict[str, Any] | None = None
    #: the reviewed test → requirement links (traceability.links.Baseline; None: not gathered, and
    #: ``trace check``'s suspect-test-link rule is left out)
    links: dict[Any, Any] | None = None

    def require(self, needs: Sequence[Need], doc_id: str) -> None:
        """Raise :class:`DossierError` naming the first missing input ``doc_id`` needs."""
        missing = {"model": self.model is None or self.artifact is None,
                   "validation": self.validation is None, "ledger": self.ledger is None,
                   "requirements": self.requirements is None, "test_run": self.test_run is None,
                   "safety": self.safety is None, "soup": not self.soup, "sbom": self.sbom is None,
                   "git": not self.git, "history": not self.history,
                   "clinical_evaluation": self.clinical_evaluation is None}
        for need in needs:
            if missing[need]:
                raise DossierError(f"{doc_id} needs {_WHAT[need]}, which is missing")


_WHAT: dict[str, str] = {
    "model": "a released model in the registry (fedprog model release)",
    "validation": "the model's validation report (fedprog validate MODEL)",
    "ledger": "the workspace ledger", "requirements": "the traceability requirements",
    "test_run": "a test run with JUnit evidence (make test, or fedprog validate without --skip-verification)",
    "safety": "the software safety classification", "soup": "the SOUP list", "sbom": "the SBOM",
    "git": "the git history of the source checkout", "history": "the model version history",
    "clinical_evaluation": "the clinical evaluation's data (regulatory/clinical_evaluation.yaml)",
}


@dataclass(frozen=True)
class DocumentSpec:
    """One dossier document: id (e.g. ``FP-SRS``), title, file name, inputs it needs, its body."""

    id: str
    title: str
    file: str
    needs: tuple[Need, ...]
    build: Callable[[DossierInputs], list[Flowable]]
    toc: bool = False
    #: repository files (paths relative to the checkout) whose git history is this document's
    #: history besides its module and the data files of its ``needs`` (:mod:`dossier.approvals`)
    sources: tuple[str, ...] = ()

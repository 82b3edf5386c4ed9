"""The model registry: every model version is anchored in the ledger, artifacts kept by hash.

A model enters as a ``candidate`` (a ``model`` ledger entry naming its sha256, the training
job, the consent checkpoint it was trained under and its predecessor, if any). A consent
revocation whose ledger entry names the job flags the model as affected by revocation; a
retrained successor links back to it. Later states (validated, released, withdrawn) are
added by the release gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.canonical import sealed_sha256
from ledger.files import write_json_atomic
from ledger.log import Ledger, Receipt


class RegistryError(ValueError):
    """Unknown model, tampered artifact, or an artifact that is not a model."""


@dataclass(frozen=True)
class ModelEntry:
    """One registered model version, as the ledger records it."""

    model_id: str
    version: str
    sha256: str
    job: str
    status: str
    ledger_index: int
    consent_checkpoint: dict[str, Any] | None
    predecessor: str | None
    affected_by_revocation: bool

    @property
    def ref(self) -> str:
        """``model_id@version``: how commands name a model."""
        return f"{self.model_id}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "version": self.version, "status": self.status,
                "sha256": self.sha256, "affected_by_revocation": self.affected_by_revocation,
                "job": self.job, "ledger_index": self.ledger_index, "predecessor": self.predecessor,
                "consent_checkpoint": self.consent_checkpoint}


#: SHA-256 an artifact is sealed with (canonical JSON without its ``sha256`` field)
canonical_sha256 = sealed_sha256


class ModelRegistry:
    """Models of a workspace: artifacts in ``<workspace>/models/<sha256>.json``, history in the ledger."""

    def __init__(self, folder: Path, ledger: Ledger) -> None:
        self.folder = Path(folder)
        self.ledger = ledger

    def register(self, artifact: dict[str, Any], job: str, predecessor: str | None = None,
                 study: dict[str, Any] | None = None) -> Receipt:
        """Store the artifact (content-addressed) and anchor a ``model`` entry.

        ``study`` (the training settings, kept beside the artifact) lets a successor be
        retrained the same way.
        """
        sha = artifact.get("sha256")
        if artifact.get("schema") != "fedprog.model/v1" or canonical_sha256(artifact) != sha:
            raise RegistryError("not a sealed fedprog.model/v1 artifact (sha256 mismatch)")
        write_json_atomic(self.folder / f"{sha}.json", artifact)
        if study is not None:
            write_json_atomic(self.folder / f"{sha}.study.json", study)
        body = {"model_id": artifact["model_id"], "version": artifact["version"], "sha256": sha, "job": job,
                "consent_checkpoint": artifact["training"].get("consent_checkpoint"),
                "predecessor": predecessor, "status": "candidate"}
        return self.ledger.append("model", body)

    def _revoked_jobs(self) -> set[str]:
        return {job for _, _, body in self.ledger.entries("revocation")
                for job in body.get("affects_jobs", [])}

    def list(self) -> list[ModelEntry]:
        """Every registered version, oldest first."""
        revoked = self._revoked_jobs()
        return [ModelEntry(b["model_id"], b["version"], b["sha256"], b["job"], b["status"], idx,
                           b.get("consent_checkpoint"), b.get("predecessor"), b["job"] in revoked)
                for idx, _, b in self.ledger.entries("model")]

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

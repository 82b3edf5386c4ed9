"""Gather what the dossier documents: one read of the workspace and the source checkout.

The technical file (EU MDR Annex II) describes one model version: the registry's model, its
artifact (sha256 re-checked), its latest validation report (hash checked against the ledger) and
the report's folder of figures; the ledger as it stood when the model's anchors were witnessed;
the requirements, safety classification, SOUP list and SBOM (IEC 62304 §5.1, §8.1.2; ISO 14971
risk controls); the test run; the git history. Nothing here is computed for the dossier — it
is read, checked and passed on (:class:`dossier.spec.DossierInputs`).

Determinism (the same workspace and commit give the same bytes):

* ``date`` is the validation report's date (``YYYY-MM-DD``), never the clock; the SBOM's
  timestamp is that date at 00:00 UTC.
* ``revision`` is the model version: a new revision of the file documents a new model version.
* The ledger is summarised *as of* the first signed checkpoint that covers every anchor of the
  model (its ``model``, ``validation``, ``release``, ``withdrawal`` and ``retrain-due`` entries and
  revocations naming its training job), so the dossier's own anchor and later checkpoints do not change it;
  ``history`` lists the model versions registered up to that point.
* ``commit`` is ``git rev-parse HEAD`` without a dirty suffix; ``dirty`` goes to the manifest.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from device.registry import ModelEntry, ModelRegistry, RegistryError
from device.revocation import RETRAIN_DUE, RevocationTerms, terms_of
from ledger.anchors import TrustAnchors, from_manifest
from ledger.canonical import sealed_sha256
from ledger.checkpoint import CheckpointError, open_checkpoint
from ledger.files import sha256_file
from ledger.log import Ledger
from ledger.signatures import Person, people_from
from ledger.verify import verify_ledger

from .clinical import load_clinical_evaluation
from .clinical_gaps import clinical_gaps
from .evidence import INTERNAL, ClinicalEvidence, gather_evidence, setting
from .spec import DossierError, DossierInputs, GitCommit, LedgerSummary

DEVICE = "fedprog"
SBOM_FILE = "sbom.cdx.json"
#: where ``make test`` writes its JUnit evidence, relative to the source checkout
DEFAULT_JUNIT = Path("build/test-results/junit.xml")
#: the ledger kind of a person's signed approval of a document's content (:mod:`dossier.approvals`)
DOCUMENT_APPROVAL = "document-approval"
#: ledger kinds that record a model's life (its anchors)
ANCHOR_KINDS = ("model", "validation", "external-validation", "release", "withdrawal", RETRAIN_DUE)
#: the fields of each anchor's body the dossier shows (aggregates and hashes only, no patient data)
_ANCHOR_FIELDS: dict[str, tuple[str, ...]] = {
    "model": ("job", "predecessor"), "validation": ("report_sha256", "passed"),
    "external-validation": ("report_sha256", "passed"),
    "release": ("reason", "approved_by"), "withdrawal": ("reason", "by"), "revocation": (),
    RETRAIN_DUE: ("policy", "deadline", "revocations", "min_revocations")}


def gather(workspace: Path, *, model: str | None = None, junit: Path | None = None,
           source: Path | None = None) -> DossierInputs:
    """Everything the documents may show, for model ``model`` (default: the newest released one).

    A missing optional input (no validation report, no test run, no git) is left empty for the
    builder to name when a document needs it; an inconsistent one (a report or artifact that does
    not match its hash, a ledger failing verification) raises :class:`DossierError`.
    """
    workspace = Path(workspace)
    if not (workspace / "ledger.sqlite").is_file():
        raise DossierError(f"{workspace} is not a fedprog workspace (no ledger.sqlite; run fedprog demo)")
    source = source if source is not None else checkout()
    people, demonstration, anchors = pinned(workspace)
    ledger = Ledger(workspace / "ledger.sqlite")
    try:
        registry = ModelRegistry(workspace / "models", ledger, people=people, demonstration=demonstration,
                                 anchors=anchors)
        entry, artifact = _model(registry, model)
        evidence = gather_evidence(registry, entry)
        validation, folder = _validation(registry, entry, workspace, evidence)
        summary = summarise_ledger(ledger, entry, anchors)
        history = [m for m in registry.list() if m.ledger_index < summary.size]
        revocation = _revocation(registry, entry)
        approvals = [(i, b) for i, _, b in ledger.entries(DOCUMENT_APPROVAL)]
        honoured = [e for e in ledger.entries("release") if not registry.release_problems(e[2])]
        released = release_verification(honoured, entry.sha256)
        change = honoured_release(honoured, entry.sha256).get("change_control")
    finally:
        ledger.close()
    date = str(validation["date"])[:10] if validation else "undated"
    sbom_json = _sbom(date)
    commit, dirty = git_state(source)
    manufacturer = _manufacturer(source, artifact)
    return DossierInputs(
        workspace=workspace, date=date, revision=entry.version, device=DEVICE,
        device_version=package_version(), commit=commit, model=entry, artifact=artifact, history=history,
        revocation=revocation,
        validation=validation, validation_dir=folder, ledger=summary, requirements=_requirements(),
        test_run=_test_run(junit, validation, folder, source), safety=_safety(), soup=_soup(),
        sbom=sbom_summary(sbom_json), git=git_log(source), source=source, dirty=dirty, sbom_json=sbom_json,
        manufacturer=manufacturer, clinical_evaluation=load_clinical_evaluation(source=source),
        evidence=evidence, approvals=approvals, people=people, release_verification=released, links=_links(),
        release_change_control=dict(change) if isinstance(change, dict) else None)


def pinned(workspace: Path) -> tuple[dict[str, Person], bool, TrustAnchors]:
    """What ``workspace.json`` pins outside the ledger: the people (``trust.people``, the approvals'
    trust anchor), whether it is a demonstration workspace (``fedprog demo``), and the log and witness
    keys every reading of the ledger is checked against (:mod:`ledger.anchors`)."""
    try:
        manifest = json.loads((workspace / "workspace.json").read_text(encoding="utf-8"))
        people = people_from((manifest.get("trust") or {}).get("people"))
        anchors = from_manifest(workspace, manifest)
    except (OSError, ValueError) as exc:
        raise DossierError(f"{workspace / 'workspace.json'}: {exc}") from None
    return people, manifest.get("purpose") == "demonstration", anchors


def release_verification(releases: list[tuple[int, str, dict[str, Any]]], sha256: str
                         ) -> dict[str, Any] | None:
    """The ``verification`` of the latest of ``releases`` (the ``release`` entries the registry
    honours: signed by a pinned approver) of the model ``sha256`` (None: none, or one recording no
    verification)."""
    found = honoured_release(releases, sha256).get("verification")
    return dict(found) if isinstance(found, dict) else None


def honoured_release(releases: list[tuple[int, str, dict[str, Any]]], sha256: str) -> dict[str, Any]:
    """The body of the latest of ``releases`` (entries the registry honours) of model ``sha256``
    ({}: none)."""
    mine = [b for _, _, b in releases if b.get("sha256") == sha256]
    return mine[-1] if mine else {}


# ---------------------------------------------------------------- the model
def _model(registry: ModelRegistry, ref: str | None) -> tuple[ModelEntry, dict[str, Any]]:
    try:
        entry = registry.get(ref) if ref is not None else registry.released()
        return entry, registry.artifact(entry.ref)
    except RegistryError as exc:
        raise DossierError(f"the dossier needs a model: {exc}") from None


def _revocation(registry: ModelRegistry, entry: ModelEntry) -> RevocationTerms | None:
    """The revocation policy of the model's study settings (None: none kept beside the model)."""
    try:
        return terms_of(registry.study_of(entry))
    except RegistryError:
        return None


def _validation(registry: ModelRegistry, entry: ModelEntry, workspace: Path, evidence: ClinicalEvidence
                ) -> tuple[dict[str, Any] | None, Path | None]:
    """The model's latest internal validation report (None if it has none) and its folder of figures:
    the release gate's report, or when that one is external, the latest internal one anchored."""
    if entry.validation is None:
        return None, None
    try:
        report = registry.report(entry)
    except RegistryError as exc:
        raise DossierError(str(exc)) from None
    digest = entry.validation["report_sha256"]
    if setting(report) != INTERNAL:
        if not evidence.internal:
            return None, None
        report, digest = evidence.internal[-1].report, evidence.internal[-1].sha256
    folder = report_folder(workspace, report, digest)
    if folder is None:
        raise DossierError(f"the folder of the validation report of {entry.ref} (report.json sealed "
                           f"{digest[:16]}… and its figures) is missing under {workspace / 'validation'}")
    for plot in report.get("plots", []):
        path = folder / plot["file"]
        if not path.is_file() or sha256_file(path) != plot["sha256"]:
            raise DossierError(f"figure {path} of the validation report of {entry.ref} is missing or "
                               "does not match the report's sha256")
    return report, folder


def report_folder(workspace: Path, report: dict[str, Any], digest: str) -> Path | None:
    """The folder ``<workspace>/validation/<sha16>-<n>/`` whose report.json seals to ``digest``:
    the one the report names, else any of the model's folders that matches."""
    named = [workspace / report["folder"]] if isinstance(report.get("folder"), str) else []
    prefix = str(report.get("model_sha256", ""))[:16]
    candidates = named + (sorted((workspace / "validation").glob(f"{prefix}-*")) if prefix else [])
    for folder in candidates:
        path = folder / "report.json"
        if path.is_file() and sealed_sha256(json.loads(path.read_text(encoding="utf-8"))) == digest:
            return folder
    return None


# ---------------------------------------------------------------- the ledger
def _anchors(entries: list[tuple[int, str, dict[str, Any]]], entry: ModelEntry) -> list[dict[str, Any]]:
    out = []
    for idx, kind, body in entries:
        mine = (kind in ANCHOR_KINDS and body.get("sha256") == entry.sha256) or \
               (kind == "revocation" and entry.job in body.get("affects_jobs", []))
        if mine:
            out.append({"index": idx, "kind": kind, **{f: _field(body, f) for f in _ANCHOR_FIELDS[kind]}})
    return out


def _field(body: dict[str, Any], name: str) -> Any:
    """A field of an anchor's body; ``approved_by``: the name in a release's signed approval (as
    recorded: whether it verifies is the registry's and the approval block's business)."""
    if name == "approved_by":
        approval = body.get("approval")
        statement = approval.get("statement") if isinstance(approval, dict) else None
        return statement.get("name") if isinstance(statement, dict) else None
    return body.get(name)


def summarise_ledger(ledger: Ledger, entry: ModelEntry, trust: TrustAnchors | None = None) -> LedgerSummary:
    """The ledger as of the first checkpoint covering the model's anchors (see the module doc).

    Without such a checkpoint, as of the model's last anchor. A ledger failing verification is
    refused: a dossier anchored in a rewritten history would prove nothing.
    """
    report = verify_ledger(ledger, trust)
    if not report.ok:
        raise DossierError(f"the ledger {ledger.path} fails verification: {report.problems[0]}")
    entries = ledger.entries()
    anchors = _anchors(entries, entry)
    last = max(a["index"] for a in anchors)
    checkpoints = ledger.checkpoints()
    covering = [size for size, _, _ in checkpoints if size > last]
    size = covering[0] if covering else last + 1
    signed = [(s, note) for s, _, note in checkpoints if s <= size]
    witnesses = ledger.witnesses()
    cosigners: list[str] = []
    if signed:
        try:
            cosigners = sorted(open_checkpoint(signed[-1][1], ledger.verifier, witnesses)[1])
        except CheckpointError as exc:
            raise DossierError(f"checkpoint {signed[-1][0]} of {ledger.path}: {exc}") from None
    kinds: dict[str, int] = {}
    for _, kind, _ in entries[:size]:
        kinds[kind] = kinds.get(kind, 0) + 1
    return LedgerSummary(size=size, root=ledger.root(size).hex(), origin=ledger.origin,
                         checkpoints=len(signed), latest_checkpoint_size=signed[-1][0] if signed else 0,
                         cosigners=cosigners, witnesses=sorted(witnesses), entries_by_kind=dict(sorted(
                             kinds.items())), anchors=anchors, verified=True)


# ---------------------------------------------------------------- traceability
def _requirements() -> Any:
    from traceability.load import RequirementsError, load_requirements

    try:
        return load_requirements()
    except RequirementsError as exc:
        raise DossierError(f"requirements: {exc}") from None


def _links() -> Any:
    """The reviewed test → requirement links (``traceability/links.yaml``) ``trace check`` uses."""
    from traceability.links import DEFAULT_LINKS, LinksError, load_links

    try:
        return load_links(DEFAULT_LINKS)
    except LinksError as exc:
        raise DossierError(f"reviewed test links: {exc}") from None


def _manufacturer(source: Path | None, artifact: dict[str, Any] | None) -> Any:
    """The manufacturer's file of the checkout, checked against the intended use the model enforces
    (DossierError when they disagree: the file and the device would say different things)."""
    from prognosis.schema import IntendedUse

    from .manufacturer import load_manufacturer

    mf = load_manufacturer(source=source)
    raw = (artifact or {}).get("intended_use")
    disagree = mf.disagreements(IntendedUse.model_validate(raw) if raw is not None else None)
    if raw is not None and disagree:
        raise DossierError(f"regulatory/manufacturer.yaml and the model disagree: {'; '.join(disagree)}")
    return mf


def open_decisions(inputs: DossierInputs) -> list[dict[str, str]]:
    """Decisions only the manufacturer can take that are still open (the manufacturer's file, the
    approval of the risk management report, the gaps of the clinical evaluation): while any is, the
    technical file is a draft."""
    out = [{"field": f"regulatory/manufacturer.yaml: {where}", "decision": what}
           for where, what in (inputs.manufacturer.missing_decisions() if inputs.manufacturer else [])]
    risk = getattr(inputs.safety, "risk_management", None)
    if risk is not None and risk.approval is None:
        out.append({"field": "traceability/safety.yaml: risk_management.approval",
                    "decision": f"the approval of the risk management report by the {risk.approver}"})
    gaps = clinical_gaps(inputs.clinical_evaluation, inputs.evidence, inputs.validation, inputs.artifact)
    return out + [{"field": where, "decision": what} for where, what in gaps]


def _safety() -> Any:
    from traceability.safety import SafetyError, load_safety

    try:
        return load_safety()
    except SafetyError as exc:
        raise DossierError(f"safety classification: {exc}") from None


def _soup() -> list[Any]:
    from traceability.soup import soup_items

    try:
        return list(soup_items())
    except ValueError as exc:
        raise DossierError(f"SOUP list: {exc}") from None


def _sbom(date: str) -> str:
    from traceability.sbom import build_sbom

    when = datetime.fromisoformat(date).replace(tzinfo=UTC) if date[:1].isdigit() else datetime(1970, 1, 1,
                                                                                              tzinfo=UTC)
    return build_sbom(when)


def sbom_summary(text: str) -> dict[str, Any]:
    """``{spec_version, components, sha256, file}`` of a CycloneDX JSON document."""
    data = json.loads(text)
    return {"spec_version": data.get("specVersion"), "components": len(data.get("components", [])),
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "file": SBOM_FILE}


def _read_junit(path: Path) -> Any:
    from traceability.results import ResultsError, read_junit

    try:
        return read_junit(path)
    except ResultsError as exc:
        raise DossierError(f"test run: {exc}") from None


def _test_run(junit: Path | None, report: dict[str, Any] | None, folder: Path | None,
              source: Path | None) -> Any:
    """``junit``, else the validation's own JUnit evidence (hash-checked), else ``make test``'s."""
    if junit is not None:
        return _read_junit(junit)
    evidence = (report or {}).get("verification") or {}
    if folder is not None and evidence.get("status") != "skipped" and evidence.get("junit"):
        path = folder / evidence["junit"]
        digest = sha256_file(path) if path.is_file() else None
        if digest != evidence.get("junit_sha256"):
            raise DossierError(f"{path}: the validation's JUnit evidence is missing or does not match "
                               "the report's junit_sha256")
        return _read_junit(path)
    if source is not None and (source / DEFAULT_JUNIT).is_file():
        return _read_junit(source / DEFAULT_JUNIT)
    return None


# ---------------------------------------------------------------- the software
def package_version() -> str:
    """The installed fedprog version (the device version every document states)."""
    try:
        return metadata.version(DEVICE)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def checkout() -> Path | None:
    """The source checkout above the installed packages (the folder with ``pyproject.toml``)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def _git(source: Path, *args: str) -> str | None:
    try:
        res = subprocess.run(["git", *args], cwd=source, capture_output=True, text=True, timeout=30,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


#: untracked files of these kinds make the checkout dirty (sources and controlled records); others —
#: a dossier or workspace folder inside the checkout — do not, so building there does not flip the flag
SOURCE_SUFFIXES = (".py", ".yaml", ".yml", ".toml", ".cfg", ".txt", ".md")


def git_state(source: Path | None) -> tuple[str, bool | None]:
    """(HEAD's commit, whether the tree differs from it: a tracked file changed, or an untracked
    source file); ``("unknown", None)`` outside a checkout."""
    head = _git(source, "rev-parse", "HEAD") if source is not None else None
    if not head or source is None:
        return "unknown", None
    status = _git(source, "status", "--porcelain", "--untracked-files=all")
    if status is None:
        return head.strip(), None
    changed = [line for line in status.splitlines()
               if not line.startswith("??") or line.rstrip().rstrip('"').endswith(SOURCE_SUFFIXES)]
    return head.strip(), bool(changed)


def git_log(source: Path | None, n: int = 200, paths: Sequence[str] = ()) -> list[GitCommit]:
    """The last ``n`` commits of the checkout (hash, committer date, subject), newest first; with
    ``paths`` (relative to the checkout), only the commits that changed one of them."""
    args = ["log", "--format=%H%x09%cI%x09%s", "-n", str(n), "HEAD", *(["--", *paths] if paths else [])]
    text = _git(source, *args) if source is not None else None
    out = []
    for line in (text or "").splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3:
            out.append(GitCommit(commit=parts[0], date=parts[1], subject=parts[2]))
    return out

"""Build the technical file: every document as a PDF, the SBOM, ``manifest.json``, its ledger anchor.

EU MDR Annex II asks for a technical file that is clear, organised and unambiguous; IEC 62304
§5.1 and ISO 14971 ask that its records be controlled. So the dossier is a set of PDFs whose
manifest lists each file's SHA-256 and page count, and the manifest's own SHA-256 is anchored in
the ledger (a ``dossier`` entry) — anyone holding the folder and the ledger can check that
nothing was changed, added or removed (:func:`verify`).

Nothing half-written: every document's needs are checked before anything is written, the set
is rendered into a temporary folder beside ``out`` and moved into place when complete. The same
inputs give byte-identical files, so rebuilding finds its anchor already in the ledger and does
not append a second one.

Document control (:mod:`dossier.approvals`): each document is rendered first without its approval
block and change history — the SHA-256 of that rendering, ``content_sha256``, is what its author,
reviewer and approver sign — then with them; the manifest is ``issued`` only when nothing blocks it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pkgutil
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ledger.anchors import TrustAnchors
from ledger.files import sha256_file
from ledger.log import Ledger
from ledger.verify import verify_ledger

from . import approvals
from . import documents as _documents_pkg
from .inputs import open_decisions
from .spec import _WHAT, DocumentSpec, DossierError, DossierInputs
from .style import Control, render

SCHEMA = "fedprog.dossier/v1"
MANIFEST = "manifest.json"
#: the order documents appear in the manifest, as EU MDR Annex II lays the file out: device description
#: and information supplied (§1–2), design and manufacturing (§3), GSPR (§4), benefit-risk and risk
#: management (§5), verification and validation (§6), then Annex III post-market surveillance;
#: documents not listed follow, by id
ORDER = ("FP-DD", "FP-IFU", "FP-SDP", "FP-SRS", "FP-ARCH", "FP-GSPR", "FP-RMP", "FP-RMF", "FP-RMR", "FP-UEF",
         "FP-CYB", "FP-VER", "FP-TM", "FP-TVAL", "FP-CVR", "FP-CEP", "FP-CER", "FP-MC", "FP-SOUP", "FP-REL",
         "FP-PCCP", "FP-PMS", "FP-PMCF")


def discover() -> list[DocumentSpec]:
    """The ``SPEC`` of every module in :mod:`dossier.documents`, in :data:`ORDER`, then by id."""
    specs = []
    for info in pkgutil.iter_modules(_documents_pkg.__path__):
        module = importlib.import_module(f"{_documents_pkg.__name__}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, DocumentSpec):
            specs.append(spec)
    rank = {doc_id: i for i, doc_id in enumerate(ORDER)}
    return sorted(specs, key=lambda s: (rank.get(s.id, len(ORDER)), s.id))


#: every document, discovered on first use (so :func:`verify` never imports the document modules)
DOCUMENTS: list[DocumentSpec]


def __getattr__(name: str) -> Any:  # PEP 562: ``DOCUMENTS`` is discovered lazily, once
    if name == "DOCUMENTS":
        globals()["DOCUMENTS"] = found = discover()
        return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def all_documents() -> list[DocumentSpec]:
    """:data:`DOCUMENTS` (discovered on first use)."""
    found: list[DocumentSpec] | None = globals().get("DOCUMENTS")
    return found if found is not None else list(__getattr__("DOCUMENTS"))


@dataclass(frozen=True)
class Manifest:
    """A built dossier: its folder, the manifest as written, its SHA-256 and its ledger anchor."""

    out: Path
    data: dict[str, Any]
    sha256: str
    #: index of the ``dossier`` ledger entry anchoring ``sha256`` (None when not anchored)
    ledger_index: int | None = None
    #: whether this build appended that entry (False: an identical dossier was anchored before)
    anchored_now: bool = False
    #: seconds each document took to build and render, by id (not in the manifest: not reproducible)
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def path(self) -> Path:
        return self.out / MANIFEST


def missing(inputs: DossierInputs, docs: Sequence[DocumentSpec]) -> dict[str, list[str]]:
    """Each missing input (as :data:`dossier.spec._WHAT` describes it) → the documents needing it."""
    out: dict[str, list[str]] = {}
    for doc in docs:
        for need in dict.fromkeys(("model", *doc.needs)):  # every document states the model it describes
            try:
                inputs.require((need,), doc.id)
            except DossierError:
                out.setdefault(_WHAT[need], []).append(doc.id)
    return out


def check(inputs: DossierInputs, docs: Sequence[DocumentSpec]) -> None:
    """Unique ids and file names, every document's needs: :class:`DossierError` naming every
    missing input and the documents that need it, in one line."""
    if not docs:
        raise DossierError("no dossier documents found (dossier/documents/*.py exposing SPEC)")
    ids = [d.id for d in docs]
    files = [d.file for d in docs]
    for name, values in (("id", ids), ("file", files)):
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise DossierError(f"two dossier documents share the {name} {dupes[0]!r}")
    for doc in docs:
        if not doc.file.endswith(".pdf") or Path(doc.file).name != doc.file or doc.file == MANIFEST:
            raise DossierError(f"{doc.id}: file {doc.file!r} must be a plain name ending in .pdf")
    gaps = missing(inputs, docs)
    if gaps:
        raise DossierError("missing input(s): " + "; ".join(f"{what}, needed by {', '.join(ids)}"
                                                            for what, ids in gaps.items()))
    if inputs.sbom is None or inputs.sbom_json is None:
        raise DossierError("the dossier needs the SBOM (traceability.sbom), which is missing")


def control(inputs: DossierInputs, doc: DocumentSpec) -> Control:
    """The document-control block of ``doc``."""
    model = inputs.model
    return Control(doc_id=doc.id, title=doc.title, revision=inputs.revision, date=inputs.date,
                   device=inputs.device, device_version=inputs.device_version,
                   model=model.ref if model is not None else "", model_sha256=model.sha256 if model else "",
                   commit=inputs.commit)


def manifest_bytes(data: dict[str, Any]) -> bytes:
    """The manifest's exact bytes (sorted keys, one-space indent, UTF-8, final newline)."""
    return (json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _manifest(inputs: DossierInputs, entries: list[dict[str, Any]], sbom_sha: str,
              not_issued: list[dict[str, Any]], blockers: list[str]) -> dict[str, Any]:
    model = inputs.model
    assert model is not None and inputs.sbom is not None  # checked by check()
    return {"schema": SCHEMA, "documents": entries,
            "status": "draft" if blockers else "issued", "issue_blockers": blockers, "not_issued": not_issued,
            "open_decisions": open_decisions(inputs),
            "model": {"ref": model.ref, "sha256": model.sha256, "status": model.status,
                      "validation_report_sha256": (model.validation or {}).get("report_sha256")},
            "date": inputs.date, "revision": inputs.revision,
            "device": {"name": inputs.device, "version": inputs.device_version},
            "generated_by": f"fedprog {inputs.device_version}", "commit": inputs.commit,
            "source_dirty": inputs.dirty,
            "sbom": {"file": inputs.sbom["file"], "sha256": sbom_sha,
                     "spec_version": inputs.sbom["spec_version"], "components": inputs.sbom["components"]}}


def _prepare(out: Path) -> None:
    """``out`` must be new, empty, or a previous dossier (which is replaced as a whole)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise DossierError(f"{out} exists and is not a dossier folder (no {MANIFEST}): choose a new or "
                           "empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)


def _install(tmp: Path, out: Path) -> None:
    """Move the finished folder into place (a previous dossier there is removed)."""
    if not out.exists():
        tmp.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _render_one(inputs: DossierInputs, doc: DocumentSpec, path: Path
                ) -> tuple[dict[str, Any], approvals.DocumentApprovals]:
    """Render ``doc`` without approvals or history to hash its content (what approvers sign), then
    the issued form: approval block under the control block, change history at the end."""
    ctl = control(inputs, doc)
    render(path, ctl, doc.build(inputs), toc=doc.toc)
    content = sha256_file(path)
    signed = approvals.for_document(inputs, doc.id, content)
    pages = render(path, ctl, doc.build(inputs), toc=doc.toc, front=approvals.block(signed),
                   back=approvals.history(inputs, doc, signed))
    return {"id": doc.id, "title": doc.title, "file": doc.file, "sha256": sha256_file(path), "pages": pages,
            "content_sha256": content, "approvals": signed.summary()}, signed


def _render_all(inputs: DossierInputs, docs: Sequence[DocumentSpec], tmp: Path,
                timings: dict[str, float], not_issued: list[dict[str, Any]]) -> dict[str, Any]:
    entries, signed = [], {}
    for doc in docs:
        started = time.perf_counter()
        entry, signed[doc.id] = _render_one(inputs, doc, tmp / doc.file)
        entries.append(entry)
        timings[doc.id] = round(time.perf_counter() - started, 3)
    assert inputs.sbom is not None and inputs.sbom_json is not None  # checked by check()
    sbom = tmp / inputs.sbom["file"]
    sbom.write_text(inputs.sbom_json, encoding="utf-8")
    blockers = approvals.issue_blockers(inputs, not_issued, open_decisions(inputs), signed)
    data = _manifest(inputs, entries, sha256_file(sbom), not_issued, blockers)
    (tmp / MANIFEST).write_bytes(manifest_bytes(data))
    return data


def _drafted(inputs: DossierInputs, docs: list[DocumentSpec]
             ) -> tuple[list[DocumentSpec], list[dict[str, Any]]]:
    """For a draft: the documents whose inputs exist, and the others with what each lacks
    (the documented model itself is never optional)."""
    inputs.require(("model",), "the dossier")
    gaps = missing(inputs, docs)
    lacking = {d.id: [what for what, ids in gaps.items() if d.id in ids] for d in docs}
    not_issued = [{"id": d.id, "title": d.title, "missing": lacking[d.id]} for d in docs if lacking[d.id]]
    return [d for d in docs if not lacking[d.id]], not_issued


def build(inputs: DossierInputs, out: Path, *, anchor: Ledger | None,
          documents: Sequence[DocumentSpec] | None = None, draft: bool = False) -> Manifest:
    """Write every document (default :data:`DOCUMENTS`), ``sbom.cdx.json`` and ``manifest.json``
    into ``out``; anchor the manifest's SHA-256 in ``anchor`` (once per identical manifest).

    A missing input stops the build naming it. Only with ``draft`` are the documents lacking an
    input left out instead — never rendered half-empty — and listed under ``not_issued`` with what
    each lacks. The manifest says ``"status": "issued"`` only when nothing blocks it, else
    ``"draft"`` with every reason under ``issue_blockers`` (:func:`dossier.approvals.issue_blockers`).
    The caller publishes a witnessed checkpoint after a new anchor (``anchored_now``).
    """
    docs = list(all_documents() if documents is None else documents)
    not_issued: list[dict[str, Any]] = []
    if draft:
        docs, not_issued = _drafted(inputs, docs)
    check(inputs, docs)
    out = Path(out)
    _prepare(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would keep the file from the regulatory staff sharing the folder
    timings: dict[str, float] = {}
    try:
        data = _render_all(inputs, docs, tmp, timings, not_issued)
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    built = Manifest(out, data, sha256_file(out / MANIFEST), timings=timings)
    if anchor is None:
        return built
    index, new = anchor_manifest(anchor, built.sha256, data)
    return replace(built, ledger_index=index, anchored_now=new)


def anchor_manifest(ledger: Ledger, digest: str, data: dict[str, Any]) -> tuple[int, bool]:
    """(index of the ``dossier`` entry for ``digest``, whether it was appended now)."""
    found = anchored(ledger, digest)
    if found is not None:
        return found, False
    body = {"manifest_sha256": digest, "model": data["model"]["ref"], "model_sha256": data["model"]["sha256"],
            "commit": data["commit"], "documents": len(data["documents"])}
    return ledger.append("dossier", body).index, True


def anchored(ledger: Ledger, digest: str) -> int | None:
    """Index of the first ``dossier`` entry anchoring manifest ``digest``, or None."""
    return next((i for i, _, b in ledger.entries("dossier") if b.get("manifest_sha256") == digest), None)


def _pdf_pages(path: Path) -> int | None:
    """Pages of a PDF by pypdf; without pypdf (a dev dependency), the page objects are counted."""
    try:
        from pypdf import PdfReader
    except ImportError:  # reportlab writes uncompressed page dictionaries
        return len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", path.read_bytes())) or None
    try:
        return len(PdfReader(path).pages)
    except Exception:  # a damaged file can fail anywhere in the parser: it is reported, not raised
        return None


def _check_file(out: Path, listed: dict[str, Any], pdf: bool) -> list[str]:
    name = str(listed.get("file"))
    path = out / name
    if not path.is_file():
        return [f"{name}: missing (listed in the manifest)"]
    problems = []
    actual = sha256_file(path)
    if actual != listed.get("sha256"):
        problems.append(f"{name}: sha256 {actual[:16]}… differs from the manifest's "
                        f"{str(listed.get('sha256'))[:16]}…")
    if pdf:
        pages = _pdf_pages(path)
        if pages is None:
            problems.append(f"{name}: not a readable PDF")
        elif pages != listed.get("pages"):
            problems.append(f"{name}: {pages} pages, the manifest says {listed.get('pages')}")
    return problems


def _check_anchor(ledger: Ledger, digest: str, anchors: TrustAnchors | None) -> list[str]:
    report = verify_ledger(ledger, anchors)
    problems = [f"ledger: {p}" for p in report.problems]
    index = anchored(ledger, digest)
    if index is None:
        return [*problems, f"{MANIFEST}: its sha256 {digest[:16]}… is not anchored in the ledger "
                           "(no dossier entry names it)"]
    latest = ledger.latest_checkpoint()
    if latest is None or latest[0] <= index:
        problems.append(f"{MANIFEST}: anchored at ledger entry {index}, but no signed checkpoint covers "
                        "it yet")
    return problems


def verify(out: Path, ledger: Ledger, anchors: TrustAnchors | None = None) -> list[str]:
    """Problems of the dossier in ``out``: a listed file missing or changed (sha256, page count),
    a file not in the manifest, the manifest not anchored in ``ledger`` (checked against the pinned
    ``anchors``: :mod:`ledger.anchors`); [] when intact."""
    out = Path(out)
    try:
        raw = (out / MANIFEST).read_bytes()
        data = json.loads(raw)
        docs = list(data["documents"])
        sbom = dict(data["sbom"])
    except FileNotFoundError:
        return [f"{MANIFEST}: missing in {out}"]
    except (ValueError, KeyError, TypeError) as exc:
        return [f"{MANIFEST}: not a dossier manifest ({exc})"]
    problems: list[str] = []
    for listed in docs:
        problems += _check_file(out, listed, pdf=True)
    problems += _check_file(out, sbom, pdf=False)
    known = {MANIFEST, str(sbom.get("file")), *(str(d.get("file")) for d in docs)}
    present = [p.relative_to(out).as_posix() for p in sorted(out.rglob("*")) if p.is_file()]
    problems += [f"{name}: not listed in the manifest" for name in present if name not in known]
    return problems + _check_anchor(ledger, hashlib.sha256(raw).hexdigest(), anchors)

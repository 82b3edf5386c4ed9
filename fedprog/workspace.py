"""A deployment's folder, wired together: ledger, keys, sites' consent registries and
witnesses, the model registry (DESIGN.md, "The workspace").

```
<workspace>/workspace.json          study id, ledger origin, sites and their data files, and the
                                    trust anchors: the pinned log key and site witness keys ("trust")
<workspace>/ledger.sqlite           the shared append-only log
<workspace>/keys/log.key            the log's checkpoint key (Ed25519 seed, 0600)
<workspace>/sites/<name>/           data.csv, consent.sqlite (with the per-event salts), witness.key,
                                    witness.json, identity.key (Ed25519),
                                    approved/<sha256>.json (approved studies),
                                    budget.json (rounds and evaluations spent per approved study)
<workspace>/models/<sha256>.json    model artifacts (and <sha256>.study.json: how to retrain)
<workspace>/validation/             validation runs <model sha256[:16]>-<n>/ (report.json, figures,
                                    junit.xml) and the reports the registry keeps by their SHA-256
```
In one folder for the demo and tests; in a real deployment each site folder lives at its
hospital and only the ledger is shared.

Trust anchors live outside ``ledger.sqlite``: the adversary is someone with write access to
that file (an insider, or malware on the coordinator host) who is not the witnesses. So every
reader of the log (:meth:`Workspace.anchors`, :mod:`ledger.trusted`) takes the log's key and the
witnesses' keys from the ``trust`` block of ``workspace.json`` — pinned when the workspace is
created, or on first use from the key files of an older workspace, never from the ledger's own
``meta`` — and each site's last cosigned (size, root) from its ``witness.json``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from consent.registry import ConsentRegistry
from device.registry import ModelRegistry
from federated.disclosure.rules import SiteFloors, SiteIdentity, StudyProtocol, protocol_of
from federated.protocol.messages import ConsentGate
from federated.site.handler import Site
from federated.site.tables import TableFormat
from federated.study import StudySpec, first_error
from ledger.anchors import TrustAnchors, from_manifest
from ledger.checkpoint import (
    CosignatureSigner,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    format_note,
    parse_note,
)
from ledger.files import secret_file, write_json_atomic
from ledger.log import Ledger
from ledger.signatures import Person, Role, new_key, people_from, write_private_key
from ledger.trusted import AuditingWitness, read_verified
from ledger.witness import QuorumPolicy

MANIFEST = "workspace.json"
#: the manufacturer's predetermined change control plan (FP-PCCP), in the source checkout
CHANGE_CONTROL_PLAN = Path(__file__).resolve().parents[1] / "regulatory" / "change_control_plan.yaml"


class Witnesses(Protocol):
    """How the coordinator reaches the sites' witnesses: in this process (:class:`LocalWitnesses`)
    or as messages to each site (a Flower deployment, :mod:`fedprog.flower_app`)."""

    def last_size(self, site: str) -> int:
        """Size of the last checkpoint the site's witness cosigned (0 if none)."""
        ...

    def cosign(self, site: str, note: str, proof: Sequence[bytes]) -> NoteSignature:
        """The site's witness cosignature of ``note`` (``proof``: consistency from its last size)."""
        ...


class WorkspaceError(ValueError):
    """The folder is not a fedprog workspace, or names an unknown site."""


class Workspace:
    """Everything under one workspace folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._ledger: Ledger | None = None

    # ---------------------------------------------------------------- set-up
    @classmethod
    def create(cls, root: Path, study: str, sites: dict[str, Path],
               patient_column: str = "patient_id") -> Workspace:
        """Lay out a new workspace (or extend one for the same study) and register witnesses."""
        ws = cls.init(root, study, exist_ok=True)
        for name, data in sites.items():
            ws.add_site(name, data, patient_column=patient_column)
        return ws

    @classmethod
    def init(cls, root: Path, study: str, *, study_file: str | None = None, exist_ok: bool = False
             ) -> Workspace:
        """A new workspace for ``study`` (its consent scope, a URI): the ledger's origin, its log key
        pinned in the ``trust`` block, and optionally the study settings kept as ``study_file``
        (relative to the workspace). ``exist_ok``: an existing workspace of the same study is reused."""
        ws = cls(root)
        ws.root.mkdir(parents=True, exist_ok=True)
        if (ws.root / MANIFEST).exists():
            held = ws.manifest["study"]
            if held != study:
                raise WorkspaceError(f"{ws.root} holds study {held!r}, not {study!r}")
            if not exist_ok:
                raise WorkspaceError(f"{ws.root} is already a fedprog workspace (study {study!r})")
            return ws
        manifest: dict[str, Any] = {"study": study, "origin": f"fedprog.local/{secrets.token_hex(4)}",
                                    "sites": {}}
        if study_file is not None:
            manifest["study_file"] = study_file
        write_json_atomic(ws.root / MANIFEST, manifest)
        ws.trust()  # pin the log key before anything is signed
        return ws

    def add_site(self, name: str, data: Path, *, patient_column: str = "patient_id",
                 table_format: dict[str, Any] | None = None, basis: dict[str, Any] | None = None,
                 external: bool = False) -> None:
        """Add (or update) a site: its table, how the table is written (``table_format``: the fields
        of :class:`federated.site.tables.TableFormat`), how its patients' data may be used (``basis``),
        and its witness, pinned in the ``trust`` block and registered in the ledger.

        An ``external`` site is a hospital that does not train: it never appears in :attr:`sites`
        (training, the study's peers) and only evaluates released models on its own data
        (:attr:`external_sites`; external validation and recalibration), but it witnesses the ledger."""
        import re

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise WorkspaceError(f"site name {name!r}: letters, digits, '.', '_' and '-' only, "
                                 "starting with a letter or digit")
        manifest = self.manifest
        entry: dict[str, Any] = {"data": str(data), "patient_column": patient_column}
        if table_format:
            entry["format"] = table_format
        if basis is not None:
            entry["basis"] = basis
        if external:
            entry["role"] = "external"
        manifest["sites"][name] = entry
        write_json_atomic(self.root / MANIFEST, manifest)
        self._witness_signer(name)  # the new site's witness key (created on first use)
        self.trust()  # pin its witness key before it cosigns anything
        witness = self.witness(name)
        self.ledger.add_witness(witness.name, witness.verifier.verifier_key())

    @property
    def study_file(self) -> Path | None:
        """The study settings kept in the workspace by ``fedprog init`` (None if none)."""
        name = self.manifest.get("study_file")
        return None if name is None else self.root / str(name)

    def study_settings(self) -> StudySpec:
        """The workspace's study (``fedprog init --study``), its sites taken from the workspace."""
        from federated.study import load_study

        path = self.study_file
        if path is None:
            raise WorkspaceError(f"{self.root} keeps no study file (fedprog init --study study.toml, "
                                 "or give --study)")
        return self.study_spec(load_study(path))

    @property
    def manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        if not path.is_file():
            raise WorkspaceError(f"{self.root} is not a fedprog workspace (no {MANIFEST}): run fedprog init "
                                 "--study study.toml, or fedprog demo")
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    @property
    def study(self) -> str:
        return str(self.manifest["study"])

    @property
    def sites(self) -> list[str]:
        """The training sites (the study's peers)."""
        return sorted(n for n, e in self.manifest["sites"].items() if e.get("role") != "external")

    @property
    def external_sites(self) -> list[str]:
        """The hospitals that only validate (``fedprog site add --external``)."""
        return sorted(n for n, e in self.manifest["sites"].items() if e.get("role") == "external")

    def _site(self, name: str) -> dict[str, Any]:
        sites = self.manifest["sites"]
        if name not in sites:
            raise WorkspaceError(f"unknown site {name!r} (sites: {', '.join(sorted(sites))})")
        return dict(sites[name])

    # ----------------------------------------------------------------- parts
    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            origin = self.manifest["origin"]
            signer = NoteSigner.from_seed(origin, secret_file(self.root / "keys" / "log.key"))
            self._ledger = Ledger(self.root / "ledger.sqlite", signer=signer, origin=origin)
        return self._ledger

    def registry(self, site: str) -> ConsentRegistry:
        self._site(site)
        return ConsentRegistry(self.root / "sites" / site, site, self.study, self.ledger,
                               anchors=self.anchors())

    def _witness_signer(self, site: str) -> CosignatureSigner:
        name = f"{site}.witness.fedprog"
        return CosignatureSigner.from_seed(name, secret_file(self.root / "sites" / site / "witness.key"))

    def witness(self, site: str) -> AuditingWitness:
        """The site's witness: it trusts the log key pinned in ``workspace.json`` (not the one the
        ledger records) and recomputes the root from the entries before it cosigns."""
        signer = self._witness_signer(site)
        return AuditingWitness(signer.name, signer, NoteVerifier.from_vkey(self.trust()["log"]),
                               self.root / "sites" / site / "witness.json", self.ledger)

    def mark_demonstration(self) -> None:
        """Mark this workspace as a demonstration (``fedprog demo``); never undone."""
        manifest = self.manifest
        if manifest.get("purpose") != "demonstration":
            write_json_atomic(self.root / MANIFEST, {**manifest, "purpose": "demonstration"})

    @property
    def demonstration(self) -> bool:
        """Whether ``fedprog demo`` made this workspace (``"purpose": "demonstration"``): its releases may
        waive the software verification, and say so in the ledger; a clinical workspace's never can."""
        return self.manifest.get("purpose") == "demonstration"

    @property
    def models(self) -> ModelRegistry:
        return ModelRegistry(self.root / "models", self.ledger, anchors=self.anchors(), people=self.people(),
                             demonstration=self.demonstration, plan=CHANGE_CONTROL_PLAN)

    def trust(self) -> dict[str, Any]:
        """The ``trust`` block of ``workspace.json``: ``log`` (the log's vkey), ``witnesses`` (site →
        cosignature vkey) and ``quorum`` (None: a strict majority).

        A key missing from it is pinned now from the key file it derives from, if that file
        exists (trust on first use, for a workspace created before pinning; the ledger file is
        never consulted). A pinned key is never replaced: a key file that no longer matches is
        caught by the readers. A site whose witness key is not here (it lives at its hospital)
        must be pinned in ``workspace.json`` by the operator.
        """
        manifest = self.manifest
        trust = dict(manifest.get("trust") or {})
        witnesses = dict(trust.get("witnesses") or {})
        missing = [site for site in manifest["sites"] if site not in witnesses
                   and (self.root / "sites" / site / "witness.key").is_file()]
        changed = "log" not in trust or bool(missing)
        if "log" not in trust:
            seed = secret_file(self.root / "keys" / "log.key")
            trust["log"] = NoteSigner.from_seed(manifest["origin"], seed).verifier_key()
        for site in missing:
            witnesses[site] = self._witness_signer(site).verifier_key()
        trust["witnesses"] = witnesses
        trust.setdefault("quorum", None)
        if changed:
            write_json_atomic(self.root / MANIFEST, {**manifest, "trust": trust})
        return trust

    def people(self) -> dict[str, Person]:
        """The people pinned in the ``trust.people`` block of ``workspace.json`` (name → roles and
        public key): the only keys an approval of a document or a release is checked against
        (:mod:`ledger.signatures`)."""
        return people_from(self.trust().get("people"))

    def add_person(self, name: str, roles: Sequence[Role], key_out: Path) -> Person:
        """Pin a new person: a fresh Ed25519 key pair whose private half is written to ``key_out``
        (0600, never overwritten; it belongs to that person, not to the workspace) and whose public
        half is pinned under ``name`` with ``roles``. A pinned name is never re-keyed."""
        if not roles:
            raise WorkspaceError("a person needs at least one role (author, reviewer, approver)")
        if name in self.people():
            raise WorkspaceError(f"{name!r} is already pinned: a person's key is never replaced")
        pem, person = new_key(name, list(roles))
        write_private_key(Path(key_out), pem)
        manifest = self.manifest
        trust = dict(manifest.get("trust") or {})
        trust["people"] = {**dict(trust.get("people") or {}),
                           name: person.model_dump(exclude={"name"}, mode="json")}
        write_json_atomic(self.root / MANIFEST, {**manifest, "trust": trust})
        return person

    def anchors(self) -> TrustAnchors:
        """What readers of the ledger trust instead of the file (:mod:`ledger.anchors`)."""
        self.trust()  # pin what is missing first (trust on first use), then read it back
        return from_manifest(self.root, self.manifest, MANIFEST)

    def quorum(self) -> QuorumPolicy:
        """A quorum (default a strict majority) of the site witnesses pinned in ``workspace.json``."""
        return self.anchors().quorum()

    def site_objects(self, transcript_dir: Path | None = None) -> list[Site]:
        """In-process training sites over the workspace's data (:meth:`site_object`)."""
        return [self.site_object(name, transcript_dir) for name in self.sites]

    def floors(self, site: str) -> SiteFloors | None:
        """The site operator's own floors (``sites/<site>/floors.json``, a
        :class:`~federated.disclosure.rules.SiteFloors` JSON object as ``fedprog deploy --floors`` takes),
        or ``None`` for the built-in ones; a file that breaks the contract is refused in one line."""
        path = self.root / "sites" / site / "floors.json"
        if not path.is_file():
            return None
        try:
            return SiteFloors.model_validate_json(path.read_text(encoding="utf-8"))
        except (ValidationError, UnicodeDecodeError) as exc:
            why = first_error(exc) if isinstance(exc, ValidationError) else str(exc)
            raise WorkspaceError(f"{path}: {why}") from None

    def site_object(self, name: str, transcript_dir: Path | None = None) -> Site:
        """One in-process site (training or external) over its table, with its own identity key, the
        studies its operator approved, its consent registry, its witness's freshest checkpoint and its
        operator's own floors (:meth:`floors`)."""
        info = self._site(name)
        return Site(name, Path(info["data"]), transcript_dir=transcript_dir, floors=self.floors(name),
                    table_format=self.table_format(name),
                    consent=self.registry(name), patient_column=info["patient_column"],
                    identity=self.identity(name), approved=self.approvals(name),
                    witnessed=lambda: self.witnessed(name),
                    budget=self.root / "sites" / name / "budget.json",
                    privacy=self.root / "sites" / name / "privacy.json")

    def table_format(self, site: str) -> TableFormat:
        """How the site's table is written (delimiter, decimal mark, encoding; detected if unset)."""
        return TableFormat.model_validate(self._site(site).get("format") or {})

    # -------------------------------------------------------------- approvals
    def identity(self, site: str) -> SiteIdentity:
        """The site's long-term Ed25519 identity key (created on first use, 0600)."""
        self._site(site)
        return SiteIdentity.from_file(self.root / "sites" / site / "identity.key")

    def protocol(self, study: StudySpec, sites: Sequence[str] | None = None) -> StudyProtocol:
        """The approvable form of ``study`` over this workspace's training sites (or ``sites``, e.g.
        one external site for its validation) and their identity keys."""
        return protocol_of(study, {name: self.identity(name).public
                                   for name in (self.sites if sites is None else sites)})

    def approve(self, site: str, protocol: StudyProtocol) -> Path:
        """The site's operator approves ``protocol``: kept as ``approved/<sha256>.json``."""
        if site not in protocol.peers:
            raise WorkspaceError(f"the study does not list site {site!r} among its peers")
        if protocol.peers[site] != self.identity(site).public:
            raise WorkspaceError(f"the study lists another identity key for site {site!r}")
        path = self.root / "sites" / site / "approved" / f"{protocol.sha256}.json"
        write_json_atomic(path, protocol.model_dump(mode="json"))
        return path

    def unapproved(self, study: StudySpec) -> list[str]:
        """The sites whose operator has not approved ``study`` as this workspace's sites would run it."""
        protocol = self.protocol(self.study_spec(study))
        return [site for site in self.sites if not self.has_approved(site, protocol)]

    def has_approved(self, site: str, protocol: StudyProtocol) -> bool:
        """Whether the operator of ``site`` approved exactly ``protocol`` (by its SHA-256)."""
        return protocol.sha256 in {p.sha256 for p in self.approvals(site)}

    def approvals(self, site: str) -> list[StudyProtocol]:
        folder = self.root / "sites" / site / "approved"
        return [StudyProtocol.model_validate_json(p.read_text(encoding="utf-8"))
                for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []

    def witnessed(self, site: str) -> int:
        """Size of the newest checkpoint the site's own witness cosigned that carries a quorum of
        cosignatures in the ledger (-1 if none): the only consent state the site accepts.
        :class:`ledger.trusted.UntrustedLedger` when the ledger fails its check against the anchors."""
        read_verified(self.ledger, self.anchors())
        size = self.witness(site).state.size
        notes = {s: note for s, _, note in self.ledger.checkpoints()}
        note = notes.get(size)
        return size if note is not None and self.quorum().counts(note) else -1

    def study_spec(self, study: StudySpec) -> StudySpec:
        """``study`` with its sites taken from the workspace."""
        from federated.study import SiteSource

        return study.model_copy(update={"sites": [SiteSource(name=n, path=Path(self._site(n)["data"]),
                                                             format=self.table_format(n))
                                                  for n in self.sites]})

    # ------------------------------------------------------------ checkpoints
    def publish_checkpoint(self, witnesses: Witnesses | None = None) -> tuple[str, list[str]]:
        """Sign a checkpoint of the current log and have every site's witness cosign it.

        ``witnesses`` reaches them (default: the witness keys in this workspace's site folders).
        Returns the cosigned note and the names of the witnesses that cosigned.
        """
        reach = witnesses if witnesses is not None else LocalWitnesses(self)
        ledger = self.ledger
        text, signatures = parse_note(ledger.checkpoint())
        signed = [s for s in signatures if s.name == ledger.verifier.name]
        note = format_note(text, signed)
        size = ledger.size
        cosignatures = []
        for site in sorted(self.manifest["sites"]):  # external sites witness too
            last = reach.last_size(site)
            proof = ledger.consistency_proof(last, size) if 0 < last < size else []
            cosignatures.append(reach.cosign(site, note, proof))
        cosigned = format_note(text, signed + cosignatures)
        ledger.add_cosignatures(size, cosigned)
        return cosigned, [s.name for s in cosignatures]

    def consent_gate(self, job: str, witnesses: Witnesses | None = None) -> ConsentGate:
        """A witnessed checkpoint of now, for a training job to filter consent against."""
        self.publish_checkpoint(witnesses)
        size = self.ledger.size
        return ConsentGate(size=size, root=self.ledger.root(size).hex(), job=job)


class LocalWitnesses:
    """The sites' witnesses from their keys in the workspace (the embedded default)."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws

    def last_size(self, site: str) -> int:
        return self._ws.witness(site).state.size

    def cosign(self, site: str, note: str, proof: Sequence[bytes]) -> NoteSignature:
        return self._ws.witness(site).cosign(note, proof)

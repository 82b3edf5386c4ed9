"""The Flower App of a fedprog deployment: a ServerApp at the coordinating centre, a ClientApp
at each hospital's SuperNode (Flower's Message API; referenced by the app's ``pyproject.toml``,
which ``fedprog deploy app`` writes).

Only the transport differs from an in-process run: the ServerApp runs the same coordinator
code (:mod:`federated.analyses.runner`, :mod:`validation.run`, :mod:`fedprog.workspace`) over a
:class:`~federated.protocol.flower_transport.FlowerTransport`, and the ClientApp answers with the same
:class:`~federated.site.handler.Site` (:mod:`federated.site.flower`). Settings come from Flower's
configs, checked here with pydantic:

* each SuperNode's **node config** names its site and the rules it holds: ``site``,
  ``data-path``, optionally ``patient-column``, ``workspace`` (the hospital's fedprog workspace:
  its consent registry ``sites/<site>/consent.sqlite``, its witness key
  ``sites/<site>/witness.key``, its identity key, its approved studies and the ledger),
  ``identity-key`` (the site's 32-byte Ed25519 seed file; default
  ``<workspace>/sites/<site>/identity.key``), ``approved`` (one approved-study JSON file,
  :class:`~federated.disclosure.rules.StudyProtocol`, or a folder of them; default the workspace's
  ``sites/<site>/approved/``), ``floors`` (a JSON file of the operator's own
  :class:`~federated.disclosure.rules.SiteFloors`; default the built-in floors) and ``transcript-dir``.
  A node with no approved study refuses every request (``not-approved``);
* the **run config** holds the study: ``study`` (study file at the coordinator), ``protocol``
  (the approved study's JSON, as the sites approved it; default, with a ``workspace``, the
  workspace's protocol of the study), ``out`` (folder for the results), ``jobs`` (``cox``,
  ``km``, ``validate``, comma-separated), ``sites``, ``connect-timeout``, ``round-timeout``,
  ``workspace``, ``model``, ``n-boot``.

The ServerApp writes ``<out>/result.json`` — ``status`` ``ok`` or ``failed`` with the error —
because ``flwr run`` itself reports success even when a ServerApp failed.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from federated.disclosure.rules import SiteFloors, SiteIdentity, StudyProtocol
from federated.exceptions import FederatedError
from federated.protocol.flower_transport import FlowerTransport, discover, fields, hello_reply, record
from federated.site import flower as flower_site
from federated.site.handler import Site
from federated.study import StudySpec, first_error, load_study
from ledger.checkpoint import NoteSignature, parse_body, parse_note
from ledger.files import write_json_atomic

COSIGN_TYPE = "query.fedprog_cosign"
Job = Literal["cox", "km", "validate"]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _csv(value: object) -> object:
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


class _FlowerConfig(BaseModel):
    """Settings read from a Flower config (kebab-case keys); errors are one line naming it."""

    model_config = ConfigDict(extra="forbid", alias_generator=_kebab, frozen=True)
    WHAT: ClassVar[str] = "config"

    @classmethod
    def _raw(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Self:
        try:
            return cls.model_validate(cls._raw(config))
        except ValidationError as exc:
            raise ValueError(f"{cls.WHAT}: {first_error(exc)}") from None


class NodeSettings(_FlowerConfig):
    """A SuperNode's ``--node-config``: which site it serves, where that site's files are, and the
    rules its operator set (identity key, approved studies, floors)."""

    WHAT = "node config"

    site: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data_path: Path
    patient_column: str = "patient_id"
    workspace: Path | None = None
    identity_key: Path | None = None
    approved: Path | None = None
    floors: Path | None = None
    budget: Path | None = None
    transcript_dir: Path | None = None

    def identity(self) -> SiteIdentity | None:
        """The site's Ed25519 identity key (``None``: neither ``identity-key`` nor a workspace)."""
        if self.identity_key is not None:
            return _read(self, "identity-key", self.identity_key, SiteIdentity.from_file)
        if self.workspace is not None:
            from .workspace import Workspace

            return Workspace(self.workspace).identity(self.site)
        return None

    def approvals(self) -> list[StudyProtocol]:
        """The studies the site's operator approved (none: the site refuses every request)."""
        if self.approved is None:
            if self.workspace is None:
                return []
            from .workspace import Workspace

            return Workspace(self.workspace).approvals(self.site)
        where = self.approved
        files = sorted(where.glob("*.json")) if where.is_dir() else [where]
        return [_read(self, "approved", f, lambda p: StudyProtocol.model_validate_json(p.read_bytes()))
                for f in files]

    def site_floors(self) -> SiteFloors | None:
        if self.floors is None:
            return None
        return _read(self, "floors", self.floors, lambda p: SiteFloors.model_validate_json(p.read_bytes()))

    def check(self) -> None:
        """Refuse (``ValueError``, one line) a node whose rules cannot work: a file that cannot be
        read, or an approved study that pins another identity key for this site than its own."""
        identity = self.identity()
        mine = identity.public if identity is not None else None
        for protocol in self.approvals():
            pinned = protocol.peers.get(self.site)
            if pinned is not None and pinned != mine:
                why = "another identity key" if mine else "an identity key, and the node has none " \
                      "(set identity-key or workspace)"
                raise ValueError(f"{self.WHAT}: approved study {protocol.study_id!r} "
                                 f"({protocol.sha256[:12]}) pins {why} for site {self.site!r}")
        self.site_floors()

    def budget_file(self) -> Path:
        """Where the site records the rounds and evaluations it spent per study: ``budget``, else in
        the workspace's site folder, else beside the data file (a ClientApp lives for one message,
        so a budget in memory would be no budget)."""
        if self.budget is not None:
            return self.budget
        if self.workspace is not None:
            return self.workspace / "sites" / self.site / "budget.json"
        return self.data_path.with_name(f"{self.data_path.stem}.fedprog-budget.json")

    def privacy_file(self) -> Path:
        """The site's differential-privacy accountant over all studies, beside its budget file
        (``<workspace>/sites/<site>/privacy.json`` in a workspace)."""
        budget = self.budget_file()
        name = budget.name.replace("budget", "privacy") if "budget" in budget.name \
            else f"{budget.stem}.privacy.json"
        return budget.with_name(name)

    def site_factory(self) -> flower_site.SiteFactory:
        identity, approved, floors = self.identity(), self.approvals(), self.site_floors()
        budget, privacy = self.budget_file(), self.privacy_file()

        def make(keygen: flower_site.KeyGen, append_transcript: bool, transcript: bool = True) -> Site:
            consent, witnessed = None, None
            if self.workspace is not None:  # its consent, as of its own witness's freshest checkpoint
                from .workspace import Workspace

                ws = Workspace(self.workspace)
                consent, witnessed = ws.registry(self.site), partial(ws.witnessed, self.site)
            return Site(self.site, self.data_path, transcript_dir=self.transcript_dir if transcript else None,
                        consent=consent, patient_column=self.patient_column, keygen=keygen,
                        append_transcript=append_transcript, identity=identity, approved=approved,
                        floors=floors, witnessed=witnessed, budget=budget, privacy=privacy)
        return make


T = TypeVar("T")


def _read(settings: _FlowerConfig, key: str, path: Path, load: Callable[[Path], T]) -> T:
    """``load(path)``, its failure as one line naming the config key and the file."""
    try:
        return load(path)
    except ValidationError as exc:
        raise ValueError(f"{settings.WHAT}: {key} {path}: {first_error(exc)}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{settings.WHAT}: {key} {path}: {exc}".splitlines()[0]) from None


class RunSettings(_FlowerConfig):
    """A run's ``--run-config`` (the ServerApp's settings); ``""`` means not set."""

    WHAT = "run config"

    study: Path
    protocol: Path | None = None
    out: Path
    jobs: list[Job] = Field(default=["cox"], min_length=1)
    sites: list[str] = Field(default_factory=list)
    connect_timeout: float = Field(default=120.0, gt=0)
    round_timeout: float | None = Field(default=None, gt=0)
    workspace: Path | None = None
    model: str | None = None
    n_boot: int = Field(default=200, ge=0)

    _split = field_validator("jobs", "sites", mode="before")(_csv)

    @classmethod
    def _raw(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if v != ""}


# ---------------------------------------------------------------------------- ClientApp
client = ClientApp()


@client.query("fedprog")
def _answer(message: Message, context: Context) -> Message:
    node = NodeSettings.of(context.node_config)
    return flower_site.answer(message, context, node.site_factory(), node.data_path)


@client.query("fedprog_site")
def _hello(message: Message, context: Context) -> Message:
    try:
        node = NodeSettings.of(context.node_config)
        node.check()
    except ValueError as exc:
        return Message(record({"error": str(exc)}), reply_to=message)
    size = _witness(node).state.size if node.workspace else 0
    return Message(hello_reply(node.site, {"witness-size": size}), reply_to=message)


@client.query("fedprog_cosign")
def _cosign(message: Message, context: Context) -> Message:
    node = NodeSettings.of(context.node_config)
    asked = fields(message.content)
    out: dict[str, Any]
    try:
        if node.workspace is None:
            raise ValueError("this node has no workspace, so no witness key")
        signature = _witness(node).cosign(str(asked["note"]), list(asked["proof"]))
        out = {"cosignature": signature.line()}
    except Exception as exc:  # noqa: BLE001 — a refusal (fork, bad note) goes back as a message
        out = {"error": f"{type(exc).__name__}: {exc}"}
    return Message(record(out), reply_to=message)


def _witness(node: NodeSettings) -> Any:
    from .workspace import Workspace

    assert node.workspace is not None
    return Workspace(node.workspace).witness(node.site)


# ---------------------------------------------------------------------------- ServerApp
class RemoteWitnesses:
    """The sites' witnesses reached as messages to their SuperNodes (:class:`fedprog.workspace.Witnesses`)."""

    def __init__(self, grid: Grid, nodes: Mapping[str, int], sizes: Mapping[str, int],
                 timeout: float) -> None:
        self._transport = FlowerTransport(grid, nodes)
        self._sizes = dict(sizes)
        self._timeout = timeout

    def last_size(self, site: str) -> int:
        return self._sizes[site]

    def cosign(self, site: str, note: str, proof: Sequence[bytes]) -> NoteSignature:
        asked = record({"note": note, "proof": list(proof)})
        replies = self._transport.only([site]).round_trip(COSIGN_TYPE, {site: asked}, self._timeout)
        answer = fields(replies.get(site))
        if not answer:
            raise FederatedError(f"site {site!r}: witness did not answer within {self._timeout:g} s")
        if "error" in answer:
            raise FederatedError(f"site {site!r}: witness refused to cosign: {answer['error']!s}")
        text, signatures = parse_note(note + str(answer["cosignature"]))
        self._sizes[site] = parse_body(text).size
        return signatures[-1]


server = ServerApp()


@server.main()
def _main(grid: Grid, context: Context) -> None:
    out = Path(str(context.run_config.get("out", "")) or ".")
    _log_rounds()
    started = time.time()
    try:
        settings = RunSettings.of(context.run_config)
        out = settings.out
        result = run(grid, settings)
    except Exception as exc:
        failed = {"status": "failed", "error": _one_line(exc), "seconds": round(time.time() - started, 1)}
        write_json_atomic(out / "result.json", failed)
        raise
    write_json_atomic(out / "result.json", {**result, "status": "ok",
                                           "seconds": round(time.time() - started, 1)})


def _log_rounds() -> None:
    """Each round's replies and time on stderr, which ``flwr run --stream`` shows."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s fedprog %(message)s"))
    logger = logging.getLogger("federated")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, (FederatedError, ValueError, OSError)):
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return traceback.format_exception_only(exc)[-1].strip()


def run(grid: Grid, settings: RunSettings) -> dict[str, Any]:
    """Discover the sites, then run each job over Flower; write ``<out>/<job>.json``."""
    from .workspace import Workspace, train_in_workspace

    study = load_study(settings.study)
    if settings.round_timeout is not None:
        study = study.model_copy(update={"timeout": settings.round_timeout})
    ws = Workspace(settings.workspace) if settings.workspace is not None else None
    protocol = approved_protocol(settings, study, ws)
    names = settings.sites or [s.name for s in study.sites] or (ws.sites if ws is not None else []) \
        or list(protocol.peers)
    found = discover(grid, names, settings.connect_timeout)
    nodes = {site: node.node_id for site, node in found.items()}
    transport = FlowerTransport(grid, nodes)
    sizes = {site: int(node.hello.get("witness-size", 0)) for site, node in found.items()}
    witnesses = RemoteWitnesses(grid, nodes, sizes, study.timeout)
    settings.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"sites": nodes, "jobs": {}}
    artifact: dict[str, Any] | None = None
    for job in settings.jobs:
        if job == "cox":
            if ws is not None:
                fit, artifact = train_in_workspace(ws, study, sites=transport, witnesses=witnesses)
            else:
                from federated.analyses.runner import train

                fit, artifact = train(study, sites=transport, protocol=protocol)
            write_json_atomic(settings.out / "cox.json", artifact)
            summary["jobs"]["cox"] = {"sha256": artifact["sha256"], "rounds": fit.rounds,
                                      "sites": list(fit.sites), "dropped": fit.dropped}
        elif job == "km":
            from federated.analyses.runner import kaplan_meier

            gate = ws.consent_gate(f"km:{study.model_id}", witnesses) if ws is not None else None
            km = kaplan_meier(study, sites=transport, consent=gate, protocol=protocol)
            write_json_atomic(settings.out / "km.json", km.to_dict())
            summary["jobs"]["km"] = {"sites": list(km.sites), "dropped": km.dropped}
        else:
            summary["jobs"]["validate"] = _validate(settings, ws, artifact, transport, witnesses)
    return summary


def approved_protocol(settings: RunSettings, study: StudySpec, ws: Any) -> StudyProtocol:
    """The approved study the sites answer for: the run config's ``protocol`` file, else the
    coordinator workspace's protocol of ``study`` (the one its sites' operators approved)."""
    own: StudyProtocol | None = ws.protocol(study) if ws is not None else None
    if settings.protocol is None:
        if own is None:
            raise ValueError("run config: `protocol` (the approved study's JSON, as the sites approved it) "
                             "is needed without a workspace")
        return own
    protocol = _read(settings, "protocol", settings.protocol,
                     lambda p: StudyProtocol.model_validate_json(p.read_bytes()))
    if own is not None and protocol.sha256 != own.sha256:
        # the workspace's jobs name the workspace's protocol of the study (fedprog.workspace)
        raise ValueError(f"run config: protocol {settings.protocol} is not the workspace's protocol of the "
                         f"study ({protocol.sha256[:12]} != {own.sha256[:12]})")
    return protocol


def _validate(settings: RunSettings, ws: Any, artifact: dict[str, Any] | None, transport: FlowerTransport,
              witnesses: RemoteWitnesses) -> dict[str, Any]:
    from validation.run import Options

    from .workspace import validate_in_workspace

    if ws is None:
        raise ValueError("run config: the validate job needs a workspace (its registry and consent)")
    ref = settings.model or (f"{artifact['model_id']}@{artifact['version']}" if artifact else None)
    if ref is None:
        raise ValueError("run config: the validate job needs `model` (or a cox job before it)")
    options = Options(n_boot=settings.n_boot, skip_verification=True,
                      skip_reason="validation over a Flower deployment: the verification suite runs in CI")
    report = validate_in_workspace(ws, ref, options, sites=transport, witnesses=witnesses)
    write_json_atomic(settings.out / "validation.json", report)
    return {"model": ref, "passed": report["passed"], "folder": report["folder"],
            "recorded": report["registry"]["recorded"]}

"""The Flower App of a fedprog deployment: a ServerApp at the coordinating centre, a ClientApp
at each hospital's SuperNode (Flower's Message API; referenced by the app's ``pyproject.toml``,
which ``fedprog deploy app`` writes).

Only the transport differs from an in-process run: the ServerApp runs the same coordinator
code (:mod:`federated.analyses.runner`, :mod:`validation.run`, :mod:`fedprog.workspace`) over a
:class:`~federated.protocol.flower_transport.FlowerTransport`, and the ClientApp answers with the same
:class:`~federated.site.handler.Site` (:mod:`federated.site.flower`). Settings come from Flower's
configs, checked with pydantic (:mod:`fedprog.flower_settings`).

The ServerApp writes ``<out>/result.json`` — ``status`` ``ok`` or ``failed`` with the error —
because ``flwr run`` itself reports success even when a ServerApp failed.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from federated.disclosure.rules import StudyProtocol
from federated.exceptions import FederatedError
from federated.protocol.flower_transport import FlowerTransport, discover, fields, hello_reply, record
from federated.site import flower as flower_site
from federated.study import StudySpec, load_study
from ledger.checkpoint import NoteSignature, parse_body, parse_note
from ledger.files import write_json_atomic

from .flower_settings import NodeSettings, RunSettings, read_setting

COSIGN_TYPE = "query.fedprog_cosign"


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
        transport = self._transport.only([site])
        answer = fields(transport.round_trip(COSIGN_TYPE, {site: asked}, self._timeout).get(site))
        if not answer:
            why = transport.failures.get(site, f"no reply in {self._timeout:g} s")
            raise FederatedError(f"site {site!r}: witness did not answer: {why}")
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
    from .registration import train_in_workspace
    from .workspace import Workspace

    study = load_study(settings.study)
    if settings.round_timeout is not None:
        study = study.model_copy(update={"timeout": settings.round_timeout})
    ws = Workspace(settings.workspace) if settings.workspace is not None else None
    predecessor = None
    if ws is not None and "cox" in settings.jobs:
        study, predecessor = as_registered(ws, study)
    protocol = approved_protocol(settings, study, ws)
    names = settings.sites or [s.name for s in study.sites] or (ws.sites if ws is not None else []) \
        or list(protocol.peers)
    found = discover(grid, names, settings.connect_timeout, settings.probe_timeout)
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
                fit, artifact = train_in_workspace(ws, study, predecessor=predecessor, sites=transport,
                                                   witnesses=witnesses)
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


def as_registered(ws: Any, study: StudySpec) -> tuple[StudySpec, Any]:
    """The study as ``fedprog train --workspace`` registers its model: refused (one line) if the model
    could not be served (:func:`fedprog.registration.check_registrable`), and the successor of the newest
    version of the same model, if any (its version, and that entry as predecessor)."""
    from .registration import as_successor, check_registrable

    check_registrable(study)
    return as_successor(ws, study)


def approved_protocol(settings: RunSettings, study: StudySpec, ws: Any) -> StudyProtocol:
    """The approved study the sites answer for: the run config's ``protocol`` file, else the
    coordinator workspace's protocol of ``study`` (the one its sites' operators approved)."""
    own: StudyProtocol | None = ws.protocol(study) if ws is not None else None
    if settings.protocol is None:
        if own is None:
            raise ValueError("run config: `protocol` (the approved study's JSON, as the sites approved it) "
                             "is needed without a workspace")
        return own
    protocol = read_setting(settings, "protocol", settings.protocol,
                     lambda p: StudyProtocol.model_validate_json(p.read_bytes()))
    if own is not None and protocol.sha256 != own.sha256:
        # the workspace's jobs name the workspace's protocol of the study (fedprog.workspace)
        raise ValueError(f"run config: protocol {settings.protocol} is not the workspace's protocol of the "
                         f"study ({protocol.sha256[:12]} != {own.sha256[:12]})")
    return protocol


def _validate(settings: RunSettings, ws: Any, artifact: dict[str, Any] | None, transport: FlowerTransport,
              witnesses: RemoteWitnesses) -> dict[str, Any]:
    from validation.run import Options

    from .registration import validate_in_workspace

    if ws is None:
        raise ValueError("run config: the validate job needs a workspace (its registry and consent)")
    from .cli import missing_qms

    lacking = missing_qms()
    if lacking:
        raise ValueError(f"run config: the validate job needs {', '.join(lacking)}: install fedprog[qms]")
    ref = settings.model or (f"{artifact['model_id']}@{artifact['version']}" if artifact else None)
    if ref is None:
        raise ValueError("run config: the validate job needs `model` (or a cox job before it)")
    options = Options(n_boot=settings.n_boot, skip_verification=True,
                      skip_reason="validation over a Flower deployment: the verification suite runs in CI")
    report = validate_in_workspace(ws, ref, options, sites=transport, witnesses=witnesses)
    write_json_atomic(settings.out / "validation.json", report)
    return {"model": ref, "passed": report["passed"], "folder": report["folder"],
            "recorded": report["registry"]["recorded"]}

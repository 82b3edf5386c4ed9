"""Flower's ``Grid`` contract in memory, for fast tests of the Flower App's logic.

Each pushed message is answered at once by the real ClientApp of its node, called as Flower's
runtime calls it (``client(message, context)``), with that node's own ``Context`` kept between
messages exactly as a SuperNode keeps it. The real deployment (SuperLink, SuperNodes, one
process per message) is tested in ``tests/fedprog/test_deploy.py``.

:func:`approved_nodes` plays every hospital's operator: an identity key per site, the study's
protocol over those keys approved at each node (its JSON file named in the node config).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from federated.disclosure.rules import SiteFloors, SiteIdentity, StudyProtocol, protocol_of
from federated.study import StudySpec

ClientApp = Callable[..., Message]


def approved_nodes(study: StudySpec, folder: Path, floors: SiteFloors | None = None
                   ) -> tuple[StudyProtocol, Path, dict[str, dict[str, str]]]:
    """Each site's node config after its operator approved ``study``: identity seed files
    ``<folder>/<site>.identity.key``, the protocol over their public keys in
    ``<folder>/protocol.json`` and, with ``floors``, the operators' floors in ``<folder>/floors.json``.

    Returns the protocol, its file, and the node config of each site (by name)."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = {s.name: folder / f"{s.name}.identity.key" for s in study.sites}
    protocol = protocol_of(study, {name: SiteIdentity.from_file(path).public for name, path in keys.items()})
    path = folder / "protocol.json"
    path.write_text(protocol.model_dump_json(), encoding="utf-8")
    extra = {}
    if floors is not None:
        (folder / "floors.json").write_text(floors.model_dump_json(), encoding="utf-8")
        extra["floors"] = str(folder / "floors.json")
    configs = {s.name: {"site": s.name, "data-path": str(s.path), "identity-key": str(keys[s.name]),
                        "approved": str(path), **extra} for s in study.sites}
    return protocol, path, configs


class LoopbackGrid:
    def __init__(self, client: ClientApp, nodes: Mapping[int, Mapping[str, Any]]) -> None:
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
        self.client = client
        self.contexts = {n: Context(run_id=1, node_id=n, node_config=dict(cfg), state=RecordDict(),
                                    run_config={}) for n, cfg in nodes.items()}
        self.online = set(nodes)
        self.pushed: list[Message] = []
        #: every reply a ClientApp gave, by the id of the message it answers
        self.answers: dict[str, Message] = {}
        self._replies: dict[str, Message] = {}
        #: node → exception its ClientApp raises (Flower turns it into an error reply)
        self.crash: dict[int, str] = {}

    def get_node_ids(self) -> list[int]:
        return sorted(self.online)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for msg in messages:
            mid = msg.object_id
            msg.metadata.__dict__["_message_id"] = mid
            self.pushed.append(msg)
            node = msg.metadata.dst_node_id
            if node in self.crash:
                self._replies[mid] = Message(Error(code=0, reason=f"Traceback …\n{self.crash[node]}"),
                                             reply_to=msg)
            elif node in self.online:
                self._replies[mid] = self.answers[mid] = self.client(msg, self.contexts[node])
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self._replies.pop(m) for m in list(message_ids) if m in self._replies]

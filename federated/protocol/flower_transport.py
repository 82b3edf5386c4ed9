"""The coordinator's transport over Flower's Deployment Engine (a ServerApp's ``Grid``).

The same :class:`~federated.protocol.transport.Transport` as in-process: each request is fedprog's
own JSON message, carried unchanged as the bytes of one ``ConfigRecord`` entry (no pickle,
no re-encoding), sent to the SuperNode of the site it is for; the reply comes back the same
way. A SuperNode that does not answer within the round's timeout, or whose ClientApp failed
(a Flower error reply), is a dropout, exactly as a site that misses the in-process deadline.

Which node is which site is learnt once, by asking each connected node for the site its node
config names (:data:`HELLO_TYPE`); node ids are Flower's, site names are the study's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flwr.app import Message, RecordDict

from federated.exceptions import FederatedError, ProtocolError
from federated.protocol.flower_records import (
    HELLO_TYPE,
    MESSAGE_TYPE,
    RECORD,
    fields,
    hello_reply,
    pack,
    record,
    unpack,
)

#: seconds between pulls of replies (Flower's own ``send_and_receive`` sleeps 3 s)
POLL = 0.1
#: seconds between checks that the nodes still waited for are online
ONLINE_CHECK = 1.0

log = logging.getLogger(__name__)

__all__ = ["HELLO_TYPE", "MESSAGE_TYPE", "RECORD", "DeploymentError", "FlowerTransport", "Node", "discover",
           "fields", "hello_reply", "pack", "record", "unpack"]


class DeploymentError(FederatedError):
    """The deployment does not match the study: a site is missing, unknown or duplicated."""


class FlowerTransport:
    """Reaches the study's sites through a Flower ``Grid``.

    Parameters
    ----------
    grid : flwr.serverapp.Grid
        The ServerApp's grid.
    nodes : mapping
        Site name → Flower node id (from :func:`discover`).
    ttl : float
        Flower time-to-live of each message, seconds; a reply later than the round's timeout
        is ignored anyway.
    """

    def __init__(self, grid: Any, nodes: Mapping[str, int], ttl: float = 3600.0) -> None:
        self._grid = grid
        self._nodes = dict(nodes)
        self._ttl = ttl
        #: sites whose ClientApp failed in the last exchange, with Flower's reason
        self.failures: dict[str, str] = {}

    @property
    def sites(self) -> list[str]:
        return list(self._nodes)

    def only(self, names: Sequence[str]) -> FlowerTransport:
        """The same deployment restricted to ``names`` (e.g. all sites but one)."""
        return FlowerTransport(self._grid, {n: self._nodes[n] for n in names}, self._ttl)

    def exchange(self, payloads: Mapping[str, bytes], timeout: float) -> dict[str, bytes]:
        self.failures = {}
        replies: dict[str, bytes] = {}
        for site, content in self.round_trip(MESSAGE_TYPE, {s: pack(p) for s, p in payloads.items()},
                                         timeout).items():
            try:
                replies[site] = unpack(content)
            except ProtocolError as exc:
                self.failures[site] = str(exc)
        return replies

    def round_trip(self, message_type: str, contents: Mapping[str, RecordDict], timeout: float
               ) -> dict[str, RecordDict]:
        """Push one message per site, pull replies until all came or ``timeout`` passed."""
        messages = [Message(content, dst_node_id=self._nodes[site], message_type=message_type,
                            ttl=self._ttl) for site, content in contents.items()]
        ids = list(self._grid.push_messages(messages))
        pending = {mid: site for mid, site in zip(ids, contents, strict=True) if mid}
        replies: dict[str, RecordDict] = {}
        deadline = time.monotonic() + timeout
        check_online = time.monotonic() + ONLINE_CHECK
        while pending:
            for msg in self._grid.pull_messages(list(pending)):
                site = pending.pop(msg.metadata.reply_to_message_id, None)
                if site is None:
                    continue
                if msg.has_error():
                    self.failures[site] = _flower_error(msg.error)
                else:
                    replies[site] = msg.content
            if pending and time.monotonic() >= check_online:
                self._drop_offline(pending)
                check_online = time.monotonic() + ONLINE_CHECK
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
        took = timeout - max(0.0, deadline - time.monotonic())
        log.info("%s: %d of %d replies in %.1f s%s", message_type, len(replies), len(contents), took,
                 f" (missing: {', '.join(sorted(pending.values()))})" if pending else "")
        return replies

    def _drop_offline(self, pending: dict[str, str]) -> None:
        """Give up at once on sites whose SuperNode left (stopped, or its heartbeat lapsed)."""
        online = set(self._grid.get_node_ids())
        for mid, site in list(pending.items()):
            if self._nodes[site] not in online:
                del pending[mid]
                self.failures[site] = "its SuperNode went offline (stopped, or its heartbeat lapsed)"


def _flower_error(error: Any) -> str:
    """One line for a Flower error reply (its reason may carry a whole traceback)."""
    lines = [line.strip() for line in str(error.reason or "").splitlines() if line.strip()]
    return f"Flower error {error.code}: {lines[-1] if lines else 'no reason given'}"


@dataclass(frozen=True)
class Node:
    """A connected SuperNode: its Flower id and what it said of itself when asked (its hello)."""

    node_id: int
    hello: dict[str, Any]


def discover(grid: Any, sites: Sequence[str], timeout: float) -> dict[str, Node]:
    """The node serving each site of the study, asking each connected node its site.

    Waits up to ``timeout`` seconds for all of ``sites`` to connect; raises
    :class:`DeploymentError` naming the sites that did not, a node whose site is not in the
    study (or whose node config is unusable), or two nodes claiming one site.
    """
    wanted = list(sites)
    if len(set(wanted)) != len(wanted) or not wanted:
        raise DeploymentError(f"the study's site list must be non-empty and unique, got {wanted}")
    deadline = time.monotonic() + timeout
    found: dict[str, Node] = {}
    asked: set[int] = set()
    while True:
        fresh = [n for n in grid.get_node_ids() if n not in asked]
        if fresh:
            probe = FlowerTransport(grid, {str(n): n for n in fresh})
            answers = probe.round_trip(HELLO_TYPE, {str(n): RecordDict() for n in fresh},
                                   max(1.0, min(10.0, deadline - time.monotonic())))
            for key, content in answers.items():
                node = Node(int(key), fields(content))
                if "error" in node.hello:
                    raise DeploymentError(f"node {node.node_id}: {node.hello['error']}")
                site = node.hello.get("site")
                if not isinstance(site, str) or site not in wanted:
                    raise DeploymentError(f"node {node.node_id} serves site {site!r}, which is not in the "
                                          f"study ({', '.join(wanted)})")
                if site in found:
                    raise DeploymentError(f"two nodes ({found[site].node_id} and {node.node_id}) serve "
                                          f"site {site!r}")
                found[site] = node
                asked.add(node.node_id)
        if len(found) == len(wanted):
            return {s: found[s] for s in wanted}
        if time.monotonic() >= deadline:
            missing = [s for s in wanted if s not in found]
            raise DeploymentError(f"site(s) {', '.join(missing)} did not connect within {timeout:g} s")
        time.sleep(0.5)

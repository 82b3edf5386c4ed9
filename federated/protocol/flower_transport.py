"""The coordinator's transport over Flower's Deployment Engine (a ServerApp's ``Grid``).

The same :class:`~federated.protocol.transport.Transport` as in-process: each request is fedprog's
own JSON message, carried unchanged as the bytes of one ``ConfigRecord`` entry (no pickle,
no re-encoding), sent to the SuperNode of the site it is for; the reply comes back the same
way. A SuperNode that does not answer within the round's timeout, or whose ClientApp failed
(a Flower error reply), is a dropout, exactly as a site that misses the in-process deadline.

Which node is which site is learnt once, by asking each connected node for the site its node
config names (:data:`HELLO_TYPE`); node ids are Flower's, site names are the study's. Every wait
has its own limit and its own error: a site whose SuperNode never joined the SuperLink "did not
connect"; a node that joined but did not answer in time "connected, but gave no reply" — a slow or
loaded machine (a SuperNode polls every few seconds and starts a ClientApp process per message),
whose remedy is a longer timeout, not a network check.
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
#: seconds between looks for newly connected nodes and their answers during discovery
DISCOVERY_POLL = 0.5

#: what a reply that comes too late most likely means, and the remedy (followed by the flag)
SLOW_HINT = "a slow or loaded machine? raise"

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
        """Push one message per site, pull replies until all came or ``timeout`` passed.

        A site missing from the result has its reason in :attr:`failures`: its ClientApp failed,
        its SuperNode went offline, or it is connected but gave no reply in ``timeout`` seconds.
        """
        pending = self.push(message_type, contents)
        replies: dict[str, RecordDict] = {}
        deadline = time.monotonic() + timeout
        check_online = time.monotonic() + ONLINE_CHECK
        while pending:
            replies.update(self.pull(pending))
            if pending and time.monotonic() >= check_online:
                self._drop_offline(pending)
                check_online = time.monotonic() + ONLINE_CHECK
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
        if pending:
            self._drop_offline(pending)
        for site in pending.values():
            self.failures[site] = f"connected, but gave no reply in {timeout:g} s " \
                                  f"({SLOW_HINT} --round-timeout)"
        took = timeout - max(0.0, deadline - time.monotonic())
        log.info("%s: %d of %d replies in %.1f s%s", message_type, len(replies), len(contents), took,
                 f" (missing: {', '.join(sorted(pending.values()))})" if pending else "")
        return replies

    def push(self, message_type: str, contents: Mapping[str, RecordDict]) -> dict[str, str]:
        """Send one message per site; the sites by the ids of the messages Flower accepted."""
        messages = [Message(content, dst_node_id=self._nodes[site], message_type=message_type,
                            ttl=self._ttl) for site, content in contents.items()]
        ids = list(self._grid.push_messages(messages))
        return {mid: site for mid, site in zip(ids, contents, strict=True) if mid}

    def pull(self, pending: dict[str, str]) -> dict[str, RecordDict]:
        """The replies that came to the messages in ``pending`` (by site), which are taken out of it;
        a Flower error reply goes to :attr:`failures` instead."""
        replies: dict[str, RecordDict] = {}
        for msg in self._grid.pull_messages(list(pending)):
            site = pending.pop(msg.metadata.reply_to_message_id, None)
            if site is None:
                continue
            if msg.has_error():
                self.failures[site] = _flower_error(msg.error)
            else:
                replies[site] = msg.content
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


def discover(grid: Any, sites: Sequence[str], timeout: float, probe_timeout: float | None = None
             ) -> dict[str, Node]:
    """The node serving each site of the study, asking each connected node its site, once.

    Parameters
    ----------
    grid : flwr.serverapp.Grid
        The ServerApp's grid.
    sites : sequence of str
        The study's site names (non-empty, unique).
    timeout : float
        Seconds for every site's SuperNode to join the SuperLink (the connect timeout).
    probe_timeout : float, optional
        Seconds a node that joined has to answer the request for its site (default ``timeout``):
        a SuperNode polls for messages every few seconds and starts a ClientApp process for each,
        so on a loaded machine the answer can take tens of seconds. A node that joined before
        ``timeout`` passed has its whole ``probe_timeout``; a late answer is still taken.

    Raises
    ------
    DeploymentError
        One line for what happened: site(s) that "did not connect within N s" (no node of theirs
        joined), site(s) whose node "connected, but gave no reply in N s", a node whose ClientApp
        failed or whose node config is unusable, a node serving a site not in the study, two nodes
        claiming one site.
    """
    wanted = list(sites)
    if len(set(wanted)) != len(wanted) or not wanted:
        raise DeploymentError(f"the study's site list must be non-empty and unique, got {wanted}")
    wait = _Discovery(grid, wanted, timeout, timeout if probe_timeout is None else probe_timeout)
    while True:
        found = wait.step()
        if found is not None:
            return found
        time.sleep(DISCOVERY_POLL)


class _Discovery:
    """The state of :func:`discover`: the nodes asked (each once), the sites found, the clocks."""

    def __init__(self, grid: Any, wanted: list[str], timeout: float, probe_timeout: float) -> None:
        self.grid, self.wanted, self.timeout, self.probe_timeout = grid, wanted, timeout, probe_timeout
        self.deadline = time.monotonic() + timeout
        self.found: dict[str, Node] = {}
        self.seen: set[int] = set()
        #: the hello still unanswered, by message id: the node asked and when
        self.asked: dict[str, tuple[int, float]] = {}

    def step(self) -> dict[str, Node] | None:
        """Ask the nodes that joined since the last step, take the answers that came; the sites'
        nodes when all are known, ``None`` to wait on; raises when waiting cannot help."""
        online = set(self.grid.get_node_ids())
        fresh = sorted(online - self.seen)
        self.seen.update(fresh)
        if fresh:
            probe = FlowerTransport(self.grid, {str(n): n for n in fresh})
            now = time.monotonic()
            self.asked.update({mid: (int(key), now) for mid, key in
                               probe.push(HELLO_TYPE, {str(n): RecordDict() for n in fresh}).items()})
        if self.asked:
            pending = {mid: str(node) for mid, (node, _) in self.asked.items()}
            when = dict(self.asked.values())
            everyone = FlowerTransport(self.grid, {str(n): n for n in when})
            for key, content in everyone.pull(pending).items():
                self._accept(Node(int(key), fields(content)), time.monotonic() - when[int(key)])
            if everyone.failures:
                key, reason = next(iter(everyone.failures.items()))
                raise DeploymentError(f"node {key}: its ClientApp failed: {reason}")
            # a node that left before answering is forgotten, and asked again if it comes back
            self.seen -= {node for node, _ in self.asked.values() if node not in online}
            self.asked = {mid: v for mid, v in self.asked.items() if mid in pending and v[0] in online}
        if len(self.found) == len(self.wanted):
            return {s: self.found[s] for s in self.wanted}
        now = time.monotonic()
        silent = sorted(node for node, at in self.asked.values() if now - at >= self.probe_timeout)
        if silent or (now >= self.deadline and not self.asked):
            raise self._unanswered(silent)
        return None

    def _accept(self, node: Node, took: float) -> None:
        if "error" in node.hello:
            raise DeploymentError(f"node {node.node_id}: {node.hello['error']}")
        site = node.hello.get("site")
        if not isinstance(site, str) or site not in self.wanted:
            raise DeploymentError(f"node {node.node_id} serves site {site!r}, which is not in the "
                                  f"study ({', '.join(self.wanted)})")
        if site in self.found:
            raise DeploymentError(f"two nodes ({self.found[site].node_id} and {node.node_id}) serve "
                                  f"site {site!r}")
        log.info("node %d serves %s (answered in %.1f s)", node.node_id, site, took)
        self.found[site] = node

    def _unanswered(self, silent: list[int]) -> DeploymentError:
        """What happened to the sites still missing: nodes that never joined, or that joined and
        did not answer (which node serves which site is unknown until it answers)."""
        missing = [s for s in self.wanted if s not in self.found]
        if not silent:
            return DeploymentError(f"site(s) {', '.join(missing)} did not connect within {self.timeout:g} s "
                                   "(no SuperNode of theirs joined the SuperLink: is it running, and "
                                   "pointed at this SuperLink?)")
        ids = ", ".join(str(n) for n in silent)
        why = (f"site(s) {', '.join(missing)}: {len(silent)} SuperNode(s) (node {ids}) connected, but gave "
               f"no reply in {self.probe_timeout:g} s to the request for their site "
               f"({SLOW_HINT} --probe-timeout)")
        others = len(missing) - len(silent)
        if others > 0:
            why += f"; {others} more did not connect" + \
                (f" within {self.timeout:g} s" if time.monotonic() >= self.deadline else " yet")
        return DeploymentError(why)

"""The coordinator's side of the protocol: broadcast a request, check every reply, sum.

Every request names the approved study (:class:`~federated.disclosure.rules.StudyProtocol`) the sites
answer for. A reply is checked before any arithmetic (kind, session, round, masking, each
array's shape). A site that does not answer in time or answers with an invalid message is a
*dropout* (:class:`SitesDropped`, which the fit handles by re-running among the others);
a site's deliberate refusal is a :class:`~federated.exceptions.SiteError`. With secure
aggregation on, the coordinator relays the sites' signed public keys and only ever sums masked
statistics: it never holds a single site's unmasked value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from federated.disclosure.rules import StudyProtocol
from federated.exceptions import FederatedError, ProtocolError, SiteError
from federated.protocol import secagg
from federated.protocol.arrays import WireArray
from federated.protocol.messages import (
    ErrorReply,
    KeysReply,
    KeysRequest,
    Request,
    SecureRound,
    SignedKey,
    decode_reply,
    encode,
)

R = TypeVar("R")
T = TypeVar("T")

#: the only plaintext a secure round may carry: event times on the exact grid (documented leak)
_PLAIN_IN_SECURE = {"event_times"}


class SitesDropped(FederatedError):
    """Sites that did not answer in time or sent an invalid message, with the reasons."""

    def __init__(self, failures: dict[str, str]) -> None:
        super().__init__("; ".join(f"site {s!r}: {r}" for s, r in failures.items()))
        self.failures = failures


class SecureSumError(FederatedError):
    """A masked sum did not decode: the masks did not cancel (inconsistent participants)."""


class Coordinator:
    """Drives rounds over a :class:`~federated.protocol.transport.Transport`.

    Parameters
    ----------
    transport : Transport
        Reaches the sites.
    session : str
        Identifies this fit in every message (a restart after a dropout appends ``/rN``).
    protocol : StudyProtocol
        The approved study every request names (its rules, peers and cohorts).
    timeout : float
        Seconds to wait for each round's replies.
    secure : bool, optional
        Mask every summed statistic (pairwise masks, fresh signed X25519 keys every round);
        default the study's setting. ``False`` for rounds whose replies are plaintext by design
        (evaluation).
    on_round : callable, optional
        Called with ``(round, kind)`` after each round (progress display).
    """

    def __init__(self, transport: Any, session: str, protocol: StudyProtocol, timeout: float = 120.0,
                 secure: bool | None = None, on_round: Callable[[int, str], None] | None = None) -> None:
        self.transport = transport
        self.protocol = protocol
        self.study = protocol.sha256
        self.base_session = session
        self.session = session
        self.timeout = timeout
        self.secure = protocol.secure if secure is None else secure
        self.rounds = 0
        self.restarts = 0
        self.dropped: dict[str, str] = {}
        self._on_round = on_round
        self._peers: dict[str, SignedKey] | None = None

    @property
    def sites(self) -> list[str]:
        """Sites taking part (not dropped)."""
        return [s for s in self.transport.sites if s not in self.dropped]

    def exclude(self, failures: dict[str, str]) -> None:
        """Drop sites for the rest of the study and start a fresh session (fresh keys, masks)."""
        self.dropped.update(failures)
        self.restart()

    def restart(self) -> None:
        """Start a fresh session among the same sites (fresh keys and masks)."""
        self.restarts += 1
        self.session = f"{self.base_session}/r{self.restarts}"
        self._peers = None

    def broadcast(self, build: Callable[..., Request], reply_type: type[R], **fields: object) -> dict[str, R]:
        """Send ``build(session=…, round=…, **fields)`` to every site; typed replies by site."""
        if self.secure and self._peers is None:
            keys = self._exchange(KeysRequest, KeysReply, {})
            self._peers = self._next_keys(keys)
        secure = SecureRound(peers=self._peers) if self.secure and self._peers else None
        replies = self._exchange(build, reply_type, {**fields, "secure": secure})
        if self.secure:
            self._peers = self._next_keys(replies)
        return replies

    def _exchange(self, build: Callable[..., Request], reply_type: type[R],
                  fields: dict[str, object]) -> dict[str, R]:
        request = build(session=self.session, round=self.rounds, study=self.study, **fields)
        sites = self.sites
        raw = self.transport.exchange({s: encode(request) for s in sites}, self.timeout)
        crashed: dict[str, str] = getattr(self.transport, "failures", {})
        replies: dict[str, R] = {}
        failures: dict[str, str] = {}
        refusals: dict[str, tuple[str, str]] = {}
        for site in sites:
            if site not in raw:
                failures[site] = crashed.get(site, f"no reply to {request.kind!r} within {self.timeout:g} s")
                continue
            try:
                reply = decode_reply(raw[site])
            except ProtocolError as exc:
                failures[site] = str(exc)
                continue
            if isinstance(reply, ErrorReply):
                refusals[site] = (reply.code, reply.message)
                continue
            if not isinstance(reply, reply_type) or reply.session != self.session \
                    or reply.round != self.rounds:
                failures[site] = f"reply does not answer {request.kind!r} round {self.rounds}"
            elif self.secure and set(reply.plaintext_fields()) - _PLAIN_IN_SECURE:
                failures[site] = "unmasked statistics in a secure round"
            else:
                replies[site] = reply
        if refusals:
            # the sites that did answer will not answer this round again (once per request): the
            # next request takes a new round, with fresh keys (a refusing site announced none)
            self.rounds += 1
            self._peers = None
            first = next(iter(refusals))
            raise SiteError(first, refusals[first][1], code=refusals[first][0], refusals=refusals)
        if failures:
            raise SitesDropped(failures)
        self.rounds += 1
        if self._on_round is not None:
            self._on_round(self.rounds, request.kind)
        return replies

    def _next_keys(self, replies: dict[str, Any]) -> dict[str, SignedKey]:
        keys = {site: reply.next_key for site, reply in replies.items()}
        missing = {s: "no public key for the next secure round" for s, k in keys.items() if not k}
        if missing:
            raise SitesDropped(missing)
        return keys

    def total(self, replies: dict[str, Any], field: str, shape: tuple[int, ...]) -> np.ndarray:
        """Σ over sites of array ``field``, each checked to have ``shape`` first.

        Masked arrays are summed in Z_2^128, where the pairwise masks cancel, and only the
        sum is decoded; a sum that does not decode raises :class:`SecureSumError`.
        """
        wires: dict[str, WireArray] = {}
        failures: dict[str, str] = {}
        for site, reply in replies.items():
            wire = getattr(reply, field)
            if not isinstance(wire, WireArray):
                failures[site] = f"reply lacks {field!r}"
            elif wire.shape != shape:
                failures[site] = f"{field} has shape {wire.shape}, want {shape}"
            elif wire.masked != self.secure:
                failures[site] = f"{field} is {'masked' if wire.masked else 'unmasked'}, want the other"
            else:
                wires[site] = wire
        if failures:
            raise SitesDropped(failures)
        if not self.secure:
            out = np.zeros(shape)
            for wire in wires.values():
                out += wire.view()
            return out
        ring = secagg.ring_sum([w.ring() for w in wires.values()])
        try:
            return secagg.decode(ring, n_terms=len(wires))
        except secagg.SecAggOverflow as exc:
            raise SecureSumError(f"secure sum of {field!r} did not decode: {exc}") from None


def with_dropouts(coord: Coordinator, run: Callable[[], T]) -> T:
    """Run a whole fit; after a dropout, exclude the failed sites and run it again from the
    start among the others (fresh session, keys and masks). The disclosure policy, checked
    at the start of every run, stops it with a clear error once too few sites remain."""
    while True:
        try:
            return run()
        except SitesDropped as exc:
            coord.exclude(exc.failures)

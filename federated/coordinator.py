"""The coordinator's side of the protocol: broadcast a request, check every reply, sum.

A reply is checked before any arithmetic (kind, session, round, each array's shape);
a refusal or a malformed reply raises :class:`~federated.exceptions.SiteError` naming
the site. The coordinator keeps no site's reply after summing it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

from .arrays import WireArray, expect_shape
from .exceptions import ProtocolError, SiteError
from .messages import ErrorReply, Request, decode_reply, encode
from .transport import Transport

R = TypeVar("R")


class Coordinator:
    """Drives rounds over a :class:`~federated.transport.Transport`.

    Parameters
    ----------
    transport : Transport
        Reaches the sites.
    session : str
        Identifies this fit in every message.
    timeout : float
        Seconds to wait for each round's replies.
    on_round : callable, optional
        Called with ``(round, kind)`` after each round (progress display).
    """

    def __init__(self, transport: Transport, session: str, timeout: float = 120.0,
                 on_round: Callable[[int, str], None] | None = None) -> None:
        self.transport = transport
        self.session = session
        self.timeout = timeout
        self.rounds = 0
        self._on_round = on_round

    @property
    def sites(self) -> list[str]:
        return list(self.transport.sites)

    def broadcast(self, build: Callable[..., Request], reply_type: type[R], **fields: object) -> dict[str, R]:
        """Send ``build(session=…, round=…, **fields)`` to every site; typed replies by site."""
        request = build(session=self.session, round=self.rounds, **fields)
        payload = encode(request)
        raw = self.transport.exchange({s: payload for s in self.sites}, self.timeout)
        replies: dict[str, R] = {}
        for site in self.sites:
            if site not in raw:
                raise SiteError(site, f"no reply to {request.kind!r} within {self.timeout:g} s")
            try:
                reply = decode_reply(raw[site])
            except ProtocolError as exc:
                raise SiteError(site, str(exc)) from None
            if isinstance(reply, ErrorReply):
                raise SiteError(site, reply.message, code=reply.code)
            if not isinstance(reply, reply_type) or reply.session != self.session \
                    or reply.round != self.rounds:
                raise SiteError(site, f"reply does not answer {request.kind!r} round {self.rounds}")
            replies[site] = reply
        self.rounds += 1
        if self._on_round is not None:
            self._on_round(self.rounds, request.kind)
        return replies

    @staticmethod
    def total(replies: dict[str, R], field: str, shape: tuple[int, ...]) -> np.ndarray:
        """Σ over sites of array ``field``, each checked to have ``shape`` first."""
        out = np.zeros(shape)
        for site, reply in replies.items():
            wire = getattr(reply, field)
            if not isinstance(wire, WireArray):
                raise SiteError(site, f"reply lacks {field!r}")
            try:
                out += expect_shape(field, wire.view(), shape)
            except ValueError as exc:
                raise SiteError(site, str(exc)) from None
        return out

"""The coordinator gone bad: it has only the wire to the sites (shared by the privacy tests)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from federated.disclosure.rules import StudyProtocol
from federated.protocol import secagg
from federated.protocol.messages import ErrorReply, KeysRequest, SecureRound, SignedKey, decode_reply, encode
from federated.site import Site


class Wire:
    """Writes its own requests to real sites and decodes what comes back."""

    def __init__(self, sites: Sequence[Site], protocol: StudyProtocol) -> None:
        self.sites = {s.name: s for s in sites}
        self.protocol = protocol
        self.study = protocol.sha256

    def ask(self, name: str, request: Any) -> Any:
        return decode_reply(self.sites[name].handle(encode(request)))

    def keys(self, session: str, names: Sequence[str] | None = None, round_: int = 0) -> dict[str, SignedKey]:
        return {n: self.ask(n, KeysRequest(session=session, round=round_, study=self.study)).next_key
                for n in (names or list(self.sites))}

    def round(self, build: Callable[..., Any], names: Sequence[str],
              peers: dict[str, SignedKey]) -> tuple[dict[str, Any], dict[str, SignedKey]]:
        """``build(secure=…)`` to every site in ``names``; the replies and the next round's peers."""
        replies = {n: self.ask(n, build(secure=SecureRound(peers=peers))) for n in names}
        bad = {n: r for n, r in replies.items() if isinstance(r, ErrorReply)}
        assert not bad, bad
        return replies, {n: r.next_key for n, r in replies.items()}

    @staticmethod
    def total(replies: dict[str, Any], field: str) -> np.ndarray:
        """The decoded secure sum of ``field`` over ``replies``."""
        return secagg.decode(secagg.ring_sum([getattr(r, field).ring() for r in replies.values()]),
                             n_terms=len(replies))


def refused(reply: object, code: str) -> ErrorReply:
    """``reply`` is the site's refusal with ``code`` (what the attacker gets back: no statistic)."""
    assert isinstance(reply, ErrorReply), f"the site answered: {reply!r}"
    assert reply.code == code, reply.message
    return reply


def three_sites(table: object) -> list[Site]:
    """Three in-process hospitals over ``table`` (GBSG2 in the privacy tests), split unevenly."""
    from tests.conftest import split_frame

    return [Site(f"h{i}", part) for i, part in enumerate(split_frame(table, 3, seed=1))]  # type: ignore[arg-type]

"""A site behind a Flower SuperNode: the ClientApp's side of :mod:`federated.flower_transport`.

Flower starts a fresh ClientApp process for every message, so a :class:`~federated.site.Site`
cannot stay in memory between the rounds of a fit. What carries over is kept in the node's
``Context.state``, which the SuperNode holds in its own memory at the hospital and never sends
to the SuperLink:

* a random 32-byte secret, from which the site derives each round's secure-aggregation key
  (:meth:`federated.secagg.KeyPair.derive`), so the key it announced can be re-created;
* the requests of the fit in progress (public: they came from the coordinator), which a new
  Site replays over its own rows (:meth:`federated.site.Site.replay`) before it answers;
* the SHA-256 of the site's data file, so a table changed in the middle of a fit is refused
  rather than mixed into it.

No patient-level value is kept between messages: the rows are read again from the hospital's
own file each time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import cast

from flwr.app import ConfigRecord, Context, Message

from ledger.files import sha256_file

from .exceptions import ProtocolError
from .flower_transport import pack, unpack
from .messages import ErrorReply, decode_request, encode
from .secagg import KeyPair
from .site import Site

STATE = "fedprog-site"
#: fits whose requests a node keeps (older ones are forgotten; their sessions cannot resume)
MAX_SESSIONS = 8

SiteFactory = Callable[[Callable[[str, int], KeyPair], bool], Site]
"""``(keygen, append_transcript) -> Site`` built from the node's config."""


def answer(message: Message, context: Context, make_site: SiteFactory, data: Path) -> Message:
    """Answer one fedprog request with the site ``make_site`` builds; update the node's state."""
    try:
        payload = unpack(message.content)
        session = decode_request(payload).session
    except ProtocolError as exc:
        return _reply(message, ErrorReply(session="-", round=0, code="bad-request", message=str(exc)))
    state = context.state.config_records.get(STATE)
    if state is None:
        state = ConfigRecord({"secret": os.urandom(32), "sessions": [], "sent": False})
    try:
        digest = sha256_file(data)
    except OSError:
        return _reply(message, ErrorReply(session=session, round=0, code="data",
                                          message="the site's data file cannot be read"))
    known = state.get(f"data:{session}")
    if known is not None and known != digest:
        return _reply(message, ErrorReply(session=session, round=0, code="data",
                                          message="the site's data changed during the fit"))
    secret = cast(bytes, state["secret"])
    site = make_site(lambda s, r: KeyPair.derive(secret, session=s, round=r), bool(state["sent"]))
    history = list(cast(list[bytes], state.get(f"log:{session}", [])))
    try:
        site.replay(history)
    except ProtocolError as exc:
        return _reply(message, ErrorReply(session=session, round=0, code="bad-request", message=str(exc)))
    out = site.handle(payload)
    _remember(state, session, history + [payload], digest)
    context.state[STATE] = state
    return Message(pack(out), reply_to=message)


def _remember(state: ConfigRecord, session: str, history: list[bytes], digest: str) -> None:
    sessions = [s for s in cast(list[str], state["sessions"]) if s != session] + [session]
    for old in sessions[:-MAX_SESSIONS]:
        state.pop(f"log:{old}", None)
        state.pop(f"data:{old}", None)
    state["sessions"] = sessions[-MAX_SESSIONS:]
    state[f"log:{session}"] = history
    state[f"data:{session}"] = digest
    state["sent"] = True


def _reply(message: Message, reply: ErrorReply) -> Message:
    return Message(pack(encode(reply)), reply_to=message)


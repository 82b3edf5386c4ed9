"""A site behind a Flower SuperNode: the ClientApp's side of :mod:`federated.protocol.flower_transport`.

Flower starts a fresh ClientApp process for every message, so a :class:`~federated.site.handler.Site`
cannot stay in memory between the rounds of a fit. Its rules do not travel with the messages:
its identity key, the studies its operator approved and its floors are files at the hospital,
named in the node config (:mod:`fedprog.flower_app`) and read again for every message. What
carries over is kept in the node's ``Context.state``, which the SuperNode holds in its own memory
at the hospital and never sends to the SuperLink:

* a random 32-byte secret, from which the site derives each round's secure-aggregation key
  (:meth:`federated.protocol.secagg.KeyPair.derive`), so the key it announced can be re-created (and
  signed again with its identity key: Ed25519 signatures are deterministic);
* the requests of the fit in progress that the site answered (public: they came from the
  coordinator), which a new Site replays over its own rows (:meth:`federated.site.handler.Site.replay`)
  before it answers, so the once-per-round rule holds across processes: a different request for
  a round already answered is refused (``replayed``), the same request again gets the same bytes
  (keys derived deterministically, masks bound to the request's digest);
* the SHA-256 of the site's data file, so a table changed in the middle of a fit is refused
  rather than mixed into it.

No patient-level value is kept between messages: the rows are read again from the hospital's
own file each time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, cast

from flwr.app import ConfigRecord, Context, Message

from federated.exceptions import ProtocolError
from federated.protocol.flower_records import pack, unpack
from federated.protocol.messages import ErrorReply, decode_reply, decode_request, encode
from federated.protocol.secagg import KeyPair
from federated.site.handler import Site
from ledger.files import sha256_file

STATE = "fedprog-site"
#: fits whose requests a node keeps (older ones are forgotten; their sessions cannot resume)
MAX_SESSIONS = 8

KeyGen = Callable[[str, int], KeyPair]


class SiteFactory(Protocol):
    """Builds the node's :class:`Site` from its config, with the round keys of ``keygen``.

    ``append_transcript``: continue the transcript earlier messages started; ``transcript``:
    whether to record at all (not for a repeat of a message already recorded)."""

    def __call__(self, keygen: KeyGen, append_transcript: bool, transcript: bool = True) -> Site: ...


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

    def keygen(s: str, r: int) -> KeyPair:
        return KeyPair.derive(secret, session=s, round=r)

    history = list(cast(list[bytes], state.get(f"log:{session}", [])))
    repeat = payload in history
    # a repeat is answered again from the state the site was in when it first answered it: the
    # same rows, keys and request give the same bytes (already in the transcript: not recorded)
    site = make_site(keygen, bool(state["sent"]), transcript=not repeat)
    try:
        site.replay(history[:history.index(payload)] if repeat else history)
    except ProtocolError as exc:
        return _reply(message, ErrorReply(session=session, round=0, code="bad-request", message=str(exc)))
    out = site.handle(payload)
    if not repeat and not isinstance(decode_reply(out), ErrorReply):
        # only answered requests are replayed (a refusal leaves no state, as in one process)
        _remember(state, session, history + [payload], digest)
    state["sent"] = bool(state["sent"]) or not repeat
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


def _reply(message: Message, reply: ErrorReply) -> Message:
    return Message(pack(encode(reply)), reply_to=message)

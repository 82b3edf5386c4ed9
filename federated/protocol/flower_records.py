"""fedprog's messages as Flower content: the codec both sides of a Flower deployment share.

A fedprog message travels unchanged, as the bytes of one ``ConfigRecord`` entry under
:data:`RECORD` (no pickle, no re-encoding). The coordinator's transport
(:mod:`federated.protocol.flower_transport`) and the ClientApp's site (:mod:`federated.site.flower`)
both use these functions, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.app import ConfigRecord, RecordDict

from federated.exceptions import ProtocolError

#: Flower message type of a fedprog request (the ClientApp's ``query`` action of that name)
MESSAGE_TYPE = "query.fedprog"
#: Flower message type asking a node for the site name in its node config
HELLO_TYPE = "query.fedprog_site"
RECORD = "fedprog"


def record(values: Mapping[str, Any]) -> RecordDict:
    """fedprog's values as Flower content: one ConfigRecord under :data:`RECORD`."""
    return RecordDict({RECORD: ConfigRecord(dict(values))})


def fields(content: RecordDict | None) -> dict[str, Any]:
    """The values fedprog put in Flower content (empty when there are none)."""
    found = content.config_records.get(RECORD) if content is not None else None
    return dict(found) if found is not None else {}


def pack(payload: bytes) -> RecordDict:
    """A fedprog message as Flower content: one ConfigRecord holding its bytes."""
    return record({"payload": payload})


def unpack(content: RecordDict) -> bytes:
    """The fedprog message bytes in Flower content; :class:`ProtocolError` if there are none."""
    payload = fields(content).get("payload")
    if not isinstance(payload, bytes):
        raise ProtocolError("Flower message carries no fedprog payload")
    return payload


def hello_reply(site: str, info: Mapping[str, int | str] | None = None) -> RecordDict:
    """The ClientApp's answer to :data:`HELLO_TYPE`: the site its node config names (and ``info``)."""
    return record({**(info or {}), "site": site})

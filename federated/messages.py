"""Versioned messages between the coordinator and the sites (``fedprog.msg/v1``).

Every request and reply is a frozen pydantic model with ``extra="forbid"``; numeric
payloads are :class:`~federated.arrays.WireArray` (finite, shape-checked). A transport
carries only the JSON bytes of these models, so an in-process call, Flower or anything
else moves the very same messages. No pickle.

Protocol (per fit; ``session`` ties the messages of one fit together):

====================  ===============================================  ================
request               the site answers with                            summed over sites
====================  ===============================================  ================
``prepare``           n, events, partition labels, event times          n, events, Σx, Σx²
``grid``              events per global grid time, Σ δ(x − c)           all
``risk-set``          S0, S1 (and Efron's T0, T1) per grid time at β     all
``information``       Σ_i w_i (A(t_i) − δ_i b_k(i)) x_i x_iᵀ              all
``counts``            at-risk and event counts per group and grid time    all
====================  ===============================================  ================
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .arrays import WireArray
from .exceptions import ProtocolError
from .study import CohortSpec

SCHEMA: Literal["fedprog.msg/v1"] = "fedprog.msg/v1"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["fedprog.msg/v1"] = SCHEMA
    session: str = Field(min_length=1, max_length=128)
    round: int = Field(ge=0)


# ---------------------------------------------------------------- requests
class PrepareRequest(_Message):
    """Load and check the cohort; report sizes, labels and (grid) event times."""

    kind: Literal["prepare"] = "prepare"
    cohort: CohortSpec


class GridRequest(_Message):
    """The global event-time grid per label, and the global covariate centre."""

    kind: Literal["grid"] = "grid"
    labels: list[str]
    times: list[WireArray]
    center: WireArray


class RiskSetRequest(_Message):
    """Risk-set sums at coefficients ``beta`` (centred covariates)."""

    kind: Literal["risk-set"] = "risk-set"
    beta: WireArray
    efron: bool


class InformationRequest(_Message):
    """Second-moment sums weighted by the coordinator's per-time weights ``a``, ``b``."""

    kind: Literal["information"] = "information"
    beta: WireArray
    a: WireArray
    b: WireArray


class CountsRequest(_Message):
    """At-risk and event counts per label on one global grid (Kaplan–Meier, log-rank)."""

    kind: Literal["counts"] = "counts"
    labels: list[str]
    times: WireArray


Request = Annotated[
    PrepareRequest | GridRequest | RiskSetRequest | InformationRequest | CountsRequest,
    Field(discriminator="kind"),
]


# ------------------------------------------------------------------ replies
class PrepareReply(_Message):
    kind: Literal["prepare"] = "prepare"
    n: int = Field(ge=0)
    events: int = Field(ge=0)
    labels: list[str]
    event_times: list[WireArray]
    sum_x: WireArray
    sum_x2: WireArray


class GridReply(_Message):
    kind: Literal["grid"] = "grid"
    events: WireArray
    sum_event_x: WireArray


class RiskSetReply(_Message):
    kind: Literal["risk-set"] = "risk-set"
    s0: WireArray
    s1: WireArray
    t0: WireArray | None = None
    t1: WireArray | None = None


class InformationReply(_Message):
    kind: Literal["information"] = "information"
    matrix: WireArray


class CountsReply(_Message):
    kind: Literal["counts"] = "counts"
    at_risk: WireArray
    events: WireArray


class ErrorReply(_Message):
    """The site refuses: ``code`` is machine-readable, ``message`` one line for people."""

    kind: Literal["error"] = "error"
    code: Literal["bad-request", "data", "overflow", "policy"]
    message: str


Reply = Annotated[
    PrepareReply | GridReply | RiskSetReply | InformationReply | CountsReply | ErrorReply,
    Field(discriminator="kind"),
]

_REQUEST: TypeAdapter[Request] = TypeAdapter(Request)
_REPLY: TypeAdapter[Reply] = TypeAdapter(Reply)


def _decode(adapter: TypeAdapter[Any], payload: bytes, what: str) -> Any:
    try:
        return adapter.validate_json(payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        raise ProtocolError(f"invalid {what}: {loc}: {err['msg']}") from None


def decode_request(payload: bytes) -> Request:
    """Parse and validate a request; :class:`ProtocolError` on anything off-schema."""
    return _decode(_REQUEST, payload, "request")


def decode_reply(payload: bytes) -> Reply:
    """Parse and validate a reply; :class:`ProtocolError` on anything off-schema."""
    return _decode(_REPLY, payload, "reply")


def encode(message: BaseModel) -> bytes:
    """The wire form of a message: compact JSON."""
    return message.model_dump_json().encode("utf-8")

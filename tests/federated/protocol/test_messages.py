"""Wire format: exact arrays, strict schemas; NaN/inf, wrong shapes, unknown fields rejected."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from federated.exceptions import ProtocolError
from federated.protocol.arrays import WireArray
from federated.protocol.messages import (
    SCHEMA,
    InformationReply,
    RiskSetReply,
    RiskSetRequest,
    decode_reply,
    decode_request,
    encode,
)

pytestmark = pytest.mark.req("SRS-FED-008")


def test_float_arrays_round_trip_bit_exactly() -> None:
    rng = np.random.default_rng(0)
    arr = rng.normal(size=(7, 3)) * 10.0 ** rng.integers(-300, 300, size=(7, 3))
    back = WireArray.from_numpy(arr).to_numpy()
    assert back.dtype == np.float64 and back.shape == (7, 3)
    assert np.array_equal(back.view(np.uint64), arr.view(np.uint64))


def test_integer_arrays_stay_integers() -> None:
    back = WireArray.from_numpy(np.array([1, 2, 3])).to_numpy()
    assert back.dtype == np.int64 and back.tolist() == [1, 2, 3]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_when_encoding(bad: float) -> None:
    with pytest.raises(ValueError, match="NaN or infinity"):
        WireArray.from_numpy(np.array([1.0, bad]))


def _risk_reply(**changes: object) -> bytes:
    reply = RiskSetReply(session="s", round=1, s0=WireArray.from_numpy(np.ones(2)),
                         s1=WireArray.from_numpy(np.ones((2, 1))))
    body = json.loads(encode(reply))
    body.update(changes)
    return json.dumps(body).encode()


def test_valid_reply_decodes() -> None:
    reply = decode_reply(_risk_reply())
    assert isinstance(reply, RiskSetReply) and reply.schema_version == SCHEMA


def test_nan_smuggled_in_bytes_is_rejected_on_receipt() -> None:
    raw = base64.b64encode(np.array([1.0, np.nan]).tobytes()).decode()
    with pytest.raises(ProtocolError, match="s0.*NaN"):
        decode_reply(_risk_reply(s0={"dtype": "f8", "shape": [2], "data": raw}))


def test_shape_not_matching_bytes_is_rejected() -> None:
    raw = base64.b64encode(np.ones(3).tobytes()).decode()
    with pytest.raises(ProtocolError, match="24 bytes, want 16"):
        decode_reply(_risk_reply(s0={"dtype": "f8", "shape": [2], "data": raw}))


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="patient_rows.*Extra inputs"):
        decode_reply(_risk_reply(patient_rows=[[1, 2]]))


def test_wrong_schema_version_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="schema_version"):
        decode_reply(_risk_reply(schema_version="fedprog.msg/v0"))


def test_unknown_kind_and_garbage_are_rejected() -> None:
    with pytest.raises(ProtocolError):
        decode_reply(_risk_reply(kind="pickle"))
    with pytest.raises(ProtocolError):
        decode_request(b"\x80\x04not json")


def test_request_round_trip() -> None:
    req = RiskSetRequest(session="s", round=3, study="ab" * 32, beta=WireArray.from_numpy(np.zeros(4)),
                         efron=True)
    assert decode_request(encode(req)) == req


def test_a_request_names_its_study() -> None:
    """Every request names the approved study by its SHA-256 (issue 14): without it, or with
    anything but 64 hex digits, it does not decode."""
    body = json.loads(encode(RiskSetRequest(session="s", round=3, study="ab" * 32,
                                            beta=WireArray.from_numpy(np.zeros(4)), efron=True)))
    for study in (None, "not-a-digest", "AB" * 32):
        changed = {k: v for k, v in body.items() if k != "study"}
        if study is not None:
            changed["study"] = study
        with pytest.raises(ProtocolError, match="study"):
            decode_request(json.dumps(changed).encode())


def test_messages_are_immutable() -> None:
    reply = InformationReply(session="s", round=0, matrix=WireArray.from_numpy(np.eye(2)))
    with pytest.raises(ValueError, match="frozen"):
        reply.round = 5  # type: ignore[misc]

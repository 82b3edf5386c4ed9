"""A scoring worker process of :class:`device.fhir.pool.ScoringPool` (``python -m device.fhir.pool_worker``).

It speaks length-prefixed JSON frames on stdin/stdout (:func:`read_frame`, :func:`write_frame`:
a 4-byte big-endian length, then that many bytes of UTF-8 JSON; no pickle). After warming up it
sends ``{"ready": pid}``; then, for each request ``{"sha256", "artifact", "entries", "start",
"occurrence"}`` it (re)loads the model when ``sha256`` changes — ``artifact`` is sent only then and
:func:`device.model.load_model` verifies its hash and contract — and answers ``{"results": [...]}``,
one item per entry: ``{"resource": RiskAssessment, "patient": "Patient/x"}`` or ``{"error":
{"status", "code", "diagnostics", "expression"}}``, computed by
:func:`device.fhir.service.assess_entries`, the code path of an in-process batch. Anything that
fails the whole request answers ``{"failed": reason}`` and the worker carries on. It exits on
end of input (its server closed the pipe or died).
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import traceback
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..model import load_model
from .service import assess_entries

try:
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    def loads(data: bytes) -> Any:
        return orjson.loads(data)
except ImportError:  # pragma: no cover - orjson is a dependency; plain json is the fallback
    import json

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")

    def loads(data: bytes) -> Any:
        return json.loads(data)

#: largest frame either side accepts (a 10 000-patient batch is ~45 MB of JSON)
MAX_FRAME = 256 * 1024 * 1024
PROTOCOL = "fedprog.pool/v1"


class ProtocolError(ValueError):
    """A frame that is not what the protocol allows (bad length, not JSON, wrong shape)."""


_MESSAGE = ConfigDict(extra="forbid", strict=True, frozen=True)


class Ready(BaseModel):
    """A worker's first message: warmed up, ready for requests."""

    model_config = _MESSAGE
    protocol: Literal["fedprog.pool/v1"]
    ready: int


class Request(BaseModel):
    """A chunk of batch entries (``Bundle.entry[start]`` onwards) to score with model ``sha256``."""

    model_config = _MESSAGE
    protocol: Literal["fedprog.pool/v1"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    #: the model's artifact JSON, sent only when the worker does not hold that model yet
    artifact: dict[str, Any] | None = None
    #: the ``resource`` of each entry (``None`` for an entry without one)
    entries: list[Any]
    start: int = Field(default=0, ge=0)
    #: ``RiskAssessment.occurrenceDateTime`` of the whole batch
    occurrence: str | None = None


class EntryError(BaseModel):
    """One entry's refusal (the fields of a :class:`device.fhir.errors.FhirError`)."""

    model_config = _MESSAGE
    status: int = Field(ge=400, le=599)
    code: str
    diagnostics: str
    expression: list[str]


class Scored(BaseModel):
    """One entry's checked RiskAssessment and the patient it is about."""

    model_config = _MESSAGE
    resource: dict[str, Any]
    patient: str

    @model_validator(mode="after")
    def _about_patient(self) -> Scored:
        ra = self.resource
        if ra.get("resourceType") != "RiskAssessment" or ra.get("subject") != {"reference": self.patient} \
                or not isinstance(ra.get("id"), str) or not isinstance(ra.get("occurrenceDateTime"), str):
            raise ValueError("resource is not a RiskAssessment of the patient with an id and occurrence")
        return self


class Refused(BaseModel):
    model_config = _MESSAGE
    error: EntryError


class Reply(BaseModel):
    """A worker's answer: one result per entry, in order, or why the whole request failed."""

    model_config = _MESSAGE
    protocol: Literal["fedprog.pool/v1"]
    results: list[Scored | Refused] | None = None
    failed: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Reply:
        if (self.results is None) == (self.failed is None):
            raise ValueError("a reply has either results or failed")
        return self


def encode_frame(obj: Any) -> bytes:
    body = dumps(obj)
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return len(body).to_bytes(4, "big") + body


def decode_length(head: bytes) -> int:
    n = int.from_bytes(head, "big")
    if n > MAX_FRAME:
        raise ProtocolError(f"frame length {n} exceeds {MAX_FRAME}")
    return n


def decode_body(body: bytes) -> Any:
    try:
        return loads(body)
    except ValueError as exc:
        raise ProtocolError(f"frame is not JSON: {str(exc)[:200]}") from None


def _read_exactly(stream: IO[bytes], n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(stream: IO[bytes]) -> Any:
    """The next message on a blocking stream; ``None`` at end of input."""
    head = _read_exactly(stream, 4)
    if head is None:
        return None
    body = _read_exactly(stream, decode_length(head))
    if body is None:
        raise ProtocolError("end of input inside a frame")
    return decode_body(body)


def write_frame(stream: IO[bytes], obj: Any) -> None:
    stream.write(encode_frame(obj))
    stream.flush()


def warm_up() -> None:
    """Import and exercise the FHIR models a batch uses, so the first batch runs at full speed."""
    from fhir.resources.R4B import get_fhir_model_class

    from .examples import BASE, EFFECTIVE
    from .resources import INTERVAL_URL, check_risk_assessment

    get_fhir_model_class("Patient").model_validate({"resourceType": "Patient", "id": "p",
                                                    "birthDate": "1970-01-01"})
    get_fhir_model_class("Observation").model_validate({
        "resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/p"}, "effectiveDateTime": EFFECTIVE,
        "valueQuantity": {"value": 1.5, "unit": "mm", "system": "http://unitsofmeasure.org", "code": "mm"}})
    get_fhir_model_class("Bundle").model_validate({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": f"{BASE}/Patient/p"}]})
    get_fhir_model_class("Parameters").model_validate({"resourceType": "Parameters", "parameter": [
        {"name": "asOf", "valueDate": "2024-06-01"}]})
    check_risk_assessment({
        "resourceType": "RiskAssessment", "id": "r", "status": "final", "subject": {"reference": "Patient/p"},
        "method": {"text": "warm-up"}, "occurrenceDateTime": EFFECTIVE, "basis": [{"reference": "Patient/p"}],
        "prediction": [{"outcome": {"text": "x"}, "probabilityDecimal": 0.5, "relativeRisk": 1.0,
                        "whenRange": {"low": {"value": 0}, "high": {"value": 1}},
                        "extension": [{"url": INTERVAL_URL, "valueRange": {
                            "low": {"value": 0.4}, "high": {"value": 0.6}}}]}]})


class Worker:
    """The state of one worker: the model it holds (loaded from the last artifact it was sent)."""

    def __init__(self) -> None:
        self.model: Any = None

    def handle(self, message: Any) -> dict[str, Any]:
        """The reply to one request (never raises)."""
        try:
            return {"protocol": PROTOCOL, "results": self._results(Request.model_validate(message))}
        except Exception as exc:  # the whole request failed; the worker stays in service
            traceback.print_exc(file=sys.stderr)
            return {"protocol": PROTOCOL, "failed": f"{type(exc).__name__}: {exc}"[:2000]}

    def _results(self, request: Request) -> list[dict[str, Any]]:
        if request.artifact is not None:
            self.model = None
            model = load_model(request.artifact)
            if model.sha256 != request.sha256:
                raise ProtocolError(f"artifact {model.sha256} is not the requested model {request.sha256}")
            self.model = model
        if self.model is None or self.model.sha256 != request.sha256:
            raise ProtocolError(f"model {request.sha256} is not loaded here; send its artifact")
        out: list[dict[str, Any]] = []
        for r in assess_entries(self.model, request.entries, request.start, request.occurrence):
            if r.resource is not None:
                out.append({"resource": r.resource, "patient": r.patient})
            elif r.error is not None:
                e = r.error
                out.append({"error": {"status": e.status, "code": e.code, "diagnostics": e.diagnostics,
                                      "expression": e.expression}})
            else:
                raise ProtocolError("an entry has neither a result nor an error")
        return out


def main() -> int:
    """Serve requests on stdin/stdout until end of input."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server; it closes us
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints (ours or a library's) go to stderr, never into the protocol
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    warm_up()
    gc.freeze()  # what the imports built lives as long as the process: keep it out of every collection
    write_frame(out, {"protocol": PROTOCOL, "ready": os.getpid()})
    worker = Worker()
    while True:
        gc.disable()  # a request allocates a lot, little of it cyclic: collect once it is answered
        try:
            request = read_frame(inp)
        except ProtocolError as exc:
            print(f"fedprog scoring worker {os.getpid()}: {exc}; exiting", file=sys.stderr)
            return 2
        if request is None:
            return 0
        write_frame(out, worker.handle(request))
        gc.enable()
        gc.collect()

if __name__ == "__main__":
    sys.exit(main())

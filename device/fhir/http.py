"""The HTTP edge shared by every route: content negotiation (406/415), JSON bodies (400),
bearer-token authorisation (401/403) and the per-request audit context. Routes declare them as
FastAPI dependencies (:mod:`device.fhir.deps`) rather than calling them by hand."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from .audit import AuditContext
from .auth import Principal, TokenVerifier
from .errors import FhirError
from .service import ModelSource
from .store import FhirStore

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
_ANY = ("*/*", "application/*")
#: largest request body accepted (a 10 000-patient batch fits comfortably)
MAX_BODY = 64 * 1024 * 1024
#: bodies at least this large are parsed in a worker thread, not on the event loop
OFF_LOOP_BYTES = 256 * 1024


class FhirResponse(Response):
    """A FHIR JSON response (``application/fhir+json; charset=utf-8``)."""

    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)  # compact UTF-8; refuses NaN/inf rather than emit invalid JSON


@dataclass
class ServerState:
    """Everything the routes share (``app.state.fedprog``)."""

    base_url: str
    verifier: TokenVerifier
    store: FhirStore
    models: ModelSource
    software_version: str
    started: str
    #: the sites' consent registries, for the patient-facing Consent API (None: not offered)
    consent: Any = None


def state(request: Request) -> ServerState:
    st: ServerState = request.app.state.fedprog
    return st


def audit_ctx(request: Request) -> AuditContext:
    ctx: AuditContext = request.state.audit
    return ctx


def _media_types(header: str) -> list[str]:
    return [part.split(";")[0].strip().lower() for part in header.split(",") if part.strip()]


def negotiate(request: Request) -> None:
    """406 unless the client accepts FHIR JSON (``Accept`` or the ``_format`` parameter)."""
    fmt = request.query_params.get("_format")
    if fmt is not None and fmt.lower() not in ("json", *_JSON_TYPES):
        raise FhirError(406, "not-supported",
                        f"_format={fmt} is not supported: this server speaks FHIR JSON only", ["_format"])
    accept = request.headers.get("accept")
    if accept and not any(t in (*_JSON_TYPES, *_ANY) for t in _media_types(accept)):
        raise FhirError(406, "not-supported", f"cannot answer in {accept}: this server speaks "
                        "application/fhir+json only")


async def raw_body(request: Request) -> tuple[bytes, str]:
    """The request's bytes (413 over :data:`MAX_BODY`) and their SHA-256, kept for the audit trail."""
    raw = await request.body()  # bounded while it streams (device.fhir.edge.BodyLimitMiddleware)
    if len(raw) > MAX_BODY:
        raise FhirError(413, "too-costly", f"request body of {len(raw)} bytes exceeds {MAX_BODY}")
    digest = hashlib.sha256(raw).hexdigest()
    audit_ctx(request).input_sha256 = digest
    return raw, digest


async def json_body(request: Request) -> tuple[dict[str, Any], str]:
    """The request's JSON object and the SHA-256 of its bytes (415 wrong type, 400 not JSON)."""
    ctype = request.headers.get("content-type")
    if not ctype:
        raise FhirError(415, "not-supported", "Content-Type missing: send application/fhir+json")
    if (_media_types(ctype) or [""])[0] not in _JSON_TYPES:
        raise FhirError(415, "not-supported",
                        f"Content-Type {ctype} is not supported: send application/fhir+json")
    raw, digest = await raw_body(request)
    try:  # RFC 8259 strictly: NaN/Infinity literals are refused; a large body parses off the event loop
        body = orjson.loads(raw) if len(raw) < OFF_LOOP_BYTES else await run_in_threadpool(orjson.loads, raw)
    except orjson.JSONDecodeError as exc:
        raise FhirError(400, "structure", f"request body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise FhirError(400, "structure",
                        "request body must be a FHIR resource (a JSON object with resourceType)")
    return body, digest


def authenticate(request: Request) -> Principal:
    """The verified bearer token's principal (401 when missing or invalid)."""
    principal = state(request).verifier.verify(request.headers.get("authorization"))
    audit_ctx(request).who = principal.subject
    return principal


def authorize(request: Request, resource_type: str, interaction: str,
              patient: str | None = None) -> Principal:
    """Verify the bearer token (401) and its scope for ``resource_type``/``interaction`` (403)."""
    principal = authenticate(request)
    principal.require(resource_type, interaction, patient)
    return principal

"""The FastAPI application: FHIR R4 routes under ``/fhir`` (CDS Hooks and Consent are routers
of their own), one OperationOutcome for every error, one AuditEvent for every request."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import resources, service
from .audit import AuditContext, audit_event
from .deps import (
    Audited,
    Authenticated,
    Authorized,
    Grant,
    Negotiated,
    PredictRiskRequest,
    Risk,
    RiskService,
    predict_risk_request,
)
from .edge import BodyLimitMiddleware, SecurityHeadersMiddleware
from .errors import FhirError, operation_outcome
from .http import FhirResponse, ServerState, audit_ctx, state
from .pool import Scorer, ScoringPool

log = logging.getLogger("fedprog.fhir")
#: the status audited for a request whose client disconnected before its body was complete (the
#: nginx convention "499 Client Closed Request"; no response is sent): a minor failure, not a 500
CLIENT_CLOSED = 499

_FHIR_BODY = {"requestBody": {"required": True, "content": {"application/fhir+json": {"schema": {
    "type": "object", "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string", "enum": ["Parameters", "Bundle"]}}}}}}}
_OUTCOME = {"description": "OperationOutcome",
            "content": {"application/fhir+json": {"schema": {"type": "object"}}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: _OUTCOME for s in (400, 401, 403, 404, 406, 413, 415, 422, 503)}


def _error_response(exc: FhirError) -> FhirResponse:
    return FhirResponse(exc.outcome(), status_code=exc.status, headers=exc.headers or None)


def _register_errors(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def fhir_error(request: Request, exc: FhirError) -> Response:
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        what = f"{request.method} {request.url.path}"
        text = {404: f"{what}: no such resource or operation", 405: f"{what}: method not supported"}
        return FhirResponse(operation_outcome(code, text.get(exc.status_code, str(exc.detail))),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def bad_params(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return FhirResponse(operation_outcome("invalid", f"{where}: {first.get('msg', 'invalid request')}",
                                              [where] if where else None), status_code=400)


class AuditMiddleware:
    """Pure ASGI middleware: an AuditEvent for every HTTP request, made durable — in one
    transaction with the resources the response names (``AuditContext.stage``) — before the
    response starts, so no answered request is missing from the trail and no RiskAssessment is
    returned that was not stored. A defect gives a 500 OperationOutcome, never a traceback; it
    is logged and audited too, as is a store failure (which replaces the response)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ctx = AuditContext(path=scope["path"], client=client[0] if client else "")
        scope.setdefault("state", {})["audit"] = ctx
        started = False

        replaced = False

        async def audited_send(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return  # the body of a response the store could not back
            if message["type"] == "http.response.start":
                started = True
                try:
                    await _record(scope, ctx, int(message["status"]))
                except Exception:
                    log.exception("could not store %s %s", scope["method"], scope["path"])
                    replaced, ctx.stage = True, []
                    await _store_failed(scope, ctx, send)
                    return
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except ClientDisconnect:  # the client left mid-body: nothing to answer, a client abort
            if started:
                raise
            await _record(scope, ctx, CLIENT_CLOSED, "client closed the connection before the request "
                          "body was complete; not processed")
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if started:
                raise
            response = FhirResponse(operation_outcome(
                "exception", "internal error (recorded in the audit trail); the request was not processed"),
                status_code=500)
            await response(scope, receive, audited_send)


async def _record(scope: Scope, ctx: AuditContext, status: int, why: str = "") -> None:
    st: ServerState = scope["app"].state.fedprog
    what = f"{scope['method']} {scope['path']} -> {status}" + (f" ({why})" if why else "")
    event = audit_event(ctx, id_=str(uuid.uuid4()), status=status, description=what,
                        recorded=service.now_iso(), method=scope["method"])
    await st.store.add_async([*ctx.stage, (event, None, event["recorded"])])


async def _store_failed(scope: Scope, ctx: AuditContext, send: Send) -> None:
    """Answer 500 when the store refused a response's resources; audit that if it still can."""
    response = FhirResponse(operation_outcome("exception", "the result could not be stored durably; "
                                              "it was not returned — retry the request"), status_code=500)
    try:
        await _record(scope, ctx, 500)
    except Exception:
        log.exception("the audit trail could not record a store failure")
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def _register_fhir(app: FastAPI) -> None:
    @app.get("/fhir/metadata", tags=["FHIR"], responses=_ERRORS, response_class=FhirResponse,
             dependencies=[Depends(Audited("capabilities")), Negotiated])
    async def metadata(request: Request) -> FhirResponse:
        """The CapabilityStatement (no token needed, FHIR R4 §3.1.0.13)."""
        st = state(request)
        return FhirResponse(resources.capability_statement(st.base_url, st.started, st.software_version,
                                                           service.served_entry(st.models)))

    @app.get("/fhir/OperationDefinition/predict-risk", tags=["FHIR"], responses=_ERRORS,
             response_class=FhirResponse, dependencies=[Negotiated])
    async def operation_definition() -> FhirResponse:
        """The ``$predict-risk`` OperationDefinition."""
        return FhirResponse(resources.OPERATION)

    @app.post("/fhir/Patient/$predict-risk", tags=["FHIR"], responses=_ERRORS, openapi_extra=_FHIR_BODY,
              response_class=FhirResponse, dependencies=_SCORING)
    async def predict_risk(req: Scoring, risk: Risk) -> FhirResponse:
        """Score a patient (Parameters or Bundle) or a ``batch`` Bundle of patients."""
        return await _predict(risk, req)

    @app.post("/fhir", tags=["FHIR"], responses=_ERRORS, openapi_extra=_FHIR_BODY,
              response_class=FhirResponse, dependencies=_SCORING)
    async def batch(req: Scoring, risk: Risk) -> FhirResponse:
        """A ``batch`` Bundle whose entries each POST ``Patient/$predict-risk``."""
        if not req.is_batch:
            raise FhirError(422, "not-supported", "POST [base] takes a Bundle of type batch", ["Bundle.type"])
        for k, entry in enumerate(service.batch_entries(req.resource)):
            r = entry.get("request") if isinstance(entry, dict) else None
            url = r.get("url") if isinstance(r, dict) else None
            if not isinstance(url, str) or url.split("?")[0].rstrip("/") not in (
                    "Patient/$predict-risk", "/Patient/$predict-risk"):
                raise FhirError(422, "not-supported", f"Bundle.entry[{k}].request.url must be "
                                "Patient/$predict-risk", [f"Bundle.entry[{k}].request.url"])
        return await _predict(risk, req)


def _register_reads(app: FastAPI) -> None:
    @app.get("/fhir/RiskAssessment/{id_}", tags=["FHIR"], responses=_ERRORS, response_class=FhirResponse,
             dependencies=[Negotiated])
    async def read_risk_assessment(request: Request, principal: Authenticated, id_: str) -> FhirResponse:
        """A stored RiskAssessment (its scope checked against the patient it is about)."""
        ra = state(request).store.get("RiskAssessment", id_)
        if ra is None:  # existence is told only to a caller who could read such a resource
            principal.require("RiskAssessment", "r", principal.patient)
            raise FhirError(404, "not-found", f"RiskAssessment/{id_} is not known")
        subject = ra["subject"]["reference"]
        audit_ctx(request).patients.append(subject)
        principal.require("RiskAssessment", "r", subject.removeprefix("Patient/"))
        return FhirResponse(ra)

    @app.get("/fhir/RiskAssessment", tags=["FHIR"], responses=_ERRORS, response_class=FhirResponse,
             dependencies=[Depends(Audited("search-type")), Negotiated])
    async def search_risk_assessment(
            request: Request, grant: Annotated[Grant, Depends(Authorized("RiskAssessment", "s", "searched"))],
            subject: str | None = None, patient: str | None = None, _count: int = 100) -> FhirResponse:
        """RiskAssessments, newest first, optionally of one patient (``subject`` or ``patient``)."""
        ref = None if grant.patient is None else f"Patient/{grant.patient}"
        return _search(request, "RiskAssessment", ref, _count)

    @app.get("/fhir/AuditEvent", tags=["FHIR"], responses=_ERRORS, response_class=FhirResponse,
             dependencies=[Depends(Audited("search-type")), Negotiated,
                           Depends(Authorized("AuditEvent", "s"))])
    async def search_audit(request: Request, _count: int = 100) -> FhirResponse:
        """The audit trail, newest first (needs an AuditEvent read scope, e.g. system/AuditEvent.rs)."""
        return _search(request, "AuditEvent", None, _count)


#: the edge of both scoring routes: audited as an operation, FHIR JSON negotiated; the body
#: (:data:`Scoring`) is read only once a token allowed to create RiskAssessments is verified
_SCORING = [Depends(Audited("operation")), Negotiated]
Scoring = Annotated[PredictRiskRequest, Depends(predict_risk_request)]


def _search(request: Request, resource_type: str, ref: str | None, count: int) -> FhirResponse:
    """A searchset of ``resource_type`` (of patient ``ref``), newest first; 400 unless 0 ≤ count ≤ 1000."""
    if not 0 <= count <= 1000:
        raise FhirError(400, "value", "_count must be between 0 and 1000", ["_count"])
    st = state(request)
    total, found = st.store.search(resource_type, ref, count)
    return FhirResponse(resources.searchset(found, total, st.base_url))


async def _predict(risk: RiskService, req: PredictRiskRequest) -> FhirResponse:
    """Score through the one service path (:class:`device.fhir.deps.RiskService`: off the event
    loop, so no request — however costly its inputs — stalls the others); the RiskAssessments
    are stored with the request's AuditEvent, in one transaction, before the response starts."""
    if req.is_batch:
        return FhirResponse((await risk.assess_batch(req)).bundle)
    prediction = await risk.assess(req.resource, req.only_patient)
    return FhirResponse(prediction.resource, headers={"Location": risk.location(prediction)})


def create_app(st: ServerState, routers: list[Any] | None = None, batch_workers: int = 0) -> FastAPI:
    """The ASGI application over ``st`` (plus extra routers: CDS Hooks, Consent).

    ``batch_workers`` > 0 starts that many scoring worker processes for large batches
    (:class:`device.fhir.pool.ScoringPool`, ``app.state.pool``); they are closed when the app
    shuts down (its lifespan), else at interpreter exit. 0 scores every batch in-process.
    """
    pool = ScoringPool(batch_workers) if batch_workers > 0 else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if pool is not None:
            await run_in_threadpool(pool.wait_ready)
        try:
            yield
        finally:
            if pool is not None:
                await run_in_threadpool(pool.close)

    # no interactive docs: FastAPI's load Swagger UI / ReDoc from a CDN; the schema is at /openapi.json
    app = FastAPI(title="fedprog FHIR R4 risk service", version=st.software_version, lifespan=lifespan,
                  description="FHIR R4 $predict-risk, RiskAssessment, AuditEvent, Consent and CDS Hooks.",
                  docs_url=None, redoc_url=None)
    app.state.fedprog = st
    app.state.pool = pool
    app.state.scorer = Scorer(pool)
    _register_errors(app)
    _register_fhir(app)
    _register_reads(app)
    for router in routers or []:
        app.include_router(router)
    app.add_middleware(BodyLimitMiddleware)  # inside the audit: a 413 is audited too
    app.add_middleware(AuditMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    try:
        _warm_up(st)
    except BaseException:
        if pool is not None:
            pool.close()
        raise
    return app


def _warm_up(st: ServerState) -> None:
    """Build every validator and code path once (a typical patient scored, nothing stored), so
    the first request after start is as fast as later ones."""
    from .examples import parameters, patient_bundle, typical_values

    resources.warm_up()
    try:
        model = st.models.current()
    except FhirError:  # nothing in service yet: warmed on first use instead
        return
    service.assess(model, parameters(patient_bundle(model.inputs, typical_values(model))))

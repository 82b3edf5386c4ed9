"""Patients' own study consent through FHIR R4: read it, and withdraw it.

- ``GET /fhir/Consent?patient=<id|Patient/id>``: every version of the patient's Consent, oldest
  first, as a ``searchset`` Bundle (FHIR R4 §3.1.1.4); an unknown patient gives an empty Bundle.
- ``POST /fhir/Consent`` (create, 201) and ``PUT /fhir/Consent/<id>`` (update, 200): a Consent whose
  ``status`` is ``inactive`` withdraws the patient's active consent; the answer is the new,
  inactive Consent version (FHIR R4 Consent, https://hl7.org/fhir/R4/consent.html: ``inactive`` =
  "the consent is terminated or replaced").

Authorisation: SMART App Launch v2 scopes. A patient portal's ``patient/Consent.*`` token (``.rs``
to read, ``.c``/``.u`` to withdraw) acts only for the patient in its ``patient`` claim; ``user/``
and ``system/`` scopes (staff) are not bound to a patient.

Only withdrawal is offered here: consent is given at the site (informed-consent conversation,
``fedprog consent grant``), and withdrawing through the portal takes one request, no reason
asked. The registries stay behind :class:`ConsentPort` (``ServerState.consent``), so this
package imports neither ``consent`` nor ``fedprog``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from .auth import Principal
from .deps import Audited, Authenticated, Negotiated
from .errors import FhirError
from .http import FhirResponse, audit_ctx, json_body, state
from .resources import searchset

_ID = r"[A-Za-z0-9\-.]{1,64}"
_BARE_ID = re.compile(_ID)
_PATIENT_REF = re.compile(rf"(?:https?://\S+/)?Patient/({_ID})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_WITHDRAW_ONLY = "this endpoint only withdraws consent (status inactive); consent is given at the site"
_OUTCOME = {"description": "OperationOutcome",
            "content": {"application/fhir+json": {"schema": {"type": "object"}}}}
_READ_ERRORS: dict[int | str, dict[str, Any]] = {s: _OUTCOME for s in (400, 401, 403, 404, 406)}
_ERRORS: dict[int | str, dict[str, Any]] = {s: _OUTCOME for s in (*_READ_ERRORS, 409, 413, 415, 422)}
_BODY = {"requestBody": {"required": True, "content": {"application/fhir+json": {"schema": {
    "type": "object", "required": ["resourceType", "status", "patient"],
    "properties": {"resourceType": {"type": "string", "enum": ["Consent"]},
                   "status": {"type": "string", "enum": ["inactive"]},
                   "patient": {"type": "object", "properties": {"reference": {"type": "string"}}},
                   "dateTime": {"type": "string"}}}}}}}


class ConsentConflict(ValueError):
    """The patient has no active consent to withdraw (HTTP 409)."""


class ConsentNotFound(LookupError):
    """No consent is recorded for the patient (HTTP 404 on withdrawal)."""


class ConsentRejected(ValueError):
    """A withdrawal the registry refuses as a business rule, e.g. dated before the consent (422)."""


class ConsentPort(Protocol):
    """The sites' consent registries as the Consent API needs them (``ServerState.consent``).

    Implementations must be safe to call from the server's worker threads.
    """

    def history(self, patient: str) -> list[dict[str, Any]]:
        """The patient's Consent resources (FHIR R4 JSON), oldest first; empty when unknown."""
        ...

    def withdraw(self, patient: str, date: str) -> dict[str, Any]:
        """Revoke the patient's active consent as of ``date`` (ISO date), anchored in the ledger.

        Returns the new Consent (status ``inactive``). Raises :class:`ConsentNotFound` (unknown
        patient), :class:`ConsentConflict` (nothing active) or :class:`ConsentRejected`.
        """
        ...


# ------------------------------------------------------------------- helpers
async def _port(request: Request) -> ConsentPort:
    """Dependency: the consent registries (404 when this server offers no Consent API)."""
    port: ConsentPort | None = state(request).consent
    if port is None:
        raise FhirError(404, "not-found", "this server does not offer the Consent API")
    return port


def _query_patient(value: str) -> str:
    """The bare id of ``patient=<id>`` or ``patient=Patient/<id>`` (400 otherwise)."""
    ref = _PATIENT_REF.fullmatch(value)
    if ref is not None:
        return ref.group(1)
    if _BARE_ID.fullmatch(value) is None:
        raise FhirError(400, "value", "patient must be a Patient id or Patient/<id>", ["patient"])
    return value


def _require(principal: Principal, interaction: str, patient: str) -> None:
    """SMART scope check for ``Consent.<interaction>`` on ``patient`` (bare id; a token whose
    ``patient`` claim is written ``Patient/<id>`` is matched too)."""
    claim = principal.patient if principal.patient == f"Patient/{patient}" else patient
    principal.require("Consent", interaction, claim)


def _body_patient(body: dict[str, Any]) -> str:
    ref = body.get("patient")
    if not isinstance(ref, dict) or ref.get("reference") is None:
        raise FhirError(422, "required", "Consent.patient.reference (Patient/<id>) is required",
                        ["Consent.patient.reference"])
    text = ref["reference"]
    match = _PATIENT_REF.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise FhirError(422, "value", "Consent.patient.reference must be Patient/<id>",
                        ["Consent.patient.reference"])
    return match.group(1)


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _withdrawal_date(body: dict[str, Any]) -> str:
    """The date part of ``Consent.dateTime`` (not after tomorrow, UTC), else today (UTC)."""
    value = body.get("dateTime")
    if value is None:
        return _today().isoformat()
    day = value[:10] if isinstance(value, str) else ""
    try:
        when = dt.date.fromisoformat(day) if _DATE.fullmatch(day) else None
    except ValueError:
        when = None
    if when is None:
        raise FhirError(422, "value", "Consent.dateTime must be a FHIR dateTime with a full date "
                        "(YYYY-MM-DD…)", ["Consent.dateTime"])
    if when > _today() + dt.timedelta(days=1):
        raise FhirError(422, "business-rule", "a withdrawal cannot be dated in the future",
                        ["Consent.dateTime"])
    return day


def _withdrawal(body: dict[str, Any], id_: str | None) -> tuple[str, str]:
    """(patient, date) of a withdrawal request, checked in the order a client can act on."""
    if body.get("resourceType") != "Consent":
        raise FhirError(400, "invalid", "the body must be a Consent resource", ["resourceType"])
    if id_ is not None and body.get("id") != id_:
        raise FhirError(400, "invalid", f"Consent.id must be present and equal {id_!r} (the id in the URL)",
                        ["Consent.id"])
    if body.get("status") != "inactive":
        raise FhirError(422, "business-rule", _WITHDRAW_ONLY, ["Consent.status"])
    return _body_patient(body), _withdrawal_date(body)


def _do_withdraw(port: ConsentPort, patient: str, date: str) -> dict[str, Any]:
    try:
        return port.withdraw(patient, date)
    except ConsentConflict as exc:
        raise FhirError(409, "conflict", str(exc) or "the patient has no active consent to withdraw",
                        ["Consent.status"]) from None
    except ConsentRejected as exc:
        raise FhirError(422, "business-rule", str(exc), ["Consent.dateTime"]) from None
    except ConsentNotFound:
        raise FhirError(404, "not-found", "no consent is recorded for this patient") from None


def _version_headers(resource: dict[str, Any], base: str, created: bool) -> dict[str, str]:
    vid = str((resource.get("meta") or {}).get("versionId", "1"))
    headers = {"ETag": f'W/"{vid}"'}
    if created:
        headers["Location"] = f"{base}/Consent/{resource['id']}/_history/{vid}"
    return headers


def _addressed(port: ConsentPort, patient: str, id_: str) -> None:
    """404 unless Consent/``id_`` is one of the patient's consents."""
    if not any(r.get("id") == id_ for r in port.history(patient)):
        raise FhirError(404, "not-found", f"Consent/{id_} is not a consent of this patient")


def _latest(port: ConsentPort, patient: str, id_: str, fallback: dict[str, Any]) -> dict[str, Any]:
    """The newest version of Consent/``id_`` (the resource a PUT addressed)."""
    return next((r for r in reversed(port.history(patient)) if r.get("id") == id_), fallback)


# -------------------------------------------------------------------- routes
#: Dependency: the consent registries, checked before the token (so is the API's absence)
Port = Annotated[ConsentPort, Depends(_port)]


async def _withdraw(request: Request, port: ConsentPort, principal: Principal,
                    id_: str | None) -> FhirResponse:
    """Shared by create (``id_`` None) and update, past the edge (audited, negotiated, a Consent API
    and a token): the body, its checks, scope, withdrawal, answer."""
    ctx = audit_ctx(request)
    body, _ = await json_body(request)
    patient, date = _withdrawal(body, id_)
    ctx.patients.append(f"Patient/{patient}")
    _require(principal, "c" if id_ is None else "u", patient)
    if id_ is not None:
        await run_in_threadpool(_addressed, port, patient, id_)
    resource = await run_in_threadpool(_do_withdraw, port, patient, date)
    if id_ is not None:
        resource = await run_in_threadpool(_latest, port, patient, id_, resource)
    headers = _version_headers(resource, state(request).base_url, created=id_ is None)
    return FhirResponse(resource, status_code=201 if id_ is None else 200, headers=headers)


def consent_router() -> APIRouter:
    """The Consent routes (include with ``create_app(st, routers=[consent_router()])``)."""
    router = APIRouter(tags=["Consent"])

    @router.get("/fhir/Consent", responses=_READ_ERRORS, response_class=FhirResponse,
                dependencies=[Depends(Audited("search-type")), Negotiated])
    def search_consent(request: Request, port: Port, principal: Authenticated,
                       patient: str | None = None) -> FhirResponse:
        """Every version of a patient's study consent, oldest first (scope Consent.s)."""
        if patient is None:
            raise FhirError(400, "required", "the patient search parameter is required", ["patient"])
        pid = _query_patient(patient)
        audit_ctx(request).patients.append(f"Patient/{pid}")
        _require(principal, "s", pid)
        found = port.history(pid)
        return FhirResponse(searchset(found, len(found), state(request).base_url))

    @router.post("/fhir/Consent", responses=_ERRORS, openapi_extra=_BODY, response_class=FhirResponse,
                 status_code=201, dependencies=[Depends(Audited("create")), Negotiated])
    async def create_consent(request: Request, port: Port, principal: Authenticated) -> FhirResponse:
        """Withdraw the patient's consent: a Consent with status inactive (scope Consent.c)."""
        return await _withdraw(request, port, principal, None)

    @router.put("/fhir/Consent/{id_}", responses=_ERRORS, openapi_extra=_BODY, response_class=FhirResponse,
                dependencies=[Depends(Audited("update")), Negotiated])
    async def update_consent(request: Request, port: Port, principal: Authenticated,
                             id_: str) -> FhirResponse:
        """Withdraw the patient's consent by updating it to status inactive (scope Consent.u)."""
        return await _withdraw(request, port, principal, id_)

    return router

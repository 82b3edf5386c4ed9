"""The FHIR edge as FastAPI dependencies (issue 16, "The FHIR edge, typed").

Each check a route needs is declared on it (``dependencies=[...]`` or an ``Annotated[...,
Depends(...)]`` parameter, FastAPI "Dependencies" / "Classes as dependencies") rather than
called by hand, and FastAPI runs them in the contract's order before the handler:

1. :class:`Audited` names the request's AuditEvent subtype, so a refusal by any later check is
   audited under it (the AuditEvent itself is written by ``device.fhir.app.AuditMiddleware``);
2. :data:`Negotiated`: 406 unless the client accepts FHIR JSON;
3. :class:`Authorized`: 401 (with ``WWW-Authenticate: Bearer``) without a valid token, 403 without
   the SMART v2 scope — before any body is read;
4. a body dependency (:func:`predict_risk_request`; CDS Hooks: ``device.fhir.cds.hook_request``)
   reads and parses the body once (415/400; 413 is the ASGI ``BodyLimitMiddleware``'s) into a
   typed request model;
5. :class:`RiskService`, the one scoring path of ``$predict-risk``, ``POST [base]`` and CDS Hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict

from ..model import PrognosticModel
from .audit import AuditContext
from .auth import Principal
from .errors import FhirError, challenge
from .http import ServerState, audit_ctx, authenticate, json_body, negotiate, state
from .pool import Scorer
from .service import BatchResult, Prediction

#: which patient a scope check concerns: none (system-wide), the token's own patient when only a
#: ``patient/`` scope grants it (scoring), or the ``subject``/``patient`` search parameter
Compartment = Literal["none", "own", "searched"]


class Audited:
    """Dependency: the request's interaction (R4 restful-interaction, the AuditEvent subtype).
    Declare it first: every check after it is refused under this interaction (SRS-AUDIT-001)."""

    def __init__(self, interaction: str) -> None:
        self.interaction = interaction

    async def __call__(self, request: Request) -> AuditContext:
        ctx = audit_ctx(request)
        ctx.interaction = self.interaction
        return ctx


async def _negotiated(request: Request) -> None:
    negotiate(request)


#: Dependency: content negotiation, 406 unless ``Accept``/``_format`` allow FHIR JSON (SRS-FHIR-004)
Negotiated = Depends(_negotiated)


async def _authenticated(request: Request) -> Principal:
    return authenticate(request)


#: Dependency: the verified bearer token's principal, 401 otherwise (SRS-AUTH-001, SRS-AUTH-004);
#: for routes that check the scope against the resource they find (a RiskAssessment read)
Authenticated = Annotated[Principal, Depends(_authenticated)]


def searched_ref(subject: str | None, patient: str | None) -> str | None:
    """The ``Patient/<id>`` a RiskAssessment search names (``subject`` or ``patient``), or None."""
    who = subject or patient
    return None if who is None else (who if who.startswith("Patient/") else f"Patient/{who}")


@dataclass(frozen=True)
class Grant:
    """What :class:`Authorized` allowed: the token's principal and the patient it was checked for
    (a bare id; None: any patient, i.e. a ``user/`` or ``system/`` scope, or no patient named)."""

    principal: Principal
    patient: str | None


class Authorized:
    """Dependency: a bearer token (401) whose SMART v2 scopes grant ``resource_type.interaction``
    (403 naming the scope, with the RFC 6750 ``insufficient_scope`` challenge), as a :class:`Grant`.

    ``compartment`` says for which patient (SRS-AUTH-002, SRS-AUTH-006): ``"none"`` the request
    names none; ``"own"`` any patient under a ``user/``/``system/`` scope, else only the token's
    own patient under a ``patient/`` scope (``Grant.patient``; scoring then refuses anyone
    else); ``"searched"`` the ``subject``/``patient`` search parameter, recorded in the audit
    trail before the token is checked, so a refused search names its patient too.
    """

    def __init__(self, resource_type: str, interaction: str, compartment: Compartment = "none") -> None:
        self.resource_type, self.interaction, self.compartment = resource_type, interaction, compartment

    async def __call__(self, request: Request) -> Grant:
        patient = None
        if self.compartment == "searched":
            ref = searched_ref(request.query_params.get("subject"), request.query_params.get("patient"))
            if ref:
                audit_ctx(request).patients.append(ref)
                patient = ref.removeprefix("Patient/")
        principal = authenticate(request)
        if self.compartment == "own" and not principal.allows(self.resource_type, self.interaction):
            patient = principal.patient
        principal.require(self.resource_type, self.interaction, patient)
        return Grant(principal, patient)


#: scoring creates a RiskAssessment (SMART v2 ``RiskAssessment.c``), for anyone or its own patient
SCORING = Authorized("RiskAssessment", "c", "own")


class PredictRiskRequest(BaseModel):
    """The body of ``$predict-risk`` or ``POST [base]``, read and parsed once at the edge: the FHIR
    resource (a Parameters, a patient Bundle or a ``batch`` Bundle — its content is the service
    layer's to check), the SHA-256 of its bytes (audited), and the one patient a ``patient/`` scope
    lets it score (None: any; SRS-AUTH-006)."""

    model_config = ConfigDict(frozen=True)

    resource: dict[str, Any]
    sha256: str
    only_patient: str | None = None

    @property
    def is_batch(self) -> bool:
        """A ``batch`` Bundle: one ``Patient/$predict-risk`` request per entry (SRS-FHIR-003)."""
        return self.resource.get("resourceType") == "Bundle" and self.resource.get("type") == "batch"


async def predict_risk_request(request: Request, grant: Annotated[Grant, Depends(SCORING)]
                               ) -> PredictRiskRequest:
    """Dependency: authorised to score (:data:`SCORING`), then the JSON body (415, 400)."""
    body, digest = await json_body(request)
    return PredictRiskRequest(resource=body, sha256=digest, only_patient=grant.patient)


@dataclass
class RiskService:
    """The one scoring path of every route that scores — ``$predict-risk``, ``POST [base]`` and CDS
    Hooks (SRS-FHIR-002, SRS-FHIR-003, SRS-CDS-002): the model in service (503 naming why there is
    none), extraction, envelope checks, scoring and the checked RiskAssessment
    (:func:`device.fhir.service.assess`, off the event loop: :class:`device.fhir.pool.Scorer`),
    staged to be stored in one transaction with the request's AuditEvent, which names the model
    and the patients (SRS-AUDIT-001)."""

    st: ServerState
    ctx: AuditContext
    scorer: Scorer

    @classmethod
    async def of(cls, request: Request) -> RiskService:
        """Dependency: the service for this request."""
        return cls(state(request), audit_ctx(request), request.app.state.scorer)

    def model(self) -> PrognosticModel:
        """The model in service (503 when none), recorded in the audit trail."""
        model = self.st.models.current()
        self.ctx.model_sha256 = model.sha256
        return model

    async def assess(self, resource: dict[str, Any], only_patient: str | None,
                     model: PrognosticModel | None = None) -> Prediction:
        """One patient (a Parameters or a patient Bundle) scored, its RiskAssessment staged."""
        prediction = await self.scorer.assess(model or self.model(), resource, only_patient)
        if prediction.patient not in self.ctx.patients:
            self.ctx.patients.append(prediction.patient)
        self.ctx.stage.extend(prediction.rows)
        return prediction

    async def assess_batch(self, req: PredictRiskRequest) -> BatchResult:
        """A ``batch`` Bundle scored, each entry alone; its RiskAssessments staged (a ``patient/``
        scope scores only its own patient, one request at a time: 403)."""
        model = self.model()
        if req.only_patient is not None:
            raise FhirError(403, "forbidden", "a patient/ scope scores only its own patient, one request "
                            "at a time: a batch needs user/ or system/RiskAssessment.c",
                            headers=challenge("insufficient_scope", scope="user/RiskAssessment.c"))
        result = await self.scorer.assess_batch(model, req.resource)
        self.ctx.patients.extend(result.patients)
        self.ctx.stage.extend(result.rows)
        return result

    def location(self, prediction: Prediction) -> str:
        """Where the stored RiskAssessment is read (the ``Location`` header)."""
        return f"{self.st.base_url}/RiskAssessment/{prediction.resource['id']}"


#: Dependency: the scoring service of this request
Risk = Annotated[RiskService, Depends(RiskService.of)]

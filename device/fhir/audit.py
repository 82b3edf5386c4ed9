"""An AuditEvent (FHIR R4 §AuditEvent; IHE BALP "RESTful" pattern) for every request the
server answers, allowed or refused: who (token subject or "unauthenticated"), from where, what
(interaction, patient reference, model sha256, SHA-256 of the request body) and the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REST = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
        "display": "RESTful Operation"}
INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
DETAIL_SYSTEM = "urn:fedprog:audit-detail"
#: R4 AuditEventAction per interaction
ACTIONS = {"operation": "E", "read": "R", "search-type": "E", "create": "C", "update": "U",
           "capabilities": "R", "hook": "E"}


_PERSON = {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1",
           "display": "Person"}
_PATIENT_ROLE = {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1",
                 "display": "Patient"}


@dataclass
class AuditContext:
    """What a handler learns about a request, filled in as it goes (``request.state.audit``)."""

    interaction: str = "read"
    path: str = ""
    client: str = ""
    who: str = "unauthenticated"
    patients: list[str] = field(default_factory=list)
    model_sha256: str | None = None
    input_sha256: str | None = None
    #: resources the response names, stored in the same transaction as the AuditEvent
    stage: list[tuple[dict[str, Any], str | None, str]] = field(default_factory=list)


def outcome_code(status: int) -> str:
    """R4 AuditEventOutcome: 0 success, 4 minor failure (refused request), 8 serious failure."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def audit_event(ctx: AuditContext, *, id_: str, status: int, description: str, recorded: str,
                method: str) -> dict[str, Any]:
    """The AuditEvent of one answered request."""
    entity: list[dict[str, Any]] = [{"what": {"reference": p}, "type": _PERSON, "role": _PATIENT_ROLE}
                                    for p in ctx.patients]
    facts = (("model-sha256", ctx.model_sha256), ("input-sha256", ctx.input_sha256),
             ("http-status", str(status)))
    details = [{"type": k, "valueString": v} for k, v in facts if v]
    entity.append({"what": {"display": f"{method} {ctx.path}"}, "detail": details})
    return {
        "resourceType": "AuditEvent", "id": id_, "type": REST,
        "subtype": [{"system": INTERACTION_SYSTEM, "code": ctx.interaction}],
        "action": ACTIONS.get(ctx.interaction, "E"), "recorded": recorded,
        "outcome": outcome_code(status), "outcomeDesc": description[:1000],
        "agent": [{"who": {"display": ctx.who}, "requestor": True,
                   "network": {"address": ctx.client or "unknown", "type": "2"}}],
        "source": {"site": "fedprog", "observer": {"display": "fedprog FHIR server"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                             "code": "4", "display": "Application Server"}]},
        "entity": entity,
    }

"""CDS Hooks 2.0 (https://cds-hooks.hl7.org/2.0/): one ``patient-view`` service that shows the
released model's risk as a card (a logistic model's: the probability of its outcome at its one
horizon). The device never queries the EHR: everything it needs must be
prefetched (§"Prefetch"), else 412. Inputs that are missing or outside the intended use give an
``info`` card saying no risk is shown, never a silent empty response.

A call is scored through :class:`device.fhir.deps.RiskService`, the path of ``$predict-risk``
(issue 16): the prefetch becomes a patient Bundle, scored by :func:`device.fhir.service.assess`,
its RiskAssessment stored with the call's AuditEvent; the card is drawn from that RiskAssessment.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from ..model import InputSpec, LogisticModel, PrognosticModel
from .deps import SCORING, Audited, Grant, Risk, RiskService
from .errors import FhirError, challenge
from .http import OFF_LOOP_BYTES, audit_ctx, raw_body, state
from .resources import INTERVAL_URL, event, intended_use, interval_note
from .service import Prediction
from .smart import app_url

SERVICE_ID = "fedprog-risk"
HOOK = "patient-view"
#: Device setting, not clinical advice: card indicator by risk at the main horizon,
#: ``(upper bound exclusive, indicator)`` in order (CDS Hooks 2.0 §"Card Attributes": indicator).
RISK_BANDS: tuple[tuple[float, str], ...] = ((0.10, "info"), (0.30, "warning"), (math.inf, "critical"))
SUMMARY_MAX = 139  # CDS Hooks 2.0 §"Card Attributes": summary "<140 characters"
#: days in one model time unit (a month is a twelfth of the mean Julian year)
_ENTRY = re.compile(r"Bundle\.entry\[(\d+)\]")


def indicator(risk: float) -> str:
    """The card indicator of ``risk`` (a fraction) per :data:`RISK_BANDS`."""
    return next(name for bound, name in RISK_BANDS if risk < bound)


def horizon_text(model: PrognosticModel, h: float) -> str:
    """A horizon in words (:meth:`prognosis.CoxModel.horizon_text`: ``1826`` days → ``5 years``)."""
    return model.horizon_text(h)


def _pct(p: float) -> str:
    """A percentage: whole above 10%, one decimal below, ``<0.1`` under 0.05%."""
    x = 100 * float(p)
    return "<0.1" if x < 0.05 else f"{x:.1f}" if x < 9.95 else f"{x:.0f}"


def _title(model: PrognosticModel) -> str:
    return model.outcome[:1].upper() + model.outcome[1:]


def _fit(text: str, tail: str) -> str:
    """``text + tail`` within :data:`SUMMARY_MAX`, shortening ``text`` with an ellipsis if needed."""
    room = SUMMARY_MAX - len(tail)
    head = text if len(text) <= room else text[: room - 1].rstrip() + "…"
    out = head + tail
    assert len(out) <= SUMMARY_MAX, out
    return out


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def prefetch_templates(model: PrognosticModel) -> dict[str, str]:
    """Prefetch templates (§"Prefetch Template"): the Patient and every input's Observations."""
    codes = ",".join(dict.fromkeys(f"{s.code.system}|{s.code.code}" for s in model.inputs))
    return {"patient": "Patient/{{context.patientId}}",
            "observations": "Observation?patient={{context.patientId}}&code=" + codes}


def _describe(model: PrognosticModel) -> tuple[str, str]:
    """The service's title and description: a Cox model's risk of an event within its horizons, a
    logistic model's probability of its outcome at its one horizon."""
    if isinstance(model, LogisticModel):
        at = horizon_text(model, model.horizons[0])
        return (f"{_title(model)}: probability ({model.ref})",
                f"Estimated probability of {event(model)} at {at} (when it is recorded), with a 95% "
                f"interval, from the released logistic model {model.ref}.")
    when = " and ".join(horizon_text(model, h) for h in model.horizons)
    return (f"{_title(model)}: risk of event ({model.ref})",
            f"Estimated absolute risk of an event (endpoint: {model.outcome}) within {when}, "
            f"with a 95% interval, from the released model {model.ref}.")


def service_description(model: PrognosticModel) -> dict[str, Any]:
    """The discovery entry of the one service (§"Discovery": hook, title, description, id, prefetch)."""
    title, description = _describe(model)
    return {"hook": HOOK, "id": SERVICE_ID, "title": title, "description": description,
            "prefetch": prefetch_templates(model),
            "usageRequirements": "Bearer token with user/ or system/RiskAssessment.c; both prefetch keys are "
                                 "required (the service does not query the EHR)."}


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FhirError(400, "structure", f"{where} must be a JSON object", [where])
    return value


def _request(body: Any) -> tuple[str, dict[str, Any]]:
    """The patient id and prefetch of a hook request (§"Calling a CDS Service"), else 400."""
    body = _object(body, "request")
    if body.get("hook") != HOOK:
        raise FhirError(400, "value", f"hook must be {HOOK!r}, not {body.get('hook')!r}", ["hook"])
    patient_id = _object(body.get("context"), "context").get("patientId")
    if not isinstance(patient_id, str) or not patient_id:
        raise FhirError(400, "required", "context.patientId is required (a non-empty string)",
                        ["context.patientId"])
    return patient_id, _object(body.get("prefetch", {}), "prefetch")


def _prefetched(prefetch: dict[str, Any], key: str, resource_type: str) -> dict[str, Any]:
    """One prefetched resource (§"Prefetch"): 412 when absent, null or the client's OperationOutcome."""
    value = prefetch.get(key)
    if value is None:
        raise FhirError(412, "required", f"prefetch {key!r} missing: this service needs it prefetched "
                        "(it does not query the EHR)", [f"prefetch.{key}"])
    kind = value.get("resourceType") if isinstance(value, dict) else None
    if kind == "OperationOutcome":
        issues = "; ".join(str(i.get("diagnostics", i.get("code", "?"))) for i in value.get("issue", [])
                           if isinstance(i, dict)) if isinstance(value.get("issue"), list) else ""
        raise FhirError(412, "required", f"prefetch {key!r}: the CDS client could not fetch it "
                        f"({issues or 'no details'}); this service does not query the EHR",
                        [f"prefetch.{key}"])
    if kind != resource_type:
        raise FhirError(400, "structure", f"prefetch {key!r} must be a {resource_type}, "
                        f"not {kind or 'non-FHIR JSON'}", [f"prefetch.{key}"])
    return dict(value)


def patient_bundle(patient_id: str, prefetch: dict[str, Any], fhir_server: Any) -> tuple[dict[str, Any],
                                                                                            list[str]]:
    """A collection Bundle of the prefetched Patient and Observations, and where each entry came from."""
    patient = _prefetched(prefetch, "patient", "Patient")
    found = _prefetched(prefetch, "observations", "Bundle")
    if patient.get("id") != patient_id:
        raise FhirError(400, "business-rule", f"prefetch 'patient' is Patient/{patient.get('id')}, not the "
                        f"context's Patient/{patient_id}", ["prefetch.patient.id", "context.patientId"])
    entry: dict[str, Any] = {"resource": patient}
    if isinstance(fhir_server, str) and fhir_server:  # absolute subject references resolve too
        entry["fullUrl"] = f"{fhir_server.rstrip('/')}/Patient/{patient_id}"
    raw = found.get("entry", [])
    if not isinstance(raw, list):
        raise FhirError(400, "structure", "prefetch.observations.entry must be a list",
                        ["prefetch.observations.entry"])
    entries, origin = [entry], ["prefetch.patient"]
    for k, e in enumerate(raw):  # search.mode "outcome" and _include'd resources are not inputs
        res = e.get("resource") if isinstance(e, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == "Observation":
            entries.append({"resource": res})
            origin.append(f"prefetch.observations.entry[{k}]")
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}, origin


def _relocated(exc: FhirError, origin: list[str]) -> FhirError:
    """``exc`` with ``Bundle.entry[i]`` of the assembled Bundle renamed to the prefetch element."""
    def move(text: str) -> str:
        return _ENTRY.sub(lambda m: origin[int(m[1])] if int(m[1]) < len(origin) else m[0], text)
    return FhirError(exc.status, exc.code, move(exc.diagnostics), [move(x) for x in exc.expression],
                     headers=exc.headers)


def _value_text(spec: InputSpec, v: float) -> str:
    if spec.kind == "boolean":
        return "yes" if v else "no"
    if spec.kind == "category" and spec.categories:
        return spec.categories[int(v)].display or spec.categories[int(v)].code
    return f"{v:g}" + ("" if spec.unit == "1" else f" {spec.unit}")


def _card(summary: str, level: str, model: PrognosticModel, detail: str) -> dict[str, Any]:
    """One card (§"Card Attributes")."""
    return {"uuid": str(uuid.uuid4()), "summary": summary, "indicator": level, "detail": detail,
            "source": {"label": f"fedprog {model.ref}"}}


def _interval(pred: dict[str, Any]) -> tuple[float, float]:
    rng = next(e["valueRange"] for e in pred["extension"] if e["url"] == INTERVAL_URL)
    return float(rng["low"]["value"]), float(rng["high"]["value"])


def risk_card(model: PrognosticModel, prediction: Prediction) -> dict[str, Any]:
    """The risk card of a scored patient's RiskAssessment (the one ``$predict-risk`` builds): main
    horizon (the last default one) in the summary, every horizon in the detail, every input used.
    A logistic model's summary is the probability of its outcome at its one horizon."""
    preds = [(float(p["whenRange"]["high"]["value"]), float(p["probabilityDecimal"]), *_interval(p))
             for p in prediction.resource["prediction"]]
    h, risk, lo, hi = preds[-1]
    ci = f" (95% CI {_pct(lo)}–{_pct(hi)}%)"
    if isinstance(model, LogisticModel):
        summary = _fit(f"{_pct(risk)}% probability of {event(model)}", f" at {horizon_text(model, h)}{ci}")
        heading, column = f"**Probability of {event(model)}** ({model.ref})", "Probability"
    else:
        summary = _fit(_title(model), f": {_pct(risk)}% risk of event within {horizon_text(model, h)}{ci}")
        heading, column = f"**{_title(model)}: risk of event** ({model.ref})", "Risk"
    rows = [f"| {horizon_text(model, h)} ({h:g} {model.time_unit}s) | {_pct(p)}% | {_pct(lo)}–{_pct(hi)}% |"
            for h, p, lo, hi in preds]
    used = [f"| {_cell(spec.name)} | {_cell(spec.code.display)} | {_cell(_value_text(spec, float(v)))} |"
            for spec, v in zip(model.inputs, prediction.inputs.values, strict=True)]
    detail = "\n".join([
        heading, "", f"| Horizon | {column} | 95% interval |", "|---|---|---|", *rows, "",
        interval_note(model), "",
        "**Inputs used**", "", "| Input | Meaning | Value |", "|---|---|---|", *used, "",
        intended_use(model), "", f"Model sha256: `{model.sha256}`"])
    return _card(summary, indicator(risk), model, detail)


def _reasons(model: PrognosticModel) -> re.Pattern[str]:
    """Where one refusal of a joined diagnostics line ends: "; " before an input's label or name or a
    patient-level reason ("; " inside a clinical sentence, "…patients; 0 positive nodes…", stays)."""
    starts = {s.label for s in model.inputs} | {s.name for s in model.inputs} | {"The patient's", "Results"}
    alternatives = "|".join(re.escape(w) for w in sorted(starts, key=len, reverse=True))
    return re.compile(f"; (?=(?:{alternatives})[ :=(])")


def cannot_score_card(model: PrognosticModel, exc: FhirError) -> dict[str, Any]:
    """The ``info`` card shown instead of a risk when inputs are missing or out of range."""
    reasons = [r for r in _reasons(model).split(exc.diagnostics) if r]
    names = [s.label for s in model.inputs  # refusals open with the input's clinical label
             if any(r.startswith((f"{s.label} ", f"{s.label}:"))
                    or r.startswith("Results too old") and f" {s.label} (" in r for r in reasons)]
    which = f": {', '.join(names)}" if names else ""
    what = ("patient outside the intended use" if any(r.startswith("The patient's") for r in reasons)
            else f"missing or out-of-range input{which}")
    summary = _fit(f"{_title(model)} risk not shown: {what}", "")
    detail = "\n".join(["No risk is shown: the model cannot score this patient because", "",
                        *(f"- {r}" for r in reasons), "", intended_use(model)])
    return _card(summary, "info", model, detail)


class HookRequest(BaseModel):
    """A ``patient-view`` call (§"Calling a CDS Service"), read and parsed once at the edge: the
    context's patient, the prefetch, the EHR's ``fhirServer`` (None when absent or not a string),
    the SHA-256 of the body (audited) and the one patient a ``patient/`` scope lets it score."""

    model_config = ConfigDict(frozen=True)

    patient_id: str
    prefetch: dict[str, Any]
    fhir_server: str | None = None
    sha256: str
    only_patient: str | None = None


async def known_service(service_id: str) -> str:
    """Dependency: the service called (404 for any but :data:`SERVICE_ID`)."""
    if service_id != SERVICE_ID:
        raise FhirError(404, "not-found", f"no CDS service {service_id!r} (this server offers "
                        f"{SERVICE_ID!r})")
    return service_id


async def hook_request(request: Request, grant: Annotated[Grant, Depends(SCORING)],
                       _service: Annotated[str, Depends(known_service)]) -> HookRequest:
    """Dependency: authorised to score (:data:`device.fhir.deps.SCORING`; 401/403), a known service
    (404), then the body (§"HTTP Request": application/json; 415, 400) — its patient audited, and
    403 when a ``patient/`` scope's patient is not ``context.patientId``."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not ctype.endswith("json"):
        raise FhirError(415, "not-supported", f"Content-Type {ctype or 'missing'}: send application/json")
    raw, digest = await raw_body(request)
    try:
        if len(raw) >= OFF_LOOP_BYTES:
            body = await run_in_threadpool(json.loads, raw, parse_constant=_bad)
        else:
            body = json.loads(raw, parse_constant=_bad)
    except (ValueError, RecursionError) as exc:
        raise FhirError(400, "structure", f"request body is not JSON: {str(exc)[:200]}") from None
    patient_id, prefetch = _request(body)
    audit_ctx(request).patients.append(f"Patient/{patient_id}")
    if grant.patient is not None and patient_id != grant.patient:
        raise FhirError(403, "forbidden", "token allows RiskAssessment.c only for its own patient "
                        "(patient/ scope), and context.patientId is another", ["context.patientId"],
                        headers=challenge("insufficient_scope", scope="user/RiskAssessment.c"))
    server = body.get("fhirServer")
    return HookRequest(patient_id=patient_id, prefetch=prefetch, sha256=digest, only_patient=grant.patient,
                       fhir_server=server if isinstance(server, str) and server else None)


def _bad(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


async def answer(risk: RiskService, hook: HookRequest, base_url: str) -> dict[str, Any]:
    """The cards of one hook call (§"CDS Service Response"): the prefetch assembled into a patient
    Bundle and scored through :class:`device.fhir.deps.RiskService` — the path of ``$predict-risk``,
    its RiskAssessment stored and audited — or, when inputs are missing or out of range, a card
    saying why no risk is shown."""
    model = risk.model()
    bundle, origin = patient_bundle(hook.patient_id, hook.prefetch, hook.fhir_server)
    try:
        card = risk_card(model, await risk.assess(bundle, hook.only_patient, model))
    except FhirError as exc:
        if exc.status != 422:
            raise _relocated(exc, origin) from None
        card = cannot_score_card(model, _relocated(exc, origin))
    card["links"] = [{"label": "Open the risk page", "url": app_url(base_url), "type": "smart"}]
    return {"cards": [card]}


def cds_router() -> APIRouter:
    """The CDS Hooks 2.0 endpoints: discovery and the ``patient-view`` service."""
    router = APIRouter(tags=["CDS Hooks"])

    @router.get("/cds-services", response_class=JSONResponse)
    def discovery(request: Request) -> JSONResponse:
        """Discovery (§"Discovery"): public; no services while no model is in service."""
        ctx = audit_ctx(request)
        ctx.interaction = "capabilities"
        try:
            model = state(request).models.current()
        except FhirError:
            return JSONResponse({"services": []})
        ctx.model_sha256 = model.sha256
        return JSONResponse({"services": [service_description(model)]})

    @router.post("/cds-services/{service_id}", response_class=JSONResponse,
                 dependencies=[Depends(Audited("hook"))])
    async def call(hook: Annotated[HookRequest, Depends(hook_request)], risk: Risk) -> JSONResponse:
        """Call the service (§"Calling a CDS Service"); needs RiskAssessment.c."""
        return JSONResponse(await answer(risk, hook, risk.st.base_url))

    return router

"""The clinician's risk page at ``/app/``: static files (HTML, CSS, a little JavaScript; no CDN)
and ``/app/model.json``, the released model's public facts the page is built from.

The page asks the server's own ``$predict-risk`` for every number it shows (risks, intervals,
the curve, the contributions); a logistic model's page shows the probability of its outcome at its
one horizon, the contributions as odds ratios and no survival curve (``curve`` false in
``model.json``); ``model.json`` only says what to ask for and how to label it —
the inputs with their clinical labels, codes, units and validated ranges (and which one is the age the
server computes from the date of birth), the event in words, the horizons, the model's identity,
release date, intended use and its caveats, each stated once — and, when the model is flagged
``retrain due`` (a consent revocation; in service until its deadline, issue 15), the notice the page shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from prognosis import DAYS_PER_UNIT, Z95

from ..model import InputSpec, LogisticModel, PrognosticModel
from ..revocation import RetrainDue
from .http import state
from .inputs import AGE_CODES, TIME_UNITS
from .resources import event, intended_use, interval_note
from .service import served_entry

STATIC = Path(__file__).with_name("static") / "app"
#: UCUM units as words on the page
UNIT_WORDS = {"a": "years", "mo": "months", "wk": "weeks", "d": "days", "1": ""}

#: the caveats of every model, stated once on the page (after those of its intended use, :func:`limitations`)
LIMITATIONS = (
    "Risks are estimated from patients like those the model was trained on; they are not a certainty for "
    "this patient.",
    "The contributions compare this patient with the model's average patient on the log-hazard scale; "
    "they are associations, not causes.",
)
#: a logistic model's: its contributions are on the log-odds scale
LOGISTIC_LIMITATIONS = (
    LIMITATIONS[0],
    "The contributions compare this patient with the model's reference patient on the log-odds scale; "
    "they are associations, not causes.",
)


def limitations(model: PrognosticModel) -> list[str]:
    """The page's caveats, each once: who the model is for and what it refuses, then :data:`LIMITATIONS`."""
    use = model.artifact.intended_use
    who = "adults" if use is None else use.population
    checked = "every input is" if use is None or use.sex is None else "the patient's sex and every input are"
    first = (f"Only for {who}: {checked} checked, and a value outside the validated range "
             "shown beside each input is refused, never guessed.")
    age = None if use is None else use.max_observation_age_days
    fresh = [] if age is None else [f"Results older than {age} days on the day of the assessment are "
                                    "refused."]
    caveats = LOGISTIC_LIMITATIONS if isinstance(model, LogisticModel) else LIMITATIONS
    return [first, *fresh, interval_note(model), *caveats]


def purpose(model: PrognosticModel) -> str:
    """What the model is for, in one sentence without caveats (those are :func:`limitations`)."""
    use = model.artifact.intended_use
    n, sites = model.artifact.training.get("n"), model.artifact.training.get("sites") or []
    for_whom = f" for {use.population}" if use is not None else ""
    fitted = f"across {len(sites)} hospitals on {n} patients without their data leaving any of them."
    if isinstance(model, LogisticModel):
        return (f"Estimates the probability of {event(model)} at {model.horizon_text(model.horizons[0])} "
                f"(when it is recorded){for_whom}, to support, not replace, clinical judgement. Logistic "
                f"regression model fitted {fitted}")
    within = " and ".join(model.horizon_text(h) for h in model.horizons)
    return (f"Estimates the absolute risk of {event(model)} within {within}{for_whom}, to support, not "
            f"replace, clinical judgement. Cox proportional-hazards model fitted {fitted}")


def from_birth_date(spec: InputSpec) -> bool:
    """True for an age input the server computes from ``Patient.birthDate`` (the page asks for the date)."""
    return (spec.kind == "quantity" and spec.unit in TIME_UNITS
            and (spec.code.system, spec.code.code) in AGE_CODES)


def _range_text(spec: InputSpec) -> str:
    text = _span_text(spec)
    return f"{text}, whole numbers" if spec.kind == "integer" else text


def _span_text(spec: InputSpec) -> str:
    unit = "" if spec.unit == "1" else f" {UNIT_WORDS.get(spec.unit, spec.unit)}"
    if spec.kind == "boolean":
        return "yes or no"
    if spec.kind == "category":
        return "one of the listed categories"
    if spec.min is None and spec.max is None:
        return "any value"
    if spec.min is None:
        return f"validated up to {spec.max:g}{unit}"
    if spec.max is None:
        return f"validated from {spec.min:g}{unit}"
    return f"validated range {spec.min:g}–{spec.max:g}{unit}"


def _input(spec: InputSpec) -> dict[str, Any]:
    return {"name": spec.name, "display": spec.title or spec.code.display or spec.name,
            "from_birth_date": from_birth_date(spec), "code": spec.code.model_dump(),
            "unit": spec.unit, "unit_text": UNIT_WORDS.get(spec.unit, spec.unit), "kind": spec.kind,
            "min": spec.min, "max": spec.max, "range_text": _range_text(spec),
            "categories": [c.model_dump() for c in spec.categories or []]}


def effect_curves(model: PrognosticModel, points: int = 61) -> list[dict[str, Any]]:
    """The effect of each spline input over its validated range: the hazard ratio (Cox) or odds ratio
    (logistic) against the reference patient (the model's centre) as that input alone varies, others
    at the reference, with its 95% interval exp(r ± z·se(r)), r = β·(d(x) − c) the log ratio
    (:meth:`prognosis.released.Released.log_ratio`) — public facts of the released coefficients, no data.
    Each curve names its ``ratio`` and gives its values as ``hazard_ratio`` or ``odds_ratio``."""
    design = model.design
    if design is None or not any(s.spline is not None for s in model.inputs):
        return []
    reference = model.reference
    out = []
    for j, spec in enumerate(model.inputs):
        if spec.spline is None or spec.min is None or spec.max is None:
            continue
        x = np.linspace(spec.min, spec.max, points)
        X = np.repeat(reference[None, :], points, axis=0)
        X[:, j] = x
        r, se = model.log_ratio(X), model.se_log_ratio(X)
        out.append({"name": spec.name, "display": spec.title or spec.code.display or spec.name,
                    "unit_text": UNIT_WORDS.get(spec.unit, spec.unit), "reference": float(reference[j]),
                    "knots": list(spec.spline.knots), "x": x.tolist(), "ratio": model.ratio,
                    f"{model.ratio}_ratio": np.exp(r).tolist(),
                    "lower": np.exp(r - Z95 * se).tolist(), "upper": np.exp(r + Z95 * se).tolist()})
    return out


def _ticks(model: PrognosticModel) -> list[dict[str, Any]]:
    """Whole years (or the unit itself when shorter) up to the last horizon, for the curve's axis."""
    per_year = 365.25 / DAYS_PER_UNIT[model.time_unit]
    last = max(model.horizons)
    step = per_year if last >= per_year else max(1.0, last / 5)
    count = int(last / step + 0.01)  # 1826 days is 5 years, give or take the leap days
    return [{"value": min(k * step, last), "label": model.horizon_text(k * step) if k else "0"}
            for k in range(count + 1)]


def released_at(registry: Any, sha256: str) -> str | None:
    """When the release entry of ``sha256`` was recorded (``at``), if the ledger says."""
    if registry is None:
        return None
    found = [body.get("at") for _, _, body in registry.ledger.entries("release")
             if body.get("sha256") == sha256]
    return found[-1] if found and found[-1] else None


def model_facts(model: PrognosticModel, released: str | None, retrain: RetrainDue | None = None
                ) -> dict[str, Any]:
    """What the page needs to know of the model in service (no patient data, no secrets)."""
    return {
        "retrain_due": None if retrain is None else {**retrain.to_dict(), "notice": retrain.notice()},
        "ref": model.ref, "model_id": model.model_id, "version": model.version, "sha256": model.sha256,
        "kind": f"{model.artifact.kind} model", "outcome": model.outcome,
        # a Cox model's risks by any time draw a survival curve; a logistic model has one horizon
        "curve": not isinstance(model, LogisticModel), "ratio": model.ratio,
        "event": event(model), "released": released, "time_unit": model.time_unit,
        "horizons": [{"value": h, "label": model.horizon_text(h)} for h in model.horizons],
        "ticks": _ticks(model), "inputs": [_input(s) for s in model.inputs],
        "effects": effect_curves(model),
        "interactions": [{"name": f"{a}:{b}", "inputs": [a, b]} for a,
                         b in model.artifact.interactions or []],
        "intended_use": intended_use(model), "purpose": purpose(model), "limitations": limitations(model),
        "sex": None if model.artifact.intended_use is None else model.artifact.intended_use.sex,
    }


def page_router() -> APIRouter:
    router = APIRouter(tags=["Risk page"])

    @router.get("/app/model.json")
    async def model_json(request: Request) -> JSONResponse:
        st = state(request)
        model = st.models.current()
        registry = getattr(st.models, "registry", None)
        entry = served_entry(st.models)
        retrain = entry.retrain if entry is not None and entry.sha256 == model.sha256 else None
        return JSONResponse(model_facts(model, released_at(registry, model.sha256), retrain),
                            headers={"Cache-Control": "no-store"})

    return router


def mount_page(app: FastAPI) -> None:
    """Serve the page's files at ``/app/`` (after every route, so ``/app/model.json`` wins)."""
    app.mount("/app", StaticFiles(directory=STATIC, html=True), name="app")

"""The clinician's risk page at ``/app/``: static files (HTML, CSS, a little JavaScript; no CDN)
and ``/app/model.json``, the released model's public facts the page is built from.

The page asks the server's own ``$predict-risk`` for every number it shows (risks, intervals,
the curve, the contributions); ``model.json`` only says what to ask for and how to label it —
the inputs with their codes, units and validated ranges, the horizons, the model's identity,
release date, intended use and limitations — and, when the model is flagged ``retrain due`` (a
consent revocation; in service until its deadline, issue 15), the notice the page shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from prognosis import DAYS_PER_UNIT

from ..model import InputSpec, PrognosticModel
from ..revocation import RetrainDue
from .http import state
from .resources import event, intended_use
from .service import served_entry

STATIC = Path(__file__).with_name("static") / "app"
#: UCUM units as words on the page
UNIT_WORDS = {"a": "years", "mo": "months", "wk": "weeks", "d": "days", "1": ""}

LIMITATIONS = (
    "For adults inside the validated input ranges shown beside each input; a value outside them is refused.",
    "The 95% interval reflects coefficient uncertainty only (not the baseline hazard): a lower bound on the "
    "true uncertainty.",
    "Risks are for patients like those the model was trained on; they support, and do not replace, clinical "
    "judgement.",
    "The contributions compare this patient with the model's average patient on the log-hazard scale; "
    "they are associations, not causes.",
)


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
    return {"name": spec.name, "display": spec.code.display or spec.name, "code": spec.code.model_dump(),
            "unit": spec.unit, "unit_text": UNIT_WORDS.get(spec.unit, spec.unit), "kind": spec.kind,
            "min": spec.min, "max": spec.max, "range_text": _range_text(spec),
            "categories": [c.model_dump() for c in spec.categories or []]}


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
        "event": f"an {event(model)}", "released": released, "time_unit": model.time_unit,
        "horizons": [{"value": h, "label": model.horizon_text(h)} for h in model.horizons],
        "ticks": _ticks(model), "inputs": [_input(s) for s in model.inputs],
        "intended_use": intended_use(model), "limitations": list(LIMITATIONS),
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

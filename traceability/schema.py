"""The requirements contract (DESIGN.md, "Requirements"): one pydantic model per item.

Each ``traceability/requirements/*.yaml`` file is a YAML list of items. Types follow the
design-control chain of IEC 62304 §5.2 (software requirements from system requirements from
user needs) and ISO 14971 §5–7 (hazards, and the risk controls that reduce them)::

    user-need ─► system ─► software ─► (tests)
    hazard ─► risk-control ─► (tests)

``parents`` point upward (a software requirement names the system requirement it refines; a
risk control names the hazard(s) it controls and may name the requirement implementing it).
``reviewed`` holds, per parent, the SHA-256 fingerprint of that parent's id, text and links
when this item was last reviewed against it (``reviewed_by``/``reviewed_at``: who and on which
UTC date); a parent edited since then makes the link *suspect* until ``fedprog trace review``
re-fingerprints it. ``evidence`` records, for an item verified by inspection or analysis, the
file showing it, who looked, when and with what result (IEC 62304 §5.1.1, §5.7.5).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ItemType = Literal["user-need", "system", "software", "hazard", "risk-control"]
Verification = Literal["test", "inspection", "analysis"]
ID_PATTERN = r"^(UN|SYS|SRS|HAZ|RC)-[A-Z]+-\d{3}$"
#: which id prefix each type uses
PREFIX: dict[str, str] = {"user-need": "UN", "system": "SYS", "software": "SRS", "hazard": "HAZ",
                          "risk-control": "RC"}
#: the types a parent of each type may have
PARENT_TYPES: dict[str, frozenset[str]] = {
    "user-need": frozenset(),
    "system": frozenset({"user-need"}),
    "software": frozenset({"system"}),
    "hazard": frozenset({"user-need", "system", "software"}),
    "risk-control": frozenset({"hazard", "system", "software"}),
}

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Acceptance(BaseModel):
    """A validation acceptance criterion a requirement states (read by the validation run).

    ``statistic`` says which number is compared: the point ``estimate`` or a bound of its
    95% CI (``ci_lower``/``ci_upper``); ``scope`` whether every site must meet it, the
    pooled (inverse-variance) value, or every external site (a hospital that did not train the
    model: judged only by an external validation, :func:`validation.run.run_external_validation`);
    ``model`` the kind of model it judges (``None``: any model whose kind reports the metric;
    :func:`validation.criteria.applicable`).
    """

    model_config = _STRICT
    metric: Literal["harrell_c", "uno_c", "td_auc", "brier", "integrated_brier", "calibration_slope",
                    "calibration_intercept", "e_o_ratio", "c_statistic"]
    #: the kind of model the criterion judges (``None``: any model that reports the metric)
    model: Literal["cox-ph", "logistic"] | None = None
    statistic: Literal["estimate", "ci_lower", "ci_upper"] = "estimate"
    op: Literal[">=", "<=", "between"]
    threshold: float | tuple[float, float]
    #: a horizon (in the model's time unit), ``"each"`` (every horizon the model reports), or none
    horizon: float | Literal["each"] | None = None
    scope: Literal["each-site", "pooled", "external"] = "pooled"

    @model_validator(mode="after")
    def _threshold_shape(self) -> Acceptance:
        if (self.op == "between") != isinstance(self.threshold, tuple):
            raise ValueError("op 'between' takes [low, high]; '>=' and '<=' take one number")
        return self


class Evidence(BaseModel):
    """The record of one inspection or analysis: the repository file that shows it (a path
    relative to the repository root), the reviewer, the UTC date and the result: ``pass``,
    ``fail``, or ``planned`` (a risk control not yet implemented, for which no reduction of
    probability is claimed; :mod:`traceability.check` accepts it only for such a control)."""

    model_config = _STRICT
    file: str = Field(min_length=1)
    reviewer: str = Field(min_length=3)
    date: dt.date
    result: Literal["pass", "fail", "planned"]
    #: what the reviewer saw in the file (one or two sentences)
    summary: str | None = None


class Item(BaseModel):
    """One requirement, hazard or risk control."""

    model_config = _STRICT
    id: str = Field(pattern=ID_PATTERN)
    type: ItemType
    title: str = Field(min_length=3, max_length=120)
    text: str = Field(min_length=10)
    parents: list[str] = Field(default_factory=list)
    verification: Verification
    rationale: str | None = None
    #: hazards: ISO 14971 severity and probability (1 = lowest … 5 = highest) before control,
    #: and the residual probability after it
    severity: Annotated[int, Field(ge=1, le=5)] | None = None
    probability: Annotated[int, Field(ge=1, le=5)] | None = None
    residual_probability: Annotated[int, Field(ge=1, le=5)] | None = None
    #: validation acceptance criteria this requirement states
    acceptance: list[Acceptance] = Field(default_factory=list)
    #: parent id → fingerprint of the parent when this item was last reviewed against it
    reviewed: dict[str, str] = Field(default_factory=dict)
    #: who last reviewed this item against its parents, and on which UTC date
    reviewed_by: str | None = None
    reviewed_at: dt.date | None = None
    #: inspection / analysis records (see :class:`Evidence`)
    evidence: list[Evidence] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Item:
        prefix = self.id.split("-", 1)[0]
        if prefix != PREFIX[self.type]:
            raise ValueError(f"{self.id}: a {self.type} id starts with {PREFIX[self.type]}-")
        if self.type == "hazard" and (self.severity is None or self.probability is None):
            raise ValueError(f"{self.id}: a hazard states its severity and probability (ISO 14971 §5.5)")
        if self.type == "user-need" and self.parents:
            raise ValueError(f"{self.id}: a user need has no parents")
        if len(set(self.parents)) != len(self.parents):
            raise ValueError(f"{self.id}: a parent is listed twice")
        stray = set(self.reviewed) - set(self.parents)
        if stray:
            raise ValueError(f"{self.id}: reviewed names {sorted(stray)[0]}, which is not a parent")
        return self


def fingerprint(item: Item) -> str:
    """SHA-256 of what a child or a test depends on in an item: id, text, links and acceptance
    criteria (a changed threshold or tolerance changes what was verified), as canonical JSON; not
    the title's wording, review bookkeeping or evidence. An item without acceptance criteria hashes
    as it did before criteria were covered (the key is left out), so its reviews stay valid."""
    data: dict[str, object] = {"id": item.id, "text": " ".join(item.text.split()),
                               "parents": sorted(item.parents)}
    if item.acceptance:
        data["acceptance"] = [a.model_dump(mode="json") for a in item.acceptance]
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

"""The IEC 62304 software safety classification of fedprog and the clauses each class must meet.

``safety.yaml`` beside this module holds the classification (IEC 62304:2006+A1:2015 §4.3: the
class, its rationale, the hazards and the external risk control measures it rests on, and the
severity and probability scales the hazards use), the risk acceptability matrix of the risk
management plan (ISO 14971:2019 §4.4 d: a region for every severity × probability cell) and,
as data, the applicability of every clause of IEC 62304 to classes A, B and C as the standard's
Table A.1 states it. Clause 4 (general requirements) carries no class marking and applies to every class.

>>> load_safety().safety_class
'B'
>>> "5.3.1" in clauses_for("B") and "5.3.1" not in clauses_for("A")
True
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SafetyClass = Literal["A", "B", "C"]

#: the classification shipped with the package
SAFETY_FILE = Path(__file__).with_name("safety.yaml")

_STRICT = ConfigDict(extra="forbid", frozen=True)
_ORDER: tuple[SafetyClass, ...] = ("A", "B", "C")


class SafetyError(ValueError):
    """The safety classification file is missing, unreadable or breaks the schema."""


class Clause(BaseModel):
    """One (sub)clause of IEC 62304 and the software safety classes it applies to."""

    model_config = _STRICT
    clause: str = Field(pattern=r"^[4-9](\.\d+){1,3}$")
    title: str = Field(min_length=3)
    classes: tuple[SafetyClass, ...] = Field(min_length=1)

    @field_validator("classes")
    @classmethod
    def _upward_closed(cls, classes: tuple[SafetyClass, ...]) -> tuple[SafetyClass, ...]:
        """What a lower class must do, every higher class must do too (A ⊆ B ⊆ C)."""
        lowest = min(_ORDER.index(c) for c in classes)
        want = _ORDER[lowest:]
        if tuple(sorted(set(classes), key=_ORDER.index)) != want:
            raise ValueError(f"classes {list(classes)} must be {list(want)} (a clause of a lower class "
                             "applies to every higher class)")
        return want


class Region(BaseModel):
    """One region of the risk acceptability matrix: its name and what a residual risk in it means."""

    model_config = _STRICT
    name: str = Field(pattern=r"^[a-z][a-z-]*$")
    meaning: str = Field(min_length=10)
    #: fill colour of the region's cells in the documents (#rrggbb)
    shade: str = Field(pattern=r"^#[0-9a-fA-F]{6}$")


class Acceptability(BaseModel):
    """The manufacturer's risk acceptability policy (ISO 14971:2019 §4.2 c, §4.4 d): a region for
    every cell of the 5 × 5 severity × probability matrix, as data the documents read.

    ``matrix[s]`` lists the regions of severity ``s`` at probabilities 1 to 5. A region may not
    improve as severity or probability rises (a worse cell is never more acceptable)."""

    model_config = _STRICT
    #: the regions from most to least acceptable
    regions: tuple[Region, ...] = Field(min_length=2)
    matrix: dict[int, tuple[str, str, str, str, str]]
    #: the policy in words: how the matrix is used, and who may accept a residual risk
    policy: str = Field(min_length=50)

    @model_validator(mode="after")
    def _complete_and_monotone(self) -> Acceptability:
        names = [r.name for r in self.regions]
        if len(set(names)) != len(names):
            raise ValueError("a region is named twice")
        if sorted(self.matrix) != [1, 2, 3, 4, 5]:
            raise ValueError(f"the matrix has a row for severities 1 to 5, not {sorted(self.matrix)}")
        rank = {n: i for i, n in enumerate(names)}
        for s, row in self.matrix.items():
            unknown = [c for c in row if c not in rank]
            if unknown:
                raise ValueError(f"severity {s}: region {unknown[0]!r} is not one of {names}")
            for p in range(1, 5):
                if rank[row[p]] < rank[row[p - 1]]:
                    raise ValueError(f"severity {s}: probability {p + 1} is more acceptable than {p}")
            if s > 1 and any(rank[a] < rank[b] for a, b in zip(row, self.matrix[s - 1], strict=True)):
                raise ValueError(f"severity {s} is more acceptable than severity {s - 1} somewhere")
        return self

    def region(self, severity: int, probability: int | None) -> str:
        """The region of a risk, ``unknown`` without a probability."""
        return "unknown" if probability is None else self.matrix[severity][probability - 1]

    def named(self, name: str) -> Region:
        return next(r for r in self.regions if r.name == name)


class Role(BaseModel):
    """A role of the risk management process (ISO 14971 §4.4 b) and who holds it (``None``: not named
    yet, a decision of the manufacturer)."""

    model_config = _STRICT
    role: str = Field(min_length=3)
    responsibilities: str = Field(min_length=20)
    name: str | None = None


class Approval(BaseModel):
    """A named person's approval of the risk management report (ISO 14971 §8, §9)."""

    model_config = _STRICT
    name: str = Field(min_length=3)
    role: str
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    decision: str = Field(min_length=20)


class RiskManagement(BaseModel):
    """Who does what in risk management, and the approval of the report (none: the report is a draft)."""

    model_config = _STRICT
    roles: tuple[Role, ...] = Field(min_length=1)
    #: the role whose holder approves the risk management plan and report
    approver: str
    approval: Approval | None = None

    @model_validator(mode="after")
    def _approver_is_a_role(self) -> RiskManagement:
        roles = [r.role for r in self.roles]
        if self.approver not in roles:
            raise ValueError(f"approver {self.approver!r} is not one of the roles {roles}")
        if self.approval is not None and self.approval.role != self.approver:
            raise ValueError(f"the approval is by {self.approval.role!r}, not the approver {self.approver!r}")
        return self


class SafetyClassification(BaseModel):
    """The software safety classification (IEC 62304 §4.3), the scales and acceptability matrix of
    risk management (ISO 14971 §4.4), and the clause applicability table."""

    model_config = _STRICT
    standard: str
    software_system: str
    safety_class: SafetyClass
    rationale: str = Field(min_length=100)
    #: hazards (hazards.yaml) to whose hazardous situations the software system can contribute
    hazards: tuple[str, ...] = Field(min_length=1)
    #: risk control measures external to the software system the class rests on (§4.3 a)
    external_risk_controls: tuple[str, ...]
    severity_scale: dict[int, str]
    probability_scale: dict[int, str]
    acceptability: Acceptability
    risk_management: RiskManagement
    clauses: tuple[Clause, ...] = Field(min_length=1)

    @field_validator("hazards")
    @classmethod
    def _hazard_ids(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        bad = [i for i in ids if not re.fullmatch(r"HAZ-[A-Z]+-\d{3}", i)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a hazard id (HAZ-XXX-000)")
        return ids

    @field_validator("severity_scale", "probability_scale")
    @classmethod
    def _one_to_five(cls, scale: dict[int, str]) -> dict[int, str]:
        if sorted(scale) != [1, 2, 3, 4, 5]:
            raise ValueError(f"a scale defines levels 1 to 5, not {sorted(scale)}")
        return scale

    @model_validator(mode="after")
    def _unique_clauses(self) -> SafetyClassification:
        seen: set[str] = set()
        for c in self.clauses:
            if c.clause in seen:
                raise ValueError(f"clause {c.clause} is listed twice")
            seen.add(c.clause)
        return self

    def clauses_for(self, cls: SafetyClass | None = None) -> tuple[str, ...]:
        """The clause numbers that apply to ``cls`` (default: this system's class), in file order."""
        wanted = self.safety_class if cls is None else cls
        if wanted not in _ORDER:
            raise ValueError(f"software safety class must be A, B or C, not {wanted!r}")
        return tuple(c.clause for c in self.clauses if wanted in c.classes)


def load_safety(path: Path | None = None) -> SafetyClassification:
    """Read and validate the classification (``safety.yaml`` beside this module by default).

    Raises
    ------
    SafetyError
        The file is missing, is not YAML, or breaks the schema; the message names the file.
    """
    path = SAFETY_FILE if path is None else path
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SafetyError(f"{path}: cannot read the safety classification: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SafetyError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    try:
        return SafetyClassification.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise SafetyError(f"{path}: {where}: {first['msg']}") from exc


def clauses_for(cls: SafetyClass) -> tuple[str, ...]:
    """The IEC 62304 clauses that apply to software safety class ``cls`` (Table A.1)."""
    return load_safety().clauses_for(cls)

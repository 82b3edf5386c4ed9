"""The clinical evaluation's data (``regulatory/clinical_evaluation.yaml``), read strictly.

EU MDR Art. 61 and Annex XIV part A ask for a clinical evaluation plan and report; MDCG 2020-1
divides the evidence for medical device software into valid clinical association, technical
performance and clinical performance, MDCG 2020-13 sets out what an assessor looks for in the
report, and Annex XIV part B the post-market clinical follow-up. This module reads what only people
can write — the evaluation questions, the literature on the state of the art, the clinical
association of each input, the era of the cohorts, the discussion of each subgroup, the
benefit-risk conclusion and the PMCF thresholds — validating it strictly (unknown fields refused).

Honesty is enforced by the schema: a literature figure carries a value only when it is
``confirmed`` with its source, and an unconfirmed one carries none; a decision only the
manufacturer can take (:data:`dossier.manufacturer.MARKER` or ``null``) stays open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .manufacturer import MARKER, read_checked
from .spec import DossierError

#: where the file lives, relative to the source checkout
RELATIVE_PATH = Path("regulatory") / "clinical_evaluation.yaml"
#: what a document prints in place of a figure nobody has confirmed
UNCONFIRMED = "figure to be confirmed by the manufacturer's literature search"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Question(_Strict):
    id: str = Field(pattern=r"^CEQ-\d+$")
    question: str = Field(min_length=10)


class EvidenceSource(_Strict):
    source: str = Field(min_length=1)
    what: str = Field(min_length=1)
    where: str = Field(min_length=1)


class LiteratureSearch(_Strict):
    method: str = Field(min_length=1)
    performed_by: str | None = None


class Figure(_Strict):
    """One reported figure of a tool: printed only when ``confirmed``, always with its source."""

    what: str = Field(min_length=1)
    value: str | None = None
    setting: str | None = None
    confirmed: bool
    source: str | None = None

    @model_validator(mode="after")
    def _honest(self) -> Figure:
        if self.confirmed and (not self.value or not self.source):
            raise ValueError("a confirmed figure needs its value and the source it was read from")
        if not self.confirmed and self.value is not None:
            raise ValueError(f"value {self.value!r} is not confirmed: leave it null until a source "
                             "confirms it")
        return self


class Tool(_Strict):
    tool: str = Field(min_length=1)
    inputs: str = Field(min_length=1)
    outcome: str = Field(min_length=1)
    references: list[str] = Field(min_length=1)
    figures: list[Figure] = Field(min_length=1)


class Factor(_Strict):
    factor: str = Field(min_length=1)
    #: words matched (case-insensitively) against a model input's name, label and code display
    matches: list[str] = Field(min_length=1)
    evidence: str = Field(min_length=1)
    references: list[str] = Field(min_length=1)


class Association(_Strict):
    outcome: str = Field(min_length=1)
    factors: list[Factor] = Field(min_length=1)


class Cohort(_Strict):
    name: str = Field(min_length=1)
    period: str = Field(min_length=1)
    setting: str = Field(min_length=1)


class Era(_Strict):
    cohorts: list[Cohort] = Field(min_length=1)
    today: str = Field(min_length=1)
    expectation: str = Field(min_length=1)


class BenefitRisk(_Strict):
    benefit: str = Field(min_length=1)
    conclusion: str | None = None
    evaluator: str | None = None


Range = tuple[float, float]


class InputDrift(_Strict):
    refused_share_per_month: float = Field(gt=0, lt=1)
    mean_shift_sd: float = Field(gt=0)
    minimum_requests: int = Field(ge=1)


class CalibrationDrift(_Strict):
    e_o_ratio: Range
    calibration_slope: Range

    @model_validator(mode="after")
    def _ordered(self) -> CalibrationDrift:
        for name in ("e_o_ratio", "calibration_slope"):
            low, high = getattr(self, name)
            if not 0 < low < 1 < high:
                raise ValueError(f"{name}: [{low:g}, {high:g}] must hold 1 strictly inside, low above 0")
        return self


class DataSource(_Strict):
    source: str = Field(min_length=1)
    what: str = Field(min_length=1)
    frequency: str = Field(min_length=1)


class Complaints(_Strict):
    receives: str = Field(min_length=1)
    records: str = Field(min_length=1)
    trends: str = Field(min_length=1)
    vigilance: str = Field(min_length=1)


class Action(_Strict):
    signal: str = Field(min_length=1)
    action: str = Field(min_length=1)


class Pmcf(_Strict):
    objectives: list[str] = Field(min_length=1)
    input_drift: InputDrift
    calibration: CalibrationDrift
    revalidation: str = Field(min_length=1)
    data: list[DataSource] = Field(min_length=1)
    complaints: Complaints
    actions: list[Action] = Field(min_length=1)


class ClinicalEvaluationFile(_Strict):
    """``regulatory/clinical_evaluation.yaml`` (``schema: fedprog.clinical-evaluation/v1``)."""

    schema_: Literal["fedprog.clinical-evaluation/v1"] = Field(alias="schema")
    #: the model ids (``model_id``) this clinical evaluation concerns: its clinical association, state of
    #: the art and benefit-risk are those of their outcome and inputs, of no other model
    models: list[str] = Field(min_length=1)
    questions: list[Question] = Field(min_length=1)
    evidence_sources: list[EvidenceSource] = Field(min_length=1)
    literature_search: LiteratureSearch
    state_of_the_art: list[Tool] = Field(min_length=1)
    clinical_association: Association
    era: Era
    subgroups: dict[str, str] = Field(default_factory=dict)
    benefit_risk: BenefitRisk
    pmcf: Pmcf

    def unconfirmed(self) -> list[tuple[str, str]]:
        """``(tool, figure)`` of every literature figure still to be confirmed."""
        return [(t.tool, f.what) for t in self.state_of_the_art for f in t.figures if not f.confirmed]

    def factor_of(self, *texts: str) -> Factor | None:
        """The first factor one of whose words occurs in any of ``texts`` (case-insensitive)."""
        low = " ".join(texts).lower()
        return next((f for f in self.clinical_association.factors
                     if any(m.lower() in low for m in f.matches)), None)


def decided(value: str | None) -> bool:
    """Whether a manufacturer's field holds a decision (not ``null`` nor the marker)."""
    return value is not None and value.strip() != MARKER


def clinical_path(source: Path | None) -> Path:
    """``<source>/regulatory/clinical_evaluation.yaml`` (the source checkout is required)."""
    if source is None:
        raise DossierError(f"{RELATIVE_PATH}: no source checkout to read the clinical evaluation from")
    return Path(source) / RELATIVE_PATH


def load_clinical_evaluation(path: Path | None = None, *,
                             source: Path | None = None) -> ClinicalEvaluationFile:
    """Read and validate the clinical evaluation's data (``path``, else the one in ``source``, else
    in the checkout this package runs from).

    Raises
    ------
    DossierError
        One line naming the file and, for a contract violation, the field.
    """
    if path is None:
        from .inputs import checkout

        path = clinical_path(source if source is not None else checkout())
    return read_checked(Path(path), ClinicalEvaluationFile, "the clinical evaluation's data file")

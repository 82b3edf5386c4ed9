"""The manufacturer's file (``regulatory/manufacturer.yaml``): the intended purpose and the decisions
only the legal manufacturer can take, as checked data.

EU MDR 2017/745 asks the technical file for the intended purpose (Art. 2(12); Annex II §1.1: users,
indication, contra-indications, patient population), the risk class and its rule (Annex VIII,
Rule 11 for software), the manufacturer's identity, the Basic UDI-DI (Art. 27, Annex VI Part C)
and the label (Annex I §23.2). This module reads the file once, validates it strictly (unknown
fields refused) and lists what is still undecided: a field marked as a manufacturer's decision that
is ``null``, or any value equal to :data:`MARKER`. While :meth:`ManufacturerFile.missing_decisions`
is not empty, a document that quotes the file must call itself a draft and list them.

The file lives in the source checkout (like the requirements), not in the installed packages:
:func:`load_manufacturer` reads ``<source>/regulatory/manufacturer.yaml``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prognosis.inputs import first_error
from prognosis.schema import IntendedUse

from .spec import DossierError

#: what the file says where only the manufacturer can decide
MARKER = "TO BE DECIDED BY THE MANUFACTURER"
#: where the file lives, relative to the source checkout
RELATIVE_PATH = Path("regulatory") / "manufacturer.yaml"
MdrClass = Literal["I", "IIa", "IIb", "III"]


def decision(what: str) -> Any:
    """A field only the manufacturer can fill: ``null`` (or :data:`MARKER`) until decided."""
    return Field(default=None, description=what, json_schema_extra={"decision": True})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Device(_Strict):
    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    software_version: str | None = decision("the released software version the declaration covers")
    basic_udi_di: str | None = decision("the Basic UDI-DI (MDR Art. 27, Annex VI Part C)")


class Manufacturer(_Strict):
    name: str | None = decision("the legal manufacturer's name")
    address: str | None = decision("the legal manufacturer's registered address")
    srn: str | None = decision("the EUDAMED single registration number (MDR Art. 31)")
    person_responsible_for_regulatory_compliance: str | None = decision(
        "the person responsible for regulatory compliance (MDR Art. 15)")
    authorised_representative: str | None = decision(
        "the authorised representative, or 'none' for a manufacturer established in the EU (MDR Art. 11)")


class AgeRange(_Strict):
    min: float = Field(ge=0)
    max: float = Field(ge=0)


class Indication(_Strict):
    population: str = Field(min_length=1)
    sex: Literal["female", "male"] | None = None
    age_years: AgeRange | None = None
    condition: str = Field(min_length=1)
    stage: str = Field(min_length=1)
    timing: str | None = None


class IntendedPurpose(_Strict):
    medical_purpose: str = Field(min_length=1)
    indication: Indication
    contraindications: list[str] = Field(min_length=1)
    intended_users: list[str] = Field(min_length=1)
    use_environment: str = Field(min_length=1)
    patient_involvement: str | None = None


class Classification(_Strict):
    rule: str = Field(min_length=1)
    rationale: str = Field(min_length=1)
    candidate_classes: list[MdrClass] = Field(min_length=1)
    decided_class: MdrClass | None = decision("the risk class (MDR Annex VIII), with its justification")
    conformity_assessment_route: str | None = decision("the conformity assessment route (MDR Art. 52)")

    @model_validator(mode="after")
    def _candidate(self) -> Classification:
        if self.decided_class is not None and self.decided_class not in self.candidate_classes:
            raise ValueError(f"decided_class: {self.decided_class} is not one of the candidate classes "
                             f"{', '.join(self.candidate_classes)} the rationale argues for")
        return self


class Label(_Strict):
    device_name: str = Field(min_length=1)
    udi_carrier: str | None = decision("the UDI carrier shown by the software (UDI-DI and version)")
    manufacturer: str | None = decision("the manufacturer's name and address on the label")
    ce_marking: str | None = decision("the CE marking with the notified body's number")
    statements: list[str] = Field(min_length=1)
    ifu: str = Field(min_length=1)


class Declaration(_Strict):
    signatory: str | None = decision("who signs the EU declaration of conformity (MDR Annex IV)")
    date: dt.date | None = decision("the date of the EU declaration of conformity")


class Cybersecurity(_Strict):
    """Decisions of the vulnerability-handling process only the manufacturer can take (MDCG 2019-16
    section 3.3 and 6; IEC 81001-5-1 §5.1.4, §7.2, §8; FP-CYB section 6)."""

    security_contact: str | None = decision(
        "the address where vulnerability reports are received (coordinated disclosure), with its public "
        "encryption key")
    advisory_channel: str | None = decision("how hospitals operating the device are notified of a "
                                            "vulnerability and its remedy (security advisories)")
    response_times: str | None = decision("the response times of vulnerability handling (acknowledge, "
                                          "triage, remedy by severity), confirmed or set")
    support_end: str | None = decision("the end of security support of this version (updates and "
                                       "advisories)")
    residual_risk_acceptance: str | None = decision(
        "the acceptance of the cybersecurity residual risks scored High or Critical (FP-CYB), with "
        "its justification, by name and date")


class ManufacturerFile(_Strict):
    """``regulatory/manufacturer.yaml`` (``schema: fedprog.manufacturer/v1``)."""

    schema_: Literal["fedprog.manufacturer/v1"] = Field(alias="schema")
    device: Device
    manufacturer: Manufacturer
    intended_purpose: IntendedPurpose
    classification: Classification
    label: Label
    declaration_of_conformity: Declaration
    cybersecurity: Cybersecurity = Field(default_factory=Cybersecurity)

    def missing_decisions(self) -> list[tuple[str, str]]:
        """``(field path, what is to be decided)`` of every decision still open, in file order."""
        return _missing(self, "")

    @property
    def is_draft(self) -> bool:
        """True while any manufacturer's decision is open: the technical file is then a draft."""
        return bool(self.missing_decisions())

    def disagreements(self, use: IntendedUse | None) -> list[str]:
        """Where the intended use a released model enforces (its artifact's ``intended_use``)
        contradicts this file's indication; empty when they agree."""
        if use is None:
            return ["the model carries no intended_use block, so the device enforces none of the indication"]
        want = self.intended_purpose.indication.sex
        return [] if use.sex == want else [
            f"sex: the model enforces {use.sex or 'no sex'}, the indication says {want or 'any sex'}"]


def _missing(node: Any, path: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(node, list):
        for i, item in enumerate(node):
            out += _missing(item, f"{path}[{i}]")
        return out
    if not isinstance(node, BaseModel):
        return [(path, "a value the manufacturer must state")] if node == MARKER else []
    for name, info in type(node).model_fields.items():
        value, where = getattr(node, name), f"{path}.{info.alias or name}".lstrip(".")
        is_decision = isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("decision")
        if is_decision and value in (None, MARKER):
            out.append((where, info.description or where))
        else:
            out += _missing(value, where)
    return out


def manufacturer_path(source: Path | None) -> Path:
    """``<source>/regulatory/manufacturer.yaml`` (the source checkout is required)."""
    if source is None:
        raise DossierError(f"{RELATIVE_PATH}: no source checkout to read the manufacturer's file from")
    return Path(source) / RELATIVE_PATH


def load_manufacturer(path: Path | None = None, *, source: Path | None = None) -> ManufacturerFile:
    """Read and validate the manufacturer's file (``path``, else the one in ``source``, else in the
    checkout this package runs from).

    Raises
    ------
    DossierError
        One line naming the file and, for a contract violation, the field: missing, not YAML,
        or outside the contract.
    """
    if path is None:
        from .inputs import checkout

        path = manufacturer_path(source if source is not None else checkout())
    return read_checked(Path(path), ManufacturerFile, "the manufacturer's file")


M = TypeVar("M", bound=BaseModel)


def read_checked(path: Path, model: type[M], what: str) -> M:
    """``path`` read as YAML and validated as ``model``; :class:`DossierError` in one line naming the
    file and, for a contract violation, the field (``what`` names the file when it is missing)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DossierError(f"{path}: {what} is missing") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DossierError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise DossierError(f"{path}: {first_error(exc, plain=True)}") from None

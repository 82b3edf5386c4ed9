"""The intended purpose the device enforces on each patient: sex and the age of each result.

A model whose artifact carries ``intended_use`` (:class:`prognosis.schema.IntendedUse`) was
developed for one population; the device refuses, in words a clinician reads, a patient it can
tell is outside it rather than give a number for her: a ``Patient.gender`` (R4 patient.html,
AdministrativeGender) other than the required sex or not recorded, and inputs whose most recent
Observation is older than ``max_observation_age_days`` at ``asOf`` (the latest would otherwise
be used however old it is) or undated, so that its age cannot be checked. Pure functions; each
refusal is one diagnostics line of a 422 OperationOutcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from device.model import PrognosticModel

from .errors import FhirError

#: the people a required sex stands for, in a sentence
PEOPLE = {"female": "women", "male": "men"}


def check_sex(model: PrognosticModel, gender: Any, patient: str, path: str) -> None:
    """Refuse a patient (reference ``patient``, at ``path`` in the Bundle) whose ``Patient.gender``
    is not the sex the model was developed for.

    Raises
    ------
    FhirError
        422 ``required`` when the gender is not recorded, 422 ``business-rule`` when it differs.
    """
    use = model.artifact.intended_use
    if use is None or use.sex is None:
        return
    where = [f"{path}.gender"]
    developed = f"this model was developed for {PEOPLE[use.sex]} ({use.population})"
    if gender is None:
        raise FhirError(422, "required", f"The patient's sex is not recorded ({patient} has no gender); "
                        f"{developed}, so no risk is given without it", where)
    if gender != use.sex:
        raise FhirError(422, "business-rule", f"The patient's recorded sex is {gender}; {developed}, "
                        "so no risk is given", where)


def max_age(model: PrognosticModel) -> int | None:
    """The oldest (in days at ``asOf``) an input's result may be, if the model sets a limit."""
    use = model.artifact.intended_use
    return None if use is None else use.max_observation_age_days


def too_old(when: datetime | None, as_of: date, limit: int) -> bool:
    """True when a result made at ``when`` (None: undated) is older than ``limit`` days at ``as_of``."""
    return when is None or (as_of - when.date()).days > limit


def stale_reason(results: Sequence[tuple[str, str, datetime | None]], as_of: date, limit: int) -> str:
    """One sentence refusing the results (input label, reference, instant) that are too old or undated."""
    shown = [f"{label} ({ref}, " + ("undated" if when is None else
                                    f"{when.date()}, {(as_of - when.date()).days} days old") + ")"
             for label, ref, when in results]
    return (f"Results too old to use on {as_of}: {', '.join(shown)}; this model uses results up to "
            f"{limit} days old, so send current ones")

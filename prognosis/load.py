"""Read any released model: a ``fedprog.model/v1`` artifact becomes the model object of its ``kind``.

:func:`load_released` reads, hash-checks and validates an artifact once
(:func:`prognosis.cox.read_artifact`) and returns a :class:`prognosis.CoxModel` (``cox-ph``) or a
:class:`prognosis.logistic.LogisticModel` (``logistic``); both state the same facts and per-effect
contributions (:class:`prognosis.released.Released`), so a caller that only serves a model need not
know which it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .cox import CoxModel, read_artifact
from .logistic import LogisticModel

#: a released model of either kind
ReleasedModel = CoxModel | LogisticModel


def load_released(source: str | Path | Mapping[str, Any]) -> ReleasedModel:
    """The verified model of a ``fedprog.model/v1`` artifact (a path or the parsed JSON), by its ``kind``.

    Raises
    ------
    ModelError
        As :meth:`prognosis.CoxModel.from_artifact`: a sha256 mismatch or the first contract violation,
        in one line naming the file and the field.
    """
    _, art, data = read_artifact(source)
    return LogisticModel._of(art, data) if art.kind == "logistic" else CoxModel._of(art, data)

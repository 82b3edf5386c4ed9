"""The model artifact (``fedprog.model/v1``) as the device reads it: validated and hash-checked.

The device never trusts a model file: :func:`load_model` recomputes the SHA-256 of the canonical
JSON of every field but ``sha256`` and refuses a mismatch, then validates the whole contract with
strict pydantic models, and returns the model object of the artifact's ``kind``: a Cox model
(:class:`prognosis.CoxModel`) or a logistic model (:class:`prognosis.LogisticModel`), which state the
same facts (:class:`prognosis.released.Released`). This module names them as the device uses them.
"""

from __future__ import annotations

from prognosis import SCHEMA, Artifact, Coding, Coverage, CoxModel, LogisticModel, ModelError
from prognosis import ModelInput as InputSpec
from prognosis import load_released as load_model
from prognosis.schema import BaselineSurvival, Outcome, Stratum

#: the device's name for a loaded, verified model of either kind
PrognosticModel = CoxModel | LogisticModel

__all__ = ["SCHEMA", "Artifact", "BaselineSurvival", "Coding", "Coverage", "CoxModel", "InputSpec",
           "LogisticModel", "ModelError", "Outcome", "PrognosticModel", "Stratum", "load_model"]

"""The model artifact (``fedprog.model/v1``) as the device reads it: validated and hash-checked.

The device never trusts a model file: :func:`load_model` recomputes the SHA-256 of the canonical
JSON of every field but ``sha256`` and refuses a mismatch, then validates the whole contract with
strict pydantic models. The model object, its schema and its inputs are the one Cox model of
:mod:`prognosis` (:class:`prognosis.CoxModel`); this module names them as the device uses them.
"""

from __future__ import annotations

from prognosis import SCHEMA, Artifact, Coding, Coverage, CoxModel, ModelError, load_model
from prognosis import ModelInput as InputSpec
from prognosis.schema import BaselineSurvival, Outcome, Stratum

#: the device's name for a loaded, verified model
PrognosticModel = CoxModel

__all__ = ["SCHEMA", "Artifact", "BaselineSurvival", "Coding", "Coverage", "InputSpec", "ModelError",
           "Outcome", "PrognosticModel", "Stratum", "load_model"]

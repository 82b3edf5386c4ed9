"""The released prognostic model, pure (numpy + pydantic): the Cox and logistic model objects, the facts
they share, reading either by its kind, and their file format."""

from .cox import (
                  BaselineCurve,
                  CoxModel,
                  ModelError,
                  evaluable,
                  load_model,
                  seal,
                  verify_sha256,
                  wald,
)
from .inputs import Bands, Coding, Coverage, InputSpec, ModelInput
from .load import ReleasedModel, load_released
from .logistic import LogisticModel
from .released import DAYS_PER_UNIT, Released
from .schema import SCHEMA, Artifact
from .steps import Z95, step_at

__all__ = ["DAYS_PER_UNIT", "SCHEMA", "Artifact", "Bands", "BaselineCurve", "Coding", "Coverage", "CoxModel",
           "InputSpec", "LogisticModel", "ModelError", "ModelInput", "Released", "ReleasedModel", "Z95",
           "evaluable", "load_model", "load_released", "seal", "step_at", "verify_sha256", "wald"]

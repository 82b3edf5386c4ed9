"""The released prognostic model, pure (numpy + pydantic): the one Cox model object and its file format."""

from .cox import (
                  DAYS_PER_UNIT,
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
from .schema import SCHEMA, Artifact
from .steps import Z95, step_at

__all__ = ["DAYS_PER_UNIT", "SCHEMA", "Artifact", "Bands", "BaselineCurve", "Coding", "Coverage", "CoxModel",
           "InputSpec", "ModelError", "ModelInput", "Z95", "evaluable", "load_model", "seal", "step_at",
           "verify_sha256", "wald"]

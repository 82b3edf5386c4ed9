"""Performance metrics, acceptance criteria, the validation run and its report."""

from .criteria import Criterion, judge, load_criteria
from .exceptions import CriteriaError, ValidationRunError, VerificationError
from .pooling import inverse_variance, pool_metrics
from .run import Options, leave_one_site_out, run_validation

__all__ = [
    "CriteriaError", "Criterion", "Options", "ValidationRunError", "VerificationError", "inverse_variance",
    "judge", "leave_one_site_out", "load_criteria", "pool_metrics", "run_validation",
]

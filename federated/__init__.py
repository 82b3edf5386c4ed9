"""Federated survival analysis: sites answer with aggregates, the coordinator sums them.

Exact federated Cox proportional hazards (Efron/Breslow ties, ridge, strata) and
Kaplan–Meier / log-rank over a transport-agnostic, versioned message protocol.
"""

from ledger.canonical import canonical_json
from ledger.files import write_json_atomic

from .artifact import build_artifact, seal, verify_sha256
from .coordinator import Coordinator
from .cox import CoxFit, fit_cox
from .estimator import FederatedCoxPH
from .exceptions import (
    ConvergenceError,
    DataError,
    FederatedError,
    ProtocolError,
    SingularDesignError,
    SiteError,
)
from .km import KMFit, fit_km, kaplan_meier, logrank
from .privacy import DisclosurePolicy, PolicyError
from .site import Site
from .study import CohortSpec, StudySpec, load_study
from .transport import InProcessTransport, Transport

__all__ = [
    "CohortSpec", "ConvergenceError", "Coordinator", "CoxFit", "DataError", "DisclosurePolicy",
    "FederatedCoxPH", "PolicyError",
    "FederatedError", "InProcessTransport", "KMFit", "ProtocolError", "SingularDesignError",
    "Site", "SiteError", "StudySpec", "Transport", "build_artifact", "canonical_json",
    "fit_cox", "fit_km", "kaplan_meier", "load_study", "logrank", "seal", "verify_sha256",
    "write_json_atomic",
]

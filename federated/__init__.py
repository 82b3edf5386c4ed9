"""Federated survival analysis: sites answer with aggregates, the coordinator sums them.

Exact federated Cox proportional hazards (Efron/Breslow ties, ridge, strata) and
Kaplan–Meier / log-rank over a transport-agnostic, versioned message protocol.

The names below load on first use (PEP 562), so a process that needs only a site — a
Flower ClientApp starts once per message — does not pay for the coordinator's imports.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    "canonical_json": "ledger.canonical", "write_json_atomic": "ledger.files",
    "build_artifact": ".artifact", "seal": ".artifact", "verify_sha256": ".artifact",
    "Coordinator": ".coordinator", "CoxFit": ".cox", "fit_cox": ".cox", "FederatedCoxPH": ".estimator",
    "ConvergenceError": ".exceptions", "DataError": ".exceptions", "FederatedError": ".exceptions",
    "ProtocolError": ".exceptions", "SingularDesignError": ".exceptions", "SiteError": ".exceptions",
    "KMFit": ".km", "fit_km": ".km", "kaplan_meier": ".km", "logrank": ".km",
    "DisclosurePolicy": ".privacy", "PolicyError": ".privacy", "Site": ".site",
    "CohortSpec": ".study", "StudySpec": ".study", "load_study": ".study",
    "InProcessTransport": ".transport", "Transport": ".transport",
}

__all__ = [
    "CohortSpec", "ConvergenceError", "Coordinator", "CoxFit", "DataError", "DisclosurePolicy",
    "FederatedCoxPH", "FederatedError", "InProcessTransport", "KMFit", "PolicyError", "ProtocolError",
    "SingularDesignError", "Site", "SiteError", "StudySpec", "Transport", "build_artifact",
    "canonical_json", "fit_cox", "fit_km", "kaplan_meier", "load_study", "logrank", "seal",
    "verify_sha256", "write_json_atomic",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'federated' has no attribute {name!r}")
    value = getattr(import_module(where, __name__), name)
    globals()[name] = value
    return value

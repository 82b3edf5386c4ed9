"""Federated survival analysis: sites answer with aggregates, the coordinator sums them.

Split by where code runs: :mod:`federated.protocol` (messages, transports, the coordinator,
secure aggregation), :mod:`federated.site` (what runs at a hospital), :mod:`federated.analyses`
(the coordinator's analyses: discovery, Cox, Kaplan–Meier, the study runner) and
:mod:`federated.disclosure` (the rules a site holds, k-cells, the policy, DP, audit).

Exact federated Cox proportional hazards (Efron/Breslow ties, ridge, strata, splines, dummy-coded
categories, interactions), logistic regression of a recorded binary outcome and Kaplan–Meier /
log-rank over a transport-agnostic, versioned message protocol.

The names below load on first use (PEP 562), so a process that needs only a site — a
Flower ClientApp starts once per message — does not pay for the coordinator's imports.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from federated.analyses.artifact import build_artifact, seal, verify_sha256
    from federated.analyses.cox import CoxFit, fit_cox
    from federated.analyses.estimator import FederatedCoxPH
    from federated.analyses.km import KMFit, fit_km, kaplan_meier, logrank
    from federated.analyses.logistic_estimator import FederatedLogisticRegression
    from federated.disclosure.policy import DisclosurePolicy, PolicyError
    from federated.exceptions import (
        ConvergenceError,
        DataError,
        FederatedError,
        ProtocolError,
        SingularDesignError,
        SiteError,
    )
    from federated.protocol.coordinator import Coordinator
    from federated.protocol.transport import InProcessTransport, Transport
    from federated.site.handler import Site
    from federated.study import CohortSpec, StudySpec, load_study
    from ledger.canonical import canonical_json
    from ledger.files import write_json_atomic

_WHERE = {
    "canonical_json": "ledger.canonical", "write_json_atomic": "ledger.files",
    "build_artifact": ".analyses.artifact", "seal": ".analyses.artifact",
    "verify_sha256": ".analyses.artifact",
    "Coordinator": ".protocol.coordinator", "CoxFit": ".analyses.cox", "fit_cox": ".analyses.cox",
    "FederatedCoxPH": ".analyses.estimator",
    "FederatedLogisticRegression": ".analyses.logistic_estimator",
    "ConvergenceError": ".exceptions", "DataError": ".exceptions", "FederatedError": ".exceptions",
    "ProtocolError": ".exceptions", "SingularDesignError": ".exceptions", "SiteError": ".exceptions",
    "KMFit": ".analyses.km", "fit_km": ".analyses.km", "kaplan_meier": ".analyses.km",
    "logrank": ".analyses.km",
    "DisclosurePolicy": ".disclosure.policy", "PolicyError": ".disclosure.policy", "Site": ".site.handler",
    "CohortSpec": ".study", "StudySpec": ".study", "load_study": ".study",
    "InProcessTransport": ".protocol.transport", "Transport": ".protocol.transport",
}

__all__ = [
    "CohortSpec", "ConvergenceError", "Coordinator", "CoxFit", "DataError", "DisclosurePolicy",
    "FederatedCoxPH", "FederatedError", "FederatedLogisticRegression", "InProcessTransport", "KMFit",
    "PolicyError", "ProtocolError",
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

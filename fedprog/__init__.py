"""fedprog: federated prognostic models (Cox PH, logistic regression, Kaplan–Meier, Aalen–Johansen)
with scikit-learn's and lifelines' face.

>>> from fedprog import FederatedCoxPH, FederatedKaplanMeier, Site
>>> cox = FederatedCoxPH(max_time=1826.25).fit_sites(sites, time="time", event="event",
...                                                  covariates=["age", "pnodes"])
>>> cox.print_summary()

This package is the library's public face: it re-exports the estimators and what they take, and
imports no command-line code (the ``fedprog`` command lives in :mod:`fedprog.cli`). The names load
on first use (PEP 562), so ``import fedprog`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from federated.analyses.cause_specific import FederatedCauseSpecificCox
    from federated.analyses.competing_estimator import FederatedAalenJohansen
    from federated.analyses.estimator import FederatedCoxPH
    from federated.analyses.km_estimator import FederatedKaplanMeier
    from federated.analyses.logistic_estimator import FederatedLogisticRegression
    from federated.analyses.summary import cox_summary
    from federated.disclosure.dp import DPSettings
    from federated.disclosure.policy import DisclosurePolicy, PolicyError
    from federated.disclosure.rules import SiteFloors
    from federated.exceptions import (
        ConvergenceError,
        DataError,
        FederatedError,
        SingularDesignError,
        SiteError,
    )
    from federated.site.handler import Site
    from federated.study import InputSpec

_WHERE = {
    "FederatedAalenJohansen": "federated.analyses.competing_estimator",
    "FederatedCauseSpecificCox": "federated.analyses.cause_specific",
    "FederatedCoxPH": "federated.analyses.estimator",
    "FederatedKaplanMeier": "federated.analyses.km_estimator",
    "FederatedLogisticRegression": "federated.analyses.logistic_estimator",
    "Site": "federated.site.handler",
    "SiteFloors": "federated.disclosure.rules",
    "DisclosurePolicy": "federated.disclosure.policy",
    "PolicyError": "federated.disclosure.policy",
    "DPSettings": "federated.disclosure.dp",
    "InputSpec": "federated.study",
    "cox_summary": "federated.analyses.summary",
    "ConvergenceError": "federated.exceptions",
    "DataError": "federated.exceptions",
    "FederatedError": "federated.exceptions",
    "SingularDesignError": "federated.exceptions",
    "SiteError": "federated.exceptions",
}

__all__ = [
    "ConvergenceError", "DPSettings", "DataError", "DisclosurePolicy", "FederatedAalenJohansen",
    "FederatedCauseSpecificCox", "FederatedCoxPH", "FederatedError",
    "FederatedKaplanMeier", "FederatedLogisticRegression", "InputSpec", "PolicyError", "SingularDesignError",
    "Site", "SiteError", "SiteFloors", "cox_summary",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'fedprog' has no attribute {name!r}")
    value = getattr(import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)

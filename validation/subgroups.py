"""The declared subgroups of a validation (fairness): data, not code.

Age bands (years, an input named ``age`` in UCUM ``a``) and every boolean input of the model
(yes / no). Each subgroup is evaluated at every site like the site itself, and suppressed where
it is below the disclosure minimums (:mod:`federated.site.evaluation`).
"""

from __future__ import annotations

from typing import Any

from federated.protocol.messages import Subgroup
from federated.site.evaluation import AGE_BANDS

__all__ = ["AGE_BANDS", "default_subgroups"]


def default_subgroups(inputs: list[dict[str, Any]]) -> list[Subgroup]:
    """Age bands and yes/no of each boolean input, for a model's ``inputs`` (artifact form)."""
    out = []
    for spec in inputs:
        if spec["name"] == "age" and spec.get("unit") == "a":
            out += [Subgroup(name=name, partition="age band", variable="age", low=lo, high=hi)
                    for name, lo, hi in AGE_BANDS]
        elif spec.get("kind") == "boolean":
            label = spec.get("code", {}).get("display") or spec["name"]
            out += [Subgroup(name=f"{label}: {word}", partition=label, variable=spec["name"], equals=value)
                    for word, value in (("yes", 1.0), ("no", 0.0))]
    return out

"""What the device's 95% risk interval carries, worded once for every document (HAZ-DEV-001)."""

from __future__ import annotations

from typing import Any


def includes_baseline(artifact: dict[str, Any] | None) -> bool:
    """Whether the artifact carries the baseline hazard's variance (SRS-DEV-012)."""
    baseline = (artifact or {}).get("baseline_survival") or {}
    return "variance_increments" in baseline


def interval_statement(includes: bool) -> str:
    """One sentence on what the 95% interval includes (``includes``: the model carries the baseline
    hazard's variance, :func:`includes_baseline` / ``CoxModel.interval_includes_baseline``)."""
    if includes:
        return ("The device's 95% risk interval includes the uncertainty of the coefficients and of the "
                "baseline hazard (delta method on the log(-log) scale, as survival::survfit.coxph; "
                "SRS-DEV-012, RC-DEV-003).")
    return ("This model's artifact does not carry the baseline hazard's variance: its 95% risk interval "
            "reflects coefficient uncertainty only and may be too narrow or too wide (HAZ-DEV-001); the "
            "device labels it so.")

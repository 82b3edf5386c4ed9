"""Acceptance criteria: read from the requirements, judged against the validation's results.

Every requirement item (``traceability/requirements/*.yaml``) may state ``acceptance`` criteria
(:class:`traceability.schema.Acceptance`): a metric, the statistic compared (the estimate or a
bound of its 95% CI), an operator and threshold, an optional horizon, and whether the pooled
value or every site must meet it. Judging rules:

* a per-horizon metric (``td_auc``, ``brier``, ``e_o_ratio``, ``calibration_intercept``) without a
  horizon, or with ``horizon: each``, must hold at every horizon of the model; ``calibration_slope``
  without a horizon is the slope on all follow-up, with one the slope with follow-up censored at it,
  and with ``each`` the slope censored at every horizon of the model (so a criterion holds for any
  study's horizons, not one model's);
* ``harrell_c``, ``uno_c``, ``integrated_brier`` and ``c_statistic`` have no horizon (a stated one is
  ignored);
* a criterion judges only a model whose kind reports its metric (:data:`REPORTED`: a Cox model's
  survival metrics, a logistic model's binary ones, :mod:`federated.site.binary_performance`) and
  whose kind its ``model`` names (``None``: any); the others are listed as not applicable to the
  model (:func:`applicable`) and neither pass nor fail; a logistic model reports every metric but
  the C statistic at its one horizon, so there a per-horizon metric without a horizon means that one;
* a value that could not be computed (suppressed site, horizon beyond follow-up, too few sites to
  pool) fails the check, with the reason: a criterion passes only on evidence;
* a criterion on a bound of the 95% CI (``ci_lower``/``ci_upper``) fails when that CI rests on fewer
  than :data:`MIN_BOOT_FOR_ACCEPTANCE` valid bootstrap resamples — a site's ``n_boot``, or for a
  pooled value the smallest ``n_boot`` of the sites it pooled — with the reason: percentile limits
  from a few dozen resamples move by more than the margins the criteria judge (Efron &
  Tibshirani 1993, §19.3, recommend B ≥ 1000 for percentile intervals). An entry that carries
  neither (an analytic CI) is judged as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federated.site.performance import PER_HORIZON

from .exceptions import CriteriaError

#: the metrics each kind of model's validation reports (:mod:`federated.site.performance`,
#: :mod:`federated.site.binary_performance`)
REPORTED: dict[str, tuple[str, ...]] = {
    "cox-ph": ("harrell_c", "uno_c", "td_auc", "brier", "integrated_brier", "e_o_ratio",
               "calibration_intercept", "calibration_slope"),
    "logistic": ("c_statistic", "brier", "e_o_ratio", "calibration_intercept", "calibration_slope"),
}

#: results by (metric, horizon): the entry holds ``estimate``, ``ci_lower``, ``ci_upper`` and, from a
#: site, ``n_boot`` (its valid resamples) or, pooled, ``sites`` (the sites it pooled)
Table = dict[tuple[str, float | None], dict[str, Any]]
#: the fewest valid bootstrap resamples a CI bound may rest on to decide acceptance
MIN_BOOT_FOR_ACCEPTANCE = 1000
CI_BOUNDS = ("ci_lower", "ci_upper")


@dataclass(frozen=True)
class Criterion:
    """One acceptance criterion and the requirement stating it (``id`` = ``<requirement>#<k>``)."""

    id: str
    requirement: str
    title: str
    acceptance: Any  # traceability.schema.Acceptance


def load_criteria(folder: Path | None = None) -> list[Criterion]:
    """Every acceptance criterion stated by the requirement items in ``folder`` (default: the
    ``traceability`` package's own), read by :func:`traceability.load.load_requirements`.

    Raises
    ------
    CriteriaError
        The requirements do not load, or no item states a criterion (a validation with nothing to
        meet would pass vacuously).
    """
    from traceability.load import DEFAULT_FOLDER, RequirementsError, load_requirements

    try:
        items = load_requirements(folder)
    except RequirementsError as exc:
        raise CriteriaError(str(exc)) from None
    out = [Criterion(f"{item.id}#{k}", item.id, item.title, a)
           for _, item in sorted(items.items.items())
           for k, a in enumerate(item.acceptance, start=1)]
    if not out:
        raise CriteriaError(f"{folder or DEFAULT_FOLDER}: no requirement states an acceptance criterion")
    return out


def for_setting(criteria: list[Criterion], setting: str) -> list[Criterion]:
    """The criteria a validation in ``setting`` judges: ``external`` ones only at hospitals that did
    not train the model, the others (each-site, pooled) only at the training sites."""
    return [c for c in criteria if (c.acceptance.scope == "external") == (setting == "external")]


def applicable(criteria: list[Criterion], kind: str) -> tuple[list[Criterion], list[dict[str, Any]]]:
    """The criteria a ``kind`` model (``cox-ph`` or ``logistic``) is judged by — its kind reports the
    metric and the criterion's ``model`` is that kind or ``None`` — and the others, each listed with
    the reason it does not apply (for the report; they neither pass nor fail)."""
    if kind not in REPORTED:
        raise CriteriaError(f"no acceptance criteria are known for a {kind!r} model (want one of "
                            f"{', '.join(REPORTED)})")
    judged, skipped = [], []
    for c in criteria:
        a = c.acceptance
        if a.metric in REPORTED[kind] and a.model in (None, kind):
            judged.append(c)
        else:
            skipped.append({"id": c.id, "requirement": c.requirement, "title": c.title, "metric": a.metric,
                            "model": a.model, "scope": a.scope,
                            "reason": f"not applicable to a {kind} model"})
    return judged, skipped


def _horizons(metric: str, horizon: float | str | None, horizons: list[float],
              kind: str = "cox-ph") -> list[float | None]:
    if metric not in PER_HORIZON:
        return [None]
    if horizon == "each":
        return list(horizons)
    if isinstance(horizon, float | int):
        return [horizon]
    return [None] if metric == "calibration_slope" and kind == "cox-ph" else list(horizons)


def _lookup(table: Table | None, metric: str, horizon: float | None) -> dict[str, Any] | None:
    for (m, h), entry in (table or {}).items():
        if m == metric and (h == horizon or (h is not None and horizon is not None
                                               and abs(h - horizon) < 1e-9)):
            return entry
    return None


def _compare(value: float, op: str, threshold: float | tuple[float, float]) -> bool:
    if op == ">=":
        return value >= threshold  # type: ignore[operator]
    if op == "<=":
        return value <= threshold  # type: ignore[operator]
    lo, hi = threshold  # type: ignore[misc]
    return bool(lo <= value <= hi)


def _resamples(entry: dict[str, Any], metric: str, horizon: float | None,
               sites: dict[str, Table | str]) -> tuple[int, str] | None:
    """The valid resamples a CI rests on and where (the fewest over a pooled value's sites), or
    ``None`` when the entry says nothing of a bootstrap."""
    if entry.get("n_boot") is not None:
        return int(entry["n_boot"]), ""
    counts = []
    for site in entry.get("sites") or []:
        table = sites.get(site)
        found = None if isinstance(table, str) else _lookup(table, metric, horizon)
        counts.append((int(found["n_boot"]) if found and found.get("n_boot") is not None else 0, site))
    return min(counts) if counts else None


def _too_few(entry: dict[str, Any], metric: str, horizon: float | None,
             sites: dict[str, Table | str]) -> str | None:
    """Why a CI bound cannot decide acceptance (too few resamples), or ``None``."""
    found = _resamples(entry, metric, horizon, sites)
    if found is None or found[0] >= MIN_BOOT_FOR_ACCEPTANCE:
        return None
    n, site = found
    where = f" (pooled over sites; fewest at {site})" if site else ""
    return f"95% CI from {n} resamples{where}; acceptance needs ≥ {MIN_BOOT_FOR_ACCEPTANCE}"


def judge(criteria: list[Criterion], pooled: Table, sites: dict[str, Table | str],
          horizons: list[float], kind: str = "cox-ph") -> list[dict[str, Any]]:
    """Verdict of each criterion: its checks (where, horizon, value, passed) and ``passed``.

    ``sites`` maps a site to its results, or to the reason it has none (suppressed, dropped);
    ``kind`` is the model's (``cox-ph`` or ``logistic``: :func:`applicable` chose the criteria).
    """
    out = []
    for c in criteria:
        a = c.acceptance
        places: dict[str, Table | str] = {"pooled": pooled} if a.scope == "pooled" else sites
        checks = []
        for where, table in places.items():
            for h in _horizons(a.metric, a.horizon, horizons, kind):
                entry = None if isinstance(table, str) else _lookup(table, a.metric, h)
                value = None if entry is None else entry.get(a.statistic)
                check: dict[str, Any] = {"where": where, "horizon": h, "value": value}
                if value is None:
                    check.update(passed=False, reason=table if isinstance(table, str) else
                                 f"{a.metric} {a.statistic} not available")
                elif a.statistic in CI_BOUNDS and (short := _too_few(entry or {}, a.metric, h, sites)):
                    check.update(passed=False, reason=short)
                else:
                    check["passed"] = _compare(value, a.op, a.threshold)
                checks.append(check)
        threshold = list(a.threshold) if isinstance(a.threshold, tuple) else a.threshold
        out.append({"id": c.id, "requirement": c.requirement, "title": c.title, "metric": a.metric,
                    "statistic": a.statistic, "op": a.op, "threshold": threshold,
                    "horizon": a.horizon,
                    "scope": a.scope, "checks": checks,
                    "passed": bool(checks) and all(x["passed"] for x in checks)})
    return out

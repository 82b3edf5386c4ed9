"""The estimators' settings and inputs, checked: the rules behind every ``ValueError`` they raise.

Shared by :mod:`federated.analyses.estimator` and :mod:`federated.analyses.km_estimator`. Settings
are checked when fitting (scikit-learn's convention: ``__init__`` stores them as given) against
:data:`RULES`; each message quotes the setting and its value and says what is wanted
(``ties='Efron': want 'efron' or 'breslow'``). Inputs in scikit-learn's and scikit-survival's
conventions (``X``; ``y`` structured as ``sksurv.util.Surv``) are checked here too, and a local
table gets one in-process site with no disclosure floors (nothing leaves it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ValidationError
from sklearn.base import BaseEstimator

from federated.disclosure.dp import DPSettings
from federated.disclosure.policy import DisclosurePolicy
from federated.disclosure.rules import SiteFloors, StudyProtocol, protocol_of
from federated.exceptions import DataError
from federated.protocol.transport import Transport
from federated.site.handler import Site, approve_in_process
from federated.study import InputSpec, StudySpec, first_error
from prognosis.schema import IntendedUse

#: column names of a local table's outcome (kept clear of any covariate's name)
EVENT, TIME = "__fedprog_event__", "__fedprog_time__"
#: one local table: nothing crosses a site boundary, so no masking and no disclosure floors
LOCAL_POLICY = DisclosurePolicy(min_sites=1, min_patients_per_site=0, min_events_per_site=0,
                                min_cell_count=1, min_events_per_covariate=0)
LOCAL_FLOORS = SiteFloors(**LOCAL_POLICY.model_dump(), max_abs_lp=690.0)


def _is_number(lo: float, *, strict: bool) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        ok = isinstance(v, Real) and not isinstance(v, bool | np.bool_) and math.isfinite(float(v))
        return ok and (float(v) > lo if strict else float(v) >= lo)
    return check


def _is_int(lo: int, hi: float = math.inf) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, Integral) and not isinstance(v, bool) and lo <= int(v) <= hi


def _one_of(*allowed: str) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v in allowed


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _names(v: Any) -> bool:
    return isinstance(v, Sequence) and not isinstance(v, str) and all(isinstance(s, str) and s for s in v)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool | np.bool_)


def _text(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


_GRIDS = ("auto", "exact", "day", "week", "month", "quarter", "year")
#: setting → (check, what is wanted); messages read "ties='Efron': want 'efron' or 'breslow'"
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "ties": (_one_of("efron", "breslow"), "'efron' or 'breslow'"),
    "penalty": (_is_number(0.0, strict=False), "a finite number >= 0"),
    "strata": (_optional(_text), "None or a column name"),
    "group": (_optional(_text), "None or a column name"),
    "strata_by_site": (_is_bool, "True or False"),
    "missing": (_one_of("refuse", "complete-case"), "'refuse' or 'complete-case'"),
    "interactions": (_optional(lambda v: isinstance(v, Sequence) and not isinstance(v, str) and all(
        isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2 and _names(p) for p in v)),
        "None or a list of pairs of covariate names"),
    "levels": (_optional(_names), "None or a list of level names"),
    "time_grid": (_one_of(*_GRIDS), "one of " + ", ".join(map(repr, _GRIDS))),
    "time_unit": (_one_of("day", "week", "month", "year"), "'day', 'week', 'month' or 'year'"),
    "max_time": (_optional(_is_number(0.0, strict=True)), "None or a finite number > 0"),
    "secure_aggregation": (_is_bool, "True or False"),
    "allow_small_time_cells": (_is_bool, "True or False"),
    "shift_sparse_censoring": (_is_bool, "True or False"),
    "range_bins": (_is_int(1, 1000), "an integer from 1 to 1000"),
    "horizons": (_optional(lambda v: isinstance(v, Sequence) and not isinstance(v, str) and all(
        _is_number(0.0, strict=True)(h) for h in v)), "None or a list of finite numbers > 0"),
    "model_id": (_text, "a non-empty string"), "version": (_text, "a non-empty string"),
    "outcome": (_text, "a non-empty string"), "label": (_text, "a non-empty string"),
    "tol": (_is_number(0.0, strict=True), "a finite number > 0"),
    "max_iter": (_is_int(1), "an integer >= 1"),
    "timeout": (_is_number(0.0, strict=True), "a finite number > 0"),
}
#: settings that are pydantic models (a dict is validated into one)
MODELS: dict[str, type[BaseModel]] = {"policy": DisclosurePolicy, "dp": DPSettings,
                                      "intended_use": IntendedUse}
#: model settings whose absence means "none declared" (not the model's defaults)
OPTIONAL_MODELS = frozenset({"intended_use"})


def checked_settings(est: BaseEstimator) -> dict[str, Any]:
    """``est``'s settings, each checked (:data:`RULES`, :data:`MODELS`, ``inputs``); else DataError."""
    out: dict[str, Any] = {}
    for name, value in est.get_params(deep=False).items():
        if name in RULES:
            check, want = RULES[name]
            if not check(value):
                raise DataError(f"{name}={value!r}: want {want}")
            out[name] = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else value
        elif name in MODELS or name == "inputs":
            out[name] = _model(name, value)
    return out


def _model(name: str, value: Any) -> Any:
    if value is None:
        return {} if name == "inputs" else None if name in OPTIONAL_MODELS else MODELS[name]()
    try:
        if name == "inputs":
            if not isinstance(value, Mapping):
                raise DataError(f"inputs={value!r}: want a dict of column name to InputSpec")
            return {str(k): InputSpec.model_validate(v) for k, v in value.items()}
        return MODELS[name].model_validate(value)
    except ValidationError as exc:
        raise DataError(f"{name}={value!r}: {first_error(exc)}") from None


def study_of(est: BaseEstimator, auto_grid: str, **cohort: Any) -> StudySpec:
    """The :class:`StudySpec` of ``est``'s checked settings over the ``cohort``'s columns (``time``,
    ``event``, ``covariates``); the time grid "auto" becomes ``auto_grid``."""
    settings = checked_settings(est)
    if settings.get("time_grid") == "auto":
        settings["time_grid"] = auto_grid
    known = StudySpec.model_fields
    fields = {k: v for k, v in settings.items()  # None means the study's default
              if k in known and (v is not None or known[k].default is None)}
    try:
        return StudySpec(**fields, **cohort)
    except ValidationError as exc:
        raise DataError(first_error(exc)) from None


def local_study(study: StudySpec) -> StudySpec:
    """``study`` on one local table: no disclosure floors, no masking; DP refused."""
    if study.dp.enabled:
        raise DataError("dp: differential privacy protects what leaves a site; a local table "
                        "sends nothing — use fit_sites() over the hospitals")
    return study.model_copy(update={"policy": LOCAL_POLICY, "secure_aggregation": False,
                                    "allow_small_time_cells": True})


def local_sites(frame: pd.DataFrame, study: StudySpec) -> tuple[list[Site], StudyProtocol]:
    """One in-process site holding ``frame``, and the study it approved (bound |β·(x − c)| ≤ 690)."""
    site = Site("local", frame, floors=LOCAL_FLOORS)
    protocol = protocol_of(study, {}).model_copy(update={"max_abs_lp": 690.0})
    return [site], approve_in_process([site], protocol)


def check_sites(sites: object, where: str) -> None:
    """TypeError unless ``sites`` is a list of :class:`Site` objects or a :class:`Transport`."""
    if isinstance(sites, Transport):
        return
    if isinstance(sites, Site):
        raise TypeError(f"{where}: sites is one Site; pass a list of them ([site, …])")
    if not isinstance(sites, Sequence) or isinstance(sites, str):
        raise TypeError(f"{where}: want a list of fedprog.Site objects (or a Transport), "
                        f"got {type(sites).__name__}")
    bad = [type(s).__name__ for s in sites if not isinstance(s, Site)]
    if bad:
        raise TypeError(f"{where}: want a list of fedprog.Site objects, got a list holding {bad[0]} "
                        "(wrap each table in Site(name, table_or_path))")


def columns(names: Any, what: str = "covariates") -> list[str]:
    """A list of distinct column names, else DataError."""
    if not _names(names):
        raise DataError(f"{what}={names!r}: want a list of column names")
    dup = sorted({c for c in names if list(names).count(c) > 1})
    if dup:
        raise DataError(f"{what}: column {dup[0]!r} listed twice")
    return list(names)


def feature_matrix(est: BaseEstimator, X: Any) -> np.ndarray:
    """The columns of ``X`` a fitted estimator takes (``feature_names_in_``, in that order), as a finite
    float array; a DataFrame is selected by name, an array must have as many columns (else DataError)."""
    names = [str(n) for n in est.feature_names_in_]
    if isinstance(X, pd.DataFrame):
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise DataError(f"X lacks column {missing[0]!r}: the model uses {names}")
        X = X[names]
    x = checked_array(X, min_samples=1)
    if x.shape[1] != len(names):
        raise DataError(f"X has {x.shape[1]} features, but {type(est).__name__} is expecting "
                        f"{len(names)} features as input ({', '.join(names)})")
    return x


def checked_array(X: Any, min_samples: int) -> np.ndarray:
    """``X`` as a finite 2-d float array, with scikit-learn's messages (NaN, sparse, complex, empty)."""
    from sklearn.utils.validation import check_array

    try:
        return np.asarray(check_array(X, dtype=np.float64, ensure_min_samples=min_samples))
    except TypeError as exc:  # sparse input, or values that are not numbers
        raise TypeError(f"X: {exc}") from None
    except ValueError as exc:
        raise DataError(f"X: {exc}") from None


def design_frame(X: pd.DataFrame | np.ndarray, keep: str | None = None) -> pd.DataFrame:
    """``X`` checked (:func:`checked_array`) as a DataFrame with string column names (an array's
    columns become ``x0``, ``x1``, …); column ``keep`` (a stratum) is passed through unchecked."""
    names, kept = None, None
    if isinstance(X, pd.DataFrame):
        if keep in X.columns:
            kept, X = X[keep].to_numpy(), X.drop(columns=[keep])
        names = [str(c) for c in X.columns]
    x = checked_array(X, min_samples=2)
    frame = pd.DataFrame(x, columns=names or [f"x{i}" for i in range(x.shape[1])])
    if kept is not None:
        frame[str(keep)] = kept
    return frame


def survival_target(y: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(event, time) of a structured ``y`` (event indicator first, time second, as
    ``sksurv.util.Surv``), of length ``n``; else DataError."""
    if y is None:
        raise DataError("FederatedCoxPH requires y to be passed, but the target y is None")
    names = getattr(getattr(y, "dtype", None), "names", None)
    if names is None or len(names) != 2:
        raise DataError(f"y: want a structured array (event, time) as sksurv.util.Surv.from_arrays "
                        f"makes, got {type(y).__name__} of dtype {getattr(y, 'dtype', '?')}")
    if len(y) != n:
        raise DataError(f"y has {len(y)} rows, X has {n}")
    return checked_outcome(y[names[0]], y[names[1]], (f"y[{names[0]!r}]", f"y[{names[1]!r}]"))


def checked_outcome(event: Any, when: Any, what: tuple[str, str] = ("event_observed", "durations")
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(event as bool, time as float) of one table, each of shape (n,); DataError naming ``what``
    unless the events are 0/1 and the times finite and >= 0."""
    event, when = np.asarray(event).ravel(), np.asarray(when, dtype=float).ravel()
    if event.size != when.size:
        raise DataError(f"{what[0]} has {event.size} values, {what[1]} has {when.size}")
    if not np.isin(event, (0, 1)).all():
        raise DataError(f"{what[0]}: the event indicator must be boolean or 0/1")
    if not (np.isfinite(when).all() and (when >= 0).all()):
        raise DataError(f"{what[1]}: times must be finite and >= 0 "
                        f"({int((~(np.isfinite(when) & (when >= 0))).sum())} are not)")
    return event.astype(bool), when

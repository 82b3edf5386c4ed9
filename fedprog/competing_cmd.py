"""``fedprog competing``: cumulative incidence and absolute risk under competing risks, from per-site tables.

Without covariates: the federated Aalen–Johansen cumulative incidence of every declared cause at the
horizons, with its 95% log(−log) interval
(:class:`~federated.analyses.competing_estimator.FederatedAalenJohansen`).
With covariates: one cause-specific Cox model per cause and the absolute risk of each cause before the
others for the reference patient (:class:`~federated.analyses.cause_specific.FederatedCauseSpecificCox`).
The sites live in this process and their operator is the caller: they approve the study the flags
describe; ``--min-cell-count`` is then the k of every site (the study's and the sites' floor).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import DecimalOpt, DelimiterOpt, EncodingOpt, Progress, fail, user_errors
from .train_cmd import (
    GridOpt,
    JsonOpt,
    MaxTimeOpt,
    SecureOpt,
    ShiftOpt,
    SiteOpt,
    TimeoutOpt,
    UnitOpt,
    _csv,
    _sites,
)


def _numbers(flag: str, value: str | None) -> list[float]:
    """A comma-separated list of positive, finite numbers (else exit 2 naming the flag)."""
    out = []
    for text in _csv(value) or []:
        try:
            number = float(text)
        except ValueError:
            raise fail(f"{flag} {value!r}: {text!r} is not a number") from None
        if not 0.0 < number < float("inf"):
            raise fail(f"{flag} {value!r}: want positive, finite numbers")
        out.append(number)
    return out


def _reference(value: str | None, covariates: list[str]) -> dict[str, float]:
    """``--reference NAME=VALUE,…`` as the reference patient (covariates not named: 0)."""
    out: dict[str, float] = {}
    for item in _csv(value) or []:
        name, sep, number = item.partition("=")
        if not sep or name not in covariates:
            raise fail(f"--reference {item!r}: want NAME=VALUE for one of the covariates {covariates}")
        try:
            out[name] = float(number)
        except ValueError:
            raise fail(f"--reference {item!r}: {number!r} is not a number") from None
        if out[name] != out[name] or abs(out[name]) == float("inf"):
            raise fail(f"--reference {item!r}: want a finite number")
    return out


def competing(
    site: SiteOpt = None,
    delimiter: DelimiterOpt = None,
    decimal: DecimalOpt = None,
    encoding: EncodingOpt = None,
    time: Annotated[str | None, typer.Option("--time", help="Column with follow-up time.")] = None,
    cause: Annotated[str | None, typer.Option(
        "--cause", help="Column with 0 (censored) or the code of the cause that ended follow-up.")] = None,
    causes: Annotated[str | None, typer.Option(
        "--causes", help="Comma-separated codes of the causes (public; e.g. 1,2).")] = None,
    event_of_interest: Annotated[str | None, typer.Option(
        "--event-of-interest", help="The cause whose risk is asked for (one of --causes).")] = None,
    covariates: Annotated[str | None, typer.Option(
        help="Comma-separated covariates: fit cause-specific Cox models and give the absolute risk.")] = None,
    reference: Annotated[str | None, typer.Option(
        help="The reference patient as NAME=VALUE,… (covariates not named: 0).")] = None,
    horizons: Annotated[str | None, typer.Option(
        help="Comma-separated horizons in the time unit (default: --max-time).")] = None,
    time_grid: GridOpt = None,
    time_unit: UnitOpt = None,
    max_time: MaxTimeOpt = None,
    min_cell_count: Annotated[int | None, typer.Option(
        "--min-cell-count", min=1,
        help="k of the study and of every (in-process) site: each cell holds 0 or at least k patients of "
             "one cause (default 5).")] = None,
    secure_agg: SecureOpt = None,
    shift_sparse_censoring: ShiftOpt = None,
    timeout: TimeoutOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where to write the result (JSON).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Competing risks over hospitals: the Aalen–Johansen cumulative incidence of each cause (no
    covariates), or cause-specific Cox models and the absolute risk of the event of interest before a
    competing event (with --covariates)."""
    from ledger.files import write_json_atomic

    with user_errors():
        codes = _csv(causes) or []
        for flag, given in (("--site", site), ("--time", time), ("--cause", cause), ("--causes", codes),
                            ("--event-of-interest", event_of_interest)):
            if not given:
                raise fail(f"{flag} is required")
        assert time is not None and cause is not None and event_of_interest is not None
        if event_of_interest not in codes:
            raise fail(f"--event-of-interest {event_of_interest!r}: want one of --causes {codes}")
        at = _numbers("--horizons", horizons) or ([max_time] if max_time is not None else [])
        if not at:
            raise fail("--horizons is required without --max-time")
        if max_time is not None and max(at) > max_time:
            raise fail(f"--horizons {max(at):g} lies beyond --max-time {max_time:g} (no follow-up there)")
        cov = _csv(covariates) or []
        sites, settings = _setup(site, delimiter, decimal, encoding, min_cell_count, time_grid=time_grid,
                                 time_unit=time_unit, max_time=max_time, secure_aggregation=secure_agg,
                                 shift_sparse_censoring=shift_sparse_censoring, timeout=timeout)
        with Progress("federated competing risks"):
            body = _cause_specific(sites, settings, time, cause, codes, event_of_interest, cov,
                                   _reference(reference, cov), at) if cov else \
                _aalen_johansen(sites, settings, time, cause, codes, event_of_interest, at)
        if out is not None:
            write_json_atomic(out, body)
    if as_json:
        print(json.dumps(body, sort_keys=True))
    else:
        _print(body, out)


def _setup(site: list[str] | None, delimiter: str | None, decimal: str | None, encoding: str | None,
           k: int | None, **settings: Any) -> tuple[list[Any], dict[str, Any]]:
    """The in-process sites (floors at ``k`` when given) and the estimators' settings."""
    from federated.disclosure.policy import DisclosurePolicy
    from federated.disclosure.rules import SiteFloors
    from federated.site.handler import Site
    from federated.study import SiteSource

    sources = [SiteSource.model_validate(s) for s in _sites(site, delimiter, decimal, encoding) or []]
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise fail(f"--site: a site named twice among {names}")
    floors = None if k is None else SiteFloors(min_cell_count=k)
    sites = [Site(s.name, s.path, table_format=s.format, floors=floors) for s in sources]
    policy = DisclosurePolicy() if k is None else DisclosurePolicy(min_cell_count=k)
    return sites, {n: v for n, v in settings.items() if v is not None} | {"policy": policy}


def _aalen_johansen(sites: list[Any], settings: dict[str, Any], time: str, cause: str, codes: list[str],
                    event_of_interest: str, at: list[float]) -> dict[str, Any]:
    from federated.analyses.competing_estimator import FederatedAalenJohansen

    aj = FederatedAalenJohansen(**settings).fit_sites(sites, time, cause, event_of_interest=event_of_interest,
                                                      causes=codes)
    fit = aj.fit_
    cif, (lower, upper) = fit.incidence.cif_at(at), fit.incidence.interval_at(at)
    return {"kind": "aalen-johansen", "event_of_interest": event_of_interest, "horizons": at,
            "causes": {c: {"events": fit.events[j], "cif": cif[j].tolist(), "ci_lower": lower[j].tolist(),
                           "ci_upper": upper[j].tolist()} for j, c in enumerate(fit.causes)},
            **_facts(fit.n, fit.sites, fit.dropped, fit.time_grid, fit.min_cell_count, fit.secure)}


def _cause_specific(sites: list[Any], settings: dict[str, Any], time: str, cause: str, codes: list[str],
                    event_of_interest: str, cov: list[str], ref: dict[str, float],
                    at: list[float]) -> dict[str, Any]:
    import pandas as pd

    from federated.analyses.cause_specific import FederatedCauseSpecificCox

    inputs = {name: {"reference": value} for name, value in ref.items()}
    csc = FederatedCauseSpecificCox(**settings, inputs=inputs).fit_sites(
        sites, time, cause, cov, event_of_interest=event_of_interest, causes=codes)
    patient = pd.DataFrame([{name: ref.get(name, 0.0) for name in cov}])
    first = csc.fits_[csc.causes_[0]]
    summary = {c: [{"covariate": name, "coef": float(row["coef"]), "exp(coef)": float(row["exp(coef)"]),
                    "se(coef)": float(row["se(coef)"]), "p": float(row["p"])}
                   for name, row in csc.summaries_[c].iterrows()] for c in csc.causes_}
    return {"kind": "cause-specific-cox", "event_of_interest": event_of_interest, "horizons": at,
            "reference": {name: ref.get(name, 0.0) for name in cov},
            "causes": {c: {"events": csc.fits_[c].events, "summary": summary[c],
                           "absolute_risk": csc.predict_absolute_risk(patient, at, cause=c)[0].tolist()}
                       for c in csc.causes_},
            **_facts(first.n, first.sites, first.dropped, csc.time_grid_, settings["policy"].min_cell_count,
                     first.secure)}


def _facts(n: int, sites: tuple[str, ...], dropped: dict[str, str], grid: str, k: int,
           secure: bool) -> dict[str, Any]:
    return {"n": n, "sites": list(sites), "dropped": [{"site": s, "reason": r} for s, r in dropped.items()],
            "time_grid": grid, "min_cell_count": k, "secure_aggregation": secure}


def _print(body: dict[str, Any], out: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    causes, at = body["causes"], body["horizons"]
    head = (f"{body['n']} patients at {len(body['sites'])} sites, {body['time_grid']} grid, "
            f"k = {body['min_cell_count']}")
    if body["kind"] == "aalen-johansen":
        table = Table(title=f"Aalen–Johansen cumulative incidence — {head}")
        table.add_column("horizon", justify="right")
        for c, v in causes.items():
            mark = " (of interest)" if c == body["event_of_interest"] else ""
            table.add_column(f"cause {c}{mark}: {v['events']} events", justify="right")
        for i, h in enumerate(at):
            table.add_row(f"{h:g}", *(f"{v['cif'][i]:.3f} ({v['ci_lower'][i]:.3f}–{v['ci_upper'][i]:.3f})"
                                      for v in causes.values()))
        console.print(table)
    else:
        for c, v in causes.items():
            table = Table(title=f"cause-specific Cox model of cause {c} ({v['events']} events; other causes "
                                f"censored) — {head}")
            for col in ("covariate", "coef", "exp(coef)", "se(coef)", "p"):
                table.add_column(col, justify="left" if col == "covariate" else "right")
            for row in v["summary"]:
                table.add_row(row["covariate"], f"{row['coef']:.4f}", f"{row['exp(coef)']:.4f}",
                              f"{row['se(coef)']:.4f}", f"{row['p']:.3g}")
            console.print(table)
        ref = ", ".join(f"{n} = {x:g}" for n, x in body["reference"].items())
        table = Table(title=f"absolute risk of the reference patient ({ref}), each cause before the others")
        table.add_column("horizon", justify="right")
        for c in causes:
            table.add_column(f"cause {c}" + (" (of interest)" if c == body["event_of_interest"] else ""),
                             justify="right")
        for i, h in enumerate(at):
            table.add_row(f"{h:g}", *(f"{v['absolute_risk'][i]:.3f}" for v in causes.values()))
        console.print(table)
    for item in body["dropped"]:
        console.print(f"dropped site {item['site']}: {item['reason']}")
    if out is not None:
        console.print(f"written: {out}")

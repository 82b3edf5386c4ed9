"""``fedprog train`` and ``fedprog km``: federated fits from per-site CSV/Parquet tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import (
    DecimalOpt,
    DelimiterOpt,
    EncodingOpt,
    Progress,
    fail,
    table_format,
    user_errors,
    workspace,
)

if TYPE_CHECKING:
    from federated.analyses.cox import CoxFit
    from federated.analyses.km import KMFit
    from federated.study import StudySpec

SiteOpt = Annotated[list[str] | None, typer.Option(
    "--site", help="A site as NAME=PATH (CSV or Parquet); repeat for each site.")]
StudyOpt = Annotated[Path | None, typer.Option(
    "--study", help="study.toml with the same settings; flags override it.")]
TimeOpt = Annotated[str | None, typer.Option("--time", help="Column with follow-up time.")]
EventOpt = Annotated[str | None, typer.Option(
    "--event", help="Column with the event (1) / censored (0).")]
GridOpt = Annotated[str | None, typer.Option(
    "--time-grid",
    help="exact | day | week | month | year: coarsen times so sites need not reveal exact event times.")]
UnitOpt = Annotated[str | None, typer.Option(
    "--time-unit", help="Unit of the time column: day | week | month | year.")]
TranscriptOpt = Annotated[Path | None, typer.Option(
    "--transcript-dir", help="Each site writes DIR/<site>.jsonl, one line per message it sends.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable result on stdout.")]
SecureOpt = Annotated[bool | None, typer.Option(
    "--secure-agg/--no-secure-agg", help="Secure aggregation of every sum (default on).")]
LevelsOpt = Annotated[str | None, typer.Option(
    "--levels", help="Comma-separated values of the strata/group column (public, so sites need "
                     "not reveal which they hold; required with secure aggregation).")]
MaxTimeOpt = Annotated[float | None, typer.Option(
    "--max-time", help="Follow-up horizon in the time unit: later follow-up is censored there "
                       "(administrative censoring); bounds the public time grid (default 100 years).")]
ShiftOpt = Annotated[bool | None, typer.Option(
    "--shift-sparse-censoring/--no-shift-sparse-censoring",
    help="On the yearly grid, sites censor the censored patients of a sparse yearly cell at the start of "
         "their year instead of refusing (a few patients lost to follow-up early).")]
TimeoutOpt = Annotated[float | None, typer.Option(
    "--timeout", help="Seconds to wait for the sites in each round (default 120).")]


def _sites(values: list[str] | None, delimiter: str | None = None, decimal: str | None = None,
           encoding: str | None = None) -> list[dict[str, Any]] | None:
    """``--site NAME=PATH`` flags as the study's sites, each read with the given table format."""
    if not values:
        return None
    fmt = table_format(delimiter, decimal, encoding).model_dump(exclude_defaults=True)
    out = []
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise fail(f"--site {v!r}: want NAME=PATH")
        out.append({"name": name, "path": path, "format": fmt})
    return out


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [c.strip() for c in value.split(",") if c.strip()]


def _study(study_file: Path | None, **flags: Any) -> StudySpec:
    """Settings from the study file (if any) with the given flags on top; exit 2 if unusable."""
    from pydantic import ValidationError

    from federated.study import StudySpec, first_error, load_study

    flags = {k: v for k, v in flags.items() if v is not None}
    if study_file is not None:
        return load_study(study_file, **flags)
    for needed in ("time", "event") if flags.get("model", "cox-ph") == "cox-ph" else ("event",):
        if needed not in flags:
            raise fail(f"--{needed} is required (or give --study)")
    try:
        return StudySpec.model_validate(flags)
    except ValidationError as exc:
        raise fail(first_error(exc)) from None


def train(
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the model artifact (JSON).")] = None,
    workspace_dir: Annotated[Path | None, typer.Option(
        "--workspace", help="Train the workspace's study on its sites under a witnessed consent checkpoint "
                            "and register the model as a candidate (then fedprog validate).")] = None,
    site: SiteOpt = None,
    delimiter: DelimiterOpt = None,
    decimal: DecimalOpt = None,
    encoding: EncodingOpt = None,
    study: StudyOpt = None,
    time: TimeOpt = None,
    event: EventOpt = None,
    covariates: Annotated[str | None, typer.Option(help="Comma-separated covariate columns.")] = None,
    kind: Annotated[str | None, typer.Option(
        "--kind", help="cox-ph (default; --time and --event) | logistic (a recorded 0/1 outcome as --event, "
                       "no --time, one --horizons value: when it was recorded).")] = None,
    ties: Annotated[str | None, typer.Option(help="efron | breslow")] = None,
    penalty: Annotated[float | None, typer.Option(help="Ridge penalty λ (½λ‖β‖²).")] = None,
    strata: Annotated[str | None, typer.Option(help="Stratify the baseline hazard by this column.")] = None,
    strata_by_site: Annotated[bool | None, typer.Option(
        "--strata-by-site/--no-strata-by-site", help="Stratify by site (also with --strata).")] = None,
    time_grid: GridOpt = None,
    time_unit: UnitOpt = None,
    horizons: Annotated[str | None, typer.Option(help="Comma-separated horizons in the time unit.")] = None,
    secure_agg: SecureOpt = None,
    levels: LevelsOpt = None,
    max_time: MaxTimeOpt = None,
    shift_sparse_censoring: ShiftOpt = None,
    timeout: TimeoutOpt = None,
    model_id: Annotated[str | None, typer.Option("--model-id", help="Model id in the artifact.")] = None,
    version: Annotated[str | None, typer.Option(help="Model version in the artifact.")] = None,
    transcript_dir: TranscriptOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit a Cox proportional-hazards model across sites and write the model artifact (--out), or
    with --workspace train the workspace's study and register the model for validation and release."""
    from federated.analyses.runner import make_sites, train_logistic
    from federated.analyses.runner import train as run_train
    from ledger.files import write_json_atomic

    if out is None and workspace_dir is None and not as_json:
        raise fail("say where the model goes: --out model.json, --workspace W (registered), or --json")
    with user_errors():
        try:
            hs = [float(h) for h in horizons.split(",")] if horizons is not None else None
        except ValueError:
            raise fail(f"--horizons {horizons!r}: want comma-separated numbers") from None
        flags = dict(model=kind, time=time, event=event, covariates=_csv(covariates),
                     ties=ties, penalty=penalty, strata=strata, strata_by_site=strata_by_site,
                     time_grid=time_grid, time_unit=time_unit, horizons=hs,
                     secure_aggregation=secure_agg, model_id=model_id, version=version,
                     levels=_csv(levels), max_time=max_time, timeout=timeout,
                     shift_sparse_censoring=shift_sparse_censoring)
        if workspace_dir is not None:
            if site:
                raise fail("--site: a workspace trains on its own sites (fedprog site add)")
            fit, artifact, sites, registered = _train_registered(workspace(workspace_dir), study, flags,
                                                                 transcript_dir)
        else:
            spec = _study(study, sites=_sites(site, delimiter, decimal, encoding), **flags)
            sites = make_sites(spec, transcript_dir)
            if spec.model == "logistic":
                with Progress("federated logistic regression") as progress:
                    result, artifact = train_logistic(spec, on_round=progress, sites=sites)
                if out is not None:
                    write_json_atomic(out, artifact)
                if as_json:
                    print(json.dumps(artifact, sort_keys=True))
                else:
                    print_logistic_summary(result, out, artifact, local_counts(sites))
                return
            with Progress("federated Cox") as progress:
                fit, artifact = run_train(spec, on_round=progress, sites=sites)
            registered = None
        if out is not None:
            write_json_atomic(out, artifact)
    if as_json:
        print(json.dumps(artifact, sort_keys=True))
        return
    print_fit_summary(fit, out, artifact, local_counts(sites))
    if registered is not None:
        print(f"registered {registered} as a candidate (ledger, consent checkpoint "
              f"{artifact['training']['consent_checkpoint']['size']}); next: fedprog validate {registered} "
              f"--workspace {workspace(workspace_dir)}")


def _train_registered(ws_dir: Path, study_file: Path | None, flags: dict[str, Any],
                      transcript_dir: Path | None) -> tuple[Any, dict[str, Any], list[Any], str]:
    """``train --workspace``: the workspace's study (or ``--study``) with the flags on top, checked for
    what serving needs, approved by every site, trained under a witnessed consent checkpoint and
    registered (a successor of the newest version of the same model, if any)."""
    from .registration import as_successor, check_registrable, train_in_workspace
    from .workspace import Workspace

    ws = Workspace(ws_dir)
    path = study_file if study_file is not None else ws.study_file
    if path is None:
        raise fail(f"{ws_dir} keeps no study: fedprog init --study study.toml, or give --study")
    spec = ws.study_spec(_study(path, **flags))
    if not ws.sites:
        raise fail(f"{ws_dir} has no sites yet: fedprog site add NAME --data PATH …")
    check_registrable(spec)
    pending = ws.unapproved(spec)
    if pending:
        raise fail(f"site(s) {', '.join(pending)} have not approved this study: each site's operator runs "
                   f"fedprog site approve --site NAME --workspace {ws_dir}")
    spec, predecessor = as_successor(ws, spec)
    sites = ws.site_objects(transcript_dir)
    what = "federated logistic regression" if spec.model == "logistic" else "federated Cox"
    with Progress(what) as progress:
        fit, artifact = train_in_workspace(ws, spec, predecessor=predecessor, sites=sites, on_round=progress)
    return fit, artifact, sites, f"{artifact['model_id']}@{artifact['version']}"


def local_counts(sites: list[Any]) -> dict[str, tuple[int, int] | None]:
    """Each in-process site's own patients and events (known locally, never sent as such)."""
    return {s.name: s.local_summary for s in sites}


def sites_table(local: dict[str, tuple[int, int] | None], dropped: dict[str, str], secure: bool, *,
                counts: bool = True) -> Any:
    """Each site's own patients and events (``?`` when unknown or, for a private fit, not shown) and
    whether it contributed or was dropped (with the reason), as a rich table."""
    from rich.table import Table

    how = "masked sums only (secure aggregation)" if secure else "plaintext sums"
    sites = Table(title=f"Sites — each reports its own counts; the coordinator saw {how}")
    for col in ("site", "patients", "events", "status"):
        sites.add_column(col, justify="left" if col in ("site", "status") else "right")
    for name, own in local.items():
        status = f"dropped: {dropped[name]}" if name in dropped else "contributed"
        n, ev = own if own is not None and counts else ("?", "?")
        sites.add_row(name, str(n), str(ev), status)
    return sites


def print_fit_summary(fit: Any, out: Path | None, artifact: dict[str, Any],
                      local: dict[str, tuple[int, int] | None]) -> None:
    """The summary of a fit of either kind (:func:`print_cox_summary`, :func:`print_logistic_summary`)."""
    if artifact["kind"] == "logistic":
        print_logistic_summary(fit, out, artifact, local)
    else:
        print_cox_summary(fit, out, artifact["sha256"], local,
                          privacy=artifact["training"]["differential_privacy"])


def print_logistic_summary(result: Any, out: Path | None, artifact: dict[str, Any],
                           local: dict[str, tuple[int, int] | None]) -> None:
    """Odds ratios with 95% CIs (the intercept as the reference patient's risk), the sites and the fit."""
    import math

    from rich.console import Console
    from rich.table import Table

    console = Console()
    horizon = artifact["outcome"]["horizons"][0]
    table = Table(title=f"Logistic regression of {artifact['outcome']['name']} (recorded by {horizon:g} "
                        f"{artifact['outcome']['time_unit']}s) — {result.n} patients, {result.events} events")
    for col in ("column", "coef", "OR", "OR 95% CI", "SE", "p"):
        table.add_column(col, justify="left" if col == "column" else "right")
    ci, se, p = artifact["confidence_intervals"], artifact["standard_errors"], artifact["p_values"]
    for name in ("(intercept)", *result.columns):
        b, (lo, hi) = artifact["coefficients"][name], ci[name]
        odds = "—" if name == "(intercept)" else f"{math.exp(b):.3f}"
        band = "—" if name == "(intercept)" else f"{math.exp(lo):.3f}–{math.exp(hi):.3f}"
        table.add_row(name, f"{b:.4f}", odds, band, f"{se[name]:.4f}", f"{p[name]:.3g}")
    console.print(table)
    intercept = artifact["coefficients"]["(intercept)"]
    console.print(f"risk of the reference patient: {1 / (1 + math.exp(-intercept)):.3f} (the intercept is "
                  "her log-odds)")
    console.print(sites_table(local, result.dropped, result.secure))
    state = "converged" if result.fit.converged else "NOT converged"
    console.print(f"{result.fit.iterations} Newton iterations, {result.rounds} rounds, {state}; log "
                  f"likelihood {result.fit.loglik:.4f} (intercept only {result.fit.loglik_null:.4f})")
    where = out if out is not None else "not written"
    console.print(f"model artifact: {where} (sha256 {artifact['sha256']})")


def print_cox_summary(fit: CoxFit, out: Path | None, sha256: str, local: dict[str, tuple[int, int] | None],
                      privacy: dict[str, Any] | None = None) -> None:
    """Hazard ratios with 95% CIs, rounds and per-site sizes, as rich tables; a private fit shows
    its noisy totals marked "≈" and no exact count beside it."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    console = Console()
    about = "≈" if privacy is not None else ""
    kind = "piecewise-exponential, noisy Newton" if privacy is not None else f"{fit.ties} ties"
    table = Table(title=f"Cox PH ({kind}) — {about}{fit.n} patients, {about}{fit.events} events")
    for col in ("covariate", "coef", "HR", "HR 95% CI", "SE", "p"):
        table.add_column(col, justify="left" if col == "covariate" else "right")
    for name, b, (lo, hi), se, p in zip(fit.covariates, fit.coef, fit.ci, fit.se, fit.p_value,
                                        strict=True):
        table.add_row(name, f"{b:.4f}", f"{np.exp(b):.3f}", f"{np.exp(lo):.3f}–{np.exp(hi):.3f}",
                      f"{se:.4f}", f"{p:.3g}")
    console.print(table)
    console.print(sites_table(local, fit.dropped, fit.secure, counts=privacy is None))
    state = "converged" if fit.converged else "NOT converged"
    if privacy is not None:
        eps, delta = privacy["epsilon"], privacy["delta"]
        console.print(f"differentially private (epsilon = {eps:g}, delta = {delta:g}, "
                      f"{privacy['mechanism']} noise added by the sites): coefficients, errors and the "
                      "baseline are noisy; the covariance omits the noise's own variance")
    console.print(f"{fit.iterations} Newton iterations, {fit.rounds} rounds, {state}; "
                  f"log {'profile' if privacy is not None else 'partial'} likelihood {fit.loglik:.4f}")
    console.print(f"model artifact: {out if out is not None else 'in the workspace'} (sha256 {sha256})")


def km(
    out: Annotated[Path | None, typer.Option("--out", help="Where to write the KM result (JSON).")] = None,
    site: SiteOpt = None,
    delimiter: DelimiterOpt = None,
    decimal: DecimalOpt = None,
    encoding: EncodingOpt = None,
    study: StudyOpt = None,
    time: TimeOpt = None,
    event: EventOpt = None,
    group: Annotated[str | None, typer.Option(
        help="Group column: one curve per group and the log-rank test.")] = None,
    levels: LevelsOpt = None,
    time_grid: GridOpt = None,
    time_unit: UnitOpt = None,
    max_time: MaxTimeOpt = None,
    secure_agg: SecureOpt = None,
    shift_sparse_censoring: ShiftOpt = None,
    timeout: TimeoutOpt = None,
    transcript_dir: TranscriptOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Federated Kaplan–Meier curves (Greenwood log-log 95% CI) and the log-rank test."""
    from federated.analyses.runner import kaplan_meier
    from ledger.files import write_json_atomic

    with user_errors():
        spec = _study(study, sites=_sites(site, delimiter, decimal, encoding), time=time, event=event,
                      group=group,
                      levels=_csv(levels), time_grid=time_grid, time_unit=time_unit, max_time=max_time,
                      secure_aggregation=secure_agg, timeout=timeout,
                      shift_sparse_censoring=shift_sparse_censoring)
        with Progress("federated Kaplan–Meier") as progress:
            result = kaplan_meier(spec, transcript_dir=transcript_dir, on_round=progress)
        body = result.to_dict()
        if out is not None:
            write_json_atomic(out, body)
    if as_json:
        print(json.dumps(body, sort_keys=True))
    else:
        print_km_summary(result, out)


def _median(times: Any, survival: Any) -> str:
    below = [t for t, s in zip(times, survival, strict=True) if s <= 0.5]
    return f"{below[0]:g}" if below else "not reached"


def print_km_summary(result: KMFit, out: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    dp = result.privacy
    # a private release: every count is noisy (no exact count beside the private curve), marked "≈"
    about = "≈" if dp is not None else ""
    table = Table(title=f"Kaplan–Meier — {about}{result.n} patients, {about}{result.events} events "
                        f"(rows with < {result.min_cell_count} events merged)")
    for col in ("curve", "at risk (first event)", "events", "median survival"):
        table.add_column(col, justify="left" if col == "curve" else "right")
    curves = {"all": result.overall, **result.groups}
    for name, c in curves.items():
        table.add_row(name, about + (str(int(c.at_risk[0])) if c.at_risk.size else "0"),
                      about + str(int(c.events.sum())), _median(c.times, c.survival))
    console.print(table)
    if dp is not None:
        console.print(f"differentially private (epsilon = {dp['epsilon']:g}, delta = {dp['delta']:g}, "
                      f"{dp['mechanism']} noise added by the sites): all counts, curves and tests are noisy")
    if result.logrank is not None:
        lr = result.logrank
        console.print(f"log-rank: chi2 = {lr.statistic:.4f} on {lr.df} df, p = {lr.p_value:.4g}")
    for name, reason in result.dropped.items():
        console.print(f"dropped site {name}: {reason}")
    if out is not None:
        console.print(f"written: {out}")

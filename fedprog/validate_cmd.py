"""``fedprog validate MODEL``: validate a registered model and record the verdict at the release gate."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import EXIT_CHECK_FAILED, Progress, fail, user_errors, workspace

RefArg = Annotated[str, typer.Argument(help="model_id@version, model_id or sha256 prefix.")]
WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")]


def validate(
    ref: RefArg,
    workspace_dir: WorkspaceOpt = None,
    skip_verification: Annotated[bool, typer.Option(
        "--skip-verification", help="Do not run the test suite (the report says it was skipped).")] = False,
    bootstrap: Annotated[int, typer.Option(
        "--bootstrap", min=20, max=10_000, help="Bootstrap resamples per site for the 95% CIs (a criterion "
        "on a CI bound needs ≥ 1000; a site refuses more than its study's max_n_boot, 1000 unless "
        "set).")] = 1000,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the bootstrap.")] = 0,
    requirements: Annotated[Path | None, typer.Option(
        "--requirements", help="Folder of requirement YAML files stating the acceptance criteria "
                               "(default: the traceability package's).")] = None,
    verification_args: Annotated[str | None, typer.Option(
        "--verification-args",
        help='Extra pytest arguments for the verification, e.g. "-k test_units".')] = None,
    verification_junit: Annotated[Path | None, typer.Option(
        "--verification-junit", help="Use this run of the test suite as the verification evidence (make "
        "test's build/test-results/junit.xml): it counts only if it ran on this same clean commit and "
        "environment with no failed, errored or skipped linked test.")] = None,
    verification_timeout: Annotated[float, typer.Option(
        "--verification-timeout", min=1.0, help="Seconds the test suite may take.")] = 3600.0,
    external_site: Annotated[list[str] | None, typer.Option(
        "--external-site", help="External validation instead: at this hospital that did not train the "
                                "model (fedprog site add NAME --external …); repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report on stdout.")] = False,
) -> None:
    """Software verification (the test suite, with JUnit evidence), clinical performance computed at
    each site on its own data (plus leave-one-site-out), pooled across sites, judged against the
    acceptance criteria of the requirements. Writes <workspace>/validation/<sha>-<n>/report.json and
    figures; a passing report makes the model ``validated`` (exit 0), a failing one exits 1.

    With ``--external-site``, the model is evaluated only at those hospitals, judged against the
    external acceptance criteria and anchored as evidence (its release state does not change)."""
    from validation.exceptions import ValidationRunError
    from validation.run import Options

    from .registration import validate_external_in_workspace, validate_in_workspace
    from .workspace import Workspace

    try:
        extra = tuple(shlex.split(verification_args)) if verification_args is not None else None
    except ValueError as exc:
        raise fail(f"--verification-args: {exc}") from None
    options = Options(n_boot=bootstrap, seed=seed, skip_verification=skip_verification,
                      verification_args=extra, verification_timeout=verification_timeout,
                      verification_junit=verification_junit,
                      requirements=requirements)
    with user_errors():
        try:
            ws = Workspace(workspace(workspace_dir))
            if external_site:
                with Progress(f"validating {ref} externally at {', '.join(external_site)} ({bootstrap} "
                              "bootstrap resamples)"):
                    report = validate_external_in_workspace(ws, ref, external_site, options)
            else:
                with Progress(f"validating {ref} at every site (performance, leave-one-site-out, "
                              f"{bootstrap} bootstrap resamples per site"
                              f"{'' if skip_verification or verification_junit else ', the test suite'})"):
                    report = validate_in_workspace(ws, ref, options)
        except ValidationRunError as exc:
            raise fail(str(exc)) from None
    if as_json:
        print(json.dumps(report, sort_keys=True, ensure_ascii=False))
    else:
        print_summary(report, print)
    if not report["passed"]:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _ci(e: dict[str, Any] | None, digits: int = 3) -> str:
    if e is None:
        return "not available"
    if e.get("ci_lower") is None:
        return f"{e['estimate']:.{digits}f}"
    return f"{e['estimate']:.{digits}f} ({e['ci_lower']:.{digits}f}–{e['ci_upper']:.{digits}f})"


def _pooled(report: dict[str, Any], metric: str, horizon: float | None = None) -> dict[str, Any] | None:
    """The pooled estimate of ``metric``, or the one site's own when a single site answered."""
    entries = report["pooled"]["metrics"]
    if not entries and len(report["pooled"]["sites"]) == 1:
        entries = report["sites"][report["pooled"]["sites"][0]]["metrics"]
    for e in entries:
        if e["metric"] == metric and e["horizon"] == horizon:
            return dict(e)
    return None


def _years(h: float, unit: str) -> str:
    return f"{h / 365.25:.0f} y" if unit == "day" else f"{h:g} {unit}s"


def _checks(checks: list[dict[str, Any]]) -> str:
    """The values a criterion was judged on: the failing ones, else all (a range over sites)."""
    shown = [x for x in checks if not x["passed"]] or checks
    if len(shown) == 1 or not all(isinstance(x["value"], float) for x in shown):
        return "; ".join(f"{x['where']} " + (f"{x['value']:.3f}" if isinstance(x["value"], float)
                                             else str(x.get("reason") or x["value"])) for x in shown)
    values = [x["value"] for x in shown]
    places = sorted({x["where"] for x in shown})
    horizons = len({x.get("horizon") for x in shown})
    where = "pooled" if places == ["pooled"] else f"{len(places)} sites"
    at = f" at {horizons} horizons" if horizons > 1 else ""
    return f"{where}{at} {min(values):.3f}–{max(values):.3f}"


def print_summary(report: dict[str, Any], say: Any) -> None:
    """A compact, human-readable summary of a validation report (``say`` prints one line)."""
    settings = report["settings"]
    hs, unit = settings["horizons"], settings["time_unit"]
    ver = report["verification"]
    if ver["status"] == "skipped":
        say(f"software verification: skipped ({ver['reason']})")
    else:
        say(f"software verification: {ver['status']} — {ver.get('tests', 0)} tests, {ver.get('failures')} "
            f"failures, {ver.get('errors')} errors; JUnit evidence {report['folder']}/junit.xml")
    sites = report["pooled"]["sites"]
    if report.get("setting") == "external":
        say(f"external validation at {', '.join(sites) or 'no site'} (hospitals that did not train "
            "the model):")
    if len(sites) == 1:
        n, events = (report["sites"][sites[0]][k] for k in ("n", "events"))
        say(f"clinical performance at {sites[0]} on its own data ({n} patients, {events} events inside the "
            f"intended use; 95% CI, {settings['n_boot']} bootstrap resamples):")
    else:
        say(f"clinical performance at {len(sites)} sites ({', '.join(sites)}), computed at each site on its "
            f"own data, pooled by inverse variance (95% CI, {settings['n_boot']} bootstrap resamples per "
            "site):")
    logistic = settings.get("kind") == "logistic"
    loso = report["leave_one_site_out"]["pooled"]
    held = {(e["metric"], e["horizon"]): e for e in loso}
    if logistic:  # one horizon: when the binary outcome was recorded
        h = hs[0]
        say(f"  outcome recorded by {h:g} {unit}{'' if h == 1 else 's'}: C statistic "
            f"{_ci(_pooled(report, 'c_statistic'))}, Brier {_ci(_pooled(report, 'brier', h))}, "
            f"E/O {_ci(_pooled(report, 'e_o_ratio', h), 2)}, "
            f"slope {_ci(_pooled(report, 'calibration_slope', h), 2)}, "
            f"calibration-in-the-large {_ci(_pooled(report, 'calibration_intercept', h), 2)}")
        if held:
            say(f"  leave-one-site-out: C statistic {_ci(held.get(('c_statistic', None)))}, "
                f"calibration slope {_ci(held.get(('calibration_slope', h)), 2)}")
    else:
        say(f"  Harrell's C {_ci(_pooled(report, 'harrell_c'))}   Uno's C {_ci(_pooled(report, 'uno_c'))}   "
            f"integrated Brier {_ci(_pooled(report, 'integrated_brier'))}")
        say(f"  calibration slope {_ci(_pooled(report, 'calibration_slope'), 2)}")
        for h in hs:
            say(f"  by {_years(h, unit)}: time-dependent AUC {_ci(_pooled(report, 'td_auc', h))}, "
                f"E/O {_ci(_pooled(report, 'e_o_ratio', h), 2)}, "
                f"slope {_ci(_pooled(report, 'calibration_slope', h), 2)}")
        if held:
            say(f"  leave-one-site-out: Harrell's C {_ci(held.get(('harrell_c', None)))}, "
                f"calibration slope {_ci(held.get(('calibration_slope', None)), 2)}")
    for c in report["criteria"]:
        rule = " ".join(str(x) for x in (c["metric"], c["statistic"], c["op"], c["threshold"])
                        if x is not None)
        say(f"  {c['id']}: {rule} — {_checks(c['checks'])}: {'PASS' if c['passed'] else 'FAIL'}")
    figures = ", ".join(p["file"] for p in report.get("plots", []) if isinstance(p, dict) and p.get("file"))
    say(f"report: {report['folder']}/report.json" + (f" (+ {figures})" if figures else ""))
    skipped = report.get("criteria_not_applicable", [])
    if skipped:
        listed = ", ".join(f"{c['id']} ({c['metric']})" for c in skipped)
        say(f"  {skipped[0]['reason']}: {listed}")
    reg = report.get("registry", {})
    met = "every acceptance criterion met" if report["passed"] else "FAILED"
    if report.get("setting") == "external":
        digest = str(reg.get("report_sha256", ""))[:16]
        say(f"{report['model']}: external validation — {met}; report sha256 {digest}… "
            f"anchored in the ledger (entry {reg.get('ledger_index')}); its release state is unchanged")
    elif reg.get("recorded"):
        state = "validated" if report["passed"] else "not validated"
        say(f"{report['model']}: {met} — {state}; report sha256 {reg['report_sha256'][:16]}… anchored in "
            f"the ledger (entry {reg['ledger_index']})")
    else:
        say(f"{report['model']}: {met}; not recorded: {reg.get('reason', 'no registry')}")

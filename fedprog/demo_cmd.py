"""``fedprog demo``: the bundled GBSG2 study, end to end, in this process."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import user_errors, workspace

if TYPE_CHECKING:
    from rich.console import Console

    from federated.study import StudySpec

    from .workspace import Workspace


#: bootstrap resamples per site in the demo: the 1000 acceptance needs (validation.criteria)
DEMO_BOOTSTRAP = 1000


def _build_dossier(ws_dir: Path, console: Console) -> None:
    """The technical file of the released model into ``<workspace>/dossier``: complete when the
    checkout holds a test run's JUnit evidence (``make test``), otherwise a draft that lists the
    documents waiting for it."""
    from dossier.spec import DossierError

    from .dossier_cmd import build_dossier, print_result

    console.print("building the technical file (dossier) …")
    console.file.flush()
    try:
        result = build_dossier(ws_dir, ws_dir / "dossier", draft=True)
    except DossierError as exc:
        console.print(f"dossier not built: {exc}")
        return
    print_result(result)
    if result["not_issued"]:
        print(f"  (run `make test`, then `{_command()} dossier build --workspace {ws_dir} --out "
              f"{ws_dir / 'dossier'}` to build every document; the file stays a draft until every "
              "BLOCKER above is resolved)")


def _command() -> str:
    """How the user can type this command again: ``fedprog`` when that is on PATH, else the path
    of the script that runs (``.venv/bin/fedprog`` after ``make demo``)."""
    import os
    import shutil
    import sys

    script = Path(sys.argv[0])
    if script.name == "__main__.py":
        return f"{sys.executable} -m fedprog"
    found = shutil.which("fedprog")
    if found and Path(found).resolve() == script.resolve():
        return "fedprog"
    return os.path.relpath(script) if not script.is_absolute() or script.exists() else str(script)


def _print_serving(ws_dir: Path, artifact: dict[str, Any], console: Console, port: int) -> None:
    """Write an example request and print the exact lines to serve the model on ``port`` and score a
    patient."""
    from device.fhir.examples import demo_request
    from device.model import load_model
    from ledger.files import write_json_atomic

    model_id = artifact["model_id"]
    example = ws_dir / "examples" / ("predict-risk.json" if port == 8080 else f"predict-risk-{model_id}.json")
    write_json_atomic(example, demo_request(load_model(artifact)))
    console.print(f"serve {model_id} (FHIR R4 + CDS Hooks), then score the example patient from another "
                  "shell:")
    console.file.flush()
    me = _command()
    print(f"  {me} serve --workspace {ws_dir} --model {model_id} --port {port}")  # exact, copy-pastable

    scopes = "user/RiskAssessment.c user/RiskAssessment.rs"
    other = "" if port == 8080 else f" --audience http://127.0.0.1:{port}/fhir"  # the default is port 8080's
    print(f"  TOKEN=$({me} token --workspace {ws_dir}{other} --scope '{scopes}')")
    print(f"  curl -s -X POST 'http://127.0.0.1:{port}/fhir/Patient/$predict-risk' "
          f"-H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/fhir+json' --data @{example}",
          flush=True)
    console.print("the clinician's risk page, opened as the EHR opens it (SMART launch; prints the URL):")
    console.file.flush()
    base = "" if port == 8080 else f" --base-url http://127.0.0.1:{port}/fhir"
    print(f"  {me} launch --workspace {ws_dir} --patient demo-patient{base}", flush=True)
    console.print(f"or stand-alone, with a token pasted in: http://127.0.0.1:{port}/app/")


def demo(
    workspace_dir: Annotated[Path | None, typer.Option(
        "--workspace", help="Workspace folder (default $FEDPROG_WORKSPACE or ./fedprog-workspace).")] = None,
    external: Annotated[bool, typer.Option(
        "--external", help="Also validate the released model at a hospital that never trained (the "
                           "Rotterdam tumour bank) and recalibrate it there (make demo does).")] = False,
    second_model: Annotated[bool, typer.Option(
        "--second-model", help="First train, validate and release a second model on the same hospitals: age "
                               "as a restricted cubic spline and the interaction of hormone therapy with "
                               "menopausal status (make demo does).")] = False,
) -> None:
    """GBSG2 split into four hospitals: consent, federated training, ledger, witnesses."""
    from rich.console import Console

    console = Console()
    ws_dir = workspace(workspace_dir)
    with user_errors():
        ws, study, seeded = _set_up(ws_dir)
        console.print(f"[bold]fedprog demo[/bold] — workspace {ws_dir}")
        console.print("GBSG2 (686 women, node-positive breast cancer) split into "
                      + ", ".join(ws.sites) + "; each hospital keeps its rows and its consent registry.")
        if seeded:
            console.print(f"consent recorded for {seeded[0]} women, {seeded[1]} declined; every consent "
                          "event anchored in the ledger as a commitment (no identifiers)")
        _train_and_report(ws, study, ws_dir, console, external=external, second_model=second_model)


def _set_up(ws_dir: Path) -> tuple[Workspace, StudySpec, tuple[int, int] | None]:
    """Workspace, sites (their tables rewritten identically) and seeded consent (the first time)."""
    import pandas as pd

    from federated.demo_study import STUDY_ID, declined, write_demo_study

    from .workspace import Workspace

    fresh = not (ws_dir / "workspace.json").exists()
    study = write_demo_study(ws_dir)
    ws = Workspace.create(ws_dir, STUDY_ID, {s.name: s.path for s in study.sites})
    ws.mark_demonstration()
    protocol = ws.protocol(study)
    for site in ws.sites:  # each hospital's operator approves the demo study (fedprog site approve)
        ws.approve(site, protocol)
    if not fresh:
        return ws, study, None
    granted = refused = 0
    for site in ws.sites:
        registry = ws.registry(site)
        ids = pd.read_csv(ws_dir / "sites" / site / "data.csv", usecols=["patient_id"])["patient_id"]
        no = declined(list(ids))
        for patient in ids:
            registry.grant(patient, date="2026-01-15", decision="deny" if patient in no else "permit")
        granted, refused = granted + len(ids) - len(no), refused + len(no)
        registry.close()
    return ws, study, (granted, refused)


def _validate_externally(ws: Workspace, ws_dir: Path, ref: str, console: Console) -> None:
    """External validation of the released model at a hospital that never trained (the Rotterdam
    tumour bank, added once as an external site under a declared legal basis)."""
    from federated.demo_study import EXTERNAL_BASIS, EXTERNAL_SITE, write_external_site
    from federated.site.tables import TableFormat
    from validation.run import Options as ValidationOptions

    from .recalibration import recalibrate_in_workspace
    from .registration import registered_study, validate_external_in_workspace
    from .site_setup import add_site
    from .validate_cmd import print_summary

    if EXTERNAL_SITE not in ws.external_sites:
        add_site(ws_dir, EXTERNAL_SITE, write_external_site(ws_dir), consent=None, legal_basis=EXTERNAL_BASIS,
                 basis_date="2026-01-15", patient_column="patient_id", table_format=TableFormat(),
                 external=True)
    study = registered_study(ws, ws.models.get(ref))
    ws.approve(EXTERNAL_SITE, ws.protocol(study, [EXTERNAL_SITE]))  # its operator approves (site approve)
    console.print(f"external validation of {ref} at {EXTERNAL_SITE} (the Rotterdam tumour bank, 1978–1993: a "
                  "hospital that never trained; its node-positive women inside the intended use) …")
    console.file.flush()
    options = ValidationOptions(n_boot=DEMO_BOOTSTRAP)
    print_summary(validate_external_in_workspace(ws, ref, [EXTERNAL_SITE], options), print)
    # model updating at that hospital: slope and baseline from its own data, a new candidate model
    new = recalibrate_in_workspace(ws, ref, EXTERNAL_SITE)
    rec = new["training"]["recalibration"]
    new_ref = f"{new['model_id']}@{new['version']}"
    low, high = rec["slope_ci"]
    console.print(f"recalibrated at {EXTERNAL_SITE}: slope {rec['slope']:.3f} (95% CI {low:.3f}–"
                  f"{high:.3f}) and its own baseline → candidate {new_ref}; its performance there "
                  "(apparent: the same women it was recalibrated on) …")
    console.file.flush()
    print_summary(validate_external_in_workspace(ws, new_ref, [EXTERNAL_SITE], options), print)


#: the demo's release approver: a demonstration identity whose key the demo keeps in the workspace (in a
#: real deployment each approver holds their own key, never the workspace)
DEMO_APPROVER = "Demo Release Approver (fedprog demo)"


def _demo_approver(ws: Workspace, ws_dir: Path) -> tuple[str, Path]:
    """The demo's approver, pinned on first use, and the file holding their key."""
    key = ws_dir / "demo-keys" / "release-approver.pem"
    if DEMO_APPROVER not in ws.people():
        ws.add_person(DEMO_APPROVER, ["approver"], key)
    return DEMO_APPROVER, key


def _make_test_evidence() -> Path | None:
    """``make test``'s JUnit when it is evidence for this software (same clean commit and environment,
    nothing failed or skipped that verifies a requirement); else None."""
    from validation.exceptions import VerificationError
    from validation.verification import checkout, from_junit

    root = checkout()
    junit = root / "build" / "test-results" / "junit.xml" if root is not None else None
    if junit is None or not junit.is_file():
        return None
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            ok = from_junit(junit, Path(tmp))["status"] == "passed"
    except VerificationError:
        return None
    return junit if ok else None


def _train_validate_release(ws: Workspace, study: StudySpec, ws_dir: Path, console: Console,
                            evidence: Path | None) -> tuple[dict[str, Any], str, bool]:
    """Train ``study`` (as the successor of its newest version), validate it at the release gate and,
    when every criterion is met, release it signed by the demo's approver: (artifact, ref, released)."""
    from validation.run import Options as ValidationOptions

    from .registration import as_successor, release_in_workspace, train_in_workspace, validate_in_workspace
    from .train_cmd import local_counts, print_fit_summary
    from .validate_cmd import print_summary

    study, predecessor = as_successor(ws, study)
    sites = ws.site_objects(ws_dir / "transcripts")
    fit, artifact = train_in_workspace(ws, study, predecessor=predecessor, sites=sites)
    out = ws_dir / "models" / f"{artifact['sha256']}.json"
    print_fit_summary(fit, out, artifact, local_counts(sites))
    cp = artifact["training"]["consent_checkpoint"]
    ref = f"{artifact['model_id']}@{artifact['version']}"
    console.print(f"model {ref} registered in the ledger; trained on consent as of checkpoint {cp['size']} "
                  f"(root {cp['root'][:16]}…)")
    console.print(f"validating {ref}: performance computed at each hospital on its own data, leave-one-"
                  f"hospital-out, pooled, against the requirements' acceptance criteria …")
    console.file.flush()
    check = validate_in_workspace(ws, ref, ValidationOptions(
        n_boot=DEMO_BOOTSTRAP, skip_verification=evidence is None, verification_junit=evidence,
        skip_reason="no `make test` evidence of this clean commit (build/test-results/junit.xml): the demo "
                    "does not run the 20-minute suite itself, so its release records the verification as "
                    "waived (a demonstration workspace only)"))
    print_summary(check, print)
    if not check["passed"]:
        console.print(f"release gate: {ref} FAILED validation; not released")
        return artifact, ref, False
    approver, key = _demo_approver(ws, ws_dir)
    release_in_workspace(ws, ref, approver, key, reason="demo: validation passed")
    verified = ws.models.report(ws.models.get(ref))["verification"]["status"] == "passed"
    console.print(f"release gate: {ref} validated (every acceptance criterion met) and "
                  f"[bold]released[/bold], signed by {approver}; software verification "
                  + ("passed (make test evidence of this commit)" if verified else
                     "WAIVED (demonstration workspace: run `make test`, then the demo, to release on "
                     "evidence)"))
    return artifact, ref, True


def _second_model(ws: Workspace, study: StudySpec, ws_dir: Path, console: Console,
                  evidence: Path | None) -> dict[str, Any] | None:
    """The demo's second model (:func:`federated.demo_study.spline_study`), approved by each hospital's
    operator, trained, validated and released; its artifact when released."""
    from federated.demo_study import AGE_KNOTS, INTERACTION, spline_study

    spline = spline_study(study)
    for site in ws.sites:  # each hospital's operator approves the spline model's study (site approve)
        ws.approve(site, ws.protocol(spline))
    console.print(f"model 1 of 2, {spline.model_id}: age as a restricted cubic spline (knots at "
                  f"{', '.join(f'{k:g}' for k in AGE_KNOTS)} years) and the interaction "
                  f"{INTERACTION[0]} × {INTERACTION[1]} …")
    console.file.flush()
    artifact, _, released = _train_validate_release(ws, spline, ws_dir, console, evidence)
    console.print(f"model 2 of 2, {study.model_id}: every input linear (the model served by default and "
                  "described by the technical file) …")
    console.file.flush()
    return artifact if released else None


def _train_and_report(ws: Workspace, study: StudySpec, ws_dir: Path, console: Console, *,
                      external: bool = False, second_model: bool = False) -> None:
    from ledger.verify import verify_ledger

    evidence = _make_test_evidence()
    spline_artifact = _second_model(ws, study, ws_dir, console, evidence) if second_model else None
    artifact, ref, released = _train_validate_release(ws, study, ws_dir, console, evidence)
    if released and external:
        _validate_externally(ws, ws_dir, ref, console)
    report = verify_ledger(ws.ledger, ws.anchors())
    latest_cp = ws.ledger.latest_checkpoint()
    console.print(f"ledger: {report.size} entries, {report.checkpoints} checkpoints, "
                  f"{'verified' if report.ok else 'VERIFICATION FAILED'}; latest checkpoint "
                  f"(size {latest_cp[0] if latest_cp else 0}) cosigned by all "
                  f"{len(ws.sites) + len(ws.external_sites)} site witnesses")
    console.print(f"outbound transcripts (what each site sent): {ws_dir / 'transcripts'}")
    if released:
        _build_dossier(ws_dir, console)
    _print_serving(ws_dir, artifact, console, 8080)
    if spline_artifact is not None:
        _print_serving(ws_dir, spline_artifact, console, 8081)
    console.print("next: fedprog ledger show | fedprog consent revoke --site hospital-a --patient A-0001 "
                  f"| fedprog model list | fedprog model retrain {study.model_id}  "
                  f"(add --workspace {ws_dir})")

"""Entry point: ``fedprog`` and its command groups (imports stay lazy for a fast start)."""

from __future__ import annotations

import typer

from . import (
    audit_cmd,
    consent_cmd,
    demo_cmd,
    deploy_cmd,
    dossier_cmd,
    ledger_cmd,
    model_cmd,
    serve_cmd,
    site_cmd,
    soup_cmd,
    token_cmd,
    trace_cmd,
    train_cmd,
    validate_cmd,
)

app = typer.Typer(
    name="fedprog",
    help="Federated prognostic models with a tamper-evident ledger, a FHIR endpoint and "
         "the regulatory dossier.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("train")(train_cmd.train)
app.command("km")(train_cmd.km)
app.command("demo")(demo_cmd.demo)
app.command("validate")(validate_cmd.validate)
app.command("serve")(serve_cmd.serve)
app.add_typer(token_cmd.app, name="token")
app.command("launch")(token_cmd.launch)
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(ledger_cmd.app, name="ledger")
app.add_typer(consent_cmd.app, name="consent")
app.add_typer(model_cmd.app, name="model")
trace_cmd.app.command("soup")(soup_cmd.soup)
trace_cmd.app.command("sbom")(soup_cmd.sbom)
app.add_typer(trace_cmd.app, name="trace")
app.add_typer(dossier_cmd.app, name="dossier")
app.add_typer(deploy_cmd.app, name="deploy")
app.add_typer(site_cmd.app, name="site")


def main() -> None:
    """Console-script entry point."""
    app()

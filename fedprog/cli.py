"""Entry point: ``fedprog`` and its command groups (imports stay lazy for a fast start)."""

from __future__ import annotations

import inspect
import re
from typing import Annotated

import typer

from . import (
    audit_cmd,
    competing_cmd,
    consent_cmd,
    demo_cmd,
    deploy_cmd,
    dossier_cmd,
    init_cmd,
    ledger_cmd,
    model_cmd,
    person_cmd,
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


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"fedprog {version('fedprog')}")
        except PackageNotFoundError:  # a checkout that was not installed
            print("fedprog (not installed: version unknown)")
        raise typer.Exit()


#: the commands that are quality-management tools (pyproject's `qms` extra), not the device, and the
#: modules they need beyond the device's runtime lock
QMS_COMMANDS = frozenset({"trace", "dossier", "validate", "demo"})
QMS_MODULES = ("yaml", "cyclonedx", "matplotlib", "reportlab", "pypdf")


def missing_qms() -> list[str]:
    """The modules of the `qms` extra that cannot be imported here."""
    from importlib.util import find_spec

    return [name for name in QMS_MODULES if find_spec(name) is None]


@app.callback()
def _root(ctx: typer.Context,
          _: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version,
                                          help="Print the version and exit.")] = False) -> None:
    """Federated prognostic models with a tamper-evident ledger, a FHIR endpoint and the regulatory
    dossier."""
    missing = missing_qms() if ctx.invoked_subcommand in QMS_COMMANDS else []
    if missing:
        from ._common import fail

        raise fail(f"`fedprog {ctx.invoked_subcommand}` is a quality-management tool, not the device, and "
                   f"needs {', '.join(missing)}: install fedprog[qms]")


app.command("init")(init_cmd.init)
app.command("train")(train_cmd.train)
app.command("km")(train_cmd.km)
app.command("competing")(competing_cmd.competing)
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
app.add_typer(person_cmd.app, name="person")


def plain_help(doc: str | None) -> str | None:
    """A docstring as a help text: reST literals (````x````) and roles unmarked, each paragraph's lines
    joined (the terminal wraps them), paragraphs kept."""
    if doc is None:
        return None
    text = inspect.cleandoc(doc)
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    text = text.replace("``", "").replace("`", "")
    paragraphs = [" ".join(line.strip() for line in para.splitlines()) for para in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)


def _plain_everywhere(group: typer.Typer) -> None:
    """Plain help texts for every command and group of ``group`` (the docstrings stay reST)."""
    for info in group.registered_commands:
        info.help = plain_help(info.help or (info.callback.__doc__ if info.callback else None))
    for sub in group.registered_groups:
        sub.help = plain_help(sub.help if isinstance(sub.help, str) else None) or sub.help
        if sub.typer_instance is not None:
            info_help = sub.typer_instance.info.help
            if isinstance(info_help, str):
                sub.typer_instance.info.help = plain_help(info_help)
            _plain_everywhere(sub.typer_instance)
    callback = group.registered_callback
    if callback is not None:
        doc = callback.callback.__doc__ if callback.callback else None
        callback.help = plain_help(callback.help or doc)


_plain_everywhere(app)


def main() -> None:
    """Console-script entry point."""
    app()

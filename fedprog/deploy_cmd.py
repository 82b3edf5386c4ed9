"""``fedprog deploy``: start the pieces of a deployment on Flower's Deployment Engine.

* ``deploy app DIR`` writes the Flower App folder ``flwr run`` needs (``pyproject.toml`` naming
  :mod:`fedprog.flower_app`'s ServerApp and ClientApp);
* ``deploy superlink`` (coordinating centre) and ``deploy supernode`` (one per hospital) run
  ``flower-superlink`` / ``flower-supernode`` with fedprog's settings — the node config names
  the site, its data, its workspace and the rules its operator holds (identity key, approved
  studies, floors), TOML-quoted as Flower parses it;
* ``deploy run`` submits a run with ``flwr run`` — the study and the approved protocol the sites
  answer for — and reports the ServerApp's own result, since ``flwr run`` exits 0 even when the
  ServerApp failed.

Each prints the exact Flower command it runs (``--dry-run`` prints only). Plaintext
(``--insecure``) is refused unless every address is on loopback: a deployment between
hospitals uses TLS (``--ssl-*`` / ``--root-certificates``) and SuperNode authentication.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import EXIT_CHECK_FAILED, DecimalOpt, DelimiterOpt, EncodingOpt, fail, table_format

if TYPE_CHECKING:
    pass

app = typer.Typer(help="Run fedprog across hospitals on Flower (SuperLink, SuperNodes, runs).",
                  no_args_is_help=True)

DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the Flower command, do not run it.")]
Insecure = Annotated[bool, typer.Option(
    "--insecure", help="Plaintext, no TLS: allowed only when every address is on loopback (tests).")]

APP_TOML = """\
# The fedprog Flower App: `flwr run` builds it into a FAB and the SuperLink/SuperNodes load the
# components below from the installed fedprog package (no code travels with the FAB).
[project]
name = "fedprog-deployment"
version = "{version}"
description = "fedprog: federated survival models across hospitals (ServerApp + ClientApp)"
license = "Apache-2.0"
dependencies = ["fedprog[flower]=={version}"]

[tool.flwr.app]
publisher = "fedprog"

[tool.flwr.app.components]
serverapp = "fedprog.flower_app:server"
clientapp = "fedprog.flower_app:client"

# run config (override with `flwr run ... --run-config 'key=value ...'`); "" = not set
[tool.flwr.app.config]
study = ""
protocol = ""
out = ""
jobs = "cox"
sites = ""
workspace = ""
model = ""
connect-timeout = 120.0
probe-timeout = ""
round-timeout = ""
n-boot = 200
"""


def _loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _given(flag: str, value: object) -> list[str]:
    """``[flag, value]`` when the option was given, else nothing."""
    return [flag, str(value)] if value else []


def _security(insecure: bool, addresses: list[str], tls: list[str]) -> list[str]:
    """Flower's TLS flags, refusing plaintext off loopback and a half-given TLS setup."""
    if insecure:
        off = [a for a in addresses if not _loopback(a)]
        if off:
            raise fail(f"--insecure is only for loopback; {off[0]} is not: give TLS certificates")
        return ["--insecure"]
    if not tls:
        raise fail("TLS certificates are required (or --insecure on loopback)")
    return tls


def _env() -> dict[str, str]:
    """The environment Flower's daemons need: they start flower-superexec, flwr-serverapp and
    flwr-clientapp by name, so this interpreter's bin folder must come first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    # SuperExec looks for a message to start a ClientApp for every second by default; a
    # federated fit waits on every round, so look every 0.1 s (a local call, cheap)
    return {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1", **os.environ,
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def _exec(argv: list[str], dry_run: bool) -> None:
    print(shlex.join(argv), file=sys.stderr if not dry_run else sys.stdout, flush=True)
    if dry_run:
        return
    os.execve(_flower(argv[0]), argv, _env())


def _flower(command: str) -> str:
    """The path of one of Flower's commands, beside this interpreter (exit 2 if Flower is missing)."""
    exe = Path(sys.executable).parent / command
    if not exe.exists():
        raise fail(f"{command} not found beside {sys.executable}: install Flower with "
                   "pip install 'fedprog[flower]'")
    return str(exe)


def _wait_for(address: str, timeout: float) -> None:
    """Wait until the SuperLink accepts connections (it may still be starting), at most ``timeout``."""
    import socket
    import time

    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                return
        except (OSError, ValueError):
            if time.monotonic() >= deadline:
                raise fail(f"the SuperLink at {address} did not accept a connection within {timeout:g} s",
                           EXIT_CHECK_FAILED) from None
            time.sleep(0.5)


def _toml_value(value: str | float | int | bool) -> str:
    """A TOML value as Flower parses ``--node-config`` / ``--run-config``.

    Flower splits the pairs with ``"[^"]*"`` / ``'[^']*'`` before reading them as TOML, so a
    string holding ``"`` goes in a literal string ``'…'`` and one holding both quotes cannot go.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        return repr(value)
    if '"' not in value:
        return json.dumps(value)  # a TOML basic string (JSON escapes are TOML escapes)
    if "'" in value or "\n" in value:
        raise fail(f"{value!r}: Flower's config syntax cannot carry both quote kinds (or a newline)")
    return f"'{value}'"


def _seconds(value: float | None) -> float | None:
    return float(value) if value is not None else None


def _resolved(path: Path | None) -> str | None:
    return str(path.resolve()) if path is not None else None


def config_string(values: dict[str, str | float | int | None]) -> str:
    """``key=value`` pairs, space-separated, each value TOML (``site="hospital-a" n-boot=200``)."""
    return " ".join(f"{k}={_toml_value(v)}" for k, v in values.items() if v is not None)


@app.command("app")
def write_app(folder: Annotated[Path, typer.Argument(help="Folder to write the Flower App into.")]) -> None:
    """Write the Flower App folder (pyproject.toml) that `flwr run` submits."""
    from importlib.metadata import version

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(APP_TOML.format(version=version("fedprog")), encoding="utf-8")
    print(folder / "pyproject.toml")


@app.command("superlink")
def superlink(
    port: Annotated[int, typer.Option(help="The SuperLink's port (Fleet, Control and ServerAppIo APIs).")]
    = 9093,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    database: Annotated[Path | None, typer.Option(help="Keep the SuperLink's state in this file.")] = None,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    ssl_ca_certfile: Annotated[Path | None, typer.Option(help="CA certificate (PEM).")] = None,
    node_auth: Annotated[bool, typer.Option(
        "--node-auth", help="Admit only SuperNodes registered with `flwr supernode register`.")] = False,
    insecure: Insecure = False,
    dry_run: DryRun = False,
) -> None:
    """Start the coordinating centre's Flower SuperLink."""
    tls = [*_given("--ssl-certfile", ssl_certfile), *_given("--ssl-keyfile", ssl_keyfile),
           *_given("--ssl-ca-certfile", ssl_ca_certfile)]
    argv = ["flower-superlink", *_security(insecure, [host], tls), "--host", host, "--port", str(port),
            "--disable-runtime-dependency-installation", *_given("--database", database)]
    argv += ["--enable-supernode-auth"] if node_auth else []
    _exec(argv, dry_run)


@app.command("supernode")
def supernode(
    superlink: Annotated[str, typer.Option(help="The SuperLink as HOST:PORT.")],
    site: Annotated[str, typer.Option(help="The site this node serves (its name in the study).")],
    data: Annotated[Path, typer.Option(help="The site's table (CSV or Parquet); it never leaves here.")],
    port: Annotated[int, typer.Option(help="This node's own ClientApp port (one per node on a machine).")],
    workspace: Annotated[Path | None, typer.Option(
        help="The hospital's fedprog workspace: its consent registry, witness key, identity key and "
             "approved studies.")] = None,
    identity_key: Annotated[Path | None, typer.Option(
        help="The site's Ed25519 identity key (32-byte seed file, created on first use; default "
             "<workspace>/sites/<site>/identity.key).")] = None,
    approved: Annotated[Path | None, typer.Option(
        help="The study the operator approved (its JSON), or a folder of them (default the workspace's "
             "sites/<site>/approved/). Without one the site refuses every request.")] = None,
    floors: Annotated[Path | None, typer.Option(
        help="The operator's own minimums (SiteFloors JSON; default the built-in floors).")] = None,
    budget: Annotated[Path | None, typer.Option(
        help="The site's record of rounds and evaluations spent per study (default "
             "<workspace>/sites/<site>/budget.json, else beside the data file).")] = None,
    patient_column: Annotated[str, typer.Option(help="Column with the patient ids.")] = "patient_id",
    delimiter: DelimiterOpt = None,
    decimal: DecimalOpt = None,
    encoding: EncodingOpt = None,
    transcript_dir: Annotated[Path | None, typer.Option(
        help="Write DIR/<site>.jsonl, one line per message this site sends.")] = None,
    root_certificates: Annotated[Path | None, typer.Option(
        help="CA certificate (PEM) that signed the SuperLink's TLS certificate.")] = None,
    auth_key: Annotated[Path | None, typer.Option(
        help="This node's private key for SuperNode authentication.")] = None,
    insecure: Insecure = False,
    dry_run: DryRun = False,
) -> None:
    """Start a hospital's Flower SuperNode serving one site."""
    if not data.is_file():
        raise fail(f"--data {data}: no such file")
    for flag, path in (("--approved", approved), ("--floors", floors)):
        if path is not None and not path.exists():
            raise fail(f"{flag} {path}: no such file or folder")
    fmt = table_format(delimiter, decimal, encoding)
    config = config_string({"site": site, "data-path": str(data.resolve()), "patient-column": patient_column,
                            "workspace": _resolved(workspace), "identity-key": _resolved(identity_key),
                            "approved": _resolved(approved), "floors": _resolved(floors),
                            "budget": _resolved(budget), "transcript-dir": _resolved(transcript_dir),
                            **fmt.model_dump(exclude_defaults=True)})
    tls = _given("--root-certificates", root_certificates)
    argv = ["flower-supernode", *_security(insecure, [superlink], tls), "--superlink", superlink,
            "--port", str(port), "--node-config", config, *_given("--auth-supernode-private-key", auth_key)]
    _exec(argv, dry_run)


@app.command("run")
def run(
    app_dir: Annotated[Path, typer.Argument(help="The Flower App folder (`fedprog deploy app`).")],
    superlink: Annotated[str, typer.Option(help="The SuperLink as HOST:PORT.")],
    study: Annotated[Path, typer.Option(help="The study file (study.toml or a workspace's .study.json).")],
    out: Annotated[Path, typer.Option(help="Where the ServerApp writes its results.")],
    protocol: Annotated[Path | None, typer.Option(
        help="The approved study's JSON, as the sites approved it (default, with --workspace, the "
             "workspace's protocol of the study).")] = None,
    jobs: Annotated[str, typer.Option(help="Comma-separated: cox, km, validate.")] = "cox",
    sites: Annotated[str | None, typer.Option(help="Comma-separated site names (default: the study's).")]
    = None,
    workspace: Annotated[Path | None, typer.Option(
        help="The coordinator's workspace: a witnessed consent checkpoint, the model registered.")] = None,
    model: Annotated[str | None, typer.Option(help="Model to validate (id@version).")] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for validation (acceptance needs "
                                             "≥ 1000).")] = 1000,
    connect_timeout: Annotated[float, typer.Option(
        help="Seconds for every site's SuperNode to join the SuperLink.")] = 120.0,
    probe_timeout: Annotated[float | None, typer.Option(
        help="Seconds a SuperNode that joined has to answer the request for its site (default the "
             "connect timeout); raise it for slow or loaded machines.")] = None,
    round_timeout: Annotated[float | None, typer.Option(
        help="Seconds to wait for each round's replies and each witness's cosignature (default the "
             "study's).")] = None,
    timeout: Annotated[float, typer.Option(help="Give up on the whole run after this many seconds.")]
    = 3600.0,
    root_certificates: Annotated[Path | None, typer.Option(help="CA certificate of the SuperLink.")] = None,
    insecure: Insecure = False,
    dry_run: DryRun = False,
) -> None:
    """Submit a run to the SuperLink, stream its log, and exit with the ServerApp's result."""
    _security(insecure, [superlink], _given("--root-certificates", root_certificates))
    for flag, seconds in (("--connect-timeout", connect_timeout), ("--probe-timeout", probe_timeout),
                          ("--round-timeout", round_timeout), ("--timeout", timeout)):
        if seconds is not None and not seconds > 0:
            raise fail(f"{flag} {seconds:g}: want a number of seconds above 0")
    if protocol is not None and not protocol.is_file():
        raise fail(f"--protocol {protocol}: no such file")
    config = config_string({
        "study": str(study.resolve()), "protocol": _resolved(protocol), "out": str(out.resolve()),
        "jobs": jobs, "sites": sites, "workspace": _resolved(workspace), "model": model, "n-boot": n_boot,
        "connect-timeout": float(connect_timeout), "probe-timeout": _seconds(probe_timeout),
        "round-timeout": _seconds(round_timeout)})
    with tempfile.TemporaryDirectory(prefix="fedprog-flwr-") as home:
        trust: dict[str, str | bool] = {"insecure": True} if insecure else \
            {"root-certificates": str(root_certificates)}
        connection = {"address": superlink, **trust}
        lines = ["[superlink]", 'default = "fedprog"', "", "[superlink.fedprog]",
                 *(f"{k} = {_toml_value(v)}" for k, v in connection.items())]
        Path(home, "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        argv = ["flwr", "run", str(app_dir), "fedprog", "--stream", "--run-config", config]
        print(f"FLWR_HOME={home} {shlex.join(argv)}", file=sys.stderr, flush=True)
        if dry_run:
            return
        result = out / "result.json"
        result.unlink(missing_ok=True)
        _wait_for(superlink, connect_timeout)
        argv[0] = _flower("flwr")
        try:
            subprocess.run(argv, env={**_env(), "FLWR_HOME": home}, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise fail(f"the run did not finish within {timeout:g} s", EXIT_CHECK_FAILED) from None
    try:
        outcome = json.loads(result.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise fail(f"the ServerApp wrote no result ({result}); see the log above",
                   EXIT_CHECK_FAILED) from None
    if outcome.get("status") != "ok":
        raise fail(f"run failed: {outcome.get('error', 'unknown error')}", EXIT_CHECK_FAILED)
    print(json.dumps(outcome, sort_keys=True))

"""Command-line conventions (issue 17): --json without --out, --version, plain help texts, a live
progress line on a terminal, duplicated covariates refused in one line, model show on a file."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fedprog.cli import app, plain_help

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "own-study"
SITES = ["--site", f"a={EXAMPLES / 'hospital-a.csv'}", "--site", f"c={EXAMPLES / 'hospital-c.csv'}",
         "--site", f"c2={EXAMPLES / 'hospital-a.csv'}"]
FLAGS = ["--time", "dtime", "--event", "death", "--covariates", "age,nodes,grade", "--max-time", "3652.5",
         "--shift-sparse-censoring"]


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "fedprog", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def commands(group: typer.Typer, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path + (c.name or (c.callback.__name__ if c.callback else ""),) for c in group.registered_commands]
    for sub in group.registered_groups:
        if sub.typer_instance is not None and sub.name:
            out += [path + (sub.name,)] + commands(sub.typer_instance, path + (sub.name,))
    return out


@pytest.mark.req("SRS-CLI-005")
def test_version() -> None:
    res = run("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"fedprog {version('fedprog')}"


@pytest.mark.req("SRS-CLI-005", "SRS-CLI-001")
def test_every_help_text_is_plain() -> None:
    runner = CliRunner()
    every = commands(app)
    assert len(every) > 30 and ("site", "add") in every and ("init",) in every
    for path in [(), *every]:
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, (path, res.output)
        assert "``" not in res.output and ":class:" not in res.output and ":func:" not in res.output, path


@pytest.mark.req("SRS-CLI-005")
def test_plain_help_unmarks_rest_and_joins_lines() -> None:
    doc = """Train a model (``fedprog train``), see :func:`federated.analyses.runner.train`
    and `this`.

    Second paragraph."""
    assert plain_help(doc) == ("Train a model (fedprog train), see federated.analyses.runner.train and this."
                               "\n\nSecond paragraph.")


@pytest.mark.req("SRS-CLI-005", "SRS-CLI-002")
def test_train_json_needs_no_out_and_writes_nothing(tmp_path: Path) -> None:
    res = run("train", *SITES, *FLAGS, "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    artifact = json.loads(res.stdout)
    assert artifact["schema"] == "fedprog.model/v1" and list(tmp_path.iterdir()) == []
    none = run("train", *SITES, *FLAGS, cwd=tmp_path)
    assert none.returncode == 2 and none.stderr.strip() == (
        "fedprog: error: say where the model goes: --out model.json, --workspace W (registered), or --json")


@pytest.mark.req("SRS-CLI-005", "SRS-CLI-001")
def test_a_covariate_listed_twice_is_one_line(tmp_path: Path) -> None:
    res = run("train", *SITES, "--time", "dtime", "--event", "death", "--covariates", "age,age", "--json")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == "fedprog: error: covariates: Value error, covariates listed twice: age"


@pytest.mark.req("SRS-CLI-005")
def test_model_show_reads_a_file_as_a_summary_or_json(tmp_path: Path) -> None:
    out = tmp_path / "model.json"
    assert run("train", *SITES, *FLAGS, "--horizons", "1826.25", "--out", out).returncode == 0
    summary = run("model", "show", out)
    assert summary.returncode == 0, summary.stderr
    assert "not registered" in summary.stdout and "HR 95% CI" in summary.stdout and "nodes" in summary.stdout
    shown = run("model", "show", out, "--json")
    assert json.loads(shown.stdout) == json.loads(out.read_text())
    out.write_text("{}")
    bad = run("model", "show", out)
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"fedprog: error: {out}: not a fedprog model artifact")


@pytest.mark.req("SRS-CLI-005")
def test_a_long_step_shows_a_live_progress_line_on_a_terminal(tmp_path: Path) -> None:
    """stderr a pseudo-terminal: the round and the elapsed time are shown (and cleared at the end);
    stderr a pipe (scripts, CI): nothing but the result."""
    primary, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    child = subprocess.Popen([sys.executable, "-m", "fedprog", "train", *SITES, *FLAGS, "--json"],
                             stdout=subprocess.PIPE, stderr=secondary, env=env)
    os.close(secondary)
    seen = b""
    while True:  # read while it runs (a full terminal buffer would block the child)
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    stdout, _ = child.communicate(timeout=300)
    assert child.returncode == 0
    done = subprocess.CompletedProcess(child.args, 0, stdout.decode())
    text = seen.decode("utf-8", "replace")
    assert "federated Cox" in text and "0:00:" in text  # what runs, and the elapsed time
    assert json.loads(done.stdout)["schema"] == "fedprog.model/v1"
    piped = run("train", *SITES, *FLAGS, "--json")
    assert piped.stderr == ""

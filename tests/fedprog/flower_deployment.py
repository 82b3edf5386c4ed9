"""A real Flower deployment on loopback for tests: one SuperLink and one SuperNode per site of a
study, each a separate process started with ``fedprog deploy`` in its own process group, each node
holding its site's identity key, the study its operator approved and its floors
(:func:`tests.federated.protocol.flower_grid.approved_nodes`), and runs submitted with
``fedprog deploy run``. Every process is stopped by :func:`deployed`, by group.

Used by ``test_deploy.py`` (results against the in-process run, dropouts, failures) and
``test_flower_slow_site.py`` (a site slow to answer).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from federated.disclosure.rules import SiteFloors
from federated.study import StudySpec
from tests.federated.protocol.flower_grid import approved_nodes
from tests.fedprog.serving import free_port

#: seconds for the SuperLink to listen
START_TIMEOUT = 60.0


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Deployment:
    """The processes of a deployment under ``root``: ``study.json`` (the study the coordinator
    submits), ``rules/`` (each operator's approval), ``app/`` (the Flower App), ``<name>.log``."""

    root: Path
    study: StudySpec
    superlink: str
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def fedprog(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """``python -m fedprog ARGS`` in its own process group (setsid), logging to ``<name>.log``;
        ``env`` is added to the deployment's environment for this process only."""
        with (self.root / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "fedprog", *args], stdout=log,
                                    stderr=subprocess.STDOUT, env={**self.env, **(env or {})},
                                    start_new_session=True, cwd=self.root)
        self.procs[name] = proc
        return proc

    def submit(self, out: Path, *args: str, app: Path | None = None) -> subprocess.Popen[bytes]:
        """``fedprog deploy run`` of the study over all its sites, under the approved protocol,
        results in ``out``, logging to ``run-<out name>.log``."""
        return self.fedprog(f"run-{out.name}", "deploy", "run", str(app or self.root / "app"), "--superlink",
                            self.superlink, "--insecure", "--study", str(self.root / "study.json"), "--out",
                            str(out), "--sites", ",".join(s.name for s in self.study.sites), "--protocol",
                            str(self.root / "rules" / "protocol.json"), *args)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop(self, name: str, sig: int = signal.SIGTERM, wait: float = 15.0) -> None:
        """Signal the whole process group (the daemon and the Flower processes it started)."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=wait)
        try:  # children that outlived their parent (flower-superexec, flwr-clientapp)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def deployed(root: Path, study: StudySpec, floors: SiteFloors,
             node_env: Mapping[str, Mapping[str, str]] | None = None) -> Iterator[Deployment]:
    """A SuperLink and one SuperNode per site of ``study`` (its sites' tables), each operator having
    approved it under ``floors``; ``node_env`` adds environment variables to some sites' SuperNodes.
    Yields once the SuperLink listens and the Flower App folder is written; stops them all after."""
    (root / "study.json").write_text(study.model_dump_json(exclude={"sites"}), encoding="utf-8")
    _, _, configs = approved_nodes(study, root / "rules", floors)
    home = root / "flwr-home"
    home.mkdir()
    env = {**os.environ, "FLWR_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    port = free_port()
    dep = Deployment(root, study, f"127.0.0.1:{port}", env)
    try:
        dep.fedprog("superlink", "deploy", "superlink", "--insecure", "--port", str(port))
        for s in study.sites:
            dep.fedprog(s.name, "deploy", "supernode", "--insecure", "--superlink", dep.superlink,
                        "--site", s.name, "--data", str(s.path), "--port", str(free_port()),
                        "--identity-key", configs[s.name]["identity-key"],
                        "--approved", configs[s.name]["approved"], "--floors", configs[s.name]["floors"],
                        env=(node_env or {}).get(s.name))
        deadline = time.monotonic() + START_TIMEOUT
        while not listening(port):
            assert dep.procs["superlink"].poll() is None, dep.log("superlink")
            assert time.monotonic() < deadline, f"the SuperLink did not listen within {START_TIMEOUT:g} s"
            time.sleep(0.2)
        assert subprocess.run([sys.executable, "-m", "fedprog", "deploy", "app", str(root / "app")],
                              capture_output=True, env=env).returncode == 0
        yield dep
    finally:
        for name in list(dep.procs):
            dep.stop(name)

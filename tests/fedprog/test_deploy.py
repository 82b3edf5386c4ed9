"""A real deployment on Flower's Deployment Engine, on loopback: one SuperLink and three
SuperNodes as separate processes (started with ``fedprog deploy``), each holding its site's
identity key, the study its operator approved and its floors, a run submitted with
``fedprog deploy run`` (``flwr run``) under that approved protocol, results compared with the
in-process run, and one SuperNode stopped in the middle of the run. Every process is stopped by
the test, by group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from federated.analyses.runner import kaplan_meier, train
from federated.demo_study import write_demo_study
from federated.disclosure.rules import SiteFloors
from federated.site.handler import Site
from federated.study import StudySpec
from tests.federated.protocol.flower_grid import approved_nodes
from tests.fedprog.serving import free_port

pytestmark = [pytest.mark.flower, pytest.mark.slow]

SITES = ("hospital-a", "hospital-b", "hospital-c")
#: a Cox model of 4 of the demo's inputs: 19 rounds instead of 23 (each Flower round costs ~5 s
#: here: the SuperNode polls every 3 s and starts a ClientApp process per message), which keeps
#: the whole run within a few minutes; the code path is the same as for any number of inputs
COVARIATES = ["tsize", "tgrade", "hormone_therapy", "postmenopausal"]
#: the study allows two sites (SRS-PRIV-001), and so do the sites' operators (their own floor)
FLOORS = SiteFloors(min_sites=2)
START_TIMEOUT = 60.0
#: seconds for the whole Cox + KM run: about 35 Flower rounds (the ladder of time grids adds the
#: refused prepares), 5–10 s each on a loaded two-core machine
RUN_TIMEOUT = 600


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Deployment:
    root: Path
    study: StudySpec
    superlink: str
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def fedprog(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """``python -m fedprog ARGS`` in its own process group (setsid), logging to ``<name>.log``."""
        with (self.root / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "fedprog", *args], stdout=log,
                                    stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
                                    cwd=self.root)
        self.procs[name] = proc
        return proc

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


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("flower")
    study = write_demo_study(root)
    # two sites explicitly allowed (SRS-PRIV-001), so a fit can go on when one of three drops out
    study = study.model_copy(update={"sites": [s for s in study.sites if s.name in SITES],
                                     "policy": study.policy.model_copy(update={"min_sites": 2}),
                                     "covariates": COVARIATES,
                                     "inputs": {k: v for k, v in study.inputs.items() if k in COVARIATES}})
    (root / "study.json").write_text(study.model_dump_json(exclude={"sites"}), encoding="utf-8")
    # each hospital's operator: an identity key, the study approved (its protocol file), floors
    _, _, configs = approved_nodes(study, root / "rules", FLOORS)
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
                        "--approved", configs[s.name]["approved"], "--floors", configs[s.name]["floors"])
        deadline = time.monotonic() + START_TIMEOUT
        while not listening(port):
            assert dep.procs["superlink"].poll() is None, dep.log("superlink")
            assert time.monotonic() < deadline, "the SuperLink did not listen within 60 s"
            time.sleep(0.2)
        assert subprocess.run([sys.executable, "-m", "fedprog", "deploy", "app", str(root / "app")],
                              capture_output=True, env=env).returncode == 0
        yield dep
    finally:
        for name in list(dep.procs):
            dep.stop(name)


def submit(dep: Deployment, out: Path, *args: str) -> subprocess.Popen[bytes]:
    return dep.fedprog(f"run-{out.name}", "deploy", "run", str(dep.root / "app"), "--superlink",
                       dep.superlink, "--insecure", "--study", str(dep.root / "study.json"), "--out",
                       str(out), "--sites", ",".join(SITES), "--protocol",
                       str(dep.root / "rules" / "protocol.json"), *args)


@pytest.mark.req("SRS-DEP-001", "SRS-DEP-003", "SRS-FED-010")
def test_cox_and_km_over_flower_equal_in_process_and_a_stopped_supernode_is_a_dropout(
        deployment: Deployment) -> None:
    dep = deployment
    out = dep.root / "out"
    run = submit(dep, out, "--jobs", "cox,km", "--round-timeout", "60", "--timeout", str(RUN_TIMEOUT))
    # the in-process runs, under the same floors, while the deployment works
    _, reference = train(dep.study, sites=[Site(s.name, s.path, floors=FLOORS) for s in dep.study.sites])
    two = [Site(s.name, s.path, floors=FLOORS) for s in dep.study.sites if s.name != "hospital-c"]
    expected = kaplan_meier(dep.study, sites=two).to_dict()
    # stop hospital-c's SuperNode as soon as the Cox fit is written, i.e. during the KM
    deadline = time.monotonic() + RUN_TIMEOUT
    while not (out / "cox.json").exists():
        assert run.poll() is None, dep.log(f"run-{out.name}")
        assert time.monotonic() < deadline, f"no Cox result within {RUN_TIMEOUT} s"
        time.sleep(0.1)
    dep.stop("hospital-c")
    assert run.wait(timeout=RUN_TIMEOUT) == 0, dep.log(f"run-{out.name}")

    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok"
    assert set(result["sites"]) == set(SITES)

    # Cox over all three sites: the same artifact, bit for bit, as the in-process fit
    flower = json.loads((out / "cox.json").read_text())
    assert flower["training"]["sites"] == list(SITES)
    names = [i["name"] for i in reference["inputs"]]
    np.testing.assert_allclose([flower["coefficients"][n] for n in names],
                               [reference["coefficients"][n] for n in names], rtol=0, atol=1e-12)
    np.testing.assert_allclose(flower["baseline_survival"]["survival"],
                               reference["baseline_survival"]["survival"], rtol=0, atol=1e-12)
    assert flower["sha256"] == reference["sha256"]

    # KM: hospital-c went offline mid-run, so it is dropped with its reason and the curve is
    # the in-process curve of the other two
    km = json.loads((out / "km.json").read_text())
    assert km["sites"] == ["hospital-a", "hospital-b"]
    (dropped,) = km["dropped"]
    assert dropped["site"] == "hospital-c"
    assert "Node Unavailable" in dropped["reason"] or "offline" in dropped["reason"], dropped
    for key in ("times", "survival", "ci_lower", "ci_upper", "at_risk", "events"):
        np.testing.assert_allclose(km[key], expected[key], rtol=0, atol=1e-12, err_msg=key)
    assert km["n"] == expected["n"] and km["secure_aggregation"] is True


@pytest.mark.req("SRS-DEP-003", "SYS-OPS-001")
def test_a_failed_run_ends_deploy_run_with_exit_1_and_the_servers_one_line_reason(
        deployment: Deployment) -> None:
    dep = deployment
    out = dep.root / "failed"
    run = dep.fedprog("run-failed", "deploy", "run", str(dep.root / "app"), "--superlink", dep.superlink,
                      "--insecure", "--study", str(dep.root / "study.json"), "--out", str(out),
                      "--protocol", str(dep.root / "rules" / "protocol.json"),
                      "--sites", ",".join([*SITES, "hospital-x"]), "--connect-timeout", "3",
                      "--timeout", "120")
    assert run.wait(timeout=150) == 1  # `flwr run` itself exits 0 here
    last = dep.log("run-failed").strip().splitlines()[-1]
    assert last.startswith("fedprog: error: run failed: DeploymentError: site(s) ")
    assert last.endswith("did not connect within 3 s")
    assert json.loads((out / "result.json").read_text())["status"] == "failed"

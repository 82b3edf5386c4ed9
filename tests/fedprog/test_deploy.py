"""A real deployment on Flower's Deployment Engine, on loopback: one SuperLink and three
SuperNodes as separate processes (started with ``fedprog deploy``), each holding its site's
identity key, the study its operator approved and its floors, a run submitted with
``fedprog deploy run`` (``flwr run``) under that approved protocol, results compared with the
in-process run, and one SuperNode stopped in the middle of the run. Every process is stopped by
the test, by group (:mod:`tests.fedprog.flower_deployment`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import numpy as np
import pytest

from federated.analyses.runner import kaplan_meier, train
from federated.demo_study import write_demo_study
from federated.disclosure.rules import SiteFloors
from federated.site.handler import Site
from tests.fedprog.flower_deployment import Deployment, deployed

pytestmark = [pytest.mark.flower, pytest.mark.slow]

SITES = ("hospital-a", "hospital-b", "hospital-c")
#: a Cox model of 4 of the demo's inputs: 19 rounds instead of 23 (each Flower round costs ~5 s
#: here: the SuperNode polls every 3 s and starts a ClientApp process per message), which keeps
#: the whole run within a few minutes; the code path is the same as for any number of inputs
COVARIATES = ["tsize", "tgrade", "hormone_therapy", "postmenopausal"]
#: the study allows two sites (SRS-PRIV-001), and so do the sites' operators (their own floor)
FLOORS = SiteFloors(min_sites=2)
#: seconds for the whole Cox + KM run: about 35 Flower rounds (the ladder of time grids adds the
#: refused prepares), 5–10 s each on a loaded two-core machine
RUN_TIMEOUT = 600


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("flower")
    study = write_demo_study(root)
    # two sites explicitly allowed (SRS-PRIV-001), so a fit can go on when one of three drops out
    study = study.model_copy(update={"sites": [s for s in study.sites if s.name in SITES],
                                     "policy": study.policy.model_copy(update={"min_sites": 2}),
                                     "covariates": COVARIATES,
                                     "inputs": {k: v for k, v in study.inputs.items() if k in COVARIATES}})
    with deployed(root, study, FLOORS) as dep:
        yield dep


@pytest.mark.req("SYS-DEP-001")
@pytest.mark.req("SYS-FED-001")
@pytest.mark.req("SYS-FED-002")
@pytest.mark.req("SRS-DEP-001", "SRS-DEP-003", "SRS-FED-010")
def test_cox_and_km_over_flower_equal_in_process_and_a_stopped_supernode_is_a_dropout(
        deployment: Deployment) -> None:
    dep = deployment
    out = dep.root / "out"
    run = dep.submit(out, "--jobs", "cox,km", "--round-timeout", "60", "--timeout", str(RUN_TIMEOUT))
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
                      "--probe-timeout", "60", "--timeout", "120")
    assert run.wait(timeout=150) == 1  # `flwr run` itself exits 0 here
    # the running nodes answered (each had 60 s); no node of hospital-x ever joined, nor of
    # hospital-c once the test above stopped it
    gone = ", ".join(s for s in (*SITES, "hospital-x")
                     if s not in dep.procs or dep.procs[s].poll() is not None)
    last = dep.log("run-failed").strip().splitlines()[-1]
    assert last == (f"fedprog: error: run failed: DeploymentError: site(s) {gone} did not connect within "
                    "3 s (no SuperNode of theirs joined the SuperLink: is it running, and pointed at this "
                    "SuperLink?)")
    assert json.loads((out / "result.json").read_text())["status"] == "failed"

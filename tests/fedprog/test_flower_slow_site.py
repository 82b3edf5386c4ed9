"""Flower under slow hospitals: discovery waits for a site as long as the run allows, and a site
that is missing is reported for what happened — never joined, or joined and did not answer.

The first tests drive :func:`~federated.protocol.flower_transport.discover` and the transport over
Flower's ``Grid`` contract in memory (the real ClientApp answering, :class:`DelayedGrid` holding its
answers back) on a simulated clock, so "25 s" takes no time. The last two start a real deployment
on loopback (:mod:`tests.fedprog.flower_deployment`) in which hospital-b's machine is slow: its
SuperNode runs fedprog's own ClientApp behind :mod:`tests.fedprog.slow_clientapp`, which holds back
its answer to the discovery probe by the seconds in that SuperNode's environment — longer than the
10 s the probe used to be capped at. Nothing in fedprog reads that variable.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from flwr.app import Message, RecordDict
from flwr.common.config import parse_config_args

from federated.demo_study import write_demo_study
from federated.disclosure.rules import SiteFloors
from federated.protocol import flower_transport
from federated.protocol.flower_transport import HELLO_TYPE, DeploymentError, FlowerTransport, discover
from fedprog.flower_app import RunSettings, client
from tests.federated.protocol.flower_grid import LoopbackGrid, approved_nodes
from tests.fedprog import slow_clientapp
from tests.fedprog.flower_deployment import Deployment, deployed
from tests.fedprog.test_cli import run as fedprog

SITES = ("hospital-a", "hospital-b", "hospital-c")
SLOW_HINT = "(a slow or loaded machine? raise --probe-timeout)"
Nodes = tuple[dict[int, dict[str, str]], "Clock"]


class Clock:
    """Simulated ``time`` for the transport: ``sleep`` moves ``monotonic`` on, at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class DelayedGrid(LoopbackGrid):
    """:class:`LoopbackGrid` on a :class:`Clock`: node ``n`` joins at ``joins[n]`` seconds (is away
    from ``away[n][0]`` to ``away[n][1]``) and its answer can be pulled ``delay[n]`` seconds after
    the message was pushed."""

    def __init__(self, nodes: Mapping[int, Mapping[str, Any]], clock: Clock, delay: Mapping[int, float],
                 joins: Mapping[int, float] | None = None,
                 away: Mapping[int, tuple[float, float]] | None = None) -> None:
        super().__init__(client, nodes)
        self.clock, self.delay = clock, dict(delay)
        self.joins, self.away = dict(joins or {}), dict(away or {})
        self.ready: dict[str, float] = {}

    def get_node_ids(self) -> list[int]:
        now = self.clock.now

        def here(n: int) -> bool:
            left, back = self.away.get(n, (0.0, 0.0))
            return self.joins.get(n, 0.0) <= now and not left <= now < back
        return sorted(n for n in self.online if here(n))

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        messages = list(messages)
        ids = super().push_messages(messages)
        for mid, msg in zip(ids, messages, strict=True):
            self.ready[mid] = self.clock.now + self.delay.get(msg.metadata.dst_node_id, 0.0)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        now = self.clock.now
        return super().pull_messages([m for m in message_ids if self.ready.get(m, math.inf) <= now])

    def hellos(self) -> list[int]:
        return [m.metadata.dst_node_id for m in self.pushed if m.metadata.message_type == HELLO_TYPE]


@pytest.fixture
def nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Nodes:
    """Node configs 1, 2, 3 of hospital-a, -b, -c (each operator approved the demo study), and the
    simulated clock the transport now runs on."""
    study = write_demo_study(tmp_path)
    study = study.model_copy(update={"sites": [s for s in study.sites if s.name in SITES]})
    _, _, configs = approved_nodes(study, tmp_path / "rules")
    clock = Clock()
    monkeypatch.setattr(flower_transport, "time", clock)
    return {i: configs[s] for i, s in enumerate(SITES, start=1)}, clock


@pytest.mark.req("SRS-DEP-006")
def test_a_site_that_answers_after_25_s_is_asked_once_and_waited_for(nodes: Nodes) -> None:
    configs, clock = nodes
    grid = DelayedGrid(configs, clock, delay={3: 25.0})
    found = discover(grid, list(SITES), timeout=120)
    assert {s: n.node_id for s, n in found.items()} == {"hospital-a": 1, "hospital-b": 2, "hospital-c": 3}
    assert 25.0 <= clock.now <= 26.0
    assert sorted(grid.hellos()) == [1, 2, 3]  # not asked again while its answer was on the way
    # a node that joins just before the connect timeout has the whole probe timeout to answer
    clock.now = 0.0
    late = DelayedGrid(configs, clock, delay={3: 25.0}, joins={3: 110.0})
    assert set(discover(late, list(SITES), timeout=120, probe_timeout=30)) == set(SITES)
    assert 135.0 <= clock.now <= 136.0
    # a node that leaves before answering is asked again when it is back
    clock.now = 0.0
    back = DelayedGrid(configs, clock, delay={3: 2.0}, away={3: (1.0, 3.0)})
    assert set(discover(back, list(SITES), timeout=120)) == set(SITES)
    assert sorted(back.hellos()) == [1, 2, 3, 3] and 5.0 <= clock.now <= 6.0


@pytest.mark.req("SRS-DEP-006")
def test_a_connected_node_that_does_not_answer_in_time_is_reported_so(nodes: Nodes) -> None:
    configs, clock = nodes
    with pytest.raises(DeploymentError) as err:
        discover(DelayedGrid(configs, clock, delay={3: 25.0}), list(SITES), timeout=120, probe_timeout=5)
    assert str(err.value) == ("site(s) hospital-c: 1 SuperNode(s) (node 3) connected, but gave no reply in "
                              f"5 s to the request for their site {SLOW_HINT}")
    assert 5.0 <= clock.now <= 6.0  # at the probe timeout, not the connect timeout
    # the probe timeout defaults to the connect timeout
    clock.now = 0.0
    with pytest.raises(DeploymentError, match=r"^site\(s\) hospital-c: .* no reply in 20 s to"):
        discover(DelayedGrid(configs, clock, delay={3: 25.0}), list(SITES), timeout=20)
    # one silent, one never joined: both said, and which is which is not guessed
    clock.now = 0.0
    with pytest.raises(DeploymentError) as err:
        discover(DelayedGrid({1: configs[1], 2: configs[2]}, clock, delay={2: 99.0}), list(SITES),
                 timeout=20, probe_timeout=5)
    assert str(err.value) == ("site(s) hospital-b, hospital-c: 1 SuperNode(s) (node 2) connected, but gave "
                              f"no reply in 5 s to the request for their site {SLOW_HINT}; 1 more did not "
                              "connect yet")


@pytest.mark.req("SRS-DEP-006", "SRS-DEP-003")
def test_a_site_that_never_joined_and_a_failed_client_app_are_told_apart(nodes: Nodes) -> None:
    configs, clock = nodes
    with pytest.raises(DeploymentError) as err:
        discover(DelayedGrid({1: configs[1], 2: configs[2]}, clock, delay={}), list(SITES), timeout=20)
    assert str(err.value) == ("site(s) hospital-c did not connect within 20 s (no SuperNode of theirs joined "
                              "the SuperLink: is it running, and pointed at this SuperLink?)")
    assert 20.0 <= clock.now <= 21.0
    clock.now = 0.0
    grid = DelayedGrid(configs, clock, delay={})
    grid.crash[3] = "ModuleNotFoundError: No module named 'fedprog'"
    with pytest.raises(DeploymentError) as err:
        discover(grid, list(SITES), timeout=20)
    assert str(err.value) == ("node 3: its ClientApp failed: Flower error 0: ModuleNotFoundError: No module "
                              "named 'fedprog'")
    assert clock.now < 1.0  # at once, not at the connect timeout


@pytest.mark.req("SRS-DEP-006")
def test_a_round_reply_that_does_not_come_in_time_is_a_slow_site_not_a_lost_one(nodes: Nodes) -> None:
    configs, clock = nodes
    grid = DelayedGrid(configs, clock, delay={3: 30.0})
    transport = FlowerTransport(grid, {s: i for i, s in enumerate(SITES, start=1)})
    replies = transport.round_trip(HELLO_TYPE, {s: RecordDict() for s in SITES}, timeout=5)
    assert set(replies) == {"hospital-a", "hospital-b"}
    assert transport.failures == {"hospital-c": "connected, but gave no reply in 5 s (a slow or loaded "
                                                "machine? raise --round-timeout)"}


@pytest.mark.req("SRS-DEP-006")
def test_every_wait_of_a_deployed_run_is_set_on_the_command_line(tmp_path: Path) -> None:
    def dry_run(*flags: str) -> Any:
        return fedprog("deploy", "run", tmp_path / "app", "--superlink", "127.0.0.1:9093", "--study",
                       tmp_path / "study.json", "--out", tmp_path / "out", "--insecure", "--dry-run", *flags)

    def config(*flags: str) -> RunSettings:
        res = dry_run(*flags)
        assert res.returncode == 0, res.stderr
        return RunSettings.of(parse_config_args([shlex.split(res.stderr.strip().splitlines()[-1])[-1]]))

    default = config()
    assert (default.connect_timeout, default.probe_timeout, default.round_timeout) == (120.0, None, None)
    given = config("--connect-timeout", "300", "--probe-timeout", "90", "--round-timeout", "45")
    assert (given.connect_timeout, given.probe_timeout, given.round_timeout) == (300.0, 90.0, 45.0)
    for flag in ("--connect-timeout", "--probe-timeout", "--round-timeout", "--timeout"):
        bad = dry_run(flag, "0")
        assert bad.returncode == 2
        assert bad.stderr.strip() == f"fedprog: error: {flag} 0: want a number of seconds above 0"


# ------------------------------------------------------------ a real deployment, one slow site
TWO = ("hospital-a", "hospital-b")
#: seconds hospital-b's ClientApp holds back its answer to the discovery probe: beyond the 10 s
#: the probe used to be capped at, whatever the connect timeout
DELAY = 15
#: a probe timeout hospital-a's answer fits in and hospital-b's does not: a node answers in
#: 5–9 s here (its SuperNode polls every 3 s, then starts a ClientApp process), hospital-b
#: DELAY seconds later
SHORT = 15


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Two hospitals on loopback, hospital-b slow to answer; a Kaplan–Meier study on a yearly time
    grid (three rounds), so a run costs seconds beyond its discovery. The App folder ``slow-app``
    names the ClientApp of :mod:`tests.fedprog.slow_clientapp`."""
    root = tmp_path_factory.mktemp("slow")
    study = write_demo_study(root)
    study = study.model_copy(update={"sites": [s for s in study.sites if s.name in TWO], "time_grid": "year",
                                     "policy": study.policy.model_copy(update={"min_sites": 2})})
    with deployed(root, study, SiteFloors(min_sites=2),
                  node_env={"hospital-b": {slow_clientapp.DELAY: str(DELAY)}}) as dep:
        app = root / "slow-app"
        shutil.copytree(root / "app", app)
        shutil.copy(slow_clientapp.__file__, app / "slow_clientapp.py")
        toml = (app / "pyproject.toml").read_text(encoding="utf-8")
        assert 'clientapp = "fedprog.flower_app:client"' in toml
        toml = toml.replace('"fedprog.flower_app:client"', '"slow_clientapp:client"')
        (app / "pyproject.toml").write_text(toml, encoding="utf-8")
        yield dep


@pytest.mark.req("SYS-DEP-001")
@pytest.mark.flower
@pytest.mark.slow
@pytest.mark.req("SRS-DEP-006", "SRS-DEP-001")
def test_a_site_slower_than_the_old_ten_second_probe_is_waited_for_and_the_run_succeeds(
        slow: Deployment) -> None:
    out = slow.root / "out"
    run = slow.submit(out, "--jobs", "km", "--connect-timeout", "60", "--timeout", "300",
                      app=slow.root / "slow-app")
    assert run.wait(timeout=330) == 0, slow.log("run-out")
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok" and set(result["sites"]) == set(TWO)
    km = json.loads((out / "km.json").read_text())
    assert km["sites"] == list(TWO) and km["dropped"] == []
    # the run's log says how long each node took to tell its site: hospital-b, beyond 10 s
    log = (slow.root / "run-out.log").read_text(errors="replace")
    took = {m[1]: float(m[2]) for m in re.finditer(r"serves (hospital-\w) \(answered in ([0-9.]+) s\)", log)}
    assert set(took) == set(TWO), log[-4000:]
    assert took["hospital-b"] >= DELAY > 10


@pytest.mark.req("SYS-FED-002")
@pytest.mark.flower
@pytest.mark.slow
@pytest.mark.req("SRS-DEP-006", "SRS-DEP-003")
def test_a_site_slower_than_the_probe_timeout_is_reported_connected_but_silent(slow: Deployment) -> None:
    out = slow.root / "short"
    run = slow.submit(out, "--jobs", "km", "--probe-timeout", str(SHORT), "--timeout", "120",
                      app=slow.root / "slow-app")
    assert run.wait(timeout=150) == 1, slow.log("run-short")
    last = slow.log("run-short").strip().splitlines()[-1]
    assert re.fullmatch(r"fedprog: error: run failed: DeploymentError: site\(s\) hospital-b: "
                        rf"1 SuperNode\(s\) \(node \d+\) connected, but gave no reply in {SHORT} s to the "
                        rf"request for their site {re.escape(SLOW_HINT)}", last), last
    assert json.loads((out / "result.json").read_text())["status"] == "failed"

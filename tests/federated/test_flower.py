"""The Flower transport and the one-message-per-process site, over Flower's Message API in
memory (:class:`tests.federated.flower_grid.LoopbackGrid`): every message is a real Flower
``Message``, answered by the real ClientApp with the node's ``Context`` kept between messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federated.coordinator import Coordinator
from federated.demo_study import write_demo_study
from federated.exceptions import SiteError
from federated.flower_site import STATE
from federated.flower_transport import (
    RECORD,
    DeploymentError,
    FlowerTransport,
    discover,
    pack,
    unpack,
)
from federated.messages import KeysRequest, decode_request, encode
from federated.runner import kaplan_meier, train
from federated.secagg import KeyPair
from federated.study import StudySpec
from fedprog.flower_app import client
from tests.federated.flower_grid import LoopbackGrid

SITES = ("hospital-a", "hospital-b", "hospital-c")


@pytest.fixture
def study(tmp_path: Path) -> StudySpec:
    spec = write_demo_study(tmp_path)
    return spec.model_copy(update={"sites": [s for s in spec.sites if s.name in SITES],
                                   "policy": spec.policy.model_copy(update={"min_sites": 2})})


def deployed(study: StudySpec) -> tuple[LoopbackGrid, FlowerTransport]:
    nodes = {100 + i: {"site": s.name, "data-path": str(s.path)} for i, s in enumerate(study.sites)}
    grid = LoopbackGrid(client, nodes)
    found = discover(grid, [s.name for s in study.sites], timeout=5)
    return grid, FlowerTransport(grid, {site: node.node_id for site, node in found.items()})


@pytest.mark.req("SRS-DEP-001")
def test_a_fedprog_message_travels_as_its_own_bytes() -> None:
    raw = encode(KeysRequest(session="s", round=0))
    content = pack(raw)
    assert content.config_records[RECORD]["payload"] == raw  # the JSON itself: no pickle, no re-encoding
    assert unpack(content) == raw
    assert decode_request(unpack(content)) == KeysRequest(session="s", round=0)


@pytest.mark.req("SRS-DEP-001", "SRS-DEP-002")
def test_cox_and_km_over_flower_messages_equal_the_in_process_run(study: StudySpec) -> None:
    grid, transport = deployed(study)
    fit, artifact = train(study, sites=transport)
    _, reference = train(study)
    assert artifact["sha256"] == reference["sha256"]
    assert fit.secure and fit.rounds == 19
    km = kaplan_meier(study, sites=transport).to_dict()
    expected = kaplan_meier(study).to_dict()
    for key in ("times", "survival", "ci_lower", "ci_upper"):
        np.testing.assert_allclose(km[key], expected[key], rtol=0, atol=1e-12)
    # every request reached its node as a Flower message of fedprog's own type
    assert {m.metadata.message_type for m in grid.pushed} == {"query.fedprog_site", "query.fedprog"}


@pytest.mark.req("SRS-DEP-002")
def test_a_node_keeps_only_the_public_requests_a_secret_and_the_table_hash(study: StudySpec) -> None:
    grid, transport = deployed(study)
    train(study, sites=transport)
    for node, context in grid.contexts.items():
        state = context.state.config_records[STATE]
        assert set(state) == {"secret", "sessions", "sent"} | {f"{kind}:{s}" for s in state["sessions"]
                                                               for kind in ("log", "data")}
        assert len(state["secret"]) == 32
        sent = {m.object_id: unpack(m.content) for m in grid.pushed if m.metadata.dst_node_id == node
                and m.metadata.message_type == "query.fedprog"}
        for session in state["sessions"]:
            # the log is exactly what the coordinator sent this node: nothing the site computed
            assert set(state[f"log:{session}"]) <= set(sent.values())
            assert all(decode_request(p).session == session for p in state[f"log:{session}"])


@pytest.mark.req("SRS-DEP-002")
def test_a_table_changed_during_a_fit_is_refused(study: StudySpec) -> None:
    grid, transport = deployed(study)
    path = study.sites[1].path
    calls = {"n": 0}
    real = transport.exchange

    def exchange(payloads: dict[str, bytes], timeout: float) -> dict[str, bytes]:
        calls["n"] += 1
        if calls["n"] == 4:  # after prepare and the grid: a hospital rewrites its table
            table = pd.read_csv(path)
            table.loc[0, "tsize"] += 1
            table.to_csv(path, index=False)
        return real(payloads, timeout)

    transport.exchange = exchange  # type: ignore[method-assign]
    with pytest.raises(SiteError, match="data changed during the fit") as err:
        train(study, sites=transport)
    assert err.value.site == "hospital-b"


@pytest.mark.req("SRS-DEP-003", "SRS-FED-009")
def test_an_offline_node_is_a_dropout_at_once_and_the_fit_goes_on(study: StudySpec) -> None:
    grid, transport = deployed(study)
    grid.online.discard(102)  # hospital-c's SuperNode stopped
    km = kaplan_meier(study, sites=transport)
    assert km.sites == ("hospital-a", "hospital-b")
    assert "went offline" in km.dropped["hospital-c"]
    two = study.model_copy(update={"sites": study.sites[:2]})
    np.testing.assert_allclose(km.overall.survival, kaplan_meier(two).overall.survival, rtol=0, atol=1e-12)


@pytest.mark.req("SRS-DEP-003", "SRS-FED-009")
def test_a_failed_client_app_is_a_dropout_with_a_one_line_reason(study: StudySpec) -> None:
    grid, transport = deployed(study)
    grid.crash[101] = "MemoryError: out of memory"
    coord = Coordinator(transport, session="s", timeout=5)
    raw = transport.exchange({s: encode(KeysRequest(session="s", round=0)) for s in transport.sites}, 5)
    assert set(raw) == {"hospital-a", "hospital-c"}
    assert transport.failures == {"hospital-b": "Flower error 0: MemoryError: out of memory"}
    assert coord.sites == list(SITES)


@pytest.mark.req("SRS-DEP-003")
def test_discovery_names_missing_duplicate_and_misconfigured_nodes(study: StudySpec) -> None:
    a, b = ({"site": s.name, "data-path": str(s.path)} for s in study.sites[:2])
    with pytest.raises(DeploymentError, match=r"site\(s\) hospital-c did not connect within 0.5 s"):
        discover(LoopbackGrid(client, {1: a, 2: b}), list(SITES), timeout=0.5)
    with pytest.raises(DeploymentError, match="two nodes .* serve site 'hospital-a'"):
        discover(LoopbackGrid(client, {1: a, 2: a}), list(SITES), timeout=0.5)
    with pytest.raises(DeploymentError, match="node 3: node config: .*data-path"):
        discover(LoopbackGrid(client, {1: a, 2: b, 3: {"site": "hospital-c"}}), list(SITES), timeout=0.5)
    with pytest.raises(DeploymentError, match="serves site 'elsewhere', which is not in the study"):
        discover(LoopbackGrid(client, {1: a, 2: b, 3: {**a, "site": "elsewhere"}}), list(SITES), timeout=0.5)


@pytest.mark.req("SRS-DEP-002", "SRS-SEC-001")
def test_round_keys_are_derived_per_session_and_round_from_the_site_secret() -> None:
    secret = bytes(range(32))
    key = KeyPair.derive(secret, session="s", round=3)
    assert key.public_bytes() == KeyPair.derive(secret, session="s", round=3).public_bytes()
    others = {KeyPair.derive(secret, session="s", round=4).public_bytes(),
              KeyPair.derive(secret, session="t", round=3).public_bytes(),
              KeyPair.derive(bytes(32), session="s", round=3).public_bytes()}
    assert key.public_bytes() not in others and len(others) == 3
    with pytest.raises(ValueError, match="≥ 32 bytes"):
        KeyPair.derive(b"short", session="s", round=0)

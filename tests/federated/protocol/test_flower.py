"""The Flower transport and the one-message-per-process site, over Flower's Message API in
memory (:class:`tests.federated.protocol.flower_grid.LoopbackGrid`): every message is a real Flower
``Message``, answered by the real ClientApp with the node's ``Context`` kept between messages.
Every node holds its own rules, as its operator set them in its node config: its identity key,
the study it approved (:func:`tests.federated.protocol.flower_grid.approved_nodes`) and its floors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federated.analyses.runner import kaplan_meier, train
from federated.demo_study import write_demo_study
from federated.disclosure.rules import SiteFloors, StudyProtocol, protocol_of
from federated.exceptions import SiteError
from federated.protocol.arrays import WireArray
from federated.protocol.coordinator import Coordinator
from federated.protocol.flower_transport import (
    RECORD,
    DeploymentError,
    FlowerTransport,
    discover,
    pack,
    unpack,
)
from federated.protocol.messages import (
    ErrorReply,
    EvaluateRequest,
    KeysReply,
    KeysRequest,
    PrepareRequest,
    RiskSetRequest,
    decode_reply,
    decode_request,
    encode,
)
from federated.protocol.secagg import KeyPair
from federated.site.flower import STATE
from federated.site.handler import Site
from federated.study import StudySpec
from fedprog.flower_app import client
from tests.federated.protocol.flower_grid import LoopbackGrid, approved_nodes
from validation.run import Options, evaluate_at

SITES = ("hospital-a", "hospital-b", "hospital-c")
#: the study allows two sites (SRS-PRIV-001), and so do the sites' operators (their own floor)
FLOORS = SiteFloors(min_sites=2)


@pytest.fixture
def study(tmp_path: Path) -> StudySpec:
    spec = write_demo_study(tmp_path)
    return spec.model_copy(update={"sites": [s for s in spec.sites if s.name in SITES],
                                   "policy": spec.policy.model_copy(update={"min_sites": 2})})


def deployed(study: StudySpec, folder: Path, **unapproved: str
             ) -> tuple[LoopbackGrid, FlowerTransport, StudyProtocol]:
    """One node per site, each with the study approved by its operator (except the sites named in
    ``unapproved``: their ``approved`` setting is replaced by the given path, ``""`` = none)."""
    protocol, _, configs = approved_nodes(study, folder, FLOORS)
    for site, path in unapproved.items():
        configs[site.replace("_", "-")].pop("approved")
        if path:
            configs[site.replace("_", "-")]["approved"] = path
    nodes = {100 + i: configs[s.name] for i, s in enumerate(study.sites)}
    grid = LoopbackGrid(client, nodes)
    found = discover(grid, [s.name for s in study.sites], timeout=5)
    return grid, FlowerTransport(grid, {site: node.node_id for site, node in found.items()}), protocol


def in_process(study: StudySpec) -> list[Site]:
    """The same sites in this process, under the same floors (the reference runs)."""
    return [Site(s.name, s.path, floors=FLOORS) for s in study.sites]


def fedprog_messages(grid: LoopbackGrid, node: int) -> list[tuple[bytes, bytes]]:
    """(request, reply) bytes of every fedprog message ``node`` answered, in order."""
    return [(unpack(m.content), unpack(grid.answers[m.object_id].content)) for m in grid.pushed
            if m.metadata.dst_node_id == node and m.metadata.message_type == "query.fedprog"
            and m.object_id in grid.answers]


@pytest.mark.req("SRS-DEP-001")
def test_a_fedprog_message_travels_as_its_own_bytes() -> None:
    raw = encode(KeysRequest(session="s", round=0, study="0" * 64))
    content = pack(raw)
    assert content.config_records[RECORD]["payload"] == raw  # the JSON itself: no pickle, no re-encoding
    assert unpack(content) == raw
    assert decode_request(unpack(content)) == KeysRequest(session="s", round=0, study="0" * 64)


@pytest.mark.req("SRS-DEP-001", "SRS-DEP-002")
def test_cox_and_km_over_flower_messages_equal_the_in_process_run(study: StudySpec, tmp_path: Path) -> None:
    grid, transport, protocol = deployed(study, tmp_path / "nodes")
    fit, artifact = train(study, sites=transport, protocol=protocol)
    reference_fit, reference = train(study, sites=in_process(study))
    assert artifact["sha256"] == reference["sha256"]
    assert fit.secure and fit.rounds == reference_fit.rounds
    assert fit.sites == reference_fit.sites == SITES
    km = kaplan_meier(study, sites=transport, protocol=protocol).to_dict()
    expected = kaplan_meier(study, sites=in_process(study)).to_dict()
    for key in ("times", "survival", "ci_lower", "ci_upper"):
        np.testing.assert_allclose(km[key], expected[key], rtol=0, atol=1e-12)
    # every request reached its node as a Flower message of fedprog's own type, naming the study
    # the node's operator approved
    assert {m.metadata.message_type for m in grid.pushed} == {"query.fedprog_site", "query.fedprog"}
    assert {decode_request(unpack(m.content)).study for m in grid.pushed
            if m.metadata.message_type == "query.fedprog"} == {protocol.sha256}


@pytest.mark.req("SRS-DEP-002")
def test_a_node_keeps_only_the_public_requests_a_secret_and_the_table_hash(study: StudySpec,
                                                                           tmp_path: Path) -> None:
    grid, transport, protocol = deployed(study, tmp_path / "nodes")
    train(study, sites=transport, protocol=protocol)
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


@pytest.mark.req("SRS-DEP-002", "SRS-SEC-001")
def test_a_repeat_in_a_later_process_gets_the_same_bytes_and_a_different_request_is_refused(
        study: StudySpec, tmp_path: Path) -> None:
    grid, transport, protocol = deployed(study, tmp_path / "nodes")
    train(study, sites=transport, protocol=protocol)
    node = 101
    site = "hospital-b"
    answered = fedprog_messages(grid, node)
    risk_sets = [(req, rep) for req, rep in answered if decode_request(req).kind == "risk-set"
                 and not isinstance(decode_reply(rep), ErrorReply)]
    assert len(risk_sets) >= 3
    state = grid.contexts[node].state.config_records[STATE]
    logged = [p for s in state["sessions"] for p in state[f"log:{s}"]]
    for request, reply in (risk_sets[0], risk_sets[len(risk_sets) // 2], answered[-1]):
        assert request in logged  # answered in an earlier ClientApp process, replayed since
        # the same request again, in a fresh ClientApp: the same bytes (keys derived from the
        # node's secret, signatures deterministic, masks bound to the request's digest)
        assert transport.only([site]).exchange({site: request}, 5) == {site: reply}
    # a different request under a round already answered is refused, whatever the process
    first = decode_request(risk_sets[0][0])
    assert isinstance(first, RiskSetRequest)
    other = first.model_copy(update={"beta": WireArray.from_numpy(first.beta.to_numpy() + 0.01)})
    refused = decode_reply(transport.only([site]).exchange({site: encode(other)}, 5)[site])
    assert isinstance(refused, ErrorReply) and refused.code == "replayed", refused
    # the node's log is unchanged: neither the repeat nor the refusal is replayed later
    assert [p for s in state["sessions"] for p in state[f"log:{s}"]] == logged


@pytest.mark.req("SRS-DEP-002")
def test_an_evaluation_repeated_in_a_later_process_gets_the_same_bytes(study: StudySpec,
                                                                       tmp_path: Path) -> None:
    grid, transport, protocol = deployed(study, tmp_path / "nodes")
    _, artifact = train(study, sites=transport, protocol=protocol)
    replies, dropped = evaluate_at(transport, artifact, study, None, Options(n_boot=5), [], session="v",
                                   protocol=protocol)
    assert set(replies) == set(SITES) and not dropped
    (request, reply), = [(q, r) for q, r in fedprog_messages(grid, 102)
                         if decode_request(q).kind == "evaluate"]
    assert isinstance(decode_request(request), EvaluateRequest)
    assert transport.only(["hospital-c"]).exchange({"hospital-c": request}, 5) == {"hospital-c": reply}


@pytest.mark.req("SRS-DEP-002")
def test_a_table_changed_during_a_fit_is_refused(study: StudySpec, tmp_path: Path) -> None:
    grid, transport, protocol = deployed(study, tmp_path / "nodes")
    path = study.sites[1].path
    real = transport.exchange

    def exchange(payloads: dict[str, bytes], timeout: float) -> dict[str, bytes]:
        kinds = {decode_request(p).kind for p in payloads.values()}
        if "risk-set" in kinds and not path.with_suffix(".changed").exists():
            # after prepare and the grid, a hospital rewrites its table
            table = pd.read_csv(path)
            table.loc[0, "tsize"] += 1
            table.to_csv(path, index=False)
            path.with_suffix(".changed").touch()
        return real(payloads, timeout)

    transport.exchange = exchange  # type: ignore[method-assign]
    with pytest.raises(SiteError, match="data changed during the fit") as err:
        train(study, sites=transport, protocol=protocol)
    assert err.value.site == "hospital-b"


@pytest.mark.req("SRS-DEP-003", "SRS-FED-009")
def test_an_offline_node_is_a_dropout_at_once_and_the_fit_goes_on(study: StudySpec, tmp_path: Path) -> None:
    grid, transport, protocol = deployed(study, tmp_path / "nodes")
    grid.online.discard(102)  # hospital-c's SuperNode stopped
    km = kaplan_meier(study, sites=transport, protocol=protocol)
    assert km.sites == ("hospital-a", "hospital-b")
    assert "went offline" in km.dropped["hospital-c"]
    two = study.model_copy(update={"sites": study.sites[:2]})
    np.testing.assert_allclose(km.overall.survival, kaplan_meier(two, sites=in_process(two)).overall.survival,
                               rtol=0, atol=1e-12)


@pytest.mark.req("SRS-DEP-003", "SRS-FED-009")
def test_a_failed_client_app_is_a_dropout_with_a_one_line_reason(study: StudySpec, tmp_path: Path) -> None:
    grid, transport, protocol = deployed(study, tmp_path / "nodes")
    grid.crash[101] = "MemoryError: out of memory"
    coord = Coordinator(transport, session="s", protocol=protocol, timeout=5)
    keys = {s: encode(KeysRequest(session="s", round=0, study=protocol.sha256)) for s in transport.sites}
    raw = transport.exchange(keys, 5)
    assert set(raw) == {"hospital-a", "hospital-c"}
    assert all(isinstance(decode_reply(r), KeysReply) for r in raw.values())
    assert transport.failures == {"hospital-b": "Flower error 0: MemoryError: out of memory"}
    assert coord.sites == list(SITES)


@pytest.mark.req("SRS-PRIV-010", "SRS-DEP-002")
def test_a_node_whose_operator_did_not_approve_the_study_refuses_it(study: StudySpec, tmp_path: Path) -> None:
    protocol = approved_nodes(study, tmp_path / "nodes", FLOORS)[0]
    # hospital-b approved nothing; hospital-c another study over the same sites and keys (its
    # folder of approved studies holds only that one)
    another = protocol_of(study.model_copy(update={"model_id": "another-study"}), protocol.peers)
    folder = tmp_path / "c-approved"
    folder.mkdir()
    (folder / f"{another.sha256}.json").write_text(another.model_dump_json(), encoding="utf-8")
    grid, transport, same = deployed(study, tmp_path / "nodes", hospital_b="", hospital_c=str(folder))
    assert same == protocol
    keys = KeysRequest(session="s", round=0, study=protocol.sha256)
    plain = PrepareRequest(session="t", round=0, study=protocol.sha256, cohort=study.cohort(), labels=[""])
    # hospital-a holds the study: it answers the keys and refuses the plaintext prepare by its rules
    for request, at_a in ((keys, "keys"), (plain, "plaintext")):
        raw = transport.exchange({s: encode(request) for s in transport.sites}, 5)
        assert set(raw) == set(SITES), request.kind
        a = decode_reply(raw["hospital-a"])
        assert (a.code if isinstance(a, ErrorReply) else a.kind) == at_a
        for site in ("hospital-b", "hospital-c"):
            reply = decode_reply(raw[site])
            assert isinstance(reply, ErrorReply) and reply.code == "not-approved", (site, reply)
            assert reply.message == "this site's operator has not approved the study"
    # a fit over Flower stops at the first refusal, naming the site
    with pytest.raises(SiteError, match="not approved the study") as err:
        train(study, sites=transport, protocol=protocol)
    assert err.value.site in ("hospital-b", "hospital-c")
    # a refusal is not replayed: the unapproved nodes keep no request
    for node in (101, 102):
        state = grid.contexts[node].state.config_records.get(STATE)
        assert state is None or not state["sessions"]


@pytest.mark.req("SRS-DEP-003")
def test_discovery_names_missing_duplicate_and_misconfigured_nodes(study: StudySpec, tmp_path: Path) -> None:
    _, _, configs = approved_nodes(study, tmp_path / "nodes")
    a, b, c = (configs[s] for s in SITES)
    with pytest.raises(DeploymentError, match=r"site\(s\) hospital-c did not connect within 0.5 s"):
        discover(LoopbackGrid(client, {1: a, 2: b}), list(SITES), timeout=0.5)
    with pytest.raises(DeploymentError, match="two nodes .* serve site 'hospital-a'"):
        discover(LoopbackGrid(client, {1: a, 2: a}), list(SITES), timeout=0.5)
    with pytest.raises(DeploymentError, match="node 3: node config: .*data-path"):
        discover(LoopbackGrid(client, {1: a, 2: b, 3: {"site": "hospital-c"}}), list(SITES), timeout=0.5)
    with pytest.raises(DeploymentError, match="serves site 'elsewhere', which is not in the study"):
        discover(LoopbackGrid(client, {1: a, 2: b, 3: {**a, "site": "elsewhere"}}), list(SITES), timeout=0.5)
    # a node whose identity key is not the one its approved study pins (its signed round keys
    # would not verify at its peers), or that has no identity key at all
    with pytest.raises(DeploymentError, match=r"node 3: node config: approved study 'gbsg2-recurrence' "
                       r"\([0-9a-f]{12}\) pins another identity key for site 'hospital-c'"):
        discover(LoopbackGrid(client, {1: a, 2: b, 3: {**c, "identity-key": a["identity-key"]}}),
                 list(SITES), timeout=0.5)
    no_key = {k: v for k, v in c.items() if k != "identity-key"}
    with pytest.raises(DeploymentError, match="node 3: .*pins an identity key, and the node has none"):
        discover(LoopbackGrid(client, {1: a, 2: b, 3: no_key}), list(SITES), timeout=0.5)
    with pytest.raises(DeploymentError, match="node 3: node config: approved .*nope.json: .*No such file"):
        discover(LoopbackGrid(client, {1: a, 2: b, 3: {**c, "approved": str(tmp_path / "nope.json")}}),
                 list(SITES), timeout=0.5)


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

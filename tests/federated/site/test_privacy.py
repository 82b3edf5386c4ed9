"""A site's differential-privacy accountant: over all studies, in its own folder, refusing beyond the
budget its operator set, surviving a restart, charging nothing for a request answered again.

Adversary: a malicious coordinator that asks again and again (new sessions, new studies, retries)
and counts on the site forgetting (a ClientApp lives for one message)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federated import CohortSpec, Coordinator, InProcessTransport, fit_km
from federated.disclosure.dp import KM_RELEASES, ORDERS, DPSettings, rdp_curve, rdp_to_dp, release_mu
from federated.disclosure.rules import SiteFloors, SiteIdentity, StudyProtocol
from federated.exceptions import SiteError
from federated.protocol import secagg
from federated.protocol.arrays import WireArray
from federated.protocol.messages import (
    CountsRequest,
    ErrorReply,
    KeysRequest,
    PrepareRequest,
    SecureRound,
    decode_reply,
    encode,
)
from federated.site.handler import Site, approve_in_process
from federated.site.privacy import PrivacyAccountant
from tests.conftest import PERMISSIVE, PERMISSIVE_FLOORS, split_frame

KM = CohortSpec(time="time", event="event", time_grid="year", max_time=1826.25)
DP = DPSettings(enabled=True, epsilon=1.0, delta=1e-6)


def _sites(parts: list[pd.DataFrame], folder: Path, floors: SiteFloors,
           identities: list[SiteIdentity]) -> list[Site]:
    """One site per part, each with its accountant in ``folder/<name>/privacy.json``."""
    return [Site(f"h{i}", part, floors=floors, identity=identity,
                 privacy=folder / f"h{i}" / "privacy.json")
            for i, (part, identity) in enumerate(zip(parts, identities, strict=True))]


def _study(name: str) -> StudyProtocol:
    return StudyProtocol(study_id=name, cohorts=(KM,), policy=PERMISSIVE, dp=DP)


def _fit(sites: list[Site], protocol: StudyProtocol, session: str) -> object:
    for s in sites:
        s.approve(protocol)
    return fit_km(Coordinator(InProcessTransport(sites), session=session, protocol=protocol), KM)


def _fits_allowed(budget: float, delta: float) -> int:
    """Whole fits the pure accounting allows within (budget, delta)."""
    total, k = np.zeros(len(ORDERS)), 0
    while True:
        for r in KM_RELEASES:
            total = total + rdp_curve(release_mu(DP, r.kind), r.l1, r.l2)
            if rdp_to_dp(total, delta) > budget:
                return k
        k += 1


@pytest.mark.req("SRS-PRIV-017")
def test_the_budget_is_refused_when_spent_and_survives_a_restart(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    parts = split_frame(gbsg2, 3, seed=0)
    floors = PERMISSIVE_FLOORS.model_copy(update={"dp_epsilon": 2.5, "dp_delta": 1e-5})
    identities = [SiteIdentity.generate() for _ in parts]
    sites = _sites(parts, tmp_path, floors, identities)
    protocol = approve_in_process(sites, _study("dp"))
    allowed = _fits_allowed(2.5, 1e-5)
    assert allowed == 6  # RDP composition: six fits at ε = 1 (δ = 1e-6) stay within ε = 2.5 at δ = 1e-5
    for i in range(allowed):
        _fit(sites, protocol, f"fit-{i}")
    with pytest.raises(SiteError) as info:
        _fit(sites, protocol, "one-too-many")
    assert info.value.code == "budget"
    for s in sites:
        record = json.loads((tmp_path / s.name / "privacy.json").read_text())
        kinds = [r["kind"] for r in record["releases"]]
        assert kinds[: 2 * allowed] == ["prepare", "counts"] * allowed and len(kinds) <= 2 * allowed + 1
        assert PrivacyAccountant(tmp_path / s.name / "privacy.json").spent(1e-5) <= 2.5
    spent = [s._privacy.spent(1e-5) for s in sites]
    # the same sites in new processes: the record is read back and the next fit is refused, under
    # another study as well (the budget covers every study that touches the site's data)
    again = _sites(parts, tmp_path, floors, identities)
    assert [s._privacy.spent(1e-5) for s in again] == spent
    other = approve_in_process(again, _study("another"))
    with pytest.raises(SiteError) as info:
        _fit(again, other, "after-restart")
    assert info.value.code == "budget"
    # a site whose operator raises the budget answers again
    richer = _sites(parts, tmp_path, floors.model_copy(update={"dp_epsilon": 50.0}), identities)
    assert _fit(richer, other, "richer").privacy["epsilon"] == 1.0  # type: ignore[attr-defined]


def _secure_round(sites: list[Site], protocol: StudyProtocol, session: str) -> tuple[bytes, bytes]:
    """Keys and prepare at every site; the encoded counts request for round 2 (and the prepare)."""
    study = protocol.sha256
    keys = {s.name: decode_reply(s.handle(encode(KeysRequest(session=session, round=0, study=study))))
            .next_key for s in sites}
    prepare = PrepareRequest(session=session, round=1, study=study, cohort=KM, labels=[""],
                             secure=SecureRound(peers=keys))  # type: ignore[arg-type]
    replies = {s.name: decode_reply(s.handle(encode(prepare))) for s in sites}
    assert not any(isinstance(r, ErrorReply) for r in replies.values()), replies
    peers = {n: r.next_key for n, r in replies.items()}
    counts = CountsRequest(session=session, round=2, study=study, labels=[""],
                           times=WireArray.from_numpy(np.arange(6) * 365.25),
                           secure=SecureRound(peers=peers))  # type: ignore[arg-type]
    return encode(prepare), encode(counts)


@pytest.mark.req("SRS-PRIV-017")
def test_a_request_answered_again_costs_nothing_and_a_replay_spends_nothing(gbsg2: pd.DataFrame,
                                                                          tmp_path: Path) -> None:
    parts = split_frame(gbsg2, 2, seed=0)
    secret = secrets.token_bytes(32)
    identities = [SiteIdentity.generate() for _ in parts]

    def keygen(i: int) -> Callable[[str, int], secagg.KeyPair]:
        own = secret + bytes([i])
        return lambda session, round_: secagg.KeyPair.derive(own, session=session, round=round_)

    def build() -> list[Site]:
        return [Site(f"h{i}", part, floors=PERMISSIVE_FLOORS, identity=identity, keygen=keygen(i),
                     privacy=tmp_path / f"h{i}.json")
                for i, (part, identity) in enumerate(zip(parts, identities, strict=True))]

    sites = build()
    protocol = approve_in_process(sites, _study("dp"))
    keys = encode(KeysRequest(session="r", round=0, study=protocol.sha256))
    prepare, counts = _secure_round(sites, protocol, "r")
    first = sites[0].handle(counts)
    assert not isinstance(decode_reply(first), ErrorReply)
    spent = (tmp_path / "h0.json").read_bytes()
    assert len(json.loads(spent)["releases"]) == 2
    assert sites[0].handle(counts) == first                  # the same bytes, the same noise
    assert (tmp_path / "h0.json").read_bytes() == spent      # and nothing spent
    # the site's process ends; a new one rebuilds its state from the requests: nothing is spent
    again = build()
    for s in again:
        s.approve(protocol)
    again[0].replay([keys, prepare, counts])
    assert (tmp_path / "h0.json").read_bytes() == spent
    refused = decode_reply(again[0].handle(counts))  # no bytes to resend, and its key has moved on
    assert isinstance(refused, ErrorReply) and refused.code == "peers"
    assert (tmp_path / "h0.json").read_bytes() == spent  # refused before anything is charged
    # a process that ended before it sent its counts reply: asked again, it answers with fresh
    # noise, charged again (it cannot resend bytes it no longer has)
    third = build()
    for s in third:
        s.approve(protocol)
    third[0].replay([keys, prepare])
    fresh = third[0].handle(counts)
    assert not isinstance(decode_reply(fresh), ErrorReply) and fresh != first
    assert len(json.loads((tmp_path / "h0.json").read_text())["releases"]) == 3
    again = third
    # a different request under the used round is still refused
    other = json.loads(counts)
    other["labels"] = ["x"]
    assert decode_reply(again[0].handle(json.dumps(other).encode())).code == "replayed"  # type: ignore[union-attr]


@pytest.mark.req("SRS-PRIV-017")
def test_a_bad_accountant_file_is_refused(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    bad = tmp_path / "privacy.json"
    for text in ("not json", '{"releases": [{"mu": -1, "l1": 1, "l2": 1}]}', "[]"):
        bad.write_text(text)
        with pytest.raises(ValueError, match="not a privacy accountant file"):
            Site("h0", gbsg2, privacy=bad)


@pytest.mark.req("SRS-PRIV-016")
def test_the_dp_settings_come_from_the_approved_study(gbsg2: pd.DataFrame) -> None:
    """DP settings are part of the protocol's hash; a request carrying its own is malformed, and a
    study with DP but without secure aggregation is not approvable."""
    base = StudyProtocol(study_id="dp", cohorts=(KM,), dp=DP)
    assert base.sha256 != base.model_copy(update={"dp": DP.model_copy(update={"epsilon": 50.0})}).sha256
    assert StudyProtocol(study_id="dp", cohorts=(KM,), dp=DPSettings()).dp is None  # disabled = none
    with pytest.raises(ValueError, match="needs secure aggregation"):
        StudyProtocol(study_id="dp", cohorts=(KM,), dp=DP, secure=False)
    with pytest.raises(ValueError, match="dp_blocks .* was removed"):
        StudyProtocol.model_validate({"study_id": "old", "cohorts": [KM.model_dump()], "dp_blocks": [10, 0]})
    sites = [Site("h0", gbsg2.iloc[:300]), Site("h1", gbsg2.iloc[300:])]
    protocol = approve_in_process(sites, base)
    raw = json.loads(encode(CountsRequest(session="s", round=1, study=protocol.sha256, labels=[""],
                                          times=WireArray.from_numpy(np.arange(3.0)))))
    raw["dp"] = {"enabled": True, "epsilon": 1e9}
    assert decode_reply(sites[0].handle(json.dumps(raw).encode())).code == "bad-request"  # type: ignore[union-attr]


@pytest.mark.req("SRS-PRIV-019")
def test_a_private_study_refuses_cox_rounds_evaluations_and_double_labels(gbsg2: pd.DataFrame) -> None:
    cox = KM.model_copy(update={"covariates": ("age",)})
    sites = [Site("h0", gbsg2.iloc[:300], floors=PERMISSIVE_FLOORS), Site("h1", gbsg2.iloc[300:])]
    protocol = approve_in_process(sites, StudyProtocol(study_id="dp", cohorts=(KM, cox), dp=DP))
    study = protocol.sha256
    keys = {s.name: decode_reply(s.handle(encode(KeysRequest(session="c", round=0, study=study)))).next_key
            for s in sites}
    secure = SecureRound(peers=keys)  # type: ignore[arg-type]
    reply = decode_reply(sites[0].handle(encode(PrepareRequest(session="c", round=1, study=study, cohort=cox,
                                                               labels=[""], secure=secure))))
    assert isinstance(reply, ErrorReply) and reply.code == "not-approved"
    assert "not available for exact Cox rounds" in reply.message
    for bad in ({"labels": None}, {"cohort": KM.model_copy(update={"time_grid": "exact"}), "labels": [""]}):
        fields = {"cohort": KM, **bad}
        reply = decode_reply(sites[0].handle(encode(PrepareRequest(session="c", round=2, study=study,
                                                                   secure=secure, **fields))))  # type: ignore[arg-type]
        assert isinstance(reply, ErrorReply) and reply.code == "not-approved"
    twice = CountsRequest(session="c", round=3, study=study, labels=["", ""],
                          times=WireArray.from_numpy(np.arange(3.0)), secure=secure)
    reply = decode_reply(sites[0].handle(encode(twice)))
    assert isinstance(reply, ErrorReply) and reply.code == "not-approved" and "twice" in reply.message

"""A malicious coordinator tries each attack of issue 14 on real sites, over the wire.

Each case is a coordinator that writes its own requests (as an attacker controlling the
coordinating centre would) and decodes what comes back. The expected outcome is "refused" or
"only sums over at least k patients"; the assertions are on what the attacker decodes.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest

from federated.disclosure.rules import SiteFloors, SiteIdentity, StudyProtocol
from federated.protocol import secagg
from federated.protocol.arrays import WireArray
from federated.protocol.messages import (
    ConsentGate,
    ErrorReply,
    EvaluateRequest,
    EvaluationModel,
    GridRequest,
    KeysRequest,
    PrepareRequest,
    RiskSetRequest,
    SecureRound,
    SignedKey,
    decode_reply,
    encode,
)
from federated.site.evaluation import public_km_times
from federated.site.handler import Site, approve_in_process
from federated.study import CohortSpec
from prognosis import CoxModel
from tests.conftest import split_frame
from tests.privacy.wire import Wire

COHORT = CohortSpec(time="time", event="event", covariates=("age", "tsize", "pnodes"),
                    ranges={"age": (20.0, 80.0), "tsize": (3.0, 120.0), "pnodes": (1.0, 51.0)},
                    max_time=1826.25)
K = 5
w = WireArray.from_numpy


@pytest.fixture
def sites(gbsg2: pd.DataFrame) -> list[Site]:
    return [Site(f"h{i}", part) for i, part in enumerate(split_frame(gbsg2, 3, seed=1))]


@pytest.fixture
def protocol(sites: list[Site]) -> StudyProtocol:
    return approve_in_process(sites, StudyProtocol(study_id="gbsg2", cohorts=(COHORT,)))


def refused(reply: object, code: str) -> None:
    assert isinstance(reply, ErrorReply), f"the site answered: {reply!r}"
    assert reply.code == code, reply.message


@pytest.mark.req("SRS-PRIV-010", "RC-PRIV-003")
def test_a_study_the_operator_did_not_approve_gets_nothing(sites: list[Site],
                                                            protocol: StudyProtocol) -> None:
    other = StudyProtocol(study_id="not-approved", cohorts=(COHORT,), peers=protocol.peers)
    bad = Wire(sites, other)
    refused(bad.ask("h0", KeysRequest(session="s", round=0, study=other.sha256)), "not-approved")


@pytest.mark.req("SRS-PRIV-010", "RC-PRIV-003")
def test_a_lowered_policy_in_the_request_is_not_even_read(sites: list[Site], protocol: StudyProtocol) -> None:
    raw = json.loads(encode(PrepareRequest(session="s", round=1, study=protocol.sha256, cohort=COHORT)))
    raw["policy"] = {"min_cell_count": 1, "min_patients_per_site": 0}
    reply = decode_reply(sites[0].handle(json.dumps(raw).encode()))
    refused(reply, "bad-request")
    assert "policy" in reply.message  # type: ignore[attr-defined]


@pytest.mark.req("SRS-PRIV-010", "RC-PRIV-003")
def test_one_patient_blocks_and_finer_grids_are_refused(sites: list[Site], protocol: StudyProtocol) -> None:
    att = Wire(sites, protocol)
    peers = att.keys("blocks")
    secure = SecureRound(peers=peers)
    for cohort in (COHORT.model_copy(update={"block": (0, 200, 1)}),      # one-patient blocks
                   COHORT.model_copy(update={"covariates": ("age",)}),     # another subset
                   COHORT.model_copy(update={"max_time": 5000.0})):        # another threshold
        refused(att.ask("h0", PrepareRequest(session="blocks", round=1, study=att.study, cohort=cohort,
                                             secure=secure)), "not-approved")
    coarse = StudyProtocol(study_id="monthly", cohorts=(COHORT.model_copy(update={"time_grid": "month"}),))
    coarse = approve_in_process(sites, coarse)
    att = Wire(sites, coarse)
    peers = att.keys("fine")
    refused(att.ask("h0", PrepareRequest(session="fine", round=1, study=att.study, cohort=COHORT,
                                         secure=SecureRound(peers=peers))), "not-approved")


@pytest.mark.req("SRS-SEC-004", "RC-PRIV-003")
def test_plaintext_is_refused_in_a_secure_study(sites: list[Site], protocol: StudyProtocol) -> None:
    att = Wire(sites, protocol)
    refused(att.ask("h0", PrepareRequest(session="p", round=0, study=att.study,
                                         cohort=COHORT.model_copy(update={"time_grid": "year"}))),
            "plaintext")


@pytest.mark.req("SRS-SEC-004", "RC-PRIV-003")
def test_a_peer_set_of_one_and_substituted_keys_unmask_nothing(sites: list[Site],
                                                                protocol: StudyProtocol) -> None:
    att = Wire(sites, protocol)
    year = COHORT.model_copy(update={"time_grid": "year"})
    peers = att.keys("peers")
    alone = {"h0": peers["h0"]}
    refused(att.ask("h0", PrepareRequest(session="peers", round=1, study=att.study, cohort=year,
                                         secure=SecureRound(peers=alone))), "peers")
    # the coordinator's own X25519 keys for h1 and h2, signed with an identity the study does not pin
    fake = SiteIdentity.generate()
    mine = {name: secagg.KeyPair.generate() for name in ("h1", "h2")}
    forged = dict(peers)
    for name, pair in mine.items():
        key = pair.public_bytes()
        forged[name] = SignedKey(key=base64.b64encode(key).decode(),
                                 signature=fake.sign_round_key(att.study, "peers", 1, key))
    refused(att.ask("h0", PrepareRequest(session="peers", round=1, study=att.study, cohort=year,
                                         secure=SecureRound(peers=forged))), "peers")
    # a peer the study does not list at all
    stranger = dict(peers) | {"h9": peers["h1"]}
    refused(att.ask("h0", PrepareRequest(session="peers", round=1, study=att.study, cohort=year,
                                         secure=SecureRound(peers=stranger))), "peers")


@pytest.mark.req("SRS-SEC-004", "RC-PRIV-003")
def test_a_reused_round_is_refused_and_a_repeat_gets_the_same_bytes(sites: list[Site],
                                                                     protocol: StudyProtocol) -> None:
    att = Wire(sites, protocol)
    year = COHORT.model_copy(update={"time_grid": "year"})
    peers = att.keys("reuse")
    request = PrepareRequest(session="reuse", round=1, study=att.study, cohort=year,
                             secure=SecureRound(peers=peers))
    first = sites[0].handle(encode(request))
    assert not isinstance(decode_reply(first), ErrorReply)
    assert sites[0].handle(encode(request)) == first
    other = request.model_copy(update={"labels": [""]})
    refused(att.ask("h0", other), "replayed")


@pytest.mark.req("SRS-SEC-004", "RC-PRIV-003")
def test_masks_are_bound_to_the_request(sites: list[Site], protocol: StudyProtocol) -> None:
    """Two different requests answered under one round number with the same keys (a site that
    forgot its history) differ by more than the statistics: the masks differ."""
    year = COHORT.model_copy(update={"time_grid": "year"})
    keys = {s.name: secagg.KeyPair.generate() for s in sites}
    publics = {n: k.public_bytes() for n, k in keys.items()}
    values = secagg.encode(np.arange(4.0))
    a = secagg.mask(values, keys["h0"], publics, me="h0", session="s", round=1, context=b"study|digest-a")
    b = secagg.mask(values, keys["h0"], publics, me="h0", session="s", round=1, context=b"study|digest-b")
    with pytest.raises(secagg.SecAggOverflow):
        secagg.decode(secagg.ring_sub(a, b))
    assert year.time_grid == "year"


@pytest.mark.req("SRS-PRIV-011", "RC-PRIV-003")
def test_single_patient_cells_are_refused_at_the_source(sites: list[Site], protocol: StudyProtocol) -> None:
    """On the day grid the auditor decoded single women's covariates from tie sums: the sites refuse
    the day grid outright, so nothing is decoded."""
    att = Wire(sites, protocol)
    peers = att.keys("day")
    for name in att.sites:
        refused(att.ask(name, PrepareRequest(session="day", round=1, study=att.study, cohort=COHORT,
                                             secure=SecureRound(peers=peers))), "cells")


@pytest.mark.req("SRS-PRIV-014", "RC-PRIV-003")
def test_extreme_coefficients_and_long_question_series_are_refused(sites: list[Site],
                                                                    protocol: StudyProtocol) -> None:
    tight = approve_in_process(sites, StudyProtocol(study_id="budget", cohorts=(COHORT,), max_rounds=6))
    att = Wire(sites, tight)
    year = COHORT.model_copy(update={"time_grid": "year"})
    peers = att.keys("beta")
    prep = {n: att.ask(n, PrepareRequest(session="beta", round=1, study=att.study, cohort=year,
                                         secure=SecureRound(peers=peers))) for n in att.sites}
    assert not any(isinstance(r, ErrorReply) for r in prep.values())
    peers = {n: r.next_key for n, r in prep.items()}  # type: ignore[attr-defined]
    grid = [w(np.arange(1.0, 6.0) * 365.25)]
    center = w(np.array([50.0, 30.0, 5.0]))
    reply = {n: att.ask(n, GridRequest(session="beta", round=2, study=att.study, labels=[""], times=grid,
                                       center=center, secure=SecureRound(peers=peers)))
             for n in att.sites}
    peers = {n: r.next_key for n, r in reply.items()}  # type: ignore[attr-defined]
    # |β·(x − c)| up to 0.9 · 46 = 41 on the declared nodes range: one woman would dominate
    extreme = RiskSetRequest(session="beta", round=3, study=att.study, beta=w(np.array([0.0, 0.0, 0.9])),
                             efron=True, secure=SecureRound(peers=peers))
    refused(att.ask("h0", extreme), "bound")
    # the budget of rounds (6 here) runs out, whatever the questions
    for round_ in range(4, 8):
        last = att.ask("h0", RiskSetRequest(session="beta", round=round_, study=att.study,
                                            beta=w(np.array([0.0, 0.0, 0.001 * round_])), efron=True,
                                            secure=SecureRound(peers=peers)))
    refused(last, "budget")


@pytest.mark.req("SRS-PRIV-013", "RC-PRIV-003")
def test_errors_carry_no_counts_in_a_secure_study(gbsg2: pd.DataFrame) -> None:
    part = gbsg2.iloc[:150].copy()
    part.loc[part.index[:3], "age"] = np.nan
    site = Site("h0", part)
    proto = approve_in_process([site, Site("h1", gbsg2.iloc[150:300])],
                               StudyProtocol(study_id="x", cohorts=(COHORT,)))
    att = Wire([site], proto)
    peers = {"h0": att.keys("e")["h0"]}
    reply = att.ask("h0", PrepareRequest(session="e", round=1, study=att.study,
                                         cohort=COHORT.model_copy(update={"time_grid": "year"}),
                                         secure=SecureRound(peers=peers)))
    assert isinstance(reply, ErrorReply)
    assert not any(ch.isdigit() for ch in reply.message.replace("'age'", "")), reply.message


@pytest.mark.req("SRS-PRIV-010", "RC-PRIV-003")
def test_fine_kaplan_meier_times_and_unapproved_horizons_are_refused(gbsg2: pd.DataFrame) -> None:
    monthly = COHORT.model_copy(update={"time_grid": "month"})
    sites = [Site(f"h{i}", part) for i, part in enumerate(split_frame(gbsg2, 3, seed=1))]
    proto = approve_in_process(sites, StudyProtocol(study_id="eval", cohorts=(monthly,), horizons=(1095.75,)))
    cox = CoxModel.from_arrays(monthly.covariates, [0.0, 0.0, 0.05], [50.0, 30.0, 5.0],
                               [365.25, 1095.75, 1826.25], [0.9, 0.7, 0.6], [1095.75])
    model = EvaluationModel(artifact=cox.to_artifact(), horizons=w(np.array([1095.75])))
    base = dict(session="ev", round=0, study=proto.sha256, cohort=monthly, model=model, n_boot=0, seed=1,
                ibs_times=w(np.array([365.25, 730.5])))
    daily = EvaluateRequest(**base, km_times=w(np.arange(0.0, 200.0)))  # type: ignore[arg-type]
    refused(Wire(sites, proto).ask("h0", daily), "not-approved")
    fixed = public_km_times(monthly, (1095.75,))  # the study's public times, the only ones answered
    ok = EvaluateRequest(**base, km_times=w(fixed))  # type: ignore[arg-type]
    assert not isinstance(Wire(sites, proto).ask("h0", ok), ErrorReply)
    other = model.model_copy(update={"horizons": w(np.array([1000.0]))})
    unapproved = ok.model_copy(update={"model": other, "round": 1})
    refused(Wire(sites, proto).ask("h0", unapproved), "not-approved")


@pytest.mark.req("SRS-PRIV-010")
def test_floors_are_raised_by_the_study_never_lowered(gbsg2: pd.DataFrame) -> None:
    from federated.disclosure.policy import DisclosurePolicy
    from federated.disclosure.rules import effective_policy

    proto = StudyProtocol(study_id="x", cohorts=(COHORT,), policy=DisclosurePolicy(min_cell_count=1,
                                                                                   min_patients_per_site=50))
    rules = effective_policy(proto, SiteFloors())
    assert rules.min_cell_count == 5 and rules.min_patients_per_site == 50


@pytest.mark.req("SRS-PRIV-012", "RC-PRIV-003")
def test_only_the_newest_witnessed_checkpoint_is_accepted(gbsg2: pd.DataFrame) -> None:
    class Registry:
        """The site-held consent interface, with a ledger of three checkpoints (sizes 10, 11, 12)."""

        def ledger_root(self, size: int) -> bytes:
            return bytes([size]) * 32

        def newest_checkpoint(self) -> int:
            return 12

        def active_patients(self, as_of: int) -> set[str]:
            return {f"p{i}" for i in range(as_of * 20)}

        def record_usage(self, job: str, patients: object) -> None:
            pass

    df = gbsg2.iloc[:200].assign(patient_id=[f"p{i}" for i in range(200)])
    site = Site("h0", df, consent=Registry())
    proto = approve_in_process([site, Site("h1", gbsg2)], StudyProtocol(study_id="c", cohorts=(COHORT,)))
    att = Wire([site], proto)
    for size in (10, 11):  # stale, or stepped one entry at a time
        gate = ConsentGate(size=size, root=(bytes([size]) * 32).hex(), job="j")
        reply = att.ask("h0", PrepareRequest(session=f"c{size}", round=1, study=att.study, consent=gate,
                                             cohort=COHORT.model_copy(update={"time_grid": "year"}),
                                             secure=SecureRound(peers={"h0": att.keys(f"c{size}")["h0"]})))
        refused(reply, "consent")


@pytest.mark.req("SRS-PRIV-015")
def test_the_audit_checks_masks_on_the_bytes_not_the_flag(gbsg2: pd.DataFrame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A reply that claims r128 (masked) but carries a bare fixed-point encoding fails the audit."""
    from federated.disclosure.audit import audit_transcripts, unmasked_fields

    masked = secagg.mask(secagg.encode(np.arange(8.0)), secagg.KeyPair.generate(),
                         {"b": secagg.KeyPair.generate().public_bytes()}, me="a", session="s", round=1)
    bare = secagg.encode(np.arange(8.0))  # flagged r128, masks never added
    honest = {"kind": "grid", "events": json.loads(WireArray.from_ring(masked).model_dump_json())}
    liar = {"kind": "grid", "events": json.loads(WireArray.from_ring(bare).model_dump_json())}
    assert unmasked_fields(honest) == [] and unmasked_fields(liar) == ["events"]
    for name, msg in (("a", honest), ("b", liar)):
        line = {"round": 1, "kind": "grid", "bytes": 10, "shapes": {"events": [8]}, "sha256": "0" * 64,
                "masked": True, "plaintext": [], "message": msg}
        (tmp_path / f"{name}.jsonl").write_text(json.dumps(line) + "\n")
    report = audit_transcripts(tmp_path)
    assert not report.ok and any("'b'" in p and "not masked" in p for p in report.problems)
    assert not any("'a'" in p and "not masked" in p for p in report.problems)

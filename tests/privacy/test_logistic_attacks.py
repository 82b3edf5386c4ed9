"""A malicious coordinator against a logistic study: it asks for logistic sums outside a binary
session, Cox rounds on the binary cohort, another outcome column, or extreme coefficients that would
make the few patients near one value carry the sums. Assertions are on what it gets back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federated.disclosure.rules import SiteFloors, SiteIdentity, StudyProtocol, protocol_of
from federated.protocol.arrays import WireArray
from federated.protocol.messages import ErrorReply, GridRequest, LogisticRequest, PrepareRequest
from federated.site.handler import Site, approve_in_process
from federated.study import InputSpec, StudySpec
from tests.conftest import split_frame
from tests.privacy.wire import Wire, refused, three_sites

LOGISTIC_ROUNDS = SiteFloors().max_logistic_rounds  # the default floor

STUDY = StudySpec(model="logistic", event="tgrade", covariates=["age", "pnodes"], horizons=[1826.25],
                  inputs={"age": InputSpec(min=20, max=80, reference=55), "pnodes": InputSpec(min=1, max=51)})
COHORT = STUDY.cohort()
w = WireArray.from_numpy


@pytest.fixture
def sites(gbsg2: pd.DataFrame) -> list[Site]:
    return three_sites(gbsg2)


@pytest.fixture
def protocol(sites: list[Site]) -> StudyProtocol:
    return approve_in_process(sites, protocol_of(STUDY, {}))




@pytest.mark.req("SRS-MOD-018", "RC-PRIV-003")
def test_logistic_sums_only_in_a_binary_session_on_the_approved_outcome(sites: list[Site],
                                                                        protocol: StudyProtocol) -> None:
    att = Wire(sites, protocol)
    peers = att.keys("s")
    beta = w(np.zeros(3))
    # no binary session opened: nothing (and nothing in plaintext in a secure study)
    refused(att.ask("h0", LogisticRequest(session="none", round=1, study=att.study, beta=beta)), "plaintext")
    refused(att.ask("h0", LogisticRequest(session="none", round=1, study=att.study, beta=beta,
                                          secure={"peers": peers})), "bad-request")
    # another outcome column, or a survival cohort, is not the approved study
    for other in (COHORT.model_copy(update={"event": "hormone_therapy"}),
                  COHORT.model_copy(update={"time": "time", "event": "event"})):
        reply = att.ask("h0", PrepareRequest(session="s", round=1, study=att.study, cohort=other,
                                             secure={"peers": peers}))
        refused(reply, "not-approved")


@pytest.mark.req("SRS-MOD-018", "RC-PRIV-003")
def test_cox_rounds_on_the_binary_cohort_and_extreme_coefficients_are_refused(sites: list[Site],
                                                                             protocol: StudyProtocol) -> None:
    att = Wire(sites, protocol)
    names = list(att.sites)
    prep, peers = att.round(lambda secure: PrepareRequest(session="b", round=1, study=att.study,
                                                          cohort=COHORT,
                                                          labels=[""], secure=secure), names, att.keys("b"))
    assert all(r.event_histogram is None and r.event_times is None for r in prep.values())  # no times
    sound, peers = att.round(lambda secure: LogisticRequest(session="b", round=2, study=att.study,
                                                            beta=w(np.array([-1.0, 0.01,
                                                                             0.05])), secure=secure),
                             names, peers)
    info = Wire.total(sound, "information")
    assert info.shape == (3, 3) and np.all(np.isfinite(info))  # a sum over every woman
    # a slope of 1 per node moves the log-odds by 50 over the declared 1–51 nodes: refused
    for name in names:
        refused(att.ask(name, LogisticRequest(session="b", round=3, study=att.study,
                                              beta=w(np.array([0.0, 0.0, 1.0])), secure={"peers": peers})),
                "bound")
    grid = GridRequest(session="b", round=3, study=att.study, labels=[""], times=[w(np.array([365.25]))],
                       center=w(np.array([55.0, 3.0])), secure={"peers": peers})
    refused(att.ask("h1", grid), "not-approved")


@pytest.mark.req("SRS-MOD-018", "RC-PRIV-003")
def test_a_zero_one_input_held_by_one_patient_is_refused_in_a_logistic_study(gbsg2: pd.DataFrame) -> None:
    """Adversary: an honest-but-curious coordinator. In a logistic study the information at β = 0 counts
    a 0/1 input's holders (I[0, flag] = Σ π(1 − π) flag) and the score gives their outcomes: with one
    woman flagged, her age, nodes and outcome. Her hospital refuses the study's binary cohort."""
    table = gbsg2.assign(flag=0)
    table.loc[3, "flag"] = 1
    sites = three_sites(table)
    study = STUDY.model_copy(update={"covariates": ["age", "pnodes", "flag"]})
    att = Wire(sites, approve_in_process(sites, protocol_of(study, {})))
    peers = att.keys("flag")
    replies = {n: att.ask(n, PrepareRequest(session="flag", round=1, study=att.study, cohort=study.cohort(),
                                            labels=[""], secure={"peers": peers})) for n in att.sites}
    holder = [n for n, r in replies.items() if isinstance(r, ErrorReply)]
    assert len(holder) == 1 and "'flag'" in refused(replies[holder[0]], "cells").message


@pytest.mark.req("SRS-MOD-018", "RC-PRIV-003")
def test_a_coordinator_probing_with_many_coefficient_vectors_runs_out_of_rounds(
        sites: list[Site], protocol: StudyProtocol) -> None:
    """Adversary: a malicious coordinator moving the peak of π(1 − π) across the ages with dozens of
    bounded coefficient vectors, to solve the sums for the women of each age (about 60 probes): after
    the study's budget of logistic rounds (a few fits' worth) every site refuses."""
    att = Wire(sites, protocol)
    names = list(att.sites)
    _, peers = att.round(lambda secure: PrepareRequest(session="p", round=1, study=att.study, cohort=COHORT,
                                                       labels=[""], secure=secure), names, att.keys("p"))
    answered = 0
    for r in range(2, 80):
        shift = -0.45 * (20 + r % 60)  # the peak of π(1 − π) at age 20 + r % 60
        replies = {n: att.ask(n, LogisticRequest(session="p", round=r, study=att.study,
                                                 beta=w(np.array([shift, 0.45,
                                                                  0.0])), secure={"peers": peers}))
                   for n in names}
        if any(isinstance(x, ErrorReply) for x in replies.values()):
            for reply in replies.values():
                refused(reply, "budget")
            break
        answered, peers = answered + 1, {n: x.next_key for n, x in replies.items()}
    assert answered == LOGISTIC_ROUNDS  # then nothing more


@pytest.mark.req("SRS-MOD-018", "RC-PRIV-003")
def test_the_logistic_budget_survives_a_restart_of_the_site(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    """Adversary: a malicious coordinator that counts on the site forgetting (a Flower ClientApp lives for
    one message): the logistic rounds are counted in the site's budget file, so a new process over the
    same file refuses once the study's budget is spent."""
    parts = split_frame(gbsg2, 3, seed=1)
    keys = [SiteIdentity.generate() for _ in parts]  # each hospital's own, across its processes

    def hospitals() -> list[Site]:
        return [Site(f"h{i}", part, identity=keys[i], budget=tmp_path / f"h{i}.json")
                for i, part in enumerate(parts)]

    first = hospitals()
    protocol = approve_in_process(first, protocol_of(STUDY, {}))
    spent = 0
    for run in range(3):  # each run a new process of every hospital, reading its budget file afresh
        sites = first if run == 0 else hospitals()
        for s in sites:
            s.approve(protocol)
        att = Wire(sites, protocol)
        names = list(att.sites)
        _, peers = att.round(lambda secure, run=run, att=att: PrepareRequest(
            session=f"r{run}", round=1, study=att.study, cohort=COHORT, labels=[""], secure=secure),
            names, att.keys(f"r{run}"))
        for r in range(2, 22):
            replies = {n: att.ask(n, LogisticRequest(session=f"r{run}", round=r, study=att.study,
                                                     beta=w(np.zeros(3)), secure={"peers": peers}))
                       for n in names}
            if any(isinstance(x, ErrorReply) for x in replies.values()):
                assert all(refused(x, "budget") for x in replies.values())
                break
            spent, peers = spent + 1, {n: x.next_key for n, x in replies.items()}
    assert spent == LOGISTIC_ROUNDS  # 20 + 20 across three processes, then refused


@pytest.mark.req("SRS-MOD-018", "RC-PRIV-003")
def test_the_logistic_budget_is_the_sites_own_floor(gbsg2: pd.DataFrame) -> None:
    """Adversary: a malicious coordinator probing a hospital whose operator set a tighter budget than the
    default in its own floors (:class:`SiteFloors` ``max_logistic_rounds``): that hospital refuses after
    its own number of rounds, whatever the study or the coordinator says, naming the floor."""
    parts = split_frame(gbsg2, 3, seed=1)
    sites = [Site(f"h{i}", part, floors=SiteFloors(max_logistic_rounds=6) if i == 0 else None)
             for i, part in enumerate(parts)]
    protocol = approve_in_process(sites, protocol_of(STUDY, {}))
    att = Wire(sites, protocol)
    names = list(att.sites)
    _, peers = att.round(lambda secure: PrepareRequest(session="f", round=1, study=att.study, cohort=COHORT,
                                                       labels=[""], secure=secure), names, att.keys("f"))
    answered = 0
    for r in range(2, 20):
        replies = {n: att.ask(n, LogisticRequest(session="f", round=r, study=att.study, beta=w(np.zeros(3)),
                                                 secure={"peers": peers})) for n in names}
        if isinstance(replies["h0"], ErrorReply):
            assert refused(replies["h0"], "budget") and "max_logistic_rounds" in replies["h0"].message
            break
        answered, peers = answered + 1, {n: x.next_key for n, x in replies.items()}
    assert answered == 6  # h0's own floor, well below the default of the other two

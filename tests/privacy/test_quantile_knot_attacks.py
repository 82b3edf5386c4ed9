"""Knots placed at quantiles of the securely summed histogram, attacked.

Adversaries: a **malicious coordinator** writing its own requests — knots off the public bin edges (at one
woman's exact age, so that a spline column is non-zero for her alone), more knots or quantiles than the
study approved, knots other than the declared ones, or edges chosen to cut off a thin tail — and an
**honest-but-curious coordinator** running the fit, which should learn the summed histogram and nothing
per site. Assertions are on what each gets back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federated import FederatedCoxPH
from federated.analyses.knots import place
from federated.disclosure.audit import audit_transcripts, unmasked_fields
from federated.disclosure.cells import safe_counts
from federated.disclosure.rules import StudyProtocol
from federated.protocol import secagg
from federated.protocol.messages import (
    ErrorReply,
    PrepareReply,
    PrepareRequest,
    SecureRound,
    decode_reply,
    encode,
)
from federated.site.handler import Site, approve_in_process
from federated.study import CohortSpec, range_edges
from prognosis import InputSpec
from prognosis.inputs import Spline
from tests.conftest import split_frame
from tests.privacy.wire import Wire, refused, three_sites

LO, HI, BINS = 20.0, 80.0, 12  # public edges every 5 years: 20, 25, …, 80
COHORT = CohortSpec(time="time", event="event", covariates=("age", "pnodes"), time_grid="year",
                    max_time=1826.25, ranges={"age": (LO, HI), "pnodes": (1.0, 51.0)}, range_bins=BINS,
                    knot_quantiles={"age": 4}, reference={"age": 55.0, "pnodes": 3.0})


@pytest.fixture
def sites(gbsg2: pd.DataFrame) -> list[Site]:
    return three_sites(gbsg2)


@pytest.fixture
def protocol(sites: list[Site]) -> StudyProtocol:
    return approve_in_process(sites, StudyProtocol(study_id="quantile-knots", cohorts=(COHORT,)))


def ask_all(att: Wire, session: str, cohort: CohortSpec) -> dict[str, object]:
    """A secure prepare of ``cohort`` at every site, as the coordinator writes it."""
    peers = att.keys(session)
    return {n: att.ask(n, PrepareRequest(session=session, round=1, study=att.study, cohort=cohort,
                                         secure=SecureRound(peers=peers))) for n in att.sites}


@pytest.mark.req("SRS-MOD-032", "RC-PRIV-003")
def test_knots_on_the_public_edges_are_answered(sites: list[Site], protocol: StudyProtocol) -> None:
    att = Wire(sites, protocol)
    placed = COHORT.model_copy(update={"splines": {"age": (40.0, 50.0, 60.0, 70.0)}})
    for session, cohort in (("unplaced", COHORT), ("placed", placed)):  # unplaced: age enters as it is
        replies = ask_all(att, session, cohort)
        assert all(isinstance(r, PrepareReply) for r in replies.values()), replies


@pytest.mark.req("SRS-MOD-032", "RC-PRIV-003")
@pytest.mark.parametrize("change", [
    # one woman's exact age between two edges (GBSG2 holds ages 21 … 80; 78 lies between 75 and 80): her
    # spline column beyond 78 would be hers alone
    {"splines": {"age": (40.0, 50.0, 60.0, 78.0)}},
    {"splines": {"age": (40.0, 50.0, 60.0, 70.0 + 1e-9)}},        # an edge nudged by a hair
    {"splines": {"age": (40.0, 45.0, 50.0, 60.0, 70.0)}},         # five knots where four were approved
    {"splines": {"age": (40.0, 50.0, 70.0)}},                     # three
    {"splines": {"age": (40.0, 45.0, 50.0, 60.0, 70.0)},          # and says the study approved five
     "knot_quantiles": {"age": 5}},
    {"knot_quantiles": {}},                                       # a linear model instead
    {"splines": {"pnodes": (6.0, 11.0, 16.0)}, "knot_quantiles": {"age": 4, "pnodes": 3}},  # another input
])
def test_knots_off_the_public_edges_or_more_than_approved_get_nothing(
        sites: list[Site], protocol: StudyProtocol, gbsg2: pd.DataFrame, change: dict[str, object]) -> None:
    att = Wire(sites, protocol)
    peers = att.keys("attack")
    request = encode(PrepareRequest(session="attack", round=1, study=att.study,
                                    cohort=COHORT.model_copy(update=change), secure=SecureRound(peers=peers)))
    replies = {s.name: decode_reply(s.handle(request)) for s in sites}
    for reply in replies.values():
        refused(reply, "not-approved")
    # what it learned: nothing — a refusal decided on the request alone, the same from a hospital holding
    # other patients (h0 over another split of the cohort), with no count and no value
    twin = Site("h0", split_frame(gbsg2, 3, seed=99)[2], identity=sites[0].identity)
    twin.approve(protocol)
    again = decode_reply(twin.handle(request))
    assert isinstance(again, ErrorReply) and again == replies["h0"]
    assert set(again.model_dump()) == {"schema_version", "session", "round", "kind", "code", "message",
                                       "next_key"}
    assert again.next_key is None  # and no masked statistic, nothing to decode


@pytest.mark.req("SRS-MOD-032", "SRS-MOD-006")
def test_a_declared_spline_takes_no_other_knots_on_edges(sites: list[Site]) -> None:
    declared = COHORT.model_copy(update={"knot_quantiles": {}, "splines": {"age": (45.0, 55.0, 65.0, 75.0)}})
    att = Wire(sites, approve_in_process(sites, StudyProtocol(study_id="declared", cohorts=(declared,))))
    for reply in ask_all(att, "edges", declared.model_copy(update={"splines": {"age": (35.0, 50.0, 60.0,
                                                                                       70.0)}})).values():
        refused(reply, "not-approved")
    for reply in ask_all(att, "claim", declared.model_copy(update={"knot_quantiles": {"age": 4}})).values():
        refused(reply, "not-approved")


@pytest.mark.req("SRS-MOD-032", "SRS-MOD-006")
def test_edges_that_cut_off_a_thin_tail_are_refused_by_the_design_cells(sites: list[Site],
                                                                         protocol: StudyProtocol) -> None:
    # on the public edges and as many as approved, but the non-linear columns beyond 65 and 70 years split
    # off fewer than k = 5 women of an event class at every hospital (h0: 4 events over 70, h1: 2, h2: 3)
    att = Wire(sites, protocol)
    tail = COHORT.model_copy(update={"splines": {"age": (65.0, 70.0, 75.0, 80.0)}})
    for reply in ask_all(att, "tail", tail).values():
        assert "age'" in refused(reply, "cells").message


@pytest.mark.req("SRS-MOD-032", "SRS-MOD-030", "SRS-PRIV-015")
def test_an_honest_coordinator_learns_only_the_summed_histogram(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    parts = split_frame(gbsg2, 3, seed=1)
    hospitals = [Site(f"h{i}", part, transcript_dir=tmp_path) for i, part in enumerate(parts)]
    # three knots (at 40, 55 and 65 years here): Harrell's four would put the first at 35, and fewer than
    # k = 5 women of an event class are 35 or younger at some hospital (the design cells refuse it)
    inputs = {"age": InputSpec(min=LO, max=HI, reference=55, spline=Spline(quantiles=3)),
              "pnodes": InputSpec(min=1, max=51, reference=3)}
    est = FederatedCoxPH(inputs=inputs, range_bins=BINS, time_grid="year", max_time=1826.25)
    est.fit_sites(hospitals, "time", "event", ["age", "pnodes"])  # the default rules: k = 5, 3 sites
    own = {f"h{i}": safe_counts(np.histogram(p["age"], bins=range_edges(LO, HI, BINS))[0], 5)
           for i, p in enumerate(parts)}
    summed = np.concatenate(([0], sum(own.values()), [0]))  # nobody below 20 or above 80
    assert est.fit_.placed_knots["age"] == place(summed, LO, HI, 3, "age") == (40.0, 55.0, 65.0)
    assert np.array_equal(est.fit_.range_counts["age"], summed[1:-1])
    assert audit_transcripts(tmp_path).ok
    prepares: dict[str, dict[str, PrepareReply]] = {}
    for name in own:
        for line in (tmp_path / f"{name}.jsonl").read_text().splitlines():
            msg = json.loads(line)["message"]
            if msg["kind"] == "prepare":
                assert unmasked_fields(msg) == []
                reply = decode_reply(json.dumps(msg).encode())
                assert isinstance(reply, PrepareReply) and reply.range_counts is not None
                prepares.setdefault(reply.session, {})[name] = reply
    assert len(prepares) == 2  # the round that places the knots, and the fit's own
    for replies in prepares.values():
        for reply in replies.values():  # one site's reply alone decodes to noise, not its counts
            with pytest.raises(secagg.SecAggOverflow):
                secagg.decode(reply.range_counts.ring(), n_terms=1)  # type: ignore[union-attr]
        assert np.array_equal(Wire.total(replies, "range_counts")[0].round(), summed)

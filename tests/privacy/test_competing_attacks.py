"""A malicious coordinator attacks the competing-risks rounds (``cif-prepare``, ``cif-counts``) over the wire.

The adversary controls the coordinating centre: it writes its own requests to real sites and decodes
what comes back. It tries to count a column the study did not approve as a "cause" over time (a
sensitive diagnosis), to isolate a rare cause by dropping, merging or adding codes, to use the cause
column as a Kaplan–Meier or Cox outcome, to ask on a grid finer than approved or thinner than k, to
ask at times between the grid's, to read a site's counts unmasked, and to learn how many rows hold a
code nobody declared. Each assertion is on what the attacker gets back: a refusal (code, and a message
without counts), or sums over sites of atoms of 0 or at least k patients, no finer than the grid.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from federated.analyses.competing import competing_cohort, fit_aalen_johansen
from federated.disclosure.dp import DPSettings
from federated.disclosure.rules import StudyProtocol
from federated.exceptions import DataError
from federated.protocol.arrays import WireArray
from federated.protocol.coordinator import Coordinator
from federated.protocol.messages import (
    CifCountsReply,
    CifCountsRequest,
    CifPrepareReply,
    CifPrepareRequest,
    PrepareRequest,
    SecureRound,
    decode_reply,
    encode,
)
from federated.protocol.transport import InProcessTransport
from federated.site.competing_counts import cause_counts
from federated.site.data import coarsen
from federated.site.handler import Site, approve_in_process
from federated.study import CohortSpec
from tests.conftest import split_frame
from tests.federated.site.test_competing_counts import synthetic
from tests.privacy.wire import Wire, refused

pytestmark = pytest.mark.req("SRS-MOD-025")

#: the approved competing-risks cohort: times in years, causes 1 and 2, weeks at the finest
COHORT = competing_cohort("time", "cause", [1, 2], time_grid="week", time_unit="year", max_time=8.0)
YEAR = COHORT.model_copy(update={"time_grid": "year"})
#: the study's Kaplan–Meier cohort of any event, approved beside it
KM = CohortSpec(time="time", event="event", time_grid="week", time_unit="year", max_time=8.0)


@pytest.fixture
def table() -> pd.DataFrame:
    rows = synthetic(n=3000)
    hiv = np.random.default_rng(5).binomial(1, 0.1, len(rows))  # a sensitive column the study never names
    return rows.assign(hiv=hiv, event=(rows["cause"] > 0).astype(np.int64))


@pytest.fixture
def sites(table: pd.DataFrame) -> list[Site]:
    return [Site(f"h{i}", part) for i, part in enumerate(split_frame(table, 3, seed=3))]


@pytest.fixture
def protocol(sites: list[Site]) -> StudyProtocol:
    return approve_in_process(sites, StudyProtocol(study_id="competing", cohorts=(COHORT, KM)))




def prepare(att: Wire, session: str, cohort: CohortSpec, peers: dict, name: str = "h0") -> object:
    return att.ask(name, CifPrepareRequest(session=session, round=1, study=att.study, cohort=cohort,
                                           secure=SecureRound(peers=peers)))


def test_another_column_or_other_codes_are_refused(sites: list[Site], protocol: StudyProtocol) -> None:
    att = Wire(sites, protocol)
    peers = att.keys("codes")
    year = {"time_grid": "year", "time_unit": "year", "max_time": 8.0}
    for asked in (competing_cohort("time", "hiv", [1], **year),          # a sensitive column as the cause
                  competing_cohort("time", "event", [1], **year),        # the Kaplan–Meier outcome
                  competing_cohort("time", "cause", [1], **year),        # cause 2 dropped (merged into 0)
                  competing_cohort("time", "cause", [2, 1], **year),     # reordered
                  competing_cohort("time", "cause", [1, 2, 3], **year),  # a code nobody declared
                  YEAR.model_copy(update={"max_time": 4.0})):            # another threshold
        for name in att.sites:
            refused(prepare(att, "codes", asked, peers, name), "not-approved")
    assert isinstance(prepare(att, "codes", YEAR, peers), CifPrepareReply)  # the approved one is answered


def test_a_request_outside_the_competing_form_is_malformed(sites: list[Site],
                                                           protocol: StudyProtocol) -> None:
    """The study's own Kaplan–Meier cohort (event 0/1, no partition) in a cause request: not even read."""
    att = Wire(sites, protocol)
    raw = json.loads(encode(CifPrepareRequest(session="form", round=1, study=att.study, cohort=YEAR)))
    raw["cohort"] = json.loads(KM.model_copy(update={"time_grid": "year"}).model_dump_json())
    reply = refused(decode_reply(sites[0].handle(json.dumps(raw).encode())), "bad-request")
    assert "competing-risks cohort" in reply.message


def test_the_cause_column_is_no_kaplan_meier_or_cox_outcome(sites: list[Site],
                                                            protocol: StudyProtocol) -> None:
    """The approved cause cohort sent as a ``prepare`` (per-cause Kaplan–Meier or Cox sums): refused,
    the codes 2 are no 0/1 event; the message carries no count."""
    att = Wire(sites, protocol)
    peers = att.keys("km")
    reply = refused(att.ask("h0", PrepareRequest(session="km", round=1, study=att.study, cohort=YEAR,
                                                 labels=["0", "1", "2"], secure=SecureRound(peers=peers))),
                    "data")
    assert "column 'cause' must be #/# or boolean (# other values)" in reply.message


def test_a_finer_grid_than_approved_is_refused(sites: list[Site]) -> None:
    yearly = approve_in_process(sites, StudyProtocol(study_id="yearly", cohorts=(YEAR,)))
    att = Wire(sites, yearly)
    peers = att.keys("fine")
    for grid in ("quarter", "month", "week", "day", "exact"):
        refused(prepare(att, "fine", YEAR.model_copy(update={"time_grid": grid}), peers), "not-approved")


def test_cells_of_fewer_than_k_patients_of_a_cause_are_refused(sites: list[Site],
                                                              protocol: StudyProtocol) -> None:
    """Weeks are approved, but every site holds a week with 1 to 4 patients of some cause: refused at
    the source, by every site, before anything is summed."""
    att = Wire(sites, protocol)
    peers = att.keys("weeks")
    for name in att.sites:
        refused(prepare(att, "weeks", COHORT, peers, name), "cells")


def test_times_between_the_grid_decode_nothing_finer(table: pd.DataFrame, sites: list[Site],
                                                     protocol: StudyProtocol) -> None:
    """On the yearly rung the attacker asks at every week: each reply is masked, and the decoded sums
    are the pooled counts of the rows put on years (at risk constant within a year, events only at
    year ends)."""
    att = Wire(sites, protocol)
    names = list(att.sites)
    replies, peers = att.round(lambda secure: CifPrepareRequest(
        session="weeks", round=1, study=att.study, cohort=YEAR, secure=secure), names, att.keys("weeks"))
    assert all(r.plaintext_fields() == [] and r.counts.masked for r in replies.values())
    weeks = np.union1d(np.arange(0, 9 * 52) / 52, np.arange(10.0))
    counts, _ = att.round(lambda secure: CifCountsRequest(
        session="weeks", round=2, study=att.study, cohort=YEAR, times=WireArray.from_numpy(weeks),
        secure=secure), names, peers)
    assert all(isinstance(r, CifCountsReply) and r.plaintext_fields() == [] for r in counts.values())
    at_risk, events = Wire.total(counts, "at_risk").round(), Wire.total(counts, "events").round()
    time = coarsen(np.minimum(table["time"].to_numpy(), 8.0), "year", "year")
    cause = np.where(table["time"] > 8.0, 0, table["cause"])
    pooled_n, pooled_d = cause_counts(time, cause, weeks, 2)
    assert np.array_equal(at_risk, pooled_n) and np.array_equal(events, pooled_d)
    whole = weeks == np.round(weeks)
    assert np.all(events[:, ~whole] == 0) and events[:, whole].sum() == (cause > 0).sum()
    year_end = np.ceil(weeks)
    assert np.array_equal(at_risk, pooled_n[np.searchsorted(weeks, year_end)])


def test_an_undeclared_code_is_refused_without_its_count(table: pd.DataFrame) -> None:
    parts = split_frame(table, 3, seed=3)
    odd = parts[0].copy()
    odd.loc[odd.index[:2], "cause"] = 7
    sites = [Site("h0", odd), Site("h1", parts[1]), Site("h2", parts[2])]
    att = Wire(sites, approve_in_process(sites, StudyProtocol(study_id="codes", cohorts=(YEAR,))))
    reply = refused(prepare(att, "odd", YEAR, att.keys("odd")), "data")
    assert "has # values outside the declared levels" in reply.message
    outside_quotes = "".join(part for i, part in enumerate(reply.message.split("'")) if i % 2 == 0)
    assert not any(ch.isdigit() for ch in outside_quotes), reply.message


def test_plaintext_and_differentially_private_studies_are_refused(sites: list[Site],
                                                                 protocol: StudyProtocol) -> None:
    att = Wire(sites, protocol)
    plain = CifPrepareRequest(session="plain", round=0, study=att.study, cohort=YEAR)
    refused(att.ask("h0", plain), "plaintext")
    private = approve_in_process(sites, StudyProtocol(study_id="private", cohorts=(YEAR,),
                                                      dp=DPSettings(enabled=True)))
    att = Wire(sites, private)
    refused(prepare(att, "dp", YEAR, att.keys("dp")), "not-approved")
    with pytest.raises(DataError, match="differentially private"):
        fit_aalen_johansen(Coordinator(InProcessTransport(sites), session="dp", protocol=private), YEAR)

"""A malicious coordinator against a study with a design (splines, dummy-coded categories, interactions).

Adversary: the coordinating centre, writing its own requests. It tries to (a) move a spline's knots
or drop a category's dummy coding to build columns that isolate a few patients, and (b) use a spline's
collinear columns to make one patient dominate a risk-set sum. Assertions are on what it gets back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from federated.disclosure.rules import StudyProtocol
from federated.protocol.arrays import WireArray
from federated.protocol.messages import GridRequest, PrepareRequest, RiskSetRequest, SecureRound
from federated.site.handler import Site, approve_in_process
from federated.study import CohortSpec
from prognosis.design import rcs_basis
from tests.privacy.wire import Wire, refused, three_sites

KNOTS = (45.0, 55.0, 65.0, 75.0)
COHORT = CohortSpec(time="time", event="event", covariates=("age", "pnodes", "tsize"), time_grid="year",
                    ranges={"age": (20.0, 80.0), "pnodes": (1.0, 51.0), "tsize": (0.0,
                                                                                  2.0)}, max_time=1826.25,
                    splines={"age": KNOTS}, dummies={"tsize": ("<=20", "20-50", ">50")},
                    interactions=(("pnodes", "tsize"),), reference={"age": 55.0, "pnodes": 3.0, "tsize": 1.0})
w = WireArray.from_numpy


@pytest.fixture
def sites(gbsg2: pd.DataFrame) -> list[Site]:
    return three_sites(gbsg2)


@pytest.fixture
def protocol(sites: list[Site]) -> StudyProtocol:
    return approve_in_process(sites, StudyProtocol(study_id="design", cohorts=(COHORT,)))




@pytest.mark.req("SRS-MOD-006", "RC-PRIV-003")
@pytest.mark.parametrize("change", [
    {"splines": {"age": (60.5, 60.6, 60.7)}},              # knots around one woman's age
    {"splines": {}},                                         # age linear: another model than approved
    {"dummies": {}},                                         # tsize as its index
    {"interactions": (("age", "tsize"),)},                   # another interaction
])
def test_a_design_other_than_the_approved_one_gets_nothing(sites: list[Site], protocol: StudyProtocol,
                                                           change: dict[str, object]) -> None:
    att = Wire(sites, protocol)
    peers = att.keys("moved")
    for name in att.sites:
        reply = att.ask(name, PrepareRequest(session="moved", round=1, study=att.study,
                                             cohort=COHORT.model_copy(update=change),
                                             secure=SecureRound(peers=peers)))
        refused(reply, "not-approved")


@pytest.mark.req("SRS-MOD-006", "RC-PRIV-003")
def test_a_spline_is_bounded_by_its_effects_spread_not_by_its_columns(sites: list[Site],
                                                                       protocol: StudyProtocol) -> None:
    att = Wire(sites, protocol)
    prep, peers = att.round(lambda secure: PrepareRequest(session="b", round=1, study=att.study,
                                                          cohort=COHORT,
                                                          secure=secure), list(att.sites), att.keys("b"))
    n = int(round(Wire.total(prep, "counts")[0]))
    center = COHORT.reference_columns()
    grid = [w(np.arange(1.0, 6.0) * 365.25)]
    _, peers = att.round(lambda secure: GridRequest(session="b", round=2, study=att.study, labels=[""],
                                                    times=grid, center=w(center), secure=secure),
                         list(att.sites), peers)
    # the spline of age fitted on GBSG2 at these knots (β −0.0306, 0.1381, −0.4506: a hazard ratio within
    # e^1.3 over 20–80 years) made ten times steeper: still e^12.8, but its columns' coefficients are large
    # and of opposite signs, so Σ|β_j|·width_j is 114
    fitted = np.zeros(len(COHORT.columns))
    fitted[:3] = [-0.306, 1.381, -4.506]
    ages = np.linspace(20.0, 80.0, 6001)
    spread = np.ptp(rcs_basis(ages, KNOTS) @ fitted[:3])
    bounds = COHORT.column_ranges()
    widths = np.array([bounds[c][1] - bounds[c][0] for c in COHORT.columns[:3]])
    assert spread < 13.0 < 30.0 < float(np.abs(fitted[:3]) @ widths)  # Σ|β|·width would refuse it
    sums, peers = att.round(lambda secure: RiskSetRequest(session="b", round=3, study=att.study,
                                                          beta=w(fitted),
                                                          efron=True, secure=secure), list(att.sites), peers)
    s0 = Wire.total(sums, "s0")
    assert np.all(np.isfinite(s0)) and s0[0] <= n * np.exp(spread)  # sums over every woman at risk
    # the same shape scaled until age alone spans more than the bound: one woman would dominate
    extreme = fitted * (31.0 / spread)
    for name in att.sites:
        refused(att.ask(name, RiskSetRequest(session="b", round=4, study=att.study, beta=w(extreme),
                                             efron=True, secure=SecureRound(peers=peers))), "bound")


@pytest.mark.req("SRS-MOD-006", "RC-PRIV-003")
def test_a_column_thinner_than_k_at_a_site_makes_it_refuse_instead_of_publishing_its_few_patients(
        sites: list[Site]) -> None:
    """The design is approved, but a spline column is non-zero only beyond its knot: with the first knot
    at 70, at two of these hospitals 3 or 4 women lie beyond it, and the sums of that column would be
    theirs alone (Σ (age − 70)³ …), and the second beyond 74 is thinner still. The sites refuse; the
    coordinator decodes no sum."""
    tail = COHORT.model_copy(update={"splines": {"age": (70.0, 74.0, 77.0, 80.0)}, "time_grid": "year"})
    protocol = approve_in_process(sites, StudyProtocol(study_id="tail", cohorts=(tail,)))
    att = Wire(sites, protocol)
    peers = att.keys("tail")
    replies = {name: att.ask(name, PrepareRequest(session="tail", round=1, study=att.study, cohort=tail,
                                                  secure=SecureRound(peers=peers))) for name in att.sites}
    for reply in replies.values():  # 10, 4 and 3 women older than 70; 3, 1 and 1 older than 74
        assert refused(reply, "cells").message.startswith("the patients with and without \"age")


@pytest.mark.req("SRS-MOD-006", "RC-PRIV-003")
def test_a_rare_reference_level_is_refused_though_no_dummy_column_is_thin(gbsg2: pd.DataFrame) -> None:
    """Adversary: an honest-but-curious coordinator. One woman holds the category's first level, which
    has no column of its own: total n minus the dummies' sums, and Σage minus Σ(age × dummy), would be
    her and her age. Her hospital refuses the design — even in a study that opted in to exact time cells,
    which the design's cells do not depend on; the others' sums cannot be completed without hers."""
    table = gbsg2.assign(histology=np.where(np.arange(len(gbsg2)) % 2 == 0, 1, 2))
    table.loc[0, "histology"] = 0  # the only "rare" tumour, at the first hospital
    sites = [Site(f"h{i}", part) for i, part in enumerate([table.iloc[:250], table.iloc[250:480],
                                                           table.iloc[480:]])]
    cohort = CohortSpec(time="time", event="event", covariates=("age", "histology"), time_grid="exact",
                        ranges={"age": (20.0, 80.0), "histology": (0.0, 2.0)}, max_time=1826.25,
                        dummies={"histology": ("rare", "ductal", "lobular")},
                        interactions=(("age", "histology"),), reference={"age": 55.0, "histology": 1.0})
    protocol = StudyProtocol(study_id="rare", cohorts=(cohort,), allow_small_time_cells=True)
    att = Wire(sites, approve_in_process(sites, protocol))
    peers = att.keys("rare")
    reply = refused(att.ask("h0", PrepareRequest(session="rare", round=1, study=att.study, cohort=cohort,
                                                 secure=SecureRound(peers=peers))), "cells")
    assert "histology=rare" in reply.message

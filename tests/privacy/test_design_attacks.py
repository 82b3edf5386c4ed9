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

KNOTS = (35.0, 45.0, 55.0, 65.0)
COHORT = CohortSpec(time="time", event="event", covariates=("age", "pnodes", "tsize"), time_grid="year",
                    ranges={"age": (20.0, 80.0), "pnodes": (1.0, 51.0), "tsize": (0.0,
                                                                                  2.0)}, max_time=1826.25,
                    splines={"age": KNOTS}, dummies={"tsize": ("<=20", "20-50", ">50")},
                    interactions=(("age", "tsize"),), reference={"age": 55.0, "pnodes": 3.0, "tsize": 1.0})
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
    {"interactions": (("pnodes", "tsize"),)},                # another interaction
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
    # a fitted spline of age (as the demo's): its columns' coefficients are large and of opposite signs
    fitted = np.zeros(len(COHORT.columns))
    fitted[:3] = [-0.1087, 0.3091, -0.7861]
    ages = np.linspace(20.0, 80.0, 6001)
    spread = np.ptp(rcs_basis(ages, KNOTS) @ fitted[:3])
    bounds = COHORT.column_ranges()
    widths = np.array([bounds[c][1] - bounds[c][0] for c in COHORT.columns[:3]])
    assert spread < 3.0 < 30.0 < float(np.abs(fitted[:3]) @ widths)  # Σ|β|·width would refuse a sound fit
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

"""Attacks found by the adversarial review of the site rules, kept as named cases (Wycheproof style).

Each was a working attack against an earlier version; each case asserts on what the attacker decodes
now: a refusal, or nothing about fewer than k patients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from federated.demo_study import DEMO_INPUTS, HOSPITALS, gbsg2_table, split
from federated.disclosure.policy import DisclosurePolicy
from federated.disclosure.rules import SiteFloors, StudyProtocol
from federated.protocol.arrays import WireArray
from federated.protocol.messages import (
    ErrorReply,
    EvaluateReply,
    EvaluateRequest,
    EvaluationModel,
    GridRequest,
    PrepareRequest,
    RiskSetRequest,
    SecureRound,
    Subgroup,
)
from federated.site.data import prepare_cohort
from federated.site.evaluation import public_km_times
from federated.site.handler import Site, approve_in_process
from federated.study import CohortSpec
from prognosis import CoxModel
from tests.privacy.wire import Wire  # noqa: E402

w = WireArray.from_numpy
K = 5
COV = tuple(DEMO_INPUTS)
RANGES = {
    n: (float(s.min), float(s.max)) for n, s in DEMO_INPUTS.items() if s.min is not None and s.max is not None
}
COHORT = CohortSpec(time="time", event="event", covariates=COV, ranges=RANGES, max_time=1826.25)
HORIZONS = (1095.75, 1826.25)


@pytest.fixture(scope="module")
def demo() -> tuple[list[Site], StudyProtocol, list[pd.DataFrame]]:
    parts = split(gbsg2_table())
    sites = [Site(n, p) for n, p in zip(HOSPITALS, parts, strict=True)]
    protocol = approve_in_process(
        sites, StudyProtocol(study_id="review", cohorts=(COHORT,), horizons=HORIZONS)
    )
    return sites, protocol, parts


@pytest.mark.req("SRS-PRIV-014", "RC-PRIV-003")
def test_F1_an_outlier_beyond_the_envelope_no_longer_dominates_a_sum(demo: Any) -> None:
    """Was: β on progrec alone, 'bounded' on the declared 0–450, gave the woman with progrec 2380 a
    weight e^25 above the rest, and S1/S0 of her cell decoded to her whole record. Rows are now
    clipped to the envelope, so her value beyond it is never learned, and a centre outside the box
    is refused. Residual (FP-CYB): inside the box the bound still lets a patient isolated at an edge
    carry most of her cell's weight, so her other covariates can be approached."""
    sites, protocol, parts = demo
    att = Wire(sites[:3], protocol)
    names = list(HOSPITALS[:3])
    year = COHORT.model_copy(update={"time_grid": "year"})
    peers = att.keys("F1", names)
    prep, peers = att.round(
        lambda **f: PrepareRequest(session="F1", round=1, study=att.study, cohort=year, **f), names, peers
    )
    grid = np.flatnonzero(np.round(Wire.total(prep, "event_histogram")[0]) > 0) * year.bin_width()
    far = np.array([RANGES[n][0] for n in COV]) - 1.0  # a centre outside the inputs' box
    refused = att.ask(
        names[0],
        GridRequest(
            session="F1",
            round=2,
            study=att.study,
            labels=[""],
            times=[w(grid)],
            center=w(far),
            secure=SecureRound(peers=peers),
        ),
    )
    assert isinstance(refused, ErrorReply) and refused.code == "bound"
    peers = att.keys("F1b", names)
    _, peers = att.round(
        lambda **f: PrepareRequest(session="F1b", round=1, study=att.study, cohort=year, **f), names, peers
    )
    center = np.array([RANGES[n][0] for n in COV])  # the lowest corner of the box: allowed
    _, peers = att.round(
        lambda **f: GridRequest(
            session="F1b", round=2, study=att.study, labels=[""], times=[w(grid)], center=w(center), **f
        ),
        names,
        peers,
    )
    j = COV.index("progrec")
    raw = pd.concat(parts[:3])[list(COV)].to_numpy(float)
    top = raw[np.argmax(raw[:, j])]
    edge = RANGES["progrec"][1]  # the envelope's upper edge (435 fmol/mg; it was 450 when reviewed)
    assert top[j] > edge  # the outlier exists
    answered, sess, rnd = 0, "F1b", 3
    for r, lp in enumerate((29.0, 20.0, 12.0)):  # as far as the bound allows, and less
        beta = np.zeros(len(COV))
        beta[j] = lp / edge
        req = RiskSetRequest(
            session=sess,
            round=rnd,
            study=att.study,
            beta=w(beta),
            efron=True,
            secure=SecureRound(peers=peers),
        )
        rnd += 1
        rep = {n: att.ask(n, req) for n in names}
        if any(isinstance(x, ErrorReply) for x in rep.values()):
            assert all(x.code in ("bound", "overflow") for x in rep.values() if isinstance(x, ErrorReply))
            sess, rnd = f"F1{r}", 3  # a refusal ends the session: start again
            peers = att.keys(sess, names)
            _, peers = att.round(
                lambda sess=sess, **f: PrepareRequest(
                    session=sess, round=1, study=att.study, cohort=year, **f
                ),
                names,
                peers,
            )
            _, peers = att.round(
                lambda sess=sess, **f: GridRequest(
                    session=sess,
                    round=2,
                    study=att.study,
                    labels=[""],
                    times=[w(grid)],
                    center=w(center),
                    **f,
                ),
                names,
                peers,
            )
            continue
        answered += 1
        peers = {n: x.next_key for n, x in rep.items()}
        s0, s1 = Wire.total(rep, "s0"), Wire.total(rep, "s1")
        t0, t1 = Wire.total(rep, "t0"), Wire.total(rep, "t1")
        nxt0, nxt1 = np.append(s0[1:], 0.0), np.vstack([s1[1:], np.zeros((1, len(COV)))])
        for c0, c1 in [*zip(t0, t1, strict=True), *zip(s0 - nxt0 - t0, s1 - nxt1 - t1, strict=True)]:
            if c0 > 0:
                # her progrec (2380) is never learned: every patient enters at most at the envelope's edge
                assert (c1 / c0 + center)[j] <= edge + 1e-6
    assert answered >= 1
    truth = [prepare_cohort(p, year, n, "t") for n, p in zip(names, parts[:3], strict=True)]
    assert all(np.all(c.x[:, j] <= edge) for c in truth)


def _model(sites: list[Site]) -> EvaluationModel:
    cox = CoxModel.from_arrays(
        COV, beta=[0.01, 0.001, 0.2, 0.05, -0.002, 0.0, -0.3, 0.2],
        center=[53.0, 1.0, 0.0, 5.0, 100.0, 90.0, 0.0, 1.0],  # size and grade: their bands (demo coding)
        times=[365.25, 730.5, 1095.75, 1461.0, 1826.25],
        survival=[0.95, 0.85, 0.75, 0.68, 0.6], horizons=HORIZONS,
    )
    return EvaluationModel(artifact=cox.to_artifact(), horizons=w(np.array(HORIZONS)))


def _evaluate(study: str, **over: Any) -> EvaluateRequest:
    fields: dict[str, Any] = dict(
        session="ev",
        round=0,
        study=study,
        cohort=COHORT,
        n_boot=0,
        seed=0,
        km_times=w(public_km_times(COHORT, HORIZONS)),
        ibs_times=w(np.array([365.0])),
    )
    fields.update(over)
    return EvaluateRequest(**fields)


@pytest.mark.req("SRS-PRIV-010", "RC-PRIV-003")
def test_F2_F3_risk_groups_and_km_times_are_fixed_by_the_study(demo: Any) -> None:
    """Was: 5 against 10 risk groups isolated the woman on a group boundary; one KM time per request
    gave every single recurrence day of a site that refuses even yearly cells."""
    sites, protocol, _ = demo
    att = Wire(sites, protocol)
    model = _model(sites)
    other_groups = att.ask("hospital-a", _evaluate(att.study, model=model, risk_groups=10))
    assert isinstance(other_groups, ErrorReply) and other_groups.code == "not-approved"
    for t in (417.0, 418.0):
        one_day = att.ask(
            "hospital-d", _evaluate(att.study, model=model, round=int(t), km_times=w(np.array([t])))
        )
        assert isinstance(one_day, ErrorReply) and one_day.code == "not-approved"
    ok = att.ask("hospital-d", _evaluate(att.study, model=model, round=1))
    assert isinstance(ok, EvaluateReply)
    assert all(set(g.km_times) <= set(public_km_times(COHORT, HORIZONS).tolist()) for g in ok.risk_groups)


@pytest.mark.req("SRS-PRIV-010", "RC-PRIV-003")
def test_F7_a_partition_split_by_the_coordinator_is_refused(demo: Any) -> None:
    """Was: '<50' and '50–64' in separate partitions escaped complementary suppression, and the
    site total minus both gave the withheld '≥ 65' band (18 women)."""
    sites, protocol, _ = demo
    att = Wire(sites, protocol)
    split_bands = [
        Subgroup(name="age < 50", partition="a", variable="age", high=50.0),
        Subgroup(name="age 50–64", partition="b", variable="age", low=50.0, high=65.0),
    ]
    reply = att.ask("hospital-b", _evaluate(att.study, model=_model(sites), subgroups=split_bands))
    assert isinstance(reply, ErrorReply) and "whole partition" in reply.message


@pytest.mark.req("SRS-PRIV-013", "RC-PRIV-003")
def test_F6_the_integrated_brier_grid_follows_a_count_rule(demo: Any) -> None:
    """Was: whether the integrated Brier score came back told whether a chosen time lay before the
    site's earliest follow-up, which bisection turned into that woman's day (63)."""
    sites, protocol, parts = demo
    att = Wire(sites, protocol)
    earliest = float(parts[3]["time"].min())
    seen = set()
    for i, t in enumerate((earliest - 1.0, earliest + 1.0)):
        reply = att.ask(
            "hospital-d",
            _evaluate(att.study, model=_model(sites), round=10 + i, ibs_times=w(np.array([t, 1000.0]))),
        )
        assert isinstance(reply, EvaluateReply)
        ibs = [m.estimate for m in reply.overall.metrics if m.metric == "integrated_brier"]
        seen.add(tuple(ibs))
    assert len(seen) == 1  # the answer does not change as t crosses her time


@pytest.mark.req("SRS-PRIV-014", "RC-PRIV-003")
def test_F9_without_declared_ranges_a_bound_refusal_tells_no_patients_value(gbsg2: pd.DataFrame) -> None:
    """Was: with no declared ranges the refusal threshold depended on a coordinator-chosen centre and
    bisection gave the youngest woman's age. The centre may now lie within ±2·2^⌈log2 max|x|⌉: two
    sites whose youngest women differ refuse exactly the same centres."""
    cohort = CohortSpec(time="time", event="event", covariates=("age",), max_time=1826.25)
    a = gbsg2.iloc[:200].copy()
    b = a.copy()
    b.loc[b["age"].idxmin(), "age"] = 35.0  # another youngest age, same largest
    verdicts = []
    for part in (a, b):
        loose = SiteFloors(min_cell_count=1)  # cells play no part here: the bound's refusal does
        sites = [
            Site("s0", part, floors=loose),
            Site("s1", gbsg2.iloc[200:400], floors=loose),
            Site("s2", gbsg2.iloc[400:600], floors=loose),
        ]
        proto = approve_in_process(
            sites, StudyProtocol(study_id="F9", cohorts=(cohort,), policy=DisclosurePolicy(min_cell_count=1))
        )
        att = Wire(sites, proto)
        year = cohort.model_copy(update={"time_grid": "year"})
        peers = att.keys("F9", ["s0", "s1", "s2"])
        _, peers = att.round(
            lambda att=att, year=year, **f: PrepareRequest(
                session="F9", round=1, study=att.study, cohort=year, **f
            ),
            ["s0", "s1", "s2"],
            peers,
        )
        out = []
        for c in (-300.0, -256.0, 0.0, 21.0, 255.0, 256.0, 257.0, 300.0):
            r = att.ask(
                "s0",
                GridRequest(
                    session="F9",
                    round=2,
                    study=att.study,
                    labels=[""],
                    times=[w(np.array([365.25]))],
                    center=w(np.array([c])),
                    secure=SecureRound(peers=peers),
                ),
            )
            out.append(isinstance(r, ErrorReply) and r.code == "bound")
            att.sites["s0"]._answered.clear()  # let the attacker ask again under the same round
        verdicts.append(out)
    assert verdicts[0] == verdicts[1] == [True, False, False, False, False, False, True, True]

"""A malicious coordinator attacks the cause-specific Cox cohorts over the wire.

The adversary controls the coordinating centre and writes its own ``prepare`` requests to real sites
(the first round of every Cox fit, :mod:`federated.analyses.cause_specific`). It tries to make another
code the event (a cause the study did not approve), to drop or add a declared code (merging a rare
cause into the censored), to use a sensitive column as the cause column, to send a cohort whose cause is
not among its codes, and to difference two approved cause-specific fits whose censored rows differ by
the other cause's events. Each assertion is on what the attacker gets back: a refusal (its code, and in
a secure study a message without counts), or a masked reply over atoms of 0 or at least k patients.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from federated.disclosure.rules import StudyProtocol
from federated.protocol.messages import PrepareReply, PrepareRequest, SecureRound, decode_reply, encode
from federated.site.handler import Site, approve_in_process
from federated.study import CohortSpec
from tests.conftest import split_frame
from tests.federated.analyses.test_cause_specific import synthetic
from tests.privacy.wire import Wire, refused

pytestmark = pytest.mark.req("SRS-MOD-034")

YEAR = {"time": "time", "event": "cause", "covariates": ("x1", "x2"), "time_grid": "year",
        "time_unit": "year", "max_time": 8.0}
#: the approved cause-specific cohorts: causes 1 and 2 of column "cause", yearly grid
CAUSE_1 = CohortSpec(**YEAR, cause="1", causes=("1", "2"))
CAUSE_2 = CohortSpec(**YEAR, cause="2", causes=("1", "2"))


@pytest.fixture
def table() -> pd.DataFrame:
    rows = synthetic(n=3000, seed=3)
    hiv = np.random.default_rng(5).binomial(1, 0.1, len(rows))  # a sensitive column the study never names
    return rows.assign(hiv=hiv)


@pytest.fixture
def sites(table: pd.DataFrame) -> list[Site]:
    return [Site(f"h{i}", part) for i, part in enumerate(split_frame(table, 3, seed=3))]


def prepare(att: Wire, session: str, cohort: CohortSpec, name: str = "h0") -> object:
    peers = att.keys(session)
    return att.ask(name, PrepareRequest(session=session, round=1, study=att.study, cohort=cohort, labels=[""],
                                        secure=SecureRound(peers=peers)))


def test_an_unapproved_cause_code_or_column_is_refused(sites: list[Site]) -> None:
    """The study approved cause 1 only: cause 2 (a declared code), a code nobody declared, code 2
    dropped (merged into the censored) and the sensitive column as the cause column are all refused."""
    att = Wire(sites, approve_in_process(sites, StudyProtocol(study_id="csc", cohorts=(CAUSE_1,))))
    attacks = {
        "cause 2 (declared, not approved)": CAUSE_2,
        "a third code": CohortSpec(**YEAR, cause="3", causes=("1", "2", "3")),
        "code 2 dropped": CohortSpec(**YEAR, cause="1", causes=("1",)),
        "hiv as the cause column": CohortSpec(**{**YEAR, "event": "hiv"}, cause="1", causes=("1",)),
        "another horizon": CAUSE_1.model_copy(update={"max_time": 4.0}),
    }
    for i, (what, asked) in enumerate(attacks.items()):
        for name in att.sites:
            reply = refused(prepare(att, f"a{i}{name}", asked, name), "not-approved")
            assert "approved" in reply.message, what
    reply = refused(prepare(att, "named", CAUSE_2), "not-approved")
    assert reply.message == "cause '2' is not one the study approved for this cohort"
    assert isinstance(prepare(att, "ok", CAUSE_1), PrepareReply)  # the approved one is answered


def test_a_cause_outside_its_codes_is_malformed(sites: list[Site]) -> None:
    """Written by hand (no honest client builds it): cause 3 among codes 1, 2 — not even read."""
    att = Wire(sites, approve_in_process(sites, StudyProtocol(study_id="csc", cohorts=(CAUSE_1, CAUSE_2))))
    asked = PrepareRequest(session="m", round=1, study=att.study, cohort=CAUSE_1, labels=[""])
    raw = json.loads(encode(asked))
    raw["cohort"]["cause"] = "3"
    reply = refused(decode_reply(sites[0].handle(json.dumps(raw).encode())), "bad-request")
    assert "declared" in reply.message


def test_an_undeclared_code_in_the_data_is_refused_without_a_count(table: pd.DataFrame) -> None:
    """A site holding a code the study does not declare refuses (``data``); the coordinator learns that
    such rows exist, not how many."""
    odd = table.copy()
    odd.loc[odd.index[:3], "cause"] = 7
    sites = [Site(f"h{i}", part) for i, part in enumerate(split_frame(odd, 3, seed=3))]
    att = Wire(sites, approve_in_process(sites, StudyProtocol(study_id="csc", cohorts=(CAUSE_1,))))
    holders = [s.name for s in sites if (s._table is not None and (s._table["cause"] == 7).any())]
    assert holders
    for name in att.sites:
        reply = prepare(att, f"odd-{name}", CAUSE_1, name)
        if name in holders:
            err = refused(reply, "data")
            assert "values outside the declared codes" in err.message
            assert not any(ch.isdigit() for ch in err.message.split("codes")[0].replace("'cause'", ""))
        else:
            assert isinstance(reply, PrepareReply)


def test_differencing_two_cause_specific_fits_meets_per_code_cells() -> None:
    """Each cause's own cells are fine (events of the cause, and the "censored": censored plus the other
    cause, each ≥ k), but the truly censored of year 1 are 3 < k = 5: differencing the two approved
    fits would show them. The site refuses both cohorts with ``cells`` (atoms per code, as the
    Aalen–Johansen rounds), so the attacker gets no statistic on that grid."""
    rng = np.random.default_rng(1)
    year = np.repeat([1, 2, 3], [14, 15, 20])
    code = np.concatenate([[1] * 6 + [2] * 5 + [0] * 3, [1] * 5 + [2] * 5 + [0] * 5,
                           [1] * 5 + [2] * 5 + [0] * 10])
    part = pd.DataFrame({"time": year - rng.uniform(0.1, 0.9, year.size), "cause": code,
                         "x1": rng.normal(size=year.size), "x2": rng.normal(size=year.size)})
    sites = [Site(f"h{i}", part.copy()) for i in range(3)]
    att = Wire(sites, approve_in_process(sites, StudyProtocol(study_id="csc", cohorts=(CAUSE_1, CAUSE_2))))
    for i, cohort in enumerate((CAUSE_1, CAUSE_2)):
        c = int(cohort.cause or 0)
        by_status = pd.crosstab(part["cause"] == c, np.ceil(part["time"]))
        assert ((by_status == 0) | (by_status >= 5)).all().all()  # the cohort's own atoms pass
        reply = refused(prepare(att, f"diff{i}", cohort), "cells")
        assert reply.message == ("a cell of the year grid holds fewer than 5 of this site's patients of "
                                 "one cause")

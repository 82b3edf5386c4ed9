"""A site's budget of rounds survives its process (review finding F5: a Flower ClientApp lives for
one message, a workspace site for one command, and an in-memory budget started afresh each time)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from federated.disclosure.rules import SiteFloors, StudyProtocol
from federated.protocol.messages import ErrorReply, KeysRequest, decode_reply, encode
from federated.site import Site, approve_in_process
from federated.study import CohortSpec

COHORT = CohortSpec(time="time", event="event", covariates=("age",), max_time=1826.25)


def _sites(gbsg2: pd.DataFrame, budget: Path, rounds: int) -> tuple[list[Site], StudyProtocol]:
    floors = SiteFloors(max_rounds=rounds)
    sites = [Site("h0", gbsg2.iloc[:300], floors=floors, budget=budget), Site("h1", gbsg2.iloc[300:])]
    return sites, approve_in_process(sites, StudyProtocol(study_id="budget", cohorts=(COHORT,), secure=False))


def _prepare(site: Site, study: str, session: str) -> object:
    from federated.protocol.messages import PrepareRequest

    # every statistic-bearing request spends a round, answered or refused (here: day-grid cells)
    request = PrepareRequest(session=session, round=1, study=study, cohort=COHORT)
    return decode_reply(site.handle(encode(request)))


@pytest.mark.req("SRS-PRIV-014")
def test_the_budget_survives_a_new_site_process(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    budget = tmp_path / "budget.json"
    sites, protocol = _sites(gbsg2, budget, rounds=3)
    codes = [_prepare(sites[0], protocol.sha256, f"s{i}").code for i in range(4)]  # type: ignore[attr-defined]
    assert codes == ["cells", "cells", "cells", "budget"]
    again, _ = _sites(gbsg2, budget, rounds=3)  # the same site, a new process
    again[0].approve(protocol)
    reply = _prepare(again[0], protocol.sha256, "s9")
    assert isinstance(reply, ErrorReply) and reply.code == "budget"
    keys = decode_reply(again[0].handle(encode(KeysRequest(session="k", round=0, study=protocol.sha256))))
    assert not isinstance(keys, ErrorReply)  # announcing a key spends nothing


@pytest.mark.req("SRS-PRIV-014")
def test_a_replay_spends_nothing_and_a_bad_budget_file_is_refused(gbsg2: pd.DataFrame,
                                                                  tmp_path: Path) -> None:
    budget = tmp_path / "budget.json"
    sites, protocol = _sites(gbsg2, budget, rounds=2)
    from federated.protocol.messages import PrepareRequest

    year = COHORT.model_copy(update={"time_grid": "year"})
    answered = encode(PrepareRequest(session="r", round=1, study=protocol.sha256, cohort=year))
    assert not isinstance(decode_reply(sites[0].handle(answered)), ErrorReply)
    assert budget.exists()
    spent = budget.read_bytes()
    again, _ = _sites(gbsg2, budget, rounds=2)
    again[0].approve(protocol)
    again[0].replay([answered])  # a new process re-entering the fit: counted when first answered
    assert budget.read_bytes() == spent
    budget.write_text("not json")
    with pytest.raises(ValueError, match="not a budget file"):
        Site("h0", gbsg2, budget=budget)


@pytest.mark.req("SRS-PRIV-014")
def test_a_flower_node_keeps_its_budget_in_a_file(tmp_path: Path) -> None:
    from fedprog.flower_app import NodeSettings

    data = tmp_path / "a.csv"
    node = NodeSettings.of({"site": "a", "data-path": str(data)})
    assert node.budget_file() == tmp_path / "a.fedprog-budget.json"
    ws = NodeSettings.of({"site": "a", "data-path": str(data), "workspace": str(tmp_path / "ws")})
    assert ws.budget_file() == tmp_path / "ws" / "sites" / "a" / "budget.json"
    own = NodeSettings.of({"site": "a", "data-path": str(data), "budget": str(tmp_path / "b.json")})
    assert own.budget_file() == tmp_path / "b.json"


@pytest.mark.req("SRS-PRIV-013")
def test_a_secure_studys_errors_name_no_file_path(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    """A file path is the site's own (folder names can say a lot); in a secure study an error names
    'the site's table' instead, and its numbers are removed."""
    from federated.protocol.messages import PrepareRequest, SecureRound
    from tests.privacy.wire import Wire

    folder = tmp_path / "hospital-2024-07"
    folder.mkdir()
    table = folder / "patients.csv"
    gbsg2.drop(columns=["age"]).to_csv(table, index=False)
    sites = [Site("h0", table), Site("h1", gbsg2), Site("h2", gbsg2)]
    protocol = approve_in_process(sites, StudyProtocol(study_id="path", cohorts=(COHORT,)))
    wire = Wire(sites, protocol)
    peers = wire.keys("p")
    reply = wire.ask("h0", PrepareRequest(session="p", round=1, study=protocol.sha256, cohort=COHORT,
                                          secure=SecureRound(peers=peers)))
    assert isinstance(reply, ErrorReply) and reply.code == "data"
    assert "the site's table" in reply.message and "hospital" not in reply.message
    assert not any(ch.isdigit() for ch in reply.message.replace("'age'", ""))


@pytest.mark.req("SRS-PRIV-014")
def test_evaluations_have_their_own_budget(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    """Each evaluation is a plaintext reply; a site gives at most max_evaluations per study."""
    import numpy as np

    from federated.protocol.arrays import WireArray
    from federated.protocol.messages import EvaluateReply, EvaluateRequest, EvaluationModel
    from federated.site.evaluation import public_km_times
    from prognosis import CoxModel

    w = WireArray.from_numpy
    horizons = (1095.75,)
    site = Site("h0", gbsg2, floors=SiteFloors(max_evaluations=2), budget=tmp_path / "budget.json")
    protocol = approve_in_process([site, Site("h1", gbsg2)],
                                  StudyProtocol(study_id="eval", cohorts=(COHORT,), horizons=horizons))
    cox = CoxModel.from_arrays(COHORT.covariates, [0.01], [50.0], [365.25, 1095.75], [0.9, 0.75], horizons)
    model = EvaluationModel(artifact=cox.to_artifact(), horizons=w(np.array(horizons)))
    replies = [decode_reply(site.handle(encode(EvaluateRequest(
        session="e", round=r, study=protocol.sha256, cohort=COHORT, model=model, n_boot=0, seed=r,
        km_times=w(public_km_times(COHORT, horizons)), ibs_times=w(np.array([365.0]))))))
        for r in range(3)]
    assert [type(r) for r in replies[:2]] == [EvaluateReply, EvaluateReply]
    assert isinstance(replies[2], ErrorReply) and replies[2].code == "budget"

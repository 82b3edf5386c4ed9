"""A site answers with aggregates only, refuses what it cannot answer, and logs what it sends."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from federated import CohortSpec, Coordinator, InProcessTransport, Site, fit_cox
from federated.exceptions import SiteError
from federated.protocol.arrays import WireArray
from federated.protocol.messages import ErrorReply, PrepareRequest, RiskSetRequest, decode_reply, encode
from tests.conftest import PERMISSIVE_FLOORS, ROSSI_COVARIATES, approve, fed_cox, make_sites, split_frame

COHORT = CohortSpec(time="week", event="arrest", covariates=ROSSI_COVARIATES)


def _ask(site: Site, request: object) -> object:
    return decode_reply(site.handle(encode(request)))  # type: ignore[arg-type]


def _open_site(data: pd.DataFrame, *cohorts: CohortSpec, **kw: object) -> tuple[Site, str]:
    """One site whose operator approved a plaintext study over ``cohorts`` (default COHORT), with
    its floors off: its refusals may quote counts (the study is not secure), so the tests below
    see every message unscrubbed. Returns the site and the study's SHA-256."""
    site = Site("a", data, floors=PERMISSIVE_FLOORS, **kw)  # type: ignore[arg-type]
    return site, approve([site], cohorts or (COHORT,), secure=False).sha256


@pytest.mark.req("SRS-FED-008")
def test_malformed_request_gets_an_error_reply_not_an_exception(rossi: pd.DataFrame) -> None:
    reply = decode_reply(Site("a", rossi).handle(b'{"kind": "prepare", "junk": 1}'))
    assert isinstance(reply, ErrorReply) and reply.code == "bad-request"


@pytest.mark.req("SRS-FED-008")
def test_request_before_prepare_is_refused(rossi: pd.DataFrame) -> None:
    site, study = _open_site(rossi)
    reply = _ask(site, RiskSetRequest(session="x", round=0, study=study,
                                      beta=WireArray.from_numpy(np.zeros(7)), efron=True))
    assert isinstance(reply, ErrorReply) and "unknown session" in reply.message


@pytest.mark.req("SRS-FED-010")
@pytest.mark.parametrize(("change", "message"), [
    (lambda df: df.drop(columns="age"), "unknown column 'age'"),
    (lambda df: df.assign(age=df["age"].astype(str) + "y"), "column 'age' is not numeric"),
    (lambda df: df.assign(age=df["age"].where(df.index > 3)), "column 'age' has 4 missing"),
    (lambda df: df.assign(arrest=df["arrest"] * 2), "'arrest' must be 0/1"),
    (lambda df: df.assign(week=-df["week"]), "has 432 negative times"),
    (lambda df: df.iloc[:0], "no rows"),
])
def test_bad_data_is_refused_with_a_reason(rossi: pd.DataFrame, change, message: str) -> None:  # type: ignore[no-untyped-def]
    site, study = _open_site(change(rossi))
    reply = _ask(site, PrepareRequest(session="s", round=0, study=study, cohort=COHORT))
    assert isinstance(reply, ErrorReply) and reply.code == "data"
    assert message in reply.message


@pytest.mark.req("SRS-PRIV-003", "RC-PRIV-002")
def test_refusals_never_quote_a_patient_value(rossi: pd.DataFrame) -> None:
    """Error replies cross the wire: they give counts and column names, never row values."""
    marked = rossi.assign(age=rossi["age"].astype(str).where(rossi.index != 5, "98765.4321y"),
                          week=rossi["week"].where(rossi.index != 7, -4242.5),
                          arrest=rossi["arrest"].where(rossi.index != 9, 7777))
    cohorts = (COHORT, CohortSpec(time="week", event="arrest"), CohortSpec(time="week", event="fin"))
    for cohort in cohorts:
        # a plaintext study: messages are not scrubbed of numbers, so this is the site's own wording
        site, study = _open_site(marked, *cohorts)
        reply = _ask(site, PrepareRequest(session="s", round=0, study=study, cohort=cohort))
        assert isinstance(reply, ErrorReply)
        for value in ("98765", "4242", "7777"):
            assert value not in reply.message


@pytest.mark.req("SRS-FED-010")
def test_site_error_names_the_site(rossi: pd.DataFrame) -> None:
    parts = split_frame(rossi, 3, seed=0)
    parts[2] = parts[2].drop(columns="prio")
    with pytest.raises(SiteError, match="site 'site-2'.*unknown column 'prio'"):
        fed_cox(parts, COHORT)


@pytest.mark.req("SRS-FED-008")
def test_wrong_beta_shape_is_refused(rossi: pd.DataFrame) -> None:
    site, study = _open_site(rossi)
    assert not isinstance(_ask(site, PrepareRequest(session="s", round=0, study=study, cohort=COHORT)),
                          ErrorReply)
    from federated.protocol.messages import GridRequest

    grid = _ask(site, GridRequest(session="s", round=1, study=study, labels=[""],
                                  times=[WireArray.from_numpy(np.unique(rossi.week[rossi.arrest == 1]))],
                                  center=WireArray.from_numpy(np.zeros(7))))
    assert not isinstance(grid, ErrorReply)
    reply = _ask(site, RiskSetRequest(session="s", round=2, study=study,
                                      beta=WireArray.from_numpy(np.zeros(3)), efron=False))
    assert isinstance(reply, ErrorReply) and "beta has shape (3,), want (7,)" in reply.message


@pytest.mark.req("SRS-PRIV-003", "SRS-PRIV-004", "RC-PRIV-002")
def test_what_a_site_sends_is_shaped_by_the_study_not_its_rows(rossi: pd.DataFrame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every message of a secure fit is masked, and a site with 40 rows sends exactly the
    shapes and byte counts a site with 300 rows sends."""
    parts = split_frame(rossi, 3, seed=1)
    assert len({len(p) for p in parts}) == 3
    sites = make_sites(parts, transcript_dir=tmp_path)
    protocol = approve(sites, [COHORT])
    assert protocol.secure
    fit = fit_cox(Coordinator(InProcessTransport(sites), session="t", protocol=protocol), COHORT)
    logs = {i: [json.loads(x) for x in (tmp_path / f"site-{i}.jsonl").read_text().splitlines()]
            for i in range(3)}
    k = fit.baselines[0].times.size
    for lines in logs.values():
        assert [x["round"] for x in lines] == list(range(fit.rounds))
        assert {"round", "kind", "bytes", "shapes", "sha256", "masked", "message"} <= set(lines[0])
        assert all(x["masked"] and x["plaintext"] == [] for x in lines)
        for x, y in zip(lines, logs[0], strict=True):
            assert (x["kind"], x["shapes"], x["bytes"]) == (y["kind"], y["shapes"], y["bytes"])
    risk = next(x for x in logs[0] if x["kind"] == "risk-set")
    assert risk["shapes"] == {"s0": [k], "s1": [k, 7], "t0": [k], "t1": [k, 7]}


@pytest.mark.req("SRS-PRIV-004")
def test_transcript_hash_is_of_the_bytes_sent(rossi: pd.DataFrame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    site, study = _open_site(rossi, transcript_dir=tmp_path)
    raw = site.handle(encode(PrepareRequest(session="s", round=0, study=study, cohort=COHORT)))
    line = json.loads((tmp_path / "a.jsonl").read_text())
    assert line["sha256"] == hashlib.sha256(raw).hexdigest() and line["bytes"] == len(raw)
    assert json.loads(raw) == line["message"]  # the transcript holds the message sent
    assert line["kind"] == "prepare" and line["masked"] is False

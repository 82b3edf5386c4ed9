"""The transcript audit passes real secure runs and catches unmasked or n-dependent payloads."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from federated import CohortSpec, Coordinator, InProcessTransport, Site, fit_cox, fit_km
from federated.disclosure.audit import audit_transcripts
from federated.exceptions import DataError
from tests.conftest import GBSG2_COVARIATES, PERMISSIVE_FLOORS, approve, split_frame

pytestmark = pytest.mark.req("SRS-PRIV-004")


def _coordinator(parts: list[pd.DataFrame], folder: Path, cohort: CohortSpec, session: str,
                 secure: bool = True, **protocol_fields: object) -> Coordinator:
    """Sites ``h0``, ``h1``, … writing transcripts to ``folder``, all approving one study over
    ``cohort`` (plaintext when ``secure`` is false); the maths tests' floors."""
    sites = [Site(f"h{i}", p, transcript_dir=folder, floors=PERMISSIVE_FLOORS) for i, p in enumerate(parts)]
    protocol = approve(sites, [cohort], secure=secure, **protocol_fields)
    return Coordinator(InProcessTransport(sites), session=session, protocol=protocol)


def _run(parts: list[pd.DataFrame], folder: Path, secure: bool = True, km: bool = False) -> None:
    if km:
        cohort = CohortSpec(time="time", event="event", partition="tgrade", levels=("1", "2", "3"))
        fit_km(_coordinator(parts, folder, cohort, "a", secure), cohort)
    else:
        cohort = CohortSpec(time="time", event="event", covariates=GBSG2_COVARIATES)
        fit_cox(_coordinator(parts, folder, cohort, "a", secure), cohort)


@pytest.mark.parametrize("km", [False, True])
def test_real_secure_runs_pass(gbsg2_raw: pd.DataFrame, tmp_path: Path, km: bool) -> None:
    _run(split_frame(gbsg2_raw, 4, seed=0), tmp_path, km=km)
    report = audit_transcripts(tmp_path)
    assert report.ok, report.problems
    assert report.sites == ["h0", "h1", "h2", "h3"] and report.messages >= 4 * 3  # keys, prepare, …


@pytest.mark.req("RC-PRIV-002")
def test_plaintext_run_fails_the_masked_rule(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    _run(split_frame(gbsg2, 3, seed=0), tmp_path, secure=False)
    report = audit_transcripts(tmp_path)
    assert not report.ok
    assert any("site 'h0' round 0 'prepare': sent unmasked counts, sum_x, sum_x2, event_histogram" in p
               for p in report.problems)


def test_exact_grid_reveals_event_times_and_the_audit_says_so(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    cohort = CohortSpec(time="time", event="event", covariates=("age", "pnodes"), time_grid="exact")
    # exact event times are the study's loud opt-in (allow_small_time_cells)
    coord = _coordinator(split_frame(gbsg2, 3, seed=1), tmp_path, cohort, "x", allow_small_time_cells=True)
    fit_cox(coord, cohort)
    problems = audit_transcripts(tmp_path).problems
    assert any("'prepare': sent unmasked event_times" in p for p in problems)
    assert any("payload size or shape differs between sites" in p for p in problems)


@pytest.mark.req("RC-PRIV-002")
def test_a_payload_that_grows_with_n_fails(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    _run(split_frame(gbsg2, 3, seed=2), tmp_path)
    path = tmp_path / "h1.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    risk = next(x for x in lines if x["kind"] == "risk-set")
    risk["shapes"]["s0"] = [230]  # as if the site sent one value per patient
    risk["bytes"] += 4000
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = audit_transcripts(tmp_path)
    assert not report.ok and len(report.problems) == 1
    assert f"round {risk['round']} 'risk-set': payload size or shape differs" in report.problems[0]


def test_one_transcript_is_not_enough(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    _run(split_frame(gbsg2, 2, seed=3), tmp_path)
    (tmp_path / "h1.jsonl").unlink()
    assert "at least two sites" in audit_transcripts(tmp_path).problems[0]


def test_unreadable_input_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder"):
        audit_transcripts(tmp_path / "nope")
    with pytest.raises(DataError, match="no <site>.jsonl"):
        audit_transcripts(tmp_path)
    (tmp_path / "a.jsonl").write_text('{"round": 0}\n')
    with pytest.raises(DataError, match="a.jsonl:1: not a transcript line"):
        audit_transcripts(tmp_path)

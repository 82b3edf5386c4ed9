"""A site recalibrates a released model on its own rows: slope (lifelines) and offset baseline (a loop),
aggregates only, and what an honest-but-curious coordinator learns from the reply."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from federated import Site
from federated.analyses.runner import train
from federated.demo_study import write_demo_study
from federated.disclosure.cells import shift_sparse_censoring
from federated.disclosure.policy import DisclosurePolicy, released_steps
from federated.disclosure.rules import SiteFloors, StudyProtocol, protocol_of
from federated.protocol.arrays import WireArray
from federated.protocol.messages import (
    ErrorReply,
    EvaluationModel,
    RecalibrateReply,
    RecalibrateRequest,
    decode_reply,
    encode,
)
from federated.site.recalibration import offset_baseline, slope_fit
from federated.study import CohortSpec, StudySpec, grid_width
from prognosis import CoxModel

Demo = tuple[StudySpec, list[pd.DataFrame], dict[str, Any]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The demo study, its hospitals' tables and the model trained over them (the smallest hospital is
    left out of training by the k-cell rule, as in the demo)."""
    study = write_demo_study(tmp_path_factory.mktemp("recal-site"))
    tables = [pd.read_csv(s.path).drop(columns="patient_id") for s in study.sites]
    _, artifact = train(study, sites=[Site(s.name, t) for s, t in zip(study.sites, tables, strict=True)])
    return study, tables, artifact


def cohort_of(study: StudySpec, model: CoxModel, grid: str) -> CohortSpec:
    """The study's evaluation cohort (what its sites approved for judging a model) on ``grid``."""
    return study.cohort().model_copy(update={"covariates": model.names, "partition": None,
                                             "partition_by_site": False, "levels": None, "time_grid": grid})


def ask(study: StudySpec, artifact: dict[str, Any], rows: pd.DataFrame, *, grid: str | None = None,
        protocol: StudyProtocol | None = None, cohort: CohortSpec | None = None, site: Site | None = None,
        horizons: list[float] | None = None) -> RecalibrateReply | ErrorReply:
    """One recalibrate request to a site whose operator approved ``protocol`` (default the study's)."""
    model = CoxModel.from_artifact(artifact)
    protocol = protocol or protocol_of(study, {})
    target = site or Site("external", rows)
    target.approve(protocol)
    req = RecalibrateRequest(
        session="recal", round=0, study=protocol.sha256,
        cohort=cohort or cohort_of(study, model, grid or artifact["training"]["time_grid"]),
        model=EvaluationModel(artifact=artifact, horizons=WireArray.from_numpy(
            np.array(horizons or model.horizons))))
    reply = decode_reply(target.handle(encode(req)))
    assert isinstance(reply, (RecalibrateReply, ErrorReply))
    return reply


def site_rows(study: StudySpec, model: CoxModel, rows: pd.DataFrame, grid: str
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows a site recalibrates on, computed here independently: inside every input's declared
    range, administratively censored at max_time, times rounded up to the end of their grid cell.
    Returns time, event (0/1) and x (n, p) in the model's input order."""
    x = rows[list(model.names)].to_numpy(float)
    keep = inside(model, rows)
    time, event = rows[study.time].to_numpy(float)[keep], rows[study.event].to_numpy(int)[keep]
    assert study.max_time is not None
    event = np.where(time > study.max_time, 0, event)
    time = np.minimum(time, study.max_time)
    width = grid_width(grid, study.time_unit)
    return np.ceil(np.round(time / width, 9)) * width, event, x[keep]


def loop_baseline(time: np.ndarray, event: np.ndarray, z: np.ndarray, offset: np.ndarray, k: int
                  ) -> tuple[np.ndarray, ...]:
    """Breslow's baseline with a fixed offset, the slow obvious way: for each distinct event time its
    risk set by a loop, then the cells merged into steps of ≥ k events by hand. Returns the released
    times, H0 there, the step sums of d/S0² and of (x̄ − c) d/S0, and the events per step."""
    out: list[list[Any]] = []
    pending = [0, 0.0, 0.0, np.zeros(z.shape[1])]
    H = 0.0
    for g in sorted(set(time[event == 1].tolist())):
        at_risk = [i for i in range(time.size) if time[i] >= g]
        d = sum(1 for i in range(time.size) if time[i] == g and event[i] == 1)
        s0 = sum(np.exp(offset[i]) for i in at_risk)
        s1 = sum(np.exp(offset[i]) * z[i] for i in at_risk)
        H += d / s0
        pending = [pending[0] + d, pending[1] + d / s0 ** 2, 0.0, pending[3] + s1 / s0 * d / s0]
        if pending[0] >= k:
            out.append([g, H, pending[1], pending[3], pending[0]])
            pending = [0, 0.0, 0.0, np.zeros(z.shape[1])]
    return tuple(np.array([row[j] for row in out]) for j in range(5))


@pytest.mark.req("SRS-VAL-010")
def test_slope_and_its_se_equal_lifelines_on_the_sites_rows(demo: Demo) -> None:
    study, tables, artifact = demo
    model = CoxModel.from_artifact(artifact)
    reply = ask(study, artifact, tables[0])
    assert isinstance(reply, RecalibrateReply), reply
    time, event, x = site_rows(study, model, tables[0], reply.time_grid)
    lp = model.lp(x)
    cph = CoxPHFitter().fit(pd.DataFrame({"T": time, "E": event, "lp": lp}), "T", "E")  # Efron ties
    assert artifact["ties"] == "efron"
    assert abs(reply.slope - cph.params_["lp"]) <= 1e-6
    assert abs(reply.slope_se - cph.standard_errors_["lp"]) <= 1e-6
    assert abs(reply.loglik - cph.log_likelihood_) <= 1e-6
    # Breslow's ties (lifelines has none) give another slope on these tied yearly cells
    breslow = slope_fit(time, event, lp, efron=False)
    assert abs(breslow.slope - reply.slope) > 1e-4  # yearly cells: many ties, the methods differ


@pytest.mark.req("SRS-VAL-010")
def test_offset_baseline_equals_a_loop_at_the_released_steps(demo: Demo) -> None:
    study, tables, artifact = demo
    model = CoxModel.from_artifact(artifact)
    reply = ask(study, artifact, tables[0])
    assert isinstance(reply, RecalibrateReply), reply
    time, event, x = site_rows(study, model, tables[0], reply.time_grid)
    k = reply.min_cell_count
    assert k == DisclosurePolicy().min_cell_count
    times, H, v, w, d = loop_baseline(time, event, x - model.center, reply.slope * model.lp(x), k)
    assert times.size >= 2 and np.all(d >= k)
    np.testing.assert_array_equal(reply.times.to_numpy(), times)
    np.testing.assert_allclose(reply.cumulative_hazard.to_numpy(), H, rtol=1e-9, atol=0)
    np.testing.assert_allclose(reply.variance_increments.to_numpy(), v, rtol=1e-9, atol=0)
    np.testing.assert_allclose(reply.xbar_increments.to_numpy(), w, rtol=1e-9, atol=1e-12)
    assert reply.n % k == 0 and reply.events % k == 0
    assert abs(reply.n - time.size) <= k / 2 and abs(reply.events - event.sum()) <= k / 2


@pytest.mark.req("SRS-VAL-010")
def test_a_model_that_is_true_at_the_site_gets_a_slope_of_about_one() -> None:
    """Simulated site from the model itself (true slope 1, same baseline): γ̂ ≈ 1 and H0 ≈ the model's."""
    rng = np.random.default_rng(5)
    n, beta, rate = 4000, np.array([0.8, -0.5]), 1e-3
    x = rng.normal(size=(n, 2))
    t_event = rng.exponential(1.0 / (rate * np.exp(x @ beta)))
    t_cens = rng.uniform(0, 2000, n)
    time, event = np.round(np.minimum(t_event, t_cens)), (t_event <= t_cens).astype(int)
    grid = np.arange(1.0, 2001.0)
    model = CoxModel.from_arrays(["a", "b"], beta, [0.0, 0.0], grid, np.exp(-rate * grid), [365.0])
    fit = slope_fit(time, event, model.lp(x))
    assert abs(fit.slope - 1.0) < 2.5 * fit.se and fit.se < 0.05
    base = offset_baseline(time, event, x, fit.slope * model.lp(x))
    H = np.cumsum(base.hazard)
    at = np.searchsorted(base.times, [250.0, 500.0, 1000.0])
    np.testing.assert_allclose(H[at], rate * base.times[at], rtol=0.08)


@pytest.mark.req("SRS-PRIV-030")
def test_the_reply_holds_aggregates_only(demo: Demo) -> None:
    study, tables, artifact = demo
    reply = ask(study, artifact, tables[0])
    assert isinstance(reply, RecalibrateReply), reply
    rows = len(tables[0])
    for name in ("times", "cumulative_hazard", "variance_increments", "xbar_increments"):
        assert rows not in getattr(reply, name).shape  # nothing with one value per patient
    assert reply.times.shape[0] <= study.max_time / grid_width(reply.time_grid, study.time_unit) + 1
    assert set(reply.plaintext_fields()) >= {"slope", "times", "cumulative_hazard"}


#: the coordinator's attacks on a recalibration (Wycheproof style): each changes one thing of an
#: approved request — (grid asked, approved finest grid, horizons, cohort change) — and is refused
ATTACKS: dict[str, tuple[str | None, str | None, list[float] | None, dict[str, Any]]] = {
    # a grid finer than the study approved, to see single event days
    "finer-grid": ("day", "year", None, {}),
    # a horizon the study did not approve
    "unapproved-horizon": (None, None, [999.0], {}),
    # a random half of the site's patients, to difference against the whole
    "block-of-patients": (None, None, None, {"block": (0, 2, 1)}),
    # another censoring horizon than the approved one
    "other-max-time": (None, None, None, {"max_time": 1000.0}),
}


@pytest.mark.req("SRS-PRIV-030")
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_coordinator_cannot_ask_outside_the_approved_study(demo: Demo, attack: str) -> None:
    study, tables, artifact = demo
    grid, approved_grid, horizons, change = ATTACKS[attack]
    approved = study.model_copy(update={"time_grid": approved_grid}) if approved_grid else study
    model = CoxModel.from_artifact(artifact)
    cohort = cohort_of(study, model, grid or "year").model_copy(update=change)
    reply = ask(study, artifact, tables[0], protocol=protocol_of(approved, {}), cohort=cohort,
                horizons=horizons)
    assert isinstance(reply, ErrorReply) and reply.code == "not-approved", reply


@pytest.mark.req("SRS-PRIV-030")
def test_a_cell_of_one_patient_makes_the_site_refuse_the_grid_without_numbers(demo: Demo) -> None:
    """Attack: a site whose yearly cells are all large but one — a woman censored alone in the first
    year. On the default rules the site refuses the grid (``cells``); the refusal quotes the rule (k)
    and no count or time of the site's."""
    study, tables, artifact = demo
    plain = study.model_copy(update={"shift_sparse_censoring": False})  # the default rules
    reply = ask(plain, artifact, lone_censored_in_year_one(study, tables[0]))
    assert isinstance(reply, ErrorReply) and reply.code == "cells"
    assert reply.message == "a cell of the year grid holds fewer than 5 of this site's patients"


@pytest.mark.req("SRS-PRIV-030", "SRS-VAL-010")
def test_with_the_studys_opt_in_sparse_censored_cells_are_censored_earlier(demo: Demo) -> None:
    """The same site under a study that opted into shift_sparse_censoring (SRS-PRIV-024): the site
    censors its sparse censored yearly cells earlier (on the rows it uses, inside the envelope) and
    answers; the slope is lifelines' on those shifted rows."""
    study, tables, artifact = demo
    model = CoxModel.from_artifact(artifact)
    rows = lone_censored_in_year_one(study, tables[0])
    shifted = study.model_copy(update={"shift_sparse_censoring": True})
    reply = ask(shifted, artifact, rows, protocol=protocol_of(shifted, {}))
    assert isinstance(reply, RecalibrateReply), reply
    time, event, x = site_rows(study, model, rows, "year")
    raw, kept = shift_sparse_censoring(time, event, np.zeros(time.size), "year", study.time_unit, 5)
    assert not kept.all()  # the lone woman censored in the first year is left out (censored at 0)
    width = grid_width("year", study.time_unit)
    frame = pd.DataFrame({"T": np.ceil(np.round(raw / width, 9))[kept] * width, "E": event[kept],
                          "lp": model.lp(x[kept])})
    cph = CoxPHFitter().fit(frame, "T", "E")
    assert abs(reply.slope - cph.params_["lp"]) <= 1e-6
    assert abs(reply.slope_se - cph.standard_errors_["lp"]) <= 1e-6


def lone_censored_in_year_one(study: StudySpec, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with only one woman censored in the first year (the others left out)."""
    first_year = rows[study.time] <= 365.25
    return pd.concat([rows[~first_year | (rows[study.event] == 1)],
                      rows[first_year & (rows[study.event] == 0)].head(1)], ignore_index=True)


@pytest.mark.req("SRS-PRIV-030")
def test_a_lone_event_is_never_a_step_of_its_own(demo: Demo) -> None:
    """Attack: the study opted into small cells (exact days), and one woman's event is the site's last
    — alone after every other released step. The coordinator wants her event time (and, from S0 and
    S1 at it, her covariates). What it decodes: steps of at least k events only; the curve ends before
    her event, so the reply is the same whatever her event time."""
    study, tables, artifact = demo
    model = CoxModel.from_artifact(artifact)
    exact = study.model_copy(update={"time_grid": "day", "allow_small_time_cells": True})
    rows = tables[0].copy()
    late = (rows[study.time] > 1500).to_numpy()
    rows.loc[late, study.event] = 0  # after day 1500 everyone is censored …
    time, event, _ = site_rows(exact, model, rows, "day")
    days = np.unique(time[event == 1])
    d = np.array([np.sum((time == g) & (event == 1)) for g in days])
    last = days[released_steps(d, 5)[-1]]
    rows.loc[rows[study.time] > last, study.event] = 0  # … and after the last step of ≥ k events
    target = int(np.flatnonzero(late & inside(model, rows))[0])  # … except her, inside the envelope
    rows.loc[target, study.event] = 1
    replies = []
    for when in (1600.0, 1700.0):  # her event on either day
        rows.loc[target, study.time] = when
        reply = ask(exact, artifact, rows, grid="day", protocol=protocol_of(exact, {}))
        assert isinstance(reply, RecalibrateReply), reply
        replies.append(reply)
        time, event, _ = site_rows(exact, model, rows, "day")
        days = np.unique(time[event == 1])
        d = np.array([np.sum((time == g) & (event == 1)) for g in days])
        assert days[-1] == when and d[-1] == 1  # her event is the site's last, alone
        assert reply.times.to_numpy()[-1] == last < when
        # every released step accumulated at least k events since the previous one
        np.testing.assert_array_equal(reply.times.to_numpy(), days[released_steps(d, reply.min_cell_count)])
    np.testing.assert_array_equal(replies[0].times.to_numpy(), replies[1].times.to_numpy())


@pytest.mark.req("SRS-PRIV-030")
def test_recalibrations_spend_the_sites_budget_of_evaluations(demo: Demo) -> None:
    study, tables, artifact = demo
    model = CoxModel.from_artifact(artifact)
    site = Site("external", tables[0], floors=SiteFloors(max_evaluations=1))
    assert isinstance(ask(study, artifact, tables[0], site=site), RecalibrateReply)
    protocol = protocol_of(study, {})
    req = RecalibrateRequest(session="recal-2", round=0, study=protocol.sha256,
                             cohort=cohort_of(study, model, "year"),
                             model=EvaluationModel(artifact=artifact, horizons=WireArray.from_numpy(
                                 np.array(model.horizons))))
    refused = decode_reply(site.handle(encode(req)))  # a second release from the same rows
    assert isinstance(refused, ErrorReply) and refused.code == "budget"


def inside(model: CoxModel, rows: pd.DataFrame) -> np.ndarray:
    """The rows inside every input's declared range (the intended-use envelope)."""
    x = rows[list(model.names)].to_numpy(float)
    return np.all([(x[:, j] >= i.min) & (x[:, j] <= i.max) for j, i in enumerate(model.inputs)], axis=0)

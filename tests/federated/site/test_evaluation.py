"""A site evaluates a model on its own rows: scikit-survival's metrics, bootstrap CIs, aggregates only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from device.model import PrognosticModel, load_model
from device.scoring import baseline_cumhaz, check_inputs, score
from federated import DisclosurePolicy, Site
from federated.analyses.runner import train
from federated.demo_study import DEMO_INPUTS, split
from federated.disclosure.policy import round_to_k
from federated.disclosure.rules import StudyProtocol, protocol_of
from federated.protocol.arrays import WireArray
from federated.protocol.messages import (
    EvaluateReply,
    EvaluateRequest,
    EvaluationModel,
    Subgroup,
    decode_reply,
    encode,
)
from federated.site.evaluation import public_km_times
from federated.site.performance import cox_slope
from federated.study import StudySpec
from prognosis import CoxModel

pytestmark = pytest.mark.req("SRS-VAL-005")

NAMES = list(DEMO_INPUTS)
HORIZONS = [1095.0, 1826.0]
GRID = np.linspace(0.0, 1826.0, 51)[1:]
#: administrative censoring at 5 Julian years, as in the demo study: without it the sparse tail of
#: follow-up leaves cells of fewer than k women at every hospital on every time grid (k-cells)
MAX_TIME = 1826.25
STUDY = StudySpec(model_id="t", time="time", event="event", covariates=NAMES, horizons=HORIZONS,
                  inputs=DEMO_INPUTS, max_time=MAX_TIME)
SUBGROUPS = [Subgroup(name="age < 50", partition="age", variable="age", high=50.0),
             Subgroup(name="age 50–64", partition="age", variable="age", low=50.0, high=65.0),
             Subgroup(name="age ≥ 65", partition="age", variable="age", low=65.0),
             Subgroup(name="hormone therapy: yes", partition="ht", variable="hormone_therapy", equals=1.0),
             Subgroup(name="hormone therapy: no", partition="ht", variable="hormone_therapy", equals=0.0)]


Demo = tuple[list[pd.DataFrame], dict[str, Any]]


@pytest.fixture(scope="module")
def demo(gbsg2: pd.DataFrame) -> Demo:
    """The demo hospitals (all patients) and a model trained federatedly over them: h3 (103 women)
    is left out of training by the k-cell rule, as hospital-d is in the demo; every hospital is
    still evaluated."""
    parts = split(gbsg2)
    _, artifact = train(STUDY, sites=[Site(f"h{i}", p) for i, p in enumerate(parts)])
    assert artifact["training"]["sites"] == ["h0", "h1", "h2"]
    return parts, artifact


def approved(*, policy: DisclosurePolicy | None = None, horizons: list[float] = HORIZONS) -> StudyProtocol:
    """The study the sites' operators approved (its policy and horizons; peers play no part in an
    evaluation, which is plaintext by design)."""
    study = STUDY.model_copy(update={"horizons": sorted(horizons),
                                     "policy": policy or DisclosurePolicy()})
    return protocol_of(study, {})


def request(artifact: dict[str, Any], *, n_boot: int = 20, seed: int = 7,
            subgroups: list[Subgroup] | None = None, protocol: StudyProtocol | None = None,
            horizons: list[float] = HORIZONS) -> bytes:
    w = WireArray.from_numpy
    model = EvaluationModel(artifact=artifact, horizons=w(np.array(horizons)))
    protocol = protocol or approved()
    km_times = public_km_times(STUDY.cohort(), protocol.horizons)  # fixed by the study alone
    req = EvaluateRequest(session="eval", round=0, study=protocol.sha256, cohort=STUDY.cohort(),
                          model=model, n_boot=n_boot, seed=seed,
                          subgroups=SUBGROUPS if subgroups is None else subgroups,
                          km_times=w(km_times), ibs_times=w(GRID))
    return encode(req)


def site(name: str, rows: pd.DataFrame, protocol: StudyProtocol | None = None, **kw: Any) -> Site:
    """A hospital (its own default floors) whose operator approved ``protocol`` (default the study)."""
    out = Site(name, rows, **kw)
    out.approve(protocol or approved())
    return out


def evaluate(rows: pd.DataFrame, payload: bytes, name: str = "h0",
             protocol: StudyProtocol | None = None) -> EvaluateReply:
    reply = decode_reply(site(name, rows, protocol).handle(payload))
    assert isinstance(reply, EvaluateReply), reply
    return reply


def envelope(df: pd.DataFrame) -> pd.DataFrame:
    """The rows inside every declared range: the intended-use population a site evaluates."""
    keep = np.ones(len(df), dtype=bool)
    for name, spec in DEMO_INPUTS.items():
        keep &= (df[name] >= spec.min).to_numpy() & (df[name] <= spec.max).to_numpy()
    return df[keep].reset_index(drop=True)


def censored(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """A site's times and 0/1 events after the study's administrative censoring at MAX_TIME (what
    the site evaluates on)."""
    time, event = df["time"].to_numpy(float), df["event"].to_numpy(int)
    return np.minimum(time, MAX_TIME), np.where(time > MAX_TIME, 0, event)


def values(block: Any) -> dict[tuple[str, float | None], Any]:
    return {(m.metric, m.horizon): m for m in block.metrics}


def scored(model: PrognosticModel, X: np.ndarray, horizons: list[float] | np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """The linear predictor β·(x − c) and the predicted risks 1 − S0(h)^exp(η) of every row, by the
    device's formula (:mod:`device.scoring`). The device refuses to score a row outside the
    intended-use envelope, which is narrower than the cohort (training and evaluation use every
    consented patient), so the rows inside it are checked against the device's own scorer."""
    hs = np.asarray(horizons, dtype=float)
    lp = (X - model.center) @ model.beta
    H0 = baseline_cumhaz(model, hs)
    with np.errstate(divide="ignore"):
        H = np.where(H0 > 0, np.exp(lp[:, None] + np.log(H0)[None, :]), 0.0)
    risk = -np.expm1(-H)
    inside = np.array([reason is None for reason in check_inputs(model, X)])
    assert inside.sum() >= X.shape[0] // 2
    device = score(model, X[inside], hs)
    np.testing.assert_allclose(device.lp, lp[inside], rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(device.risk, risk[inside], rtol=1e-14, atol=1e-14)
    return lp, risk


def reference(df: pd.DataFrame, artifact: dict[str, Any]) -> dict[tuple[str, float | None], float]:
    """Every metric computed directly with scikit-survival on the site's rows (the device's formula
    gives the linear predictor and the predicted risks)."""
    model = load_model(artifact)
    X = df[NAMES].to_numpy(float)
    time, event = censored(df)
    ev = event.astype(bool)
    y = Surv.from_arrays(ev, time)
    hs = np.array(HORIZONS)
    lp, risk = scored(model, X, HORIZONS)
    tau = max(h for h in HORIZONS if h < time.max())
    # the integrated-Brier grid: public points with at least k = 5 women followed past them and 5
    # whose follow-up ended by them (a count rule, never one woman's first or last time)
    ended = np.searchsorted(np.sort(time), GRID, side="right")
    g = GRID[(ended >= 5) & (len(time) - ended >= 5) & (GRID <= tau)
             & (GRID >= time.min()) & (GRID < time.max())]
    later = time[time > hs.max()].min()
    cut = hs.max() + 0.5 * (later - hs.max())
    y_cut = Surv.from_arrays(ev & (time <= cut), np.minimum(time, cut))
    out: dict[tuple[str, float | None], float] = {
        ("harrell_c", None): concordance_index_censored(ev, time, lp)[0],
        ("uno_c", None): concordance_index_ipcw(y, y, lp, tau=tau)[0],
        ("integrated_brier", None): integrated_brier_score(y, y, 1 - scored(model, X, g)[1], g),
    }
    auc = cumulative_dynamic_auc(y_cut, y_cut, lp, hs)[0]
    brier = brier_score(y, y, 1 - risk, hs)[1]
    km_t, km_s = kaplan_meier_estimator(ev, time)
    for k, h in enumerate(HORIZONS):
        observed = 1 - km_s[np.searchsorted(km_t, h, side="right") - 1]
        expected = risk[:, k].mean()
        out.update({("td_auc", h): auc[k], ("brier", h): brier[k], ("e_o_ratio", h): expected / observed,
                    ("calibration_intercept", h): np.log(observed / expected)})
    return out


def test_site_metrics_equal_scikit_survival_on_the_same_rows(demo: Demo) -> None:
    parts, artifact = demo
    for i, part in enumerate(parts):
        got = values(evaluate(part, request(artifact, n_boot=0, subgroups=[]), f"h{i}").overall)
        want = reference(envelope(part), artifact)
        for key, value in want.items():
            assert got[key].estimate == pytest.approx(value, abs=1e-12, rel=0), (i, key)


def test_auc_censoring_after_the_last_horizon_changes_nothing_where_sksurv_runs_uncut(
        demo: Demo) -> None:
    """The cut only avoids an undefined weight at a late event; where scikit-survival computes the
    AUC on the uncut rows, the value is the same."""
    parts, artifact = demo
    compared = 0
    for i, part in enumerate(parts):
        rows = envelope(part)
        time, event = censored(rows)
        y = Surv.from_arrays(event.astype(bool), time)
        lp = scored(load_model(artifact), rows[NAMES].to_numpy(float), HORIZONS)[0]
        try:
            uncut = cumulative_dynamic_auc(y, y, lp, np.array(HORIZONS))[0]
        except ValueError:
            continue
        got = values(evaluate(part, request(artifact, n_boot=0, subgroups=[]), f"h{i}").overall)
        assert [got[("td_auc", h)].estimate for h in HORIZONS] == pytest.approx(uncut, abs=1e-12)
        compared += 1
    assert compared >= 2


def test_calibration_slope_equals_a_cox_refit_of_the_linear_predictor(
        demo: Demo) -> None:
    parts, artifact = demo
    part = parts[1]
    got = values(evaluate(part, request(artifact, n_boot=0, subgroups=[]), "h1").overall)
    rows = envelope(part)
    time, event = censored(rows)
    lp = scored(load_model(artifact), rows[NAMES].to_numpy(float), HORIZONS)[0]
    y = Surv.from_arrays(event == 1, time)
    refit = CoxPHSurvivalAnalysis(ties="efron", tol=1e-12).fit(lp[:, None], y)
    assert got[("calibration_slope", None)].estimate == pytest.approx(refit.coef_[0], abs=1e-6)
    for h in HORIZONS:  # follow-up administratively censored at the horizon
        y_h = Surv.from_arrays((event == 1) & (time <= h), np.minimum(time, h))
        ref_h = CoxPHSurvivalAnalysis(ties="efron", tol=1e-12).fit(lp[:, None], y_h).coef_[0]
        assert got[("calibration_slope", h)].estimate == pytest.approx(ref_h, abs=1e-6)


def test_cox_slope_of_the_true_linear_predictor_is_about_one_and_scales_inversely() -> None:
    rng = np.random.default_rng(3)
    lp = rng.normal(size=400)
    time = rng.exponential(1 / np.exp(lp))  # hazard exp(lp): the true slope is 1
    event = (rng.uniform(size=400) < 0.8).astype(int)
    order = np.argsort(time)
    time, event, lp = time[order], event[order], lp[order]
    gamma = cox_slope(time, event, lp)
    assert gamma == pytest.approx(1.0, abs=0.15)
    assert cox_slope(time, event, 2 * lp) == pytest.approx(gamma / 2, rel=1e-8)
    with pytest.raises(FloatingPointError):
        cox_slope(time, event, np.zeros(400))


def test_bootstrap_cis_are_deterministic_for_a_seed_and_contain_the_estimate(
        demo: Demo) -> None:
    parts, artifact = demo
    first = site("h0", parts[0]).handle(request(artifact, n_boot=50, subgroups=[]))
    assert site("h0", parts[0]).handle(request(artifact, n_boot=50, subgroups=[])) == first
    other = evaluate(parts[0], request(artifact, n_boot=50, seed=8, subgroups=[]))
    reply = decode_reply(first)
    assert isinstance(reply, EvaluateReply)
    c, c_other = values(reply.overall)[("harrell_c", None)], values(other.overall)[("harrell_c", None)]
    assert c_other.estimate == c.estimate and c_other.ci_lower != c.ci_lower
    assert len(reply.overall.metrics) == 14 and not reply.overall.unavailable
    for m in reply.overall.metrics:
        assert m.n_boot == 50 and m.se is not None and m.se > 0
        assert m.ci_lower is not None and m.ci_upper is not None
        assert m.ci_lower <= m.estimate <= m.ci_upper, m


def _arrays(node: Any) -> list[list[Any]]:
    if isinstance(node, dict):
        return [a for v in node.values() for a in _arrays(v)]
    if isinstance(node, list):
        return [node] + [a for v in node for a in _arrays(v)]
    return []


def test_the_reply_holds_aggregates_only_and_suppresses_small_groups(
        demo: Demo) -> None:
    parts, artifact = demo
    part = parts[3]  # the smallest hospital: 103 women, 14 of them aged 65 or more
    raw = site("h3", part).handle(request(artifact, n_boot=20))
    reply = decode_reply(raw)
    assert isinstance(reply, EvaluateReply)
    n = len(envelope(part))  # the site evaluates the women inside the intended-use envelope
    assert reply.overall.n == round_to_k(n, 5)  # counts are released rounded to a multiple of k
    body = json.loads(raw)
    assert all(len(a) != n for a in _arrays(body))  # no array as long as the site's patient count
    assert '"data"' not in raw.decode()  # no encoded numeric array either
    by_name = {b.name: b for b in reply.subgroups}
    old = by_name["age ≥ 65"]
    assert old.suppressed is not None and "min_patients_per_site" in old.suppressed
    assert old.metrics == [] and old.n is None and old.events is None
    assert by_name["age < 50"].metrics and by_name["hormone therapy: no"].metrics
    groups = reply.risk_groups
    assert 1 <= len(groups) <= 5 and all(g.n >= 20 and g.events >= 5 for g in groups)
    assert all(g.n % 5 == 0 and g.events % 5 == 0 for g in groups)
    assert abs(sum(g.n for g in groups) - n) <= 2 * len(groups)  # each rounded by at most k // 2
    # a group reports horizons only up to its last released KM step (disclosure control)
    scored = [g for g in groups if g.horizons and g.horizons[0] == HORIZONS[0]]
    assert [g.predicted[0] for g in scored] == sorted(g.predicted[0] for g in scored)


def test_a_small_cell_is_protected_from_subtraction(demo: Demo) -> None:
    """Three women with hormone therapy: that subgroup is withheld, and so are the counts of the
    other (else site total − 'no' = 3)."""
    parts, artifact = demo
    part = envelope(parts[0])
    part["hormone_therapy"] = 0
    part.loc[part.index[:3], "hormone_therapy"] = 1
    reply = evaluate(part, request(artifact, n_boot=0))
    by_name = {b.name: b for b in reply.subgroups}
    yes, no = by_name["hormone therapy: yes"], by_name["hormone therapy: no"]
    assert yes.suppressed and yes.n is None
    assert no.suppressed is None and no.metrics and no.n is None and no.events is None
    assert all(by_name[a].n is not None for a in ("age < 50", "age 50–64", "age ≥ 65"))


def test_a_site_below_the_minimums_sends_nothing_but_the_rule(
        demo: Demo) -> None:
    parts, artifact = demo
    strict = approved(policy=DisclosurePolicy(min_patients_per_site=500))  # the study raises a floor
    reply = evaluate(parts[3], request(artifact, protocol=strict), protocol=strict)
    assert reply.overall.suppressed is not None and "min_patients_per_site" in reply.overall.suppressed
    assert reply.overall.n is None and reply.overall.metrics == []
    assert reply.subgroups == [] and reply.risk_groups == []


def test_a_horizon_beyond_follow_up_is_reported_unavailable(
        demo: Demo) -> None:
    parts, artifact = demo
    last = artifact["baseline_survival"]["times"][-1]
    part = parts[2][parts[2]["time"] < 1500].reset_index(drop=True)
    horizons = [1095.0, last]
    protocol = approved(horizons=horizons)
    reply = evaluate(part, request(artifact, n_boot=0, subgroups=[], horizons=horizons, protocol=protocol),
                     "h2", protocol)
    missing = {(u.metric, u.horizon) for u in reply.overall.unavailable}
    assert ("td_auc", last) in missing and ("e_o_ratio", last) in missing
    assert ("td_auc", 1095.0) in values(reply.overall)


def test_a_bad_model_is_refused_with_a_reason(demo: Demo) -> None:
    parts, artifact = demo
    last = artifact["baseline_survival"]["times"][-1]
    beyond = approved(horizons=[last + 100.0])  # approved, but beyond the model's released baseline
    reply = decode_reply(site("h0", parts[0], beyond).handle(request(artifact, horizons=[last + 100.0],
                                                                       protocol=beyond)))
    assert reply.kind == "error" and reply.code == "bad-request" and "horizons" in reply.message


@pytest.mark.req("SRS-DEV-010")
def test_the_site_evaluates_the_sealed_artifact_itself(demo: Demo) -> None:
    """The request carries the model's own artifact, checked by the one schema and its seal: an edited
    coefficient or a model of other inputs is refused before any row is read."""
    parts, artifact = demo
    with pytest.raises(ValueError, match="sha256 mismatch"):  # an honest coordinator cannot even send it
        request({**artifact, "version": "edited"})
    wire = json.loads(request(artifact))
    wire["model"]["artifact"]["coefficients"]["age"] += 0.5  # a malicious one edits the bytes
    reply = decode_reply(site("h0", parts[0]).handle(json.dumps(wire).encode()))
    assert reply.kind == "error" and "sha256 mismatch" in reply.message  # type: ignore[union-attr]
    other = CoxModel.from_arrays(["age"], [0.01], [50.0], [365.25, 1826.25], [0.9, 0.7], HORIZONS)
    reply = decode_reply(site("h0", parts[0]).handle(request(other.to_artifact())))
    assert reply.kind == "error" and "not the cohort's covariates" in reply.message  # type: ignore[union-attr]


def test_the_transcript_shows_the_plaintext_results(tmp_path: Path,
                                                   demo: Demo) -> None:
    parts, artifact = demo
    site("h0", parts[0], transcript_dir=tmp_path).handle(request(artifact, n_boot=0, subgroups=[]))
    line = json.loads((tmp_path / "h0.jsonl").read_text())
    assert line["kind"] == "evaluate" and line["masked"] is False
    assert line["plaintext"] == ["overall", "risk_groups"]


def test_a_library_error_leaves_the_site_without_its_numbers() -> None:
    from federated.site.performance import _reason

    msg = _reason(ValueError("all times must be within follow-up time of test data: [8.0; 2659.0["))
    assert msg == "ValueError: all times must be within follow-up time of test data: [#; #["


@pytest.mark.req("RC-PRIV-002")
def test_a_site_refuses_subgroups_it_has_not_pinned(demo: Demo) -> None:
    """Overlapping age thresholds (age < 40, < 41, …) could be differenced down to single women;
    a site evaluates only the declared age bands and yes/no splits of binary covariates."""
    parts, artifact = demo
    probes = [[Subgroup(name="age < 41", partition="a", variable="age", high=41.0)],
              [Subgroup(name="tsize = 25", partition="t", variable="tsize", equals=1.0)],
              [SUBGROUPS[0], SUBGROUPS[0].model_copy(update={"name": "again", "partition": "b"})]]
    for subs in probes:
        reply = decode_reply(site("h0", parts[0]).handle(request(artifact, n_boot=0, subgroups=subs)))
        assert reply.kind == "error", subs
        assert "age" in reply.message or "binary" in reply.message or "twice" in reply.message


@pytest.mark.req("RC-PRIV-002")
def test_horizons_reveal_no_individual_follow_up_or_event_time(demo: Demo) -> None:
    """Probing with many horizons: the observed risk of a risk group changes only at the released
    (disclosure-controlled) KM steps, and 'inside the follow-up' is a count rule, not the site's
    first or last time."""
    parts, artifact = demo
    part = parts[0]
    probes = [float(h) for h in np.linspace(100.0, 1800.0, 6)]
    # horizons the study did not approve are not even evaluated …
    unapproved = request(artifact, n_boot=0, subgroups=[], horizons=probes)
    refused = decode_reply(site("h0", part).handle(unapproved))
    assert refused.kind == "error" and refused.code == "not-approved"  # type: ignore[union-attr]
    # … and where an operator approved many, they still reveal no individual time
    protocol = approved(horizons=probes)
    reply = evaluate(part, request(artifact, n_boot=0, subgroups=[], horizons=probes, protocol=protocol),
                     protocol=protocol)
    for group in reply.risk_groups:
        released = [0.0, *group.km_times]
        risk = {h: o for h, o in zip(group.horizons, group.observed, strict=True)}
        for h, observed in risk.items():
            last = max(t for t in released if t <= h)
            km = 1.0 if last == 0.0 else group.km_survival[group.km_times.index(last)]
            assert observed == pytest.approx(1.0 - km, abs=1e-12)
    t, _ = censored(envelope(part))
    inside = {h for h in probes if (t > h).sum() >= 5 and (t <= h).sum() >= 5}
    assert {h for (m, h) in values(reply.overall) if m == "td_auc"} <= inside

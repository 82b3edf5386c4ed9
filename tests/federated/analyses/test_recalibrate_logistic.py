"""A logistic model updated at a hospital that did not train: the site's calibration intercept and slope
(statsmodels), the sealed updated model (its probabilities expit(â + b̂ η)), what the site refuses, and
what an honest-but-curious coordinator learns from the reply.

The model is the demo's logistic model (grade 3 at surgery, :func:`federated.demo_study.logistic_study`)
trained over the demo's four hospitals; the new hospital is the Rotterdam tumour bank
(:func:`federated.demo_study.rotterdam_table`, which records the grade), its women inside the model's
intended-use envelope.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from device.model import load_model
from federated import Site
from federated import logistic_math as lm
from federated.analyses import recalibrate_logistic as rl
from federated.analyses.recalibrate import RecalibrationError, recalibrate
from federated.analyses.recalibration_common import SiteUpdate
from federated.analyses.runner import train, train_logistic
from federated.demo_study import LOGISTIC_COVARIATES, logistic_study, rotterdam_table, write_demo_study
from federated.disclosure.policy import round_to_k
from federated.disclosure.rules import SiteFloors, protocol_of
from federated.exceptions import SiteError
from federated.protocol.arrays import WireArray
from federated.protocol.messages import (
    ErrorReply,
    EvaluationModel,
    RecalibrateLogisticReply,
    RecalibrateRequest,
    decode_reply,
    encode,
)
from federated.study import StudySpec
from prognosis import verify_sha256
from prognosis.logistic import LogisticModel, expit

COV = list(LOGISTIC_COVARIATES)
Demo = tuple[StudySpec, StudySpec, list[pd.DataFrame], dict[str, Any], pd.DataFrame]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The demo's survival study, its logistic study, the hospitals' tables, the logistic model trained
    over them, and the Rotterdam table (the new hospital)."""
    base = write_demo_study(Path(tmp_path_factory.mktemp("recal-logistic")))
    study = logistic_study(base)
    tables = [pd.read_csv(s.path).drop(columns="patient_id") for s in study.sites]
    sites = [Site(s.name, t) for s, t in zip(study.sites, tables, strict=True)]
    _, artifact = train_logistic(study, sites=sites)
    return base, study, tables, artifact, rotterdam_table().drop(columns="patient_id")


@pytest.fixture(scope="module")
def update(demo: Demo) -> SiteUpdate[RecalibrateLogisticReply]:
    _, study, _, artifact, rotterdam = demo
    return rl.ask_site(Site("rotterdam", rotterdam), artifact, study)


def envelope(study: StudySpec, table: pd.DataFrame) -> pd.DataFrame:
    """The rows a site recalibrates on, selected here independently: every input inside its declared range."""
    inside = np.all([study.inputs[n].accepts_array(table[n].to_numpy()) for n in COV], axis=0)
    return table[inside]


def reference_fit(study: StudySpec, artifact: dict[str, Any], table: pd.DataFrame) -> Any:
    """statsmodels' binomial GLM of the outcome on η = the model's linear predictor, at the site's rows."""
    rows = envelope(study, table)
    eta = LogisticModel.from_artifact(artifact).lp(rows[COV].to_numpy(float))
    return sm.GLM(rows["tgrade"].to_numpy(float), sm.add_constant(eta),
                  family=sm.families.Binomial()).fit(tol=1e-14, maxiter=100)


@pytest.mark.req("SRS-VAL-017")
def test_the_sites_intercept_and_slope_equal_statsmodels_on_its_rows(demo: Demo, update: Any) -> None:
    _, study, _, artifact, rotterdam = demo
    ref, r = reference_fit(study, artifact, rotterdam), update.reply
    rows = envelope(study, rotterdam)
    assert 1000 < len(rows) < len(rotterdam)  # the envelope leaves women out: it is applied
    np.testing.assert_allclose([r.intercept, r.slope], ref.params, rtol=0, atol=1e-8)
    np.testing.assert_allclose(np.sqrt(np.diag(r.covariance.to_numpy())), ref.bse, rtol=0, atol=1e-8)
    np.testing.assert_allclose(r.covariance.to_numpy(), ref.cov_params(), rtol=1e-7, atol=1e-10)
    assert r.loglik == pytest.approx(ref.llf, rel=1e-10)
    eta = LogisticModel.from_artifact(artifact).lp(rows[COV].to_numpy(float))
    y = rows["tgrade"].to_numpy(float)
    unchanged = float(np.sum(y * np.log(expit(eta)) + (1 - y) * np.log(expit(-eta))))
    assert r.loglik_unchanged == pytest.approx(unchanged, rel=1e-12)
    k = r.min_cell_count
    assert (r.n, r.events) == (round_to_k(len(rows), k), round_to_k(int(y.sum()), k))
    assert r.slope < 1 and abs(r.intercept) > 0.5  # a different hospital: miscalibrated, as expected


@pytest.mark.req("SRS-VAL-017")
def test_the_updated_model_predicts_expit_of_the_calibrated_linear_predictor(demo: Demo, update: Any) -> None:
    _, study, tables, artifact, rotterdam = demo
    new = rl.recalibrated_artifact(artifact, study, update, model_id="gbsg2-grade3-recalibrated-rotterdam")
    old, model = LogisticModel.from_artifact(artifact), LogisticModel.from_artifact(new)
    assert verify_sha256(new) and new["kind"] == "logistic"
    assert model.ref == "gbsg2-grade3-recalibrated-rotterdam@1"
    a, b = update.reply.intercept, update.reply.slope
    x = envelope(study, pd.concat([rotterdam, *tables]))[COV].to_numpy(float)
    np.testing.assert_allclose(model.probability(x), expit(a + b * old.lp(x)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.lp(x), a + b * old.lp(x), rtol=0, atol=1e-12)
    assert model.intercept == a + b * old.intercept  # the reference patient's log-odds at the same centre
    np.testing.assert_array_equal(model.beta, b * old.beta)
    np.testing.assert_array_equal(model.covariance, b * b * old.covariance)  # conditional on (â, b̂)
    np.testing.assert_array_equal(model.center, old.center)
    for name in ("inputs", "outcome", "intended_use"):
        assert new[name] == artifact[name], name
    assert model.design == old.design and model.columns == old.columns
    assert new["logistic"] == {**artifact["logistic"], "min_cell_count": update.reply.min_cell_count}
    se = np.sqrt(np.diag(model.covariance))
    assert list(new["standard_errors"].values()) == pytest.approx(se.tolist(), rel=1e-15)
    training = new["training"]
    assert training["sites"] == ["rotterdam"] and training["secure_aggregation"] is False
    assert training["n"] == update.reply.n and training["loglik_null"] is None
    rec = training["recalibration"]
    assert rec["predecessor"] == {"model_id": old.model_id, "version": old.version, "sha256": old.sha256}
    assert (rec["site"], rec["intercept"], rec["slope"]) == ("rotterdam", a, b)
    cov = update.reply.covariance.to_numpy()
    assert (rec["intercept_se"], rec["slope_se"]) == pytest.approx(np.sqrt(np.diag(cov)).tolist(), rel=1e-15)
    assert rec["slope_ci"][0] < b < rec["slope_ci"][1] and "not propagated" in rec["covariance"]
    assert rec["likelihood_ratio"] == pytest.approx(2 * (update.reply.loglik - update.reply.loglik_unchanged))
    served = load_model(new)  # the device reads it
    assert served.sha256 == new["sha256"]


@pytest.mark.req("SRS-VAL-017")
def test_recalibrate_dispatches_a_logistic_model_and_is_deterministic(demo: Demo, update: Any) -> None:
    _, study, _, artifact, rotterdam = demo
    once = recalibrate(Site("rotterdam", rotterdam), artifact, study, model_id="m")
    again = recalibrate(Site("rotterdam", rotterdam), artifact, study, model_id="m")
    assert once["sha256"] == again["sha256"]
    two_steps = rl.recalibrated_artifact(artifact, study, update, model_id="m")
    assert once["coefficients"] == two_steps["coefficients"]


@pytest.mark.req("SRS-VAL-018")
def test_a_model_of_the_other_kind_than_the_study_is_refused_in_one_line(demo: Demo) -> None:
    base, _, _, artifact, rotterdam = demo
    with pytest.raises(RecalibrationError, match=r"is a logistic model, the study's are cox-ph") as exc:
        recalibrate(Site("rotterdam", rotterdam), artifact, base, model_id="m")
    assert "\n" not in str(exc.value)


@pytest.mark.req("SRS-VAL-018")
def test_a_site_refuses_a_logistic_model_in_a_survival_request(demo: Demo) -> None:
    """A coordinator sends the logistic model inside the approved survival cohort's request (a Cox
    recalibration's): the site refuses in one line."""
    base, _, _, artifact, rotterdam = demo
    protocol = protocol_of(base, {})
    site = Site("rotterdam", rotterdam)
    site.approve(protocol)
    cohort = base.cohort().model_copy(update={"partition": None, "partition_by_site": False, "levels": None,
                                              "covariates": tuple(COV)})
    model = EvaluationModel(artifact=artifact, horizons=WireArray.from_numpy(np.ones(1)))
    req = RecalibrateRequest(session="s", round=0, study=protocol.sha256, cohort=cohort, model=model)
    reply = decode_reply(site.handle(encode(req)))
    assert isinstance(reply, ErrorReply) and reply.code == "not-approved"
    assert "logistic model is recalibrated on the study's binary cohort" in reply.message
    assert "\n" not in reply.message


@pytest.mark.req("SRS-VAL-018")
def test_a_cox_model_is_refused_with_the_logistic_study_and_in_a_binary_request(demo: Demo) -> None:
    """The other way round: the coordinator refuses a Cox model with the logistic study in one line, and a
    site refuses a Cox model sent inside the approved binary cohort's request before spending one of its
    evaluations (a budget of one still answers the logistic model afterwards, and only once)."""
    base, study, tables, artifact, rotterdam = demo
    _, cox = train(base, sites=[Site(s.name, t) for s, t in zip(base.sites, tables, strict=True)])
    with pytest.raises(RecalibrationError, match=r"is a cox-ph model, the study's are logistic") as exc:
        recalibrate(Site("rotterdam", rotterdam), cox, study, model_id="m")
    assert "\n" not in str(exc.value)
    protocol = protocol_of(study, {})
    site = Site("rotterdam", rotterdam, floors=SiteFloors(max_evaluations=1))
    site.approve(protocol)
    model = EvaluationModel(artifact=cox, horizons=WireArray.from_numpy(np.array(cox["outcome"]["horizons"])))
    req = RecalibrateRequest(session="s", round=0, study=protocol.sha256, cohort=study.cohort(), model=model)
    reply = decode_reply(site.handle(encode(req)))
    assert isinstance(reply, ErrorReply) and reply.code == "not-approved"
    assert reply.message == ("a Cox model is recalibrated on a survival cohort (time and event), not on the "
                             "study's binary one")
    logistic = EvaluationModel(artifact=artifact, horizons=WireArray.from_numpy(np.ones(1)))
    for round_, expected in ((1, RecalibrateLogisticReply), (2, ErrorReply)):
        again = decode_reply(site.handle(encode(req.model_copy(update={"round": round_, "model": logistic}))))
        assert isinstance(again, expected), again
    assert isinstance(again, ErrorReply) and again.code == "budget"


@pytest.mark.req("SRS-VAL-018")
def test_a_study_declaring_other_inputs_is_refused_before_the_site_is_asked(demo: Demo) -> None:
    _, study, _, artifact, rotterdam = demo
    wider = study.model_copy(update={"inputs": {**study.inputs, "pnodes": study.inputs["pnodes"].model_copy(
        update={"min": 0.0})}})
    site = Site("rotterdam", rotterdam, floors=SiteFloors(max_evaluations=0))  # any request would be refused
    with pytest.raises(RecalibrationError, match=r"^inputs: the study's differ from gbsg2-grade3@1's"):
        rl.ask_site(site, artifact, wider)


def _below(rotterdam: pd.DataFrame, study: StudySpec, events: int, non_events: int) -> pd.DataFrame:
    rows = envelope(study, rotterdam)
    return pd.concat([rows[rows["tgrade"] == 1].head(events), rows[rows["tgrade"] == 0].head(non_events)])


@pytest.mark.req("SRS-VAL-018")
@pytest.mark.parametrize("events, non_events, rule", [
    (12, 3, "min_patients_per_site: fewer than 20 patients"),
    (60, 4, "min_events_per_site: fewer than 5 patients without the event"),
    (4, 60, "min_events_per_site: fewer than 5 events"),
    (60, 8, "min_events_per_covariate: fewer than 10 patients of the rarer outcome class"),
])
def test_a_site_below_the_minimums_refuses_without_its_counts(demo: Demo, events: int, non_events: int,
                                                                rule: str) -> None:
    """Both outcome classes identify patients: a site with too few patients, events or non-events (or
    too few of the rarer class for the one covariate) refuses, naming the rule, never its counts."""
    _, study, _, artifact, rotterdam = demo
    with pytest.raises(SiteError) as exc:
        rl.ask_site(Site("small", _below(rotterdam, study, events, non_events)), artifact, study)
    assert exc.value.code == "policy" and rule in str(exc.value) and "\n" not in str(exc.value)
    assert f" {events} " not in str(exc.value) and f" {non_events} " not in str(exc.value)
    assert str(events + non_events) not in str(exc.value)


def _null_loglik(n: int, events: int) -> float:
    """The intercept-only log-likelihood n[ȳ log ȳ + (1 − ȳ) log(1 − ȳ)]: a function of the counts alone."""
    y = np.r_[np.ones(events), np.zeros(n - events)]
    return lm.newton(lambda b: lm.site_sums(np.empty((n, 0)), y, b), 0).loglik


def _attack(reply: RecalibrateLogisticReply, released: list[float]) -> list[tuple[int, int]]:
    """An honest-but-curious coordinator's attempt at the exact counts: every (n, events) the rounded
    counts allow, narrowed to those whose intercept-only log-likelihood is one of the ``released``
    numbers (when any is)."""
    k = reply.min_cell_count
    pairs = [(n, e) for n, e in itertools.product(range(reply.n - k // 2, reply.n + k // 2 + 1),
                                                  range(reply.events - k // 2, reply.events + k // 2 + 1))
             if round_to_k(n, k) == reply.n and round_to_k(e, k) == reply.events]
    hits = [(n, e) for n, e in pairs if any(abs(_null_loglik(n, e) - v) < 1e-9 * abs(v) for v in released)]
    return hits or pairs


@pytest.mark.req("SRS-VAL-018")
def test_the_coordinator_cannot_recover_the_exact_counts_from_the_reply(demo: Demo, update: Any) -> None:
    """Adversary: an honest-but-curious coordinator reading the plaintext reply. Every number in it
    leaves the k² pairs of exact counts the rounding allows; the same attack on a reply that also carried
    the intercept-only log-likelihood (as a fit's record usually does) would pin the exact counts."""
    _, study, _, _, rotterdam = demo
    r = update.reply
    assert set(RecalibrateLogisticReply.DISCLOSED) | {"min_cell_count", "iterations"} == \
        set(r.model_dump(exclude={"schema_version", "session", "round", "next_key", "kind"}))
    released = [r.intercept, r.slope, r.loglik, r.loglik_unchanged, *r.covariance.to_numpy().ravel().tolist()]
    k = r.min_cell_count
    candidates = _attack(r, released)
    assert len(candidates) == k * k  # the rounding's whole uncertainty: nothing narrows it
    rows = envelope(study, rotterdam)
    exact = (len(rows), int(rows["tgrade"].sum()))
    assert exact in candidates
    assert _attack(r, [*released, _null_loglik(*exact)]) == [exact]  # the withheld number would reveal them

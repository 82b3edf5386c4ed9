"""A site evaluates a logistic model on its own binary rows: the metrics equal scikit-learn's and
statsmodels' on those rows, with the Cox evaluation's bootstrap, seeding and disclosure rules; a
model of the other kind than the approved outcome is refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.metrics import brier_score_loss, roc_auc_score
from statsmodels.stats.proportion import proportion_confint

from federated.analyses.runner import train, train_logistic
from federated.demo_study import DEMO_INPUTS
from federated.disclosure.policy import DisclosurePolicy, round_to_k
from federated.disclosure.rules import SiteFloors, StudyProtocol, protocol_of
from federated.protocol.arrays import WireArray
from federated.protocol.messages import EvaluateReply, EvaluateRequest, EvaluationModel, Subgroup
from federated.site.binary_evaluation import binary_replicates, wilson_interval
from federated.site.binary_performance import metrics
from federated.site.evaluation import MIN_VALID_SHARE, block_seeds, public_km_times, resample_draws
from federated.site.handler import Site, approve_in_process
from federated.study import StudySpec
from prognosis.logistic import LogisticModel, expit
from tests.conftest import split_frame
from tests.privacy.wire import Wire, refused
from validation.run import Options, evaluate_at
from validation.subgroups import default_subgroups

COV = ["age", "pnodes", "progrec", "estrec", "hormone_therapy"]
INPUTS = {n: DEMO_INPUTS[n] for n in COV}
#: grade 3 (``tgrade`` 1 in the demo's coding), as recorded within the first year after diagnosis
HORIZON = 365.25
LOGISTIC = StudySpec(model_id="grade3", model="logistic", event="tgrade", covariates=COV, horizons=[HORIZON],
                     inputs=INPUTS, policy=DisclosurePolicy(min_sites=2))
COX = StudySpec(model_id="rfs", time="time", event="event", covariates=COV, horizons=[HORIZON], inputs=INPUTS,
                max_time=1826.25, policy=DisclosurePolicy(min_sites=2))
FLOORS = SiteFloors(min_sites=2)
K = 5
N_BOOT = 60
TOL = 1e-8

Trained = tuple[list[pd.DataFrame], dict[str, Any], dict[str, EvaluateReply]]


def hospitals(parts: list[pd.DataFrame]) -> list[Site]:
    return [Site(f"s{i}", p, floors=FLOORS) for i, p in enumerate(parts)]


@pytest.fixture(scope="module")
def trained(gbsg2: pd.DataFrame) -> Trained:
    """A logistic model of grade 3 trained over three uneven hospitals, evaluated at each of them."""
    parts = split_frame(gbsg2, 3, seed=4)
    sites = hospitals(parts)
    _, artifact = train_logistic(LOGISTIC, sites=sites)
    replies, dropped = evaluate_at(sites, artifact, LOGISTIC, None, Options(n_boot=N_BOOT),
                                   default_subgroups(artifact["inputs"]), session="binary")
    assert dropped == {}
    return parts, artifact, replies


def envelope(part: pd.DataFrame) -> pd.DataFrame:
    """The rows a site evaluates: every input inside its declared range (the intended-use population)."""
    inside = np.all([(part[n] >= s.min) & (part[n] <= s.max) for n, s in INPUTS.items()], axis=0)
    return part[inside]


def reference(part: pd.DataFrame, artifact: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    rows = envelope(part)
    return rows["tgrade"].to_numpy(float), LogisticModel.from_artifact(artifact).lp(rows[COV].to_numpy(float))


def estimates(block: Any) -> dict[str, float]:
    return {m.metric: m.estimate for m in block.metrics}


@pytest.mark.req("SRS-VAL-012")
def test_each_sites_metrics_equal_scikit_learn_and_statsmodels_on_its_rows(trained: Trained) -> None:
    parts, artifact, replies = trained
    assert sorted(replies) == ["s0", "s1", "s2"] and len({len(p) for p in parts}) == 3  # uneven
    for i, part in enumerate(parts):
        y, lp = reference(part, artifact)
        got = replies[f"s{i}"].overall
        assert got.suppressed is None and got.unavailable == []
        assert (got.n, got.events) == (round_to_k(y.size, K), round_to_k(int(y.sum()), K))
        assert {(m.metric, m.horizon) for m in got.metrics} == {("c_statistic", None)} | {
            (m, HORIZON) for m in ("brier", "e_o_ratio", "calibration_intercept", "calibration_slope")}
        value = estimates(got)
        p = expit(lp)
        offset = sm.GLM(y, np.ones((y.size, 1)), family=sm.families.Binomial(), offset=lp).fit(tol=1e-13)
        refit = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit(tol=1e-13)
        assert value["c_statistic"] == pytest.approx(roc_auc_score(y, lp), abs=TOL)
        assert value["brier"] == pytest.approx(brier_score_loss(y, p), abs=TOL)
        assert value["e_o_ratio"] == pytest.approx(p.sum() / y.sum(), abs=TOL)
        assert value["calibration_intercept"] == pytest.approx(offset.params[0], abs=TOL)
        assert value["calibration_slope"] == pytest.approx(refit.params[1], abs=TOL)
        assert value == pytest.approx(metrics(y, lp=lp)[0], abs=TOL)


@pytest.mark.req("SRS-VAL-012")
def test_bootstrap_cis_are_the_percentiles_of_the_seeded_resamples(trained: Trained) -> None:
    parts, artifact, replies = trained
    y, lp = reference(parts[1], artifact)
    subgroups = default_subgroups(artifact["inputs"])
    seed = block_seeds(Options().seed, "s1", len(subgroups))[0]  # the site's own block, as for a Cox model
    reps = binary_replicates(y, lp, resample_draws(y.size, N_BOOT, np.random.default_rng(seed)),
                             ["c_statistic", "calibration_slope"])
    for m in replies["s1"].overall.metrics:
        assert m.n_boot >= MIN_VALID_SHARE * N_BOOT and m.se is not None and m.se > 0
        if m.metric in reps:
            ok = reps[m.metric][np.isfinite(reps[m.metric])]
            assert (m.ci_lower, m.ci_upper) == pytest.approx(tuple(np.percentile(ok, [2.5, 97.5])), abs=1e-12)
        assert m.ci_lower is not None and m.ci_upper is not None and m.ci_lower <= m.estimate <= m.ci_upper
    scales = {m.metric: m.scale for m in replies["s1"].overall.metrics}
    assert scales == {"c_statistic": "logit", "brier": "identity", "e_o_ratio": "log",
                      "calibration_intercept": "identity", "calibration_slope": "identity"}


@pytest.mark.req("SRS-VAL-013")
def test_risk_groups_release_only_k_rounded_counts_with_wilson_intervals(trained: Trained) -> None:
    parts, artifact, replies = trained
    for i, part in enumerate(parts):
        groups = replies[f"s{i}"].risk_groups
        assert 2 <= len(groups) <= Options().risk_groups
        y, lp = reference(part, artifact)
        assert sum(g.n for g in groups) == pytest.approx(y.size, abs=K * len(groups) / 2)
        for g in groups:
            assert g.n % K == 0 and g.events % K == 0 and g.n - g.events >= K and g.events >= K
            assert g.horizons == [HORIZON] and g.km_times == [] and g.km_survival == []
            assert g.observed == [g.events / g.n]  # of the rounded counts: no finer count to recover
            lo, hi = proportion_confint(g.events, g.n, alpha=0.05, method="wilson")
            assert (g.observed_lower[0], g.observed_upper[0]) == pytest.approx((lo, hi), abs=1e-12)
        predicted = [g.predicted[0] for g in groups]
        assert predicted == sorted(predicted)  # quantile groups of predicted probability, low to high
    for events in (0, 1, 10):  # the ends, where a Wald interval would collapse
        assert wilson_interval(events, 10) == pytest.approx(proportion_confint(events, 10, method="wilson"),
                                                            abs=1e-12)


@pytest.mark.req("SRS-VAL-013")
def test_a_reader_differencing_two_reports_sees_only_multiples_of_k(trained: Trained) -> None:
    """Adversary: a reader of two validation reports, before and after one patient withdrew. Every
    count it can difference — the site's, a subgroup's, a risk group's — moves by 0 or k, and each
    observed proportion is that of the rounded counts, so it does not learn her outcome."""
    parts, artifact, _ = trained
    part = parts[0]
    withdrawn = envelope(part).index[7]
    before, after = (evaluate_at(hospitals([p])[:1], artifact, LOGISTIC, None, Options(n_boot=0),
                                 default_subgroups(artifact["inputs"]), session=f"w{j}")[0]["s0"]
                     for j, p in enumerate((part, part.drop(index=withdrawn))))
    blocks = [(before.overall, after.overall), *zip(before.subgroups, after.subgroups, strict=True),
              *zip(before.risk_groups, after.risk_groups, strict=True)]
    assert len(before.risk_groups) == len(after.risk_groups) >= 2
    for b, a in blocks:
        for name in ("n", "events"):
            x, z = getattr(b, name), getattr(a, name)
            assert (x is None) == (z is None)
            assert x is None or (x - z) % K == 0
    for b, a in zip(before.risk_groups, after.risk_groups, strict=True):
        assert a.observed == [a.events / a.n] and b.observed == [b.events / b.n]


@pytest.mark.req("SRS-VAL-013")
def test_a_site_below_the_minimums_of_either_class_is_suppressed(gbsg2: pd.DataFrame,
                                                                  trained: Trained) -> None:
    """Three patients without grade 3 at a site: below ``min_events_per_site`` for that class, so the
    site, like a subgroup below the minimums (whose counts and the next-smallest's are withheld),
    reports no value."""
    _, artifact, replies = trained
    inside = envelope(gbsg2)
    few = pd.concat([inside[inside.tgrade == 1].iloc[:80], inside[inside.tgrade == 0].iloc[:3]])
    reply = evaluate_at(hospitals([few])[:1], artifact, LOGISTIC, None, Options(n_boot=10), [],
                        session="few")[0]["s0"]
    assert reply.overall.suppressed is not None and "without the event" in reply.overall.suppressed
    assert reply.overall.metrics == [] and reply.risk_groups == [] and reply.overall.n is None
    subs = {s.name: s for s in replies["s0"].subgroups}
    assert subs["age ≥ 65"].suppressed is not None and subs["age ≥ 65"].n is None
    assert subs["age < 50"].n is None and subs["age < 50"].metrics  # complementary: counts withheld only


def ask(site: Site, protocol: StudyProtocol, study: StudySpec, artifact: dict[str, Any]) -> Any:
    """An ``evaluate`` of ``artifact`` on ``study``'s cohort, written by the coordinator itself."""
    cohort = study.cohort()
    model = EvaluationModel(artifact=artifact, horizons=WireArray.from_numpy(np.array([HORIZON])))
    req = EvaluateRequest(session="kind", round=0, study=protocol.sha256, cohort=cohort, model=model,
                          n_boot=0, seed=0, subgroups=[], risk_groups=protocol.risk_groups,
                          km_times=WireArray.from_numpy(public_km_times(cohort, [HORIZON])),
                          ibs_times=WireArray.from_numpy(np.array([HORIZON])))
    return Wire([site], protocol).ask(site.name, req)


@pytest.mark.req("SRS-VAL-014")
def test_a_model_of_the_other_kind_than_the_approved_outcome_is_refused(gbsg2: pd.DataFrame,
                                                                       trained: Trained) -> None:
    """Adversary: a coordinator sending a logistic model to a survival study's sites (to have a
    survival outcome cut at a horizon) or a Cox model to a binary study's: refused in one line,
    before any evaluation is spent."""
    parts, logistic, _ = trained
    sites = [Site(f"s{i}", p, floors=FLOORS.model_copy(update={"max_evaluations": 1}))
             for i, p in enumerate(parts)]
    _, cox = train(COX, sites=sites)
    survival = approve_in_process(sites, protocol_of(COX, {}))
    reply = refused(ask(sites[0], survival, COX, logistic), "not-approved")
    assert "never on a survival cohort" in reply.message and "\n" not in reply.message
    others = hospitals(parts)
    binary = approve_in_process(others, protocol_of(LOGISTIC, {}))
    reply = refused(ask(others[0], binary, LOGISTIC, cox), "not-approved")
    assert "not on the study's binary one" in reply.message and "\n" not in reply.message
    # the refusal spent nothing: the site's one evaluation is still there for a model of its own kind
    assert isinstance(ask(sites[0], survival, COX, cox), EvaluateReply)


@pytest.mark.req("SRS-VAL-014")
def test_a_logistic_model_is_evaluated_only_at_its_one_horizon(trained: Trained) -> None:
    parts, artifact, _ = trained
    site = hospitals(parts)[0]
    protocol = approve_in_process([site], protocol_of(LOGISTIC, {}))
    cohort = LOGISTIC.cohort()
    model = EvaluationModel(artifact=artifact, horizons=WireArray.from_numpy(np.array([HORIZON, HORIZON])))
    req = EvaluateRequest(session="h", round=0, study=protocol.sha256, cohort=cohort, model=model, n_boot=0,
                          seed=0, km_times=WireArray.from_numpy(public_km_times(cohort, [HORIZON])),
                          ibs_times=WireArray.from_numpy(np.array([HORIZON])),
                          subgroups=[Subgroup(name="x", partition="x", variable="hormone_therapy",
                                              equals=1.0)])
    reply = refused(Wire([site], protocol).ask("s0", req), "bad-request")
    assert "one horizon" in reply.message

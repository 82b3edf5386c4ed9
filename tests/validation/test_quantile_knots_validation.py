"""A model whose spline knots were placed at quantiles is validated at the knots it records: each site
builds the model's own design columns and answers as it would for the same knots declared."""

from __future__ import annotations

import pandas as pd
import pytest

from federated import Site
from federated.analyses.knots import artifact_knots
from federated.analyses.runner import train
from federated.demo_study import DEMO_INPUTS, split
from federated.study import StudySpec
from prognosis.inputs import Spline
from validation.run import Options, evaluate_at


def study(spline: Spline) -> StudySpec:
    inputs = {**DEMO_INPUTS, "progrec": DEMO_INPUTS["progrec"].model_copy(update={"spline": spline})}
    return StudySpec.model_validate({
        "model_id": "q", "time": "time", "event": "event", "covariates": list(DEMO_INPUTS),
        "horizons": [1095.75, 1826.25], "max_time": 1826.25, "shift_sparse_censoring": True,
        "inputs": {n: s.model_dump() for n, s in inputs.items()}})


@pytest.mark.req("SRS-MOD-031")
def test_a_model_with_knots_at_quantiles_is_evaluated_at_its_recorded_knots(gbsg2: pd.DataFrame) -> None:
    sites = [Site(f"h{i}", p) for i, p in enumerate(split(gbsg2))]
    placed = study(Spline(quantiles=3))
    _, artifact = train(placed, sites=sites)
    knots = artifact_knots(artifact)["progrec"]
    assert len(knots) == 3 and "progrec'" in artifact["coefficients"]
    options = Options(n_boot=0, skip_verification=True)
    replies, dropped = evaluate_at(sites, artifact, placed, None, options, [], session="quantiles")
    assert not dropped and set(replies) == {"h0", "h1", "h2", "h3"}
    # the same model judged under a study that declares those knots: the same answers, site by site
    declared = study(Spline(knots=list(knots)))
    same, _ = evaluate_at([Site(f"h{i}", p) for i, p in enumerate(split(gbsg2))], artifact, declared, None,
                          options, [], session="declared")
    for name, reply in replies.items():
        ours = {(m.metric, m.horizon): m.estimate for m in reply.overall.metrics}
        theirs = {(m.metric, m.horizon): m.estimate for m in same[name].overall.metrics}
        assert ours and ours == theirs

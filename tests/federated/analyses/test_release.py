"""What a released artifact publishes: counts rounded to multiples of k, the centre on the study's
reference patient (never a data mean), and a statement of what is exact and what is rounded.

Adversary: a reader of releases who differences two artifacts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from federated.analyses.runner import train
from federated.demo_study import DEMO_INPUTS, write_demo_study
from federated.disclosure.policy import round_to_k
from federated.study import CohortSpec, InputSpec, StudySpec


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    study = write_demo_study(tmp_path_factory.mktemp("ws"))
    return train(study)[1]


@pytest.mark.req("SRS-PRIV-020")
def test_round_to_k_rounds_to_the_nearest_multiple() -> None:
    assert round_to_k(np.array([0, 1, 2, 3, 4, 5, 7, 8, 583, 242]), 5).tolist() == \
        [0, 0, 0, 5, 5, 5, 5, 10, 585, 240]
    assert int(round_to_k(583, 1)) == 583
    assert round_to_k(np.array([1, 2, 3]), 4).tolist() == [0, 4, 4]  # halves up
    with pytest.raises(ValueError, match="k must be"):
        round_to_k(3, 0)
    with pytest.raises(ValueError, match=">= 0"):
        round_to_k(np.array([-1]), 5)


@pytest.mark.req("SRS-PRIV-020")
def test_the_artifact_states_what_is_exact_and_what_is_rounded(demo: dict[str, Any]) -> None:
    t = demo["training"]
    assert t["n"] % 5 == 0 and t["events"] % 5 == 0
    release = t["release"]
    assert release["rounded_to_multiple_of"] == 5
    assert set(release["rounded"]) == {"training.n", "training.events", "inputs[].coverage.counts"}
    assert "coefficients" in release["exact"] and "reference patient" in release["center"]
    for item in demo["inputs"]:
        counts = item["coverage"]["counts"]
        assert all(isinstance(c, int) and c % 5 == 0 for c in counts)


@pytest.mark.req("SRS-PRIV-021")
def test_the_centre_is_the_declared_reference_patient_not_a_data_mean(demo: dict[str, Any],
                                                                       gbsg2: pd.DataFrame) -> None:
    center = demo["baseline_survival"]["center"]
    assert center == [DEMO_INPUTS[n].reference for n in demo["coefficients"]]
    means = gbsg2[list(demo["coefficients"])].mean().to_numpy()
    assert np.min(np.abs(np.array(center) - means)) > 0.05  # nowhere near the data means


@pytest.mark.req("SRS-PRIV-021")
def test_the_reference_defaults_to_the_middle_of_the_range_and_must_lie_in_it() -> None:
    study = StudySpec(time="t", event="e", covariates=["a", "b", "c"],
                      inputs={"a": InputSpec(min=20, max=80), "b": InputSpec(min=0, max=1, reference=1)})
    cohort = study.cohort()
    assert cohort.reference == {"a": 50.0, "b": 1.0}
    assert cohort.reference_point().tolist() == [50.0, 1.0, 0.0]  # c: nothing declared
    assert study.cohort(for_km=True).reference == {}
    with pytest.raises(ValidationError, match="outside the declared range"):
        InputSpec(min=0, max=1, reference=2)


@pytest.mark.req("SRS-PRIV-021")
def test_a_reference_far_from_the_data_is_refused_with_one_line(rossi: pd.DataFrame) -> None:
    from federated.exceptions import DataError
    from tests.conftest import fed_cox, split_frame

    cohort = CohortSpec(time="week", event="arrest", covariates=("age", "prio"),
                        reference={"age": 0.0, "prio": 0.0})
    fit = fed_cox(split_frame(rossi, 3, seed=1), cohort)  # the ages lie 17–44: still usable
    assert np.array_equal(fit.center, [0.0, 0.0])
    shifted = rossi.assign(age=rossi["age"] + 1000.0)  # e.g. age in months since an epoch: β·age ≈ −58
    with pytest.raises(DataError, match="reference patient lies too far from the data.*'age'"):
        fed_cox(split_frame(shifted, 3, seed=1), cohort)

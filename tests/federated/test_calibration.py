"""Federated calibration-in-the-large equals the pooled computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter

from federated.calibration import baseline_at, calibration_in_the_large
from federated.demo_study import write_demo_study
from federated.runner import train
from tests.conftest import PERMISSIVE, coordinator, split_frame

pytestmark = pytest.mark.req("SRS-FED-011")


def test_observed_and_expected_equal_the_pooled_values(tmp_path, gbsg2: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    study = write_demo_study(tmp_path)
    _, model = train(study)
    horizons = [365.25, 1095.75, 1826.25]  # the yearly grid the demo model was trained on
    result = calibration_in_the_large(coordinator(split_frame(gbsg2, 4, seed=0), study.cohort()),
                                      study.cohort(), model, horizons, policy=PERMISSIVE)
    km = KaplanMeierFitter().fit(gbsg2["time"], gbsg2["event"])
    assert result.observed == pytest.approx(1 - km.survival_function_at_times(horizons).to_numpy(), abs=1e-12)
    names = [i["name"] for i in model["inputs"]]
    beta = np.array([model["coefficients"][n] for n in names])
    lp = (gbsg2[names].to_numpy(float) - model["baseline_survival"]["center"]) @ beta
    s0 = baseline_at(model, horizons)
    expected = (1 - s0[None, :] ** np.exp(lp)[:, None]).mean(axis=0)
    assert result.expected == pytest.approx(expected.tolist(), abs=1e-12)
    assert all(0.8 < r < 1.2 for r in result.ratio)  # the Cox model is well calibrated on its own data
    assert result.to_dict()["n"] == 686


@pytest.mark.req("RC-DEV-002")
def test_horizon_beyond_the_released_baseline_is_refused(tmp_path, gbsg2: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    study = write_demo_study(tmp_path)
    _, model = train(study)
    with pytest.raises(ValueError, match="beyond the model's released baseline"):
        calibration_in_the_large(coordinator(split_frame(gbsg2, 3, seed=0), study.cohort()), study.cohort(),
                                 model, [9000.0], policy=PERMISSIVE)

"""``fedprog train --kind logistic``: hospitals' CSVs in, the logistic artifact out, equal to statsmodels;
a survival time offered as the outcome of a logistic model is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from prognosis.logistic import LogisticModel
from tests.conftest import split_frame
from tests.fedprog.test_cli import run

COVARIATES = ["age", "pnodes", "progrec"]


@pytest.mark.req("SRS-MOD-015", "SRS-MOD-016", "SRS-MOD-017")
def test_fedprog_train_fits_a_logistic_model_from_csvs(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    args = []
    for i, part in enumerate(split_frame(gbsg2, 3, seed=11)):
        part.to_csv(tmp_path / f"h{i}.csv", index=False)
        args += ["--site", f"h{i}={tmp_path / f'h{i}.csv'}"]
    res = run("train", "--kind", "logistic", *args, "--event", "tgrade", "--covariates", ",".join(COVARIATES),
              "--horizons", "1826.25", "--out", tmp_path / "m.json")
    assert res.returncode == 0, res.stderr
    assert all(text in res.stdout for text in ("Logistic regression", "OR 95% CI", "masked sums only"))
    art = json.loads((tmp_path / "m.json").read_text())
    model = LogisticModel.from_artifact(tmp_path / "m.json")
    ref = sm.GLM(gbsg2["tgrade"], sm.add_constant(gbsg2[COVARIATES].astype(float)),
                 family=sm.families.Binomial()).fit(tol=1e-13)
    X = gbsg2[COVARIATES].to_numpy(dtype=float)
    ours = model.probability(model.design_matrix(X))
    assert np.max(np.abs(ours - ref.predict(sm.add_constant(X)))) <= 1e-10
    assert art["training"]["secure_aggregation"] is True
    cut = run("train", "--kind", "logistic", *args, "--time", "time", "--event", "event", "--covariates",
              "age",
              "--horizons", "1826.25", "--out", tmp_path / "cut.json")
    assert cut.returncode == 2 and len(cut.stderr.strip().splitlines()) == 1
    assert "cutting censored survival times at a horizon" in cut.stderr and "Traceback" not in cut.stderr
    assert not (tmp_path / "cut.json").exists()

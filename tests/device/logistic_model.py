"""A logistic model as the device receives it: grade 3 tumour (GBSG2, recorded at surgery) fitted by the
federated pipeline (:func:`federated.analyses.runner.train_logistic`, secure aggregation) over four
uneven in-process sites, with age as a restricted cubic spline and hormone therapy × menopause; and
statsmodels' binomial GLM on the pooled rows of the same design, the reference it must equal."""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm

from federated.demo_study import DEMO_INPUTS, gbsg2_table
from prognosis.design import rcs_basis
from prognosis.inputs import Spline

#: the inputs, as the demo declares them (LOINC / SNOMED CT codes, UCUM units, validated ranges)
COVARIATES = ("age", "pnodes", "progrec", "hormone_therapy", "postmenopausal")
KNOTS = (45.0, 55.0, 65.0)
OUTCOME = "grade 3 tumour"
HORIZON = 1.0  # recorded on the day of surgery (day 1)
MODEL_ID = "grade3"


def study() -> Any:
    from federated.study import StudySpec
    from prognosis.schema import IntendedUse
    from tests.conftest import PERMISSIVE

    inputs = {n: DEMO_INPUTS[n] for n in COVARIATES}
    inputs["age"] = inputs["age"].model_copy(update={"spline": Spline(knots=list(KNOTS))})
    return StudySpec(model="logistic", event="tgrade", covariates=list(COVARIATES), horizons=[HORIZON],
                     inputs=inputs, interactions=[("hormone_therapy", "postmenopausal")], policy=PERMISSIVE,
                     model_id=MODEL_ID, outcome=OUTCOME, intended_use=IntendedUse(
                         population="adult women with primary breast cancer", sex="female"))


def table() -> pd.DataFrame:
    """GBSG2 inside the validated ranges the inputs declare (the device refuses values outside)."""
    df = gbsg2_table()
    keep = np.ones(len(df), dtype=bool)
    for name in COVARIATES:
        spec = DEMO_INPUTS[name]
        keep &= (df[name] >= spec.min) & (df[name] <= spec.max)
    return df[keep].reset_index(drop=True)


@functools.cache
def _trained() -> str:
    from federated.analyses.runner import train_logistic
    from tests.conftest import make_sites, split_frame

    fit, art = train_logistic(study(), sites=make_sites(split_frame(table(), 4, seed=20)))
    assert fit.secure and fit.fit.converged
    return json.dumps(art)


def logistic_artifact() -> dict[str, Any]:
    """A fresh copy of the sealed ``kind: "logistic"`` artifact."""
    art: dict[str, Any] = json.loads(_trained())
    return art


def design(X: np.ndarray) -> pd.DataFrame:
    """The design columns of raw inputs (n, 5) in ``COVARIATES`` order, built here independently."""
    basis = rcs_basis(X[:, 0], KNOTS)
    cols = pd.DataFrame({"age": basis[:, 0], "age'": basis[:, 1], "pnodes": X[:, 1], "progrec": X[:, 2],
                         "hormone_therapy": X[:, 3], "postmenopausal": X[:, 4]})
    cols["hormone_therapy:postmenopausal"] = X[:, 3] * X[:, 4]
    return cols


@functools.cache
def glm() -> Any:
    """statsmodels' binomial GLM of the pooled rows on the same design."""
    df = table()
    X = df[list(COVARIATES)].to_numpy(dtype=float)
    return sm.GLM(df["tgrade"].astype(float), sm.add_constant(design(X)),
                  family=sm.families.Binomial()).fit(tol=1e-13)


def glm_prediction(X: np.ndarray) -> pd.DataFrame:
    """statsmodels' probability and 95% confidence interval (``mean``, ``mean_ci_lower/upper``)."""
    exog = sm.add_constant(design(np.atleast_2d(X)), has_constant="add")
    frame: pd.DataFrame = glm().get_prediction(exog).summary_frame(alpha=0.05)
    return frame

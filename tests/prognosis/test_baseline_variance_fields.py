"""The optional ``baseline_survival.variance_increments``/``xbar_increments`` of the artifact:
checked at load, summed into V(t) and M(t), and used by the interval (SRS-DEV-012)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from prognosis import CoxModel, ModelError, seal
from prognosis.steps import Z95

TIMES, SURV = [1.0, 2.0, 4.0], [0.9, 0.8, 0.6]
VAR = [0.001, 0.002, 0.004]
XBAR = [[0.01, -0.02], [0.03, 0.0], [0.05, 0.01]]
COV = [[0.04, 0.01], [0.01, 0.09]]


def artifact(**fields: Any) -> dict[str, Any]:
    art = CoxModel.from_arrays(["a", "b"], [0.5, -0.3], [1.0, 2.0], TIMES, SURV, [2.0, 4.0],
                               covariance=COV).to_artifact()
    art["baseline_survival"].update(fields)
    return seal(art)


@pytest.mark.req("SRS-DEV-012")
def test_the_interval_is_the_formula_at_the_released_step() -> None:
    m = CoxModel.from_artifact(artifact(variance_increments=VAR, xbar_increments=XBAR))
    assert m.interval_includes_baseline
    np.testing.assert_allclose(m.baseline_variance, np.cumsum(VAR), rtol=1e-15)
    np.testing.assert_allclose(m.baseline_xbar, np.cumsum(XBAR, axis=0), rtol=1e-15)
    x = np.array([[2.0, 1.0]])
    t = [0.5, 1.0, 3.0, 4.0, 9.0]
    se = m.se_loglog(x, t)[0]
    assert se[0] == 0.0  # before the first released time the risk is exactly 0
    for k, (tk, i) in enumerate(zip(t[1:], [0, 1, 2, 2], strict=True), start=1):  # step ≤ t
        h0 = -math.log(SURV[i])
        a = np.array([1.0, -1.0]) - np.sum(XBAR[: i + 1], axis=0) / h0
        want = math.sqrt(sum(VAR[: i + 1]) / h0 ** 2 + a @ np.array(COV) @ a)
        assert se[k] == pytest.approx(want, rel=1e-14), tk
    risk, lo, hi = m.risk_with_interval(m.lp(x), m.se_loglog(x, t), t)
    ll = math.log(-math.log(SURV[2])) + float(m.lp(x)[0])
    assert hi[0, 3] == pytest.approx(-math.expm1(-math.exp(ll + Z95 * se[3])), rel=1e-14)
    assert lo[0, 3] == pytest.approx(-math.expm1(-math.exp(ll - Z95 * se[3])), rel=1e-14)
    assert m.to_artifact()["baseline_survival"]["variance_increments"] == VAR  # read back unchanged


@pytest.mark.req("SRS-DEV-012")
def test_an_older_artifact_gives_the_coefficient_only_interval_flagged() -> None:
    m = CoxModel.from_artifact(artifact())
    assert not m.interval_includes_baseline and m.baseline_variance is None
    x = np.array([[2.0, 1.0], [1.0, 2.0]])
    np.testing.assert_array_equal(m.se_loglog(x, [2.0, 4.0]), np.repeat(m.se_lp(x)[:, None], 2, axis=1))
    assert m.se_loglog(x, [4.0])[1, 0] == 0.0  # at the centre: zero width, the old limitation


@pytest.mark.req("SRS-DEV-012")
@pytest.mark.parametrize(("fields", "message"), [
    ({"variance_increments": VAR}, "give both or neither"),
    ({"variance_increments": VAR[:2], "xbar_increments": XBAR[:2]},
     "variance_increments: 2 values for 3 times"),
    ({"variance_increments": VAR, "xbar_increments": [[0.0]] * 3}, "xbar_increments: rows of 1 values for 2"),
    ({"variance_increments": [-1.0, 0.0, 0.0], "xbar_increments": XBAR}, "greater than or equal to 0"),
])
def test_malformed_increments_are_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelError, match=r"baseline_survival.*" + message):
        CoxModel.from_artifact(artifact(**fields))

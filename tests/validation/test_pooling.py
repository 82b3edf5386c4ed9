"""Inverse-variance pooling across sites equals the textbook formulas."""

from __future__ import annotations

import math

import pytest

from validation.pooling import inverse_variance, pool_metrics

pytestmark = pytest.mark.req("SRS-VAL-005")


def test_fixed_effect_heterogeneity_and_random_effects_by_hand() -> None:
    est, se = [1.0, 1.2, 0.8], [0.1, 0.2, 0.15]
    w = [1 / s**2 for s in se]                                   # 100, 25, 44.44…
    fixed = sum(wi * e for wi, e in zip(w, est, strict=True)) / sum(w)
    se_fixed = 1 / math.sqrt(sum(w))
    q = sum(wi * (e - fixed) ** 2 for wi, e in zip(w, est, strict=True))
    tau2 = max(0.0, (q - 2) / (sum(w) - sum(wi**2 for wi in w) / sum(w)))
    w_re = [1 / (s**2 + tau2) for s in se]
    random = sum(wi * e for wi, e in zip(w_re, est, strict=True)) / sum(w_re)
    got = inverse_variance(est, se, "identity")
    assert got["estimate"] == pytest.approx(fixed, abs=1e-15)
    assert got["se"] == pytest.approx(se_fixed, abs=1e-15)
    assert got["ci_lower"] == pytest.approx(fixed - 1.959963984540054 * se_fixed, abs=1e-12)
    assert got["q"] == pytest.approx(q, abs=1e-12) and got["k"] == 3
    assert got["i2"] == pytest.approx(max(0.0, (q - 2) / q), abs=1e-12)
    assert got["tau2"] == pytest.approx(tau2, abs=1e-15)
    assert got["random_effects"]["estimate"] == pytest.approx(random, abs=1e-12)


def test_c_statistics_pool_on_the_logit_scale() -> None:
    c, se = [0.70, 0.65], [0.2, 0.3]   # se on the logit scale
    logit = [math.log(x / (1 - x)) for x in c]
    w = [1 / s**2 for s in se]
    pooled = sum(wi * li for wi, li in zip(w, logit, strict=True)) / sum(w)
    half = 1.959963984540054 / math.sqrt(sum(w))
    got = inverse_variance(c, se, "logit")
    assert got["estimate"] == pytest.approx(1 / (1 + math.exp(-pooled)), abs=1e-12)
    assert got["ci_upper"] == pytest.approx(1 / (1 + math.exp(-(pooled + half))), abs=1e-12)
    assert got["ci_lower"] < got["estimate"] < got["ci_upper"] < 1


def test_homogeneous_sites_have_no_heterogeneity() -> None:
    got = inverse_variance([0.9, 0.9, 0.9], [0.1, 0.2, 0.3], "log")
    assert got["estimate"] == pytest.approx(0.9) and got["i2"] == 0.0 and got["tau2"] == 0.0


def test_pooling_needs_two_sites_with_a_standard_error() -> None:
    with pytest.raises(ValueError, match="≥ 2"):
        inverse_variance([0.7], [0.1], "logit")
    entry = {"metric": "harrell_c", "horizon": None, "estimate": 0.7, "se": 0.2, "scale": "logit"}
    pooled = pool_metrics({"a": [entry], "b": [{**entry, "estimate": 0.6}], "c": [{**entry, "se": None}]})
    assert len(pooled) == 1 and pooled[0]["sites"] == ["a", "b"] and pooled[0]["k"] == 2
    assert pool_metrics({"a": [entry]}) == []

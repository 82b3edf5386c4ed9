"""Pooling a metric across sites: inverse-variance meta-analysis with heterogeneity.

Each site reports its estimate θ_k and the bootstrap standard error s_k on the metric's pooling
scale (:data:`POOLING_SCALES`: logit for C statistics — Harrell's, Uno's, a logistic model's
``c_statistic`` — and AUC, log for E/O of either kind of model, the others as they are; Debray et
al. 2017, BMJ 356:i6460). With weights w_k = 1 / s_k²:

* fixed effect (inverse variance): θ̂ = Σ w_k θ_k / Σ w_k, SE = 1 / √Σ w_k, 95% CI θ̂ ± 1.96 SE;
* heterogeneity: Cochran's Q = Σ w_k (θ_k − θ̂)², I² = max(0, (Q − (K − 1)) / Q)
  (Higgins & Thompson 2002, Stat Med 21:1539);
* random effects (DerSimonian & Laird 1986, Control Clin Trials 7:177):
  τ² = max(0, (Q − (K − 1)) / (Σ w − Σ w² / Σ w)), then the same with w*_k = 1 / (s_k² + τ²).

Estimates and intervals are back-transformed to the metric's own scale. The acceptance
criteria use the fixed-effect value; the random-effects value and I² say how far sites differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from federated.site.binary_performance import SCALES as BINARY_SCALES
from federated.site.performance import SCALES, from_scale, to_scale
from prognosis import Z95

#: each metric's pooling scale, Cox (:mod:`federated.site.performance`) and logistic
#: (:mod:`federated.site.binary_performance`) alike: the two agree on the metrics they share
POOLING_SCALES: dict[str, str] = {**SCALES, **BINARY_SCALES}


def inverse_variance(estimates: Sequence[float], ses: Sequence[float], scale: str) -> dict[str, Any]:
    """Fixed-effect and DerSimonian–Laird pooled estimate of K ≥ 2 site estimates.

    ``estimates`` are on the metric's own scale, ``ses`` on ``scale`` (all > 0).
    Returns ``estimate``, ``ci_lower``, ``ci_upper`` (fixed effect, own scale), ``se`` (pooling
    scale), ``q``, ``i2``, ``tau2``, ``k`` and ``random_effects`` {estimate, ci_lower, ci_upper}.
    """
    theta = to_scale(np.asarray(estimates, dtype=float), scale)
    s = np.asarray(ses, dtype=float)
    if theta.size < 2 or theta.shape != s.shape or not np.all(np.isfinite(theta)) or np.any(s <= 0):
        raise ValueError(f"pooling needs ≥ 2 finite estimates with positive standard errors, got "
                         f"{theta.size} estimates and standard errors {s.tolist()}")
    w = 1.0 / s**2
    fixed = float(np.sum(w * theta) / np.sum(w))
    se = float(1.0 / np.sqrt(np.sum(w)))
    q = float(np.sum(w * (theta - fixed) ** 2))
    df = theta.size - 1
    i2 = max(0.0, (q - df) / q) if q > 0 else 0.0
    tau2 = max(0.0, (q - df) / float(np.sum(w) - np.sum(w**2) / np.sum(w)))
    w_re = 1.0 / (s**2 + tau2)
    random = float(np.sum(w_re * theta) / np.sum(w_re))
    se_re = float(1.0 / np.sqrt(np.sum(w_re)))

    def back(v: float) -> float:
        return float(from_scale(v, scale))

    return {"estimate": back(fixed), "ci_lower": back(fixed - Z95 * se), "ci_upper": back(fixed + Z95 * se),
            "se": se, "scale": scale, "k": int(theta.size), "q": q, "i2": i2, "tau2": tau2,
            "random_effects": {"estimate": back(random), "ci_lower": back(random - Z95 * se_re),
                               "ci_upper": back(random + Z95 * se_re)}}


def pool_metrics(per_site: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Pool every (metric, horizon) reported with a standard error by at least two sites.

    ``per_site`` maps a site to its metric entries (``metric``, ``horizon``, ``estimate``, ``se``,
    ``scale``). An entry whose standard error is not on the metric's pooling scale
    (:data:`POOLING_SCALES`) is not pooled. Returns one entry per pooled metric, naming the sites it
    pooled.
    """
    groups: dict[tuple[str, float | None], list[tuple[str, dict[str, Any]]]] = {}
    for site, entries in per_site.items():
        for e in entries:
            if e.get("se") is not None and e["se"] > 0 \
                    and e.get("scale") == POOLING_SCALES.get(e["metric"], e.get("scale")):
                groups.setdefault((e["metric"], e["horizon"]), []).append((site, e))
    out = []
    for (metric, horizon), items in groups.items():
        if len(items) < 2:
            continue
        pooled = inverse_variance([e["estimate"] for _, e in items], [e["se"] for _, e in items],
                                  items[0][1]["scale"])
        out.append({"metric": metric, "horizon": horizon, **pooled, "sites": [s for s, _ in items]})
    return sorted(out, key=lambda e: (e["metric"], -1.0 if e["horizon"] is None else e["horizon"]))

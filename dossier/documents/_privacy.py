"""How the documents word differential privacy (issue 15), in one place: what the optional DP of a
study guarantees, against whom, what it does not cover, the utility measured, what a site's budget
allows, and what a Cox model's artifact records (FP-CYB, FP-RMF, FP-IFU, FP-MC, FP-DD).

The figures that follow from the code (defaults, noise per count, fits within a site's budget) are
computed from it; the utility table is the measurement of the README's "Differential privacy"
section (``benchmarks/dp_utility.py``), which a test keeps equal to the README's table.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from reportlab.platypus import Flowable

from dossier.style import esc, table
from federated.analyses import runner
from federated.analyses.dp_cox import SETTLED
from federated.disclosure import dp_cox
from federated.disclosure.dp import KM_RELEASES, ORDERS, DPSettings, rdp_curve, rdp_to_dp, release_mu
from federated.disclosure.rules import SiteFloors

#: the ε of one Kaplan–Meier fit the utility was measured at
EPSILONS = (1, 5, 10)
#: data, grid, then the mean over 20 fits of max |S_dp(t) − S(t)| at each ε of :data:`EPSILONS`
UTILITY: tuple[tuple[str, str, str, str, str], ...] = (
    ("GBSG2 (686 women)", "month", "0.099", "0.020", "0.011"),
    ("GBSG2 (686 women)", "year", "0.017", "0.005", "0.002"),
    ("synthetic Cox cohort (20 000)", "month", "0.003", "0.001", "0.0005"),
    ("synthetic Cox cohort (20 000)", "year", "0.0007", "0.0002", "0.0001"),
)
#: how :data:`UTILITY` was measured
UTILITY_METHOD = ("Measured with benchmarks/dp_utility.py (README, \u201cDifferential privacy\u201d): 4 "
                  "sites, 20 fits per cell with fresh noise, each the largest absolute difference in "
                  "survival probability between the private and the exact federated Kaplan\u2013Meier "
                  "curve over the public time grid up to 5 years; the mean over the 20 fits is shown (one "
                  "fit can deviate more: the 95th percentile was up to about twice the mean); \u03b4 = 1e-6 "
                  "per fit; k = 1, so that every step is compared.")

#: whom the DP of a study protects, and against whom (SRS-PRIV-016, SRS-PRIV-017, SRS-PRIV-018)
GUARANTEE = ("(\u03b5, \u03b4)-differential privacy of the Kaplan\u2013Meier counts at the \u03b5 and \u03b4 "
             "per fit of the approved study, with respect to adding or removing one patient at one site, "
             "against an honest-but-curious or malicious coordinator (which decodes only sums carrying the "
             "noise, never an exact sum) and against every reader of the releases; every release that "
             "touches a site's data is composed by that site's own accountant against the budget its "
             "operator set.")


def not_covered() -> tuple[str, ...]:
    """What the differential privacy of a study does not cover, each a plain statement (for a private Cox
    model also its accuracy: :func:`cox_limits`)."""
    refused = cox_refusal() is not None
    cox = " (every Cox model, while differential privacy for Cox models is not available)" if refused else ""
    return (
        "refusals at the source (k-cells, site minimums) say whether a count is below a threshold; they "
        "carry no noise",
        f"studies without differential privacy{cox} and the plaintext evaluations of validation are outside "
        "the accountant",
        "sites colluding with the coordinator can subtract their own noise shares: against t of the n sites "
        "the noise left is Sk(\u03bc(n \u2212 t)/n), which the accounting does not cover",
        "the noise comes from NumPy's Poisson sampler, exact only up to floating-point arithmetic (an exact "
        "integer sampler is not used)",
    )


def sentence(items: tuple[str, ...]) -> str:
    """``items`` as one sentence: the first capitalised, joined by semicolons, a full stop at the end."""
    text = "; ".join(items)
    return text[:1].upper() + text[1:] + "."


MECHANISM = ("each of the n sites of a round adds its share Sk(\u03bc/n) of a distributed Skellam mechanism "
             "(Agarwal, Kairouz and Liu 2021) to its integer counts before masking, drawn from the operating "
             "system's CSPRNG and never from a stored seed; the coordinator decodes the sum plus Sk(\u03bc), "
             "and a round a site misses never decodes (its masks stay uncancelled)")


def defaults() -> tuple[DPSettings, SiteFloors]:
    """A study's DP settings and a site's floors as the code defaults them."""
    return DPSettings(), SiteFloors()


def noise_sd(epsilon: float) -> float:
    """Standard deviation of the noise on each event or censoring count of a fit at ``epsilon``
    (the study's default δ): Sk(μ) has variance 2μ."""
    return math.sqrt(2 * release_mu(DPSettings(enabled=True, epsilon=epsilon), "counts"))


@lru_cache(maxsize=16)
def fits_within_budget(epsilon: float) -> int:
    """How many Kaplan–Meier fits at ``epsilon`` (the study's default δ) one site answers before its
    accountant, at the default budget of :class:`SiteFloors`, refuses (``budget``): the fits' RDP
    composed and converted at the site's δ as the accountant does (:mod:`federated.site.privacy`)."""
    study, floors = DPSettings(enabled=True, epsilon=epsilon), SiteFloors()
    one = sum((rdp_curve(release_mu(study, r.kind), r.l1, r.l2) for r in KM_RELEASES), np.zeros(len(ORDERS)))
    fits = 0
    while fits < 10_000 and rdp_to_dp((fits + 1) * one, floors.dp_delta) <= floors.dp_epsilon * (1 + 1e-9):
        fits += 1
    return fits


def utility_table() -> Flowable:
    """The measured utility as a table (data, grid, error at each ε)."""
    rows: list[list[object]] = [["Data", "Time grid", *[f"\u03b5 = {e}" for e in EPSILONS]]]
    rows += [list(r) for r in UTILITY]
    return table(rows, widths=[62, 27, 27, 27, 27])


def budget_sentence() -> str:
    """What the default budget of a site allows, computed from the accountant."""
    floors = SiteFloors()
    first, *rest = EPSILONS
    other = ", ".join(f"{fits_within_budget(e)} at \u03b5 = {e}" for e in rest)
    return (f"At a site's default budget (\u03b5 = {floors.dp_epsilon:g}, \u03b4 = {floors.dp_delta:g} over "
            f"all its studies) and the default \u03b4 of a fit ({DPSettings().delta:g}), a site answers "
            f"{fits_within_budget(first)} Kaplan\u2013Meier fits at \u03b5 = {first} (or {other}; "
            "composed in R\u00e9nyi DP) before its accountant refuses; every attempt it answers counts, "
            "retries and re-runs after a dropout included.")


def cox_refusal() -> str | None:
    """The training code's refusal of a Cox study with differential privacy enabled
    (``federated.analyses.runner.DP_COX_UNAVAILABLE``), or None once the code no longer refuses it."""
    message = getattr(runner, "DP_COX_UNAVAILABLE", None)
    return message if isinstance(message, str) and "not available" in message else None


def cox_private() -> bool:
    """Whether the training code fits a Cox study with differential privacy (no refusal): only then do
    the documents describe it (:func:`cox_guarantee`, :func:`cox_model`, :func:`cox_limits`, ...)."""
    return cox_refusal() is None


#: Cox utility (README, "Differential privacy", ``benchmarks/dp_utility.py --cox-only``): data, then at
#: each ε of :data:`EPSILONS` the mean |β̃_dp − β̃| against the noise-free fit / Harrell's C of the
#: private model (completed fits of 10), exactly as the README prints them
COX_UTILITY: tuple[tuple[str, str, str, str], ...] = (
    ("GBSG2 (686 women): mean abs. error / C", "0.74 / 0.51 (3 of 10 fits)", "0.65 / 0.54 (9 of 10)",
     "0.53 / 0.59 (9 of 10)"),
    ("synthetic Cox cohort (20 000): mean abs. error / C", "0.32 / 0.61", "0.16 / 0.64", "0.09 / 0.65"),
)
#: Harrell's C of the exact federated Cox model on each cohort of :data:`COX_UTILITY` (README)
COX_EXACT_C = ("0.692", "0.650")
#: the noise-free private fit (same T and bound, ε = 1e12) against the exact Cox fit, measured with the
#: functions of ``benchmarks/dp_utility.py`` (its "exact" row): mean |Δβ̃| and Harrell's C per cohort
COX_BIAS = (("GBSG2", "0.13", "0.691"), ("the synthetic cohort", "0.08", "0.649"))
#: how :data:`COX_UTILITY` was measured
COX_UTILITY_METHOD = (
    "Measured with benchmarks/dp_utility.py --cox-only (README, \u201cDifferential privacy\u201d): 4 sites, "
    "the 8 inputs of the demo model with their declared ranges, a yearly grid to 5 years, the default T and "
    "bound, \u03b4 = 1e-6, 10 fits per cell with fresh noise. Error: mean absolute difference of the "
    "standardised coefficients (each \u03b2 times the half-width of its input's range around the reference "
    "patient, the scale the bound applies to) from the noise-free fit with the same T and bound, i.e. the "
    "privacy noise alone; C: Harrell's C of the private model on the pooled data, mean over the completed "
    "fits. Where fewer than 10 fits are given, the others stopped with an error (a private fit stops, for "
    "example, when the noise hides the exposure of every interval). The noise-free fit itself differs from "
    "the exact Cox fit by a mean absolute difference of "
    + " and ".join(f"{b} on {d}" for d, b, _ in COX_BIAS) + " (its C "
    + " and ".join(c for _, _, c in COX_BIAS) + "): the bias of the model, the bound and the few rounds.")


def cox_utility_table() -> Flowable:
    """The measured utility of a private Cox model (:data:`COX_UTILITY`) as a table."""
    rows: list[list[object]] = [["Data: mean abs. error of standardised \u03b2 / Harrell's C",
                                 *[f"\u03b5 = {e}" for e in EPSILONS], "Exact Cox model: C"]]
    rows += [[*r, c] for r, c in zip(COX_UTILITY, COX_EXACT_C, strict=True)]
    return table(rows, widths=[58, 34, 28, 28, 22])


def cox_guarantee() -> str:
    """The guarantee of a private Cox fit (SRS-PRIV-023): the same as a Kaplan–Meier fit's."""
    dp = DPSettings()
    return ("A Cox study with differential privacy has the same guarantee: (\u03b5, \u03b4)-differential "
            "privacy per fit at the study's \u03b5 and \u03b4, with respect to adding or removing one "
            "patient at one site, against an honest-but-curious or malicious coordinator (which chooses "
            "every \u03b2 it asks about and decodes only noisy sums) and every reader of the releases. A "
            "private Cox fit releases the events per interval of the public grid with the covariate sums of "
            f"the events once, then T = dp.cox_iterations (default {dp.cox_iterations}) Newton rounds of "
            "exposure-weighted sums; the sites standardise every input on the reference patient and its "
            "declared range, refuse (bound) a round whose sum of absolute standardised coefficients exceeds "
            f"dp.cox_bound (default {dp.cox_bound:g}), quantise their sums by randomised rounding "
            f"(\u03b3 = {dp_cox.SCALE}) and add their Skellam shares before masking, calibrated so that the "
            "1 + T releases together cost the study's \u03b5 and \u03b4; each release is charged to each "
            "site's persistent accountant before the reply leaves. Coefficients, standard errors and "
            "baseline are computed from the noisy sums only (post-processing, SRS-PRIV-023).")


def cox_model() -> str:
    """What a private Cox model is, and what it is not."""
    return ("A private Cox model is not the exact (pooled) Cox fit: it is a proportional-hazards model with "
            "a piecewise-constant baseline on the public grid (piecewise-exponential likelihood), fitted by "
            "noisy Newton steps from \u03b2 = 0 and projected onto the bound; the model, the bound and the "
            "few rounds bias it even without noise, and the noise adds error that is large on small "
            f"cohorts. At most {dp_cox.MAX_INTERVALS} intervals of the grid, no strata, and every input "
            "needs a declared range.")


#: what the standard errors of a private Cox model include, and how it was tested
COX_SE = ("Its standard errors include the variance the privacy noise adds to the estimate, besides the "
          "inverse information: a parametric bootstrap of the Newton steps under the known noise law "
          "(post-processing, no privacy cost). A test refits GBSG2 at \u03b5 = 10 with fresh noise and "
          "checks that the coefficients scatter by no more than 1.5 times the mean released standard error "
          "and that the released errors are wider than those of a noise-free fit.")


def cox_limits() -> tuple[str, ...]:
    """The limitations of a private Cox model, each a plain statement."""
    return (
        "on a cohort the size of GBSG2 (686 women) a private Cox model is close to useless at any "
        "\u03b5 measured (1, 5, 10): Harrell's C 0.51 to 0.59 against 0.69 for the exact model, and at "
        "\u03b5 = 1 only 3 of 10 fits completed; on the synthetic cohort of 20 000 it is usable (C 0.61 to "
        "0.65 against 0.65)",
        f"converged means only that the last noisy step moved the standardised coefficients by less than "
        f"{SETTLED:g}; no tolerance can be met exactly under noise",
        "a private artifact carries no coverage histogram of its inputs, so the release gate's check that "
        "the intended-use envelope holds training patients at both ends has nothing to check: the declared "
        "ranges alone bound the envelope",
        "the sites of a private study refuse the plaintext evaluations of validation, so a private model "
        "reaches the release gate only through a validation whose evaluations lie outside the accountant",
        "its counts (patients, events) and log likelihoods are noisy",
    )


#: how a private Cox model of poor utility is kept from clinical use, and who decides
COX_RISK = ("A private Cox model of poor utility is a clinical hazard if released: its risk estimates would "
            "rank and calibrate patients poorly. The controls are the release gate (RC-VAL-001: a model is "
            "released only with a validation report meeting the acceptance criteria, the pooled Harrell's "
            "C with a lower 95% limit of at least 0.60, each site's C at least 0.55, and calibration, "
            "SRS-VAL-001 to SRS-VAL-004), which on the utility measured a private model of a cohort the size "
            "of GBSG2 would not pass, and the utility measured and documented in this file.")
#: the decision on a private clinical model
COX_DECISION = ("Whether a clinical Cox model is trained with differential privacy, and at which \u03b5, is "
                "the manufacturer's decision (the default is off); this file documents the utility and does "
                "not recommend it.")


def fit_cost() -> str:
    """What the ε and δ of a study's [dp] are the cost of, as the training code stands."""
    if cox_private():
        return ("one fit (a Kaplan\u2013Meier fit, or the 1 + T releases of a Cox fit together)")
    return "one Kaplan\u2013Meier fit"


def cox_short() -> str:
    """What the documents say of differential privacy for Cox models, as the code stands: plainly not
    available while the training code refuses it, else the option and where it is described."""
    if cox_refusal() is not None:
        return ("differential privacy for Cox models is not available in this version: a Cox study with it "
                "enabled is refused (SRS-PRIV-019)")
    return ("differential privacy for Cox models is available as an option of the study: a Cox study with "
            "it enabled is fitted by noisy Newton on a piecewise-exponential likelihood (SRS-PRIV-023), with "
            "the same guarantee as a Kaplan\u2013Meier fit; it is not the exact Cox fit, and its utility on "
            "small cohorts is poor (FP-CYB section 4.7)")


def cox_brief() -> str:
    """:func:`cox_short` in a few words, for table cells."""
    if cox_refusal() is not None:
        return "differential privacy for Cox models is not available in this version (refused, SRS-PRIV-019)"
    return ("a Cox study may enable differential privacy (noisy Newton, SRS-PRIV-023; FP-CYB section 4.7)")


def cox_quoted() -> str:
    """:func:`cox_short` as markup, with the training code's refusal quoted while it refuses."""
    refusal = cox_refusal()
    quote = f" (the training code: \u201c{esc(refusal)}\u201d)" if refusal else ""
    return esc(cox_short()) + quote


def cox_record(training: dict[str, Any]) -> str:
    """What a Cox artifact's ``training.differential_privacy`` says, in words (None when off)."""
    dp = training.get("differential_privacy")
    if not dp:
        return "off" + (" (not available for Cox models in this version)" if cox_refusal() else "")
    said = [f"recorded as {dp}"]
    if isinstance(dp, dict):
        said = [f"mechanism {dp.get('mechanism', 'not recorded')}"]
        said += [f"{name} {dp[key]:g}" for key, name in (("epsilon", "\u03b5"), ("delta", "\u03b4"),
                                                         ("iterations", "T"),
                                                         ("bound_sum_abs_beta_standardised", "bound"))
                 if isinstance(dp.get(key), int | float)]
    if cox_refusal() is not None:
        return ("on: " + ", ".join(said) + " (as the artifact records it; differential privacy for Cox "
                "models is not available in this version, so its guarantee is not stated in this file)")
    return ("on: " + ", ".join(said) + " (as the artifact records it): a noisy piecewise-exponential fit on "
            "the public grid, not the exact Cox fit; its standard errors include the privacy noise, "
            "\u201cconverged\u201d means only that the last noisy step was small, and its utility is "
            "poor on small cohorts (FP-CYB section 4.7)")

"""What the documents say differently of a Cox and of a logistic model, said once (``artifact["kind"]``).

A Cox model (``kind: "cox-ph"``) predicts the risk of an event *by* each horizon from a baseline
survival S0 and hazard ratios exp(β); its validation reports time-dependent metrics (Harrell's and
Uno's C, the time-dependent AUC, E/O and Brier at each horizon). A logistic model (``kind:
"logistic"``, :mod:`prognosis.logistic`) predicts the probability π(x) = expit(α + β·(d(x) − c)) of a
*recorded binary outcome* at its one horizon (when the outcome is recorded): α is the log-odds of the
reference patient x = c, exp(β) the odds ratios; its validation reports the binary metrics (the C
statistic, the area under the ROC curve; calibration slope and intercept, E/O and Brier at that
horizon; Steyerberg 2019, *Clinical Prediction Models*, 2nd ed., ch. 15). It has no baseline
survival, no hazard and nothing time-dependent to claim.

:class:`Kind` holds the words and metric keys of each kind; :class:`Terms` adds the time unit and the
model's horizons so that every document labels metrics and horizons alike (for a Cox model exactly as
:func:`dossier.documents.model_card.metric_label` always has). Presentation only: nothing is computed
here beyond exp, expit and reading the artifact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from reportlab.platypus import Flowable

from dossier.spec import DossierInputs
from dossier.style import para, table
from prognosis import Z95

from . import _privacy
from ._interval import includes_baseline, interval_statement

Key = tuple[str, float | None]
INTERCEPT = "(intercept)"

#: how each metric of a validation report is named, in the order the documents list them
METRICS: dict[str, str] = {
    "harrell_c": "Harrell's C", "uno_c": "Uno's C", "td_auc": "Time-dependent AUC", "e_o_ratio": "E/O ratio",
    "calibration_slope": "Calibration slope", "calibration_intercept": "Calibration-in-the-large, log(O/E)",
    "brier": "Brier score", "integrated_brier": "Integrated Brier score"}
#: a logistic model's metrics (federated.site.binary_performance), in the documents' order
_BINARY: dict[str, str] = {
    "c_statistic": "C statistic (ROC AUC)", "e_o_ratio": "E/O ratio",
    "calibration_slope": "Calibration slope (logit)",
    "calibration_intercept": "Calibration intercept (logit, slope 1)", "brier": "Brier score"}


@dataclass(frozen=True)
class Kind:
    """The words and metric keys of one kind of model."""

    id: str
    #: the model in words, as a sentence's subject
    model: str
    #: what exp(β) is: "hazard ratio" or "odds ratio", and its abbreviation
    ratio: str
    short: str
    #: the concordance metric its validation reports (key, name)
    concordance: Key
    #: what a count of events is called in a table's head
    events: str
    #: the pooled references its federated fit is verified against
    reference: str
    #: the metrics' names (metric key → label)
    names: dict[str, str]

    @property
    def logistic(self) -> bool:
        return self.id == "logistic"

    @property
    def concordance_name(self) -> str:
        return self.names[self.concordance[0]]

    def headline(self, horizons: list[float]) -> list[Key]:
        """(metric, horizon) of the headline metrics: discrimination, calibration, accuracy."""
        if not self.logistic:
            return [("harrell_c", None), ("calibration_slope", None),
                    *[("e_o_ratio", h) for h in horizons], *[("td_auc", h) for h in horizons]]
        return [self.concordance, *[(m, h) for h in horizons for m in
                                    ("calibration_slope", "calibration_intercept", "e_o_ratio", "brier")]]

    def by_factor(self, horizons: list[float]) -> list[Key]:
        """The columns of a table by site or subgroup: discrimination and E/O (a logistic model's
        calibration slope too)."""
        if not self.logistic:
            return [self.concordance, *[("e_o_ratio", h) for h in horizons]]
        return [self.concordance, *[(m, h) for h in horizons for m in ("calibration_slope", "e_o_ratio")]]

    def slope_at(self, horizons: list[float]) -> float | None:
        """The horizon a calibration slope is reported at: over all follow-up (Cox), or the one horizon."""
        return horizons[0] if self.logistic and horizons else None


COX = Kind(id="cox-ph", model="Cox proportional hazards model", ratio="hazard ratio", short="HR",
           concordance=("harrell_c", None), events="Events",
           reference="lifelines and scikit-survival", names=METRICS)
LOGISTIC = Kind(id="logistic", model="logistic regression of a recorded binary outcome", ratio="odds ratio",
                short="OR", concordance=("c_statistic", None), events="With outcome",
                reference="statsmodels",
                names={**_BINARY, **{k: v for k, v in METRICS.items() if k not in _BINARY}})


def kind_of(artifact: dict[str, Any] | None) -> Kind:
    """The kind of ``artifact`` (a Cox model when it does not say)."""
    return LOGISTIC if (artifact or {}).get("kind") == "logistic" else COX


def horizon_label(horizon: float | str | None, unit: str) -> str:
    """``1095.75 days (3.0 y)``; ``each horizon`` for a criterion stated at every horizon of the model."""
    if horizon is None:
        return ""
    if isinstance(horizon, str):
        return "each horizon"
    years = f" ({horizon / 365.25:.1f} y)" if unit == "day" else ""
    return f"{horizon:g} {unit}s{years}"


@dataclass(frozen=True)
class Terms:
    """How one document labels metrics and horizons of the documented model."""

    kind: Kind
    unit: str
    horizons: tuple[float, ...]

    def horizon(self, h: float | str | None) -> str:
        """A horizon in words; a logistic model's one horizon as when its outcome is recorded."""
        if self.kind.logistic and isinstance(h, int | float) and h in self.horizons:
            return f"{h:g} {self.unit}{'' if h == 1 else 's'} (when recorded)"
        return horizon_label(h, self.unit)

    def metric(self, entry: dict[str, Any]) -> str:
        """``Harrell's C`` or ``E/O ratio at 1095.75 days (3.0 y)``; a logistic model's metric at its
        one horizon by its name alone (there is no other time to tell it from)."""
        name = self.kind.names.get(entry["metric"], str(entry["metric"]))
        h = entry.get("horizon")
        if self.kind.logistic and (h is None or isinstance(h, str) or h in self.horizons):
            return name
        when = horizon_label(h, self.unit)
        return f"{name} at {when}" if when else name

    def order(self, metric: str) -> int:
        rank = list(self.kind.names)
        return rank.index(metric) if metric in rank else len(rank)


def terms_of(inputs: DossierInputs) -> Terms:
    """The documented model's terms (unit from its validation report, else its artifact)."""
    art = inputs.artifact or {}
    unit = str((inputs.validation or {}).get("settings", {}).get("time_unit")
               or art.get("outcome", {}).get("time_unit", "day"))
    return Terms(kind_of(art), unit, tuple(art.get("outcome", {}).get("horizons", [])))


# ---------------------------------------------------------------------------------------- the artifact
def center(artifact: dict[str, Any]) -> list[float]:
    """The reference patient's design columns c (a Cox model's baseline centre, a logistic model's)."""
    block = artifact.get("logistic") or artifact.get("baseline_survival") or {}
    return list(block.get("center") or [])


def min_cell_count(artifact: dict[str, Any]) -> Any:
    """The minimum cell count the artifact was released under (None when it does not say)."""
    block = artifact.get("logistic") or artifact.get("baseline_survival") or {}
    return block.get("min_cell_count")


def recorded_at(artifact: dict[str, Any]) -> str:
    """A logistic model's one horizon in words: ``1 day``, ``30 days``."""
    h, unit = artifact["outcome"]["horizons"][0], artifact["outcome"]["time_unit"]
    return f"{h:g} {unit}{'' if h == 1 else 's'}"


def expit(x: float) -> float:
    """1 / (1 + e^(−x)) without overflow (as :func:`prognosis.logistic.expit`)."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def reference_patient(artifact: dict[str, Any]) -> tuple[float, float, float]:
    """A logistic model's intercept α (the reference patient's log-odds) with its 95% CI."""
    alpha, se = float(artifact["coefficients"][INTERCEPT]), float(artifact["standard_errors"][INTERCEPT])
    wald = (alpha - Z95 * se, alpha + Z95 * se)
    low, high = (artifact.get("confidence_intervals") or {}).get(INTERCEPT) or wald
    return alpha, float(low), float(high)


def reference_text(artifact: dict[str, Any]) -> str:
    """The intercept in words: the reference patient's log-odds and predicted probability, each with
    its 95% Wald CI (the probability's CI is the log-odds' mapped by expit)."""
    alpha, low, high = reference_patient(artifact)
    return (f"Intercept α = {alpha:.4g} (95% CI {low:.4g} to {high:.4g}): the log-odds of the outcome for "
            f"the reference patient x = c; her predicted probability expit(α) = {expit(alpha):.3f} (95% CI "
            f"{expit(low):.3f}–{expit(high):.3f}).")


def privacy_record(artifact: dict[str, Any]) -> str:
    """What the artifact's ``training.differential_privacy`` says, in words."""
    training = artifact.get("training") or {}
    if kind_of(artifact).logistic:
        return "off (exact fit)" if not training.get("differential_privacy") else (
            f"recorded as {training['differential_privacy']}")
    return _privacy.cox_record(training)


#: what a logistic model's 95% interval is (prognosis.logistic, device.scoring)
LOGISTIC_INTERVAL = (
    "The 95% interval of the predicted probability is the Wald interval of the log-odds α + β·(d(x) − c) "
    "(its variance from the covariance of the intercept and slopes; exact, the log-odds being linear in "
    "them) mapped back by the logistic function, as R's predict.glm on the link scale: it includes the "
    "uncertainty of every released coefficient, the intercept included (prognosis.logistic).")


def interval_text(artifact: dict[str, Any] | None) -> str:
    """One sentence on what the device's 95% risk interval includes, for this model (HAZ-DEV-001)."""
    if kind_of(artifact).logistic:
        return LOGISTIC_INTERVAL
    return interval_statement(includes_baseline(artifact))


def model_interval(model: Any) -> str:
    """:func:`interval_text` of a loaded model (a Cox model's own ``interval_includes_baseline``)."""
    if model.kind == "logistic":
        return LOGISTIC_INTERVAL
    return interval_statement(model.interval_includes_baseline)


def outcome_text(artifact: dict[str, Any]) -> str:
    """What is predicted, in words."""
    out = artifact["outcome"]
    if kind_of(artifact).logistic:
        return (f"{out['name']}: a binary outcome recorded at {recorded_at(artifact)} (the model's one "
                "horizon); no time to event")
    return f"{out['name']}; horizons " + ", ".join(horizon_label(h, out["time_unit"])
                                                   for h in out["horizons"])


def kind_caveats(artifact: dict[str, Any]) -> list[str]:
    """What the evidence of a logistic model does not show, each a plain statement (none for a Cox model,
    whose caveats the documents state on their own)."""
    if not kind_of(artifact).logistic:
        return []
    return [f"The model predicts a binary outcome as recorded at {recorded_at(artifact)}; it makes no claim "
            "about when an event occurs, about survival, or about any other horizon, and its validation "
            "reports no time-dependent metric: its discrimination and calibration are those of the outcome "
            "as recorded.",
            "The intercept carries the outcome's frequency in the training population: where the outcome "
            "is more or less frequent, every prediction is shifted, as calibration-in-the-large and E/O at "
            "each site show (HAZ-VAL-001)."]


def calibration_by_group(report: dict[str, Any], terms: Terms) -> list[Flowable]:
    """A logistic model's calibration by group of predicted probability at each site: mean predicted
    probability against the observed proportion with its Wilson 95% interval (as the sites reported them,
    counts rounded to k); nothing for a Cox model, whose groups FP-CVR shows as Kaplan–Meier figures."""
    if not terms.kind.logistic:
        return []
    rows: list[list[object]] = [["Site", "Group", "Patients", "With outcome", "Mean predicted",
                                 "Observed (Wilson 95% CI)"]]
    for site, s in (report.get("sites") or {}).items():
        for g in s.get("risk_groups") or []:
            obs = f"{g['observed'][0]:.3f} ({g['observed_lower'][0]:.3f}–{g['observed_upper'][0]:.3f})" \
                if g.get("observed") else "—"
            pred = f"{g['predicted'][0]:.3f}" if g.get("predicted") else "—"
            rows.append([site, g.get("group"), g.get("n"), g.get("events"), pred, obs])
    if len(rows) == 1:
        return [para("<b>Calibration by risk group.</b> No site reported groups of predicted probability "
                     "(each group must meet the disclosure minimums).")]
    return [para("<b>Calibration by risk group</b> (quantile groups of predicted probability at each site, "
                 "low to high): the mean predicted probability against the observed proportion of patients "
                 "with the outcome."),
            table(rows, widths=[30, 14, 20, 24, 28, 54])]

"""Versioned messages between the coordinator and the sites (``fedprog.msg/v1``).

Every request and reply is a frozen pydantic model with ``extra="forbid"``; numeric
payloads are :class:`~federated.protocol.arrays.WireArray` (finite, shape-checked). A transport
carries only the JSON bytes of these models, so an in-process call, Flower or anything
else moves the very same messages. No pickle.

Protocol (per fit; ``session`` ties the messages of one fit together). Every statistic in
the third column is summed by the coordinator, and masked when the round is secure:

===============  =========================================  ==================================
request          the site answers with                      summed (masked when secure)
===============  =========================================  ==================================
``keys``         its first ephemeral X25519 public key      —
``prepare``      sizes, Σx, Σx², event-time histogram       all (exact grid: event times plain)
``grid``         events per grid time, Σ δ(x − c)           all
``risk-set``     S0, S1 (Efron: T0, T1) per grid time at β   all
``information``  Σ_i w_i (A(t_i) − δ_i b_k(i)) x_i x_iᵀ        all
``counts``       at-risk and event counts per label, time    all
``cif-prepare``  competing risks: patients, events of each   all (exact grid: event times plain)
                 cause, events of any cause per interval
``cif-counts``   competing risks: at-risk count and events   all
                 of each cause per time
``pwe-events``   DP Cox: patients, events per interval, Σδx̃  all (quantised, noised by the site)
``pwe-round``    DP Cox: Σ e u (1, x̃, x̃x̃ᵀ) per interval at β  all (quantised, noised by the site)
``evaluate``     a model's performance on the site's rows    — (plaintext by design: per-site
                 (metrics with bootstrap CIs, subgroups,       results, aggregates only, small
                 risk groups)                                  groups suppressed)
``recalibrate``  a model updated on the site's rows: its    — (plaintext by design: one site;
                 calibration slope with SE, the baseline       baseline steps of ≥ k events only,
                 hazard at offset slope × η                    counts rounded to k)
                 (logistic: ``recalibrate-logistic``, a, b
                 of logit P = a + b η with covariance)
===============  =========================================  ==================================

Every request names the approved study (``study``, its SHA-256); a site answers nothing else
(:mod:`federated.disclosure.rules`). Every reply in a secure session carries ``next_key``, the site's fresh
public key for the next round signed with its identity key, so key agreement is per round and
authenticated without extra round trips.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError, model_validator

from federated.exceptions import ProtocolError
from federated.protocol.arrays import WireArray
from federated.study import CohortSpec, TimeGrid
from prognosis import CoxModel
from prognosis.logistic import LogisticModel

SCHEMA: Literal["fedprog.msg/v1"] = "fedprog.msg/v1"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["fedprog.msg/v1"] = SCHEMA
    session: str = Field(min_length=1, max_length=128)
    round: int = Field(ge=0)


class SignedKey(BaseModel):
    """A site's X25519 public key for one round (base64), signed with its Ed25519 identity key
    over (study, session, round, key) (:func:`federated.disclosure.rules.round_key_message`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=64)
    signature: str = Field(min_length=1, max_length=128)


class SecureRound(BaseModel):
    """Secure aggregation for this round: every participant's signed X25519 public key.

    Each site checks every key against the identity keys its approved study pins, then masks
    its summed statistics with pairwise masks agreed with every other listed site
    (:mod:`federated.protocol.secagg`), bound to this request's digest; the masks cancel only in the sum
    over all of them, and only when every site received the same request.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    peers: dict[str, SignedKey]


class _Request(_Message):
    #: the approved study this request belongs to (:attr:`federated.disclosure.rules.StudyProtocol.sha256`)
    study: str = Field(pattern=r"^[0-9a-f]{64}$")
    secure: SecureRound | None = None


class ConsentGate(BaseModel):
    """Use only patients whose consent was active in the ledger of ``size`` entries with
    ``root`` (hex); ``job`` names the training job, so that sites can later tell which jobs
    a revocation affects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=0)
    root: str = Field(pattern=r"^[0-9a-f]{64}$")
    job: str = Field(min_length=1, max_length=200)


# ---------------------------------------------------------------- requests
class KeysRequest(_Request):
    """Secure aggregation set-up: each site answers with its first ephemeral public key."""

    kind: Literal["keys"] = "keys"


class PrepareRequest(_Request):
    """Load and check the cohort; report sizes, (masked) event-time histograms, Σx, Σx².

    ``labels`` is the global list of strata / group labels when it is public (declared
    levels, or sites); without it a site reports its own labels in plaintext.
    """

    kind: Literal["prepare"] = "prepare"
    cohort: CohortSpec
    labels: list[str] | None = None
    consent: ConsentGate | None = None


class GridRequest(_Request):
    """The global event-time grid per label, and the global covariate centre."""

    kind: Literal["grid"] = "grid"
    labels: list[str]
    times: list[WireArray]
    center: WireArray


class RiskSetRequest(_Request):
    """Risk-set sums at coefficients ``beta`` (centred covariates)."""

    kind: Literal["risk-set"] = "risk-set"
    beta: WireArray
    efron: bool


class InformationRequest(_Request):
    """Second-moment sums weighted by the coordinator's per-time weights ``a``, ``b``."""

    kind: Literal["information"] = "information"
    beta: WireArray
    a: WireArray
    b: WireArray


class CountsRequest(_Request):
    """At-risk and event counts per label on one global grid (Kaplan–Meier, log-rank)."""

    kind: Literal["counts"] = "counts"
    labels: list[str]
    times: WireArray


def cause_codes(cohort: CohortSpec) -> tuple[str, ...]:
    """The declared cause codes 1…C of a competing-risks cohort (``ValueError`` if it is not one).

    Such a cohort names one outcome column holding a cause code per row: ``event`` and ``partition``
    both name it, and ``levels`` declares its codes, ``"0"`` (censored) first, then every cause once in
    the order the estimates number them 1…C. The codes are public and, being part of the cohort, part of
    what a site approves: no request can add, drop or merge a cause, nor name another column.
    """
    levels = cohort.levels or ()
    if cohort.time is None or cohort.partition != cohort.event or cohort.partition_by_site:
        raise ValueError("a competing-risks cohort has a time column and groups its rows by its cause "
                         "column: partition = event = the cause column")
    if len(levels) < 2 or levels[0] != "0" or len(set(levels)) != len(levels):
        raise ValueError("a competing-risks cohort declares the codes of its cause column as its levels: "
                         "'0' (censored) first, then every cause once")
    return levels[1:]


class _CifRequest(_Request):
    """Competing risks (:mod:`federated.analyses.competing`): a cohort of the form of
    :func:`cause_codes`. Each request names the cohort, so a site keeps nothing between them."""

    cohort: CohortSpec
    consent: ConsentGate | None = None

    @model_validator(mode="after")
    def _competing(self) -> _CifRequest:
        cause_codes(self.cohort)
        return self

    @property
    def causes(self) -> tuple[str, ...]:
        """The declared cause codes 1…C, in order."""
        return cause_codes(self.cohort)


class CifPrepareRequest(_CifRequest):
    """Load and check the competing-risks cohort; report patients, events of each cause, and the
    times of events of any cause (a histogram on a coarse grid, the distinct times on the exact one)."""

    kind: Literal["cif-prepare"] = "cif-prepare"


class CifCountsRequest(_CifRequest):
    """Numbers at risk and events of each cause on one global grid (Aalen–Johansen,
    :func:`federated.site.competing_counts.cause_counts`)."""

    kind: Literal["cif-counts"] = "cif-counts"
    times: WireArray


class PweEventsRequest(_Request):
    """Differentially private Cox (:mod:`federated.analyses.dp_cox`): load the cohort; patients,
    events per interval of the public grid and Σ δ x̃ (noised by the site)."""

    kind: Literal["pwe-events"] = "pwe-events"
    cohort: CohortSpec
    consent: ConsentGate | None = None


class PweRoundRequest(_Request):
    """One noisy Newton round at ``beta`` (standardised covariates, :mod:`federated.pwe_math`)."""

    kind: Literal["pwe-round"] = "pwe-round"
    beta: WireArray


class LogisticRequest(_Request):
    """One Newton round of logistic regression at ``beta`` (intercept first, then the design
    columns of a binary cohort opened by a ``prepare``): the site's Bernoulli log-likelihood, score
    and information (:func:`federated.logistic_math.site_sums`)."""

    kind: Literal["logistic"] = "logistic"
    beta: WireArray


class EvaluationModel(BaseModel):
    """The model a site evaluates, and at which horizons: ``artifact`` is the model's sealed
    ``fedprog.model/v1`` JSON object itself, validated on receipt by the one schema and seal check of
    its ``kind`` (:meth:`prognosis.CoxModel.from_artifact` for ``cox-ph``,
    :meth:`prognosis.logistic.LogisticModel.from_artifact` for ``logistic``); :meth:`cox` and
    :meth:`logistic` are the loaded model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    artifact: dict[str, Any]
    horizons: WireArray
    _model: CoxModel | LogisticModel = PrivateAttr()

    @model_validator(mode="after")
    def _load(self) -> EvaluationModel:
        kind = self.artifact.get("kind", "cox-ph")
        self._model = (LogisticModel if kind == "logistic" else CoxModel).from_artifact(self.artifact)
        return self

    @property
    def kind(self) -> Literal["cox-ph", "logistic"]:
        """The artifact's kind of model."""
        return "logistic" if isinstance(self._model, LogisticModel) else "cox-ph"

    def cox(self) -> CoxModel:
        """The verified Cox model (:class:`prognosis.CoxModel`); ``ValueError`` for another kind."""
        if not isinstance(self._model, CoxModel):
            raise ValueError(f"the artifact is a {self.kind} model, not a Cox model")
        return self._model

    def logistic(self) -> LogisticModel:
        """The verified logistic model (:class:`prognosis.logistic.LogisticModel`); ``ValueError``
        for another kind."""
        if not isinstance(self._model, LogisticModel):
            raise ValueError(f"the artifact is a {self.kind} model, not a logistic model")
        return self._model


class Subgroup(BaseModel):
    """A declared subgroup (fairness): patients with ``low <= x < high`` or ``x == equals`` in
    covariate ``variable``. Subgroups sharing a ``partition`` split the site's patients."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=100)
    partition: str = Field(min_length=1, max_length=100)
    variable: str = Field(min_length=1)
    low: float | None = None
    high: float | None = None
    equals: float | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Subgroup:
        ranged = self.low is not None or self.high is not None
        if ranged == (self.equals is not None):
            raise ValueError(f"subgroup {self.name!r}: give low/high or equals, not both or neither")
        return self


class EvaluateRequest(_Request):
    """Evaluate ``model`` on the site's consented rows (:mod:`federated.site.evaluation`): metrics
    with percentile-bootstrap CIs (``n_boot`` resamples, ``seed``), per ``subgroups``, and
    ``risk_groups`` groups of predicted risk with Kaplan–Meier curves on the public ``km_times``.
    ``ibs_times`` is the public grid the integrated Brier score is taken over."""

    kind: Literal["evaluate"] = "evaluate"
    cohort: CohortSpec
    consent: ConsentGate | None = None
    model: EvaluationModel
    n_boot: int = Field(ge=0, le=10_000)
    seed: int = Field(ge=0)
    subgroups: list[Subgroup] = Field(default_factory=list, max_length=100)
    risk_groups: int = Field(default=5, ge=0, le=10)
    km_times: WireArray
    ibs_times: WireArray

    @model_validator(mode="after")
    def _bounded(self) -> EvaluateRequest:
        """Bounded work and questions: at most 6 horizons, and n_boot × (1 + subgroups) ≤ 120 000
        metric evaluations, so a request cannot keep a site busy for hours (nothing hangs)."""
        if self.model.horizons.to_numpy().size > 6:
            raise ValueError("an evaluation asks about at most 6 horizons")
        if self.n_boot * (1 + len(self.subgroups)) > 120_000:
            raise ValueError("n_boot × (1 + subgroups) exceeds 120 000")
        return self


class RecalibrateRequest(_Request):
    """Update ``model`` on the site's consented rows inside the intended-use envelope
    (:mod:`federated.site.recalibration`): the calibration slope of its linear predictor and the
    Breslow baseline hazard at the offset slope × η, on ``cohort``'s time grid (Steyerberg 2019, ch. 20)."""

    kind: Literal["recalibrate"] = "recalibrate"
    cohort: CohortSpec
    consent: ConsentGate | None = None
    model: EvaluationModel


Request = Annotated[
    KeysRequest | PrepareRequest | GridRequest | RiskSetRequest | InformationRequest | CountsRequest
    | PweEventsRequest | PweRoundRequest | EvaluateRequest | RecalibrateRequest | LogisticRequest
    | CifPrepareRequest | CifCountsRequest,
    Field(discriminator="kind"),
]


# ------------------------------------------------------------------ replies
class _Reply(_Message):
    #: statistics the coordinator sums: masked (``r128``) whenever the round is secure
    SUMMED: ClassVar[tuple[str, ...]] = ()
    #: fields that reveal something of the site's data in plaintext (event times, labels)
    DISCLOSED: ClassVar[tuple[str, ...]] = ()

    next_key: SignedKey | None = None  # the site's signed public key for the next secure round

    def plaintext_fields(self) -> list[str]:
        """Names of fields that carry site statistics or data unmasked."""
        out = []
        for name in self.SUMMED:
            value = getattr(self, name)
            if value is not None and not value.masked:
                out.append(name)
        return out + [name for name in self.DISCLOSED if getattr(self, name)]


class KeysReply(_Reply):
    kind: Literal["keys"] = "keys"


class PrepareReply(_Reply):
    SUMMED = ("counts", "sum_x", "sum_x2", "event_histogram", "range_counts")
    DISCLOSED = ("labels", "event_times")

    kind: Literal["prepare"] = "prepare"
    counts: WireArray                         # [patients, events]
    sum_x: WireArray
    sum_x2: WireArray
    event_histogram: WireArray | None = None  # (labels, bins) on a coarse grid
    range_counts: WireArray | None = None     # (declared ranges, bins + 2)
    labels: list[str] | None = None           # only when the request gave none
    event_times: list[WireArray] | None = None  # only on the exact grid
    #: complete-case studies: rows left out for a missing value, a multiple of k (the site's own k)
    incomplete: int | None = Field(default=None, ge=0)


class GridReply(_Reply):
    SUMMED = ("events", "sum_event_x")

    kind: Literal["grid"] = "grid"
    events: WireArray
    sum_event_x: WireArray


class RiskSetReply(_Reply):
    SUMMED = ("s0", "s1", "t0", "t1")

    kind: Literal["risk-set"] = "risk-set"
    s0: WireArray
    s1: WireArray
    t0: WireArray | None = None
    t1: WireArray | None = None


class InformationReply(_Reply):
    SUMMED = ("matrix",)

    kind: Literal["information"] = "information"
    matrix: WireArray


class CountsReply(_Reply):
    SUMMED = ("at_risk", "events")

    kind: Literal["counts"] = "counts"
    at_risk: WireArray
    events: WireArray


class CifPrepareReply(_Reply):
    """Competing risks: patients and events of each cause (``counts``, (1 + C,)); events of any cause
    per interval of the public grid (coarse grids), or the distinct times of events of any cause in
    plaintext (the exact grid, the study's opt-in); complete-case studies: rows left out for a missing
    value, a multiple of k (the site's own k), as :class:`PrepareReply`."""

    SUMMED = ("counts", "event_histogram")
    DISCLOSED = ("event_times",)

    kind: Literal["cif-prepare"] = "cif-prepare"
    counts: WireArray                          # [patients, events of cause 1, …, events of cause C]
    event_histogram: WireArray | None = None   # (bins,) on a coarse grid
    event_times: WireArray | None = None       # only on the exact grid
    incomplete: int | None = Field(default=None, ge=0)


class CifCountsReply(_Reply):
    """Competing risks: numbers at risk (K,) and events of each cause (C, K) on the request's grid."""

    SUMMED = ("at_risk", "events")

    kind: Literal["cif-counts"] = "cif-counts"
    at_risk: WireArray
    events: WireArray


class LogisticReply(_Reply):
    SUMMED = ("loglik", "score", "information")

    kind: Literal["logistic"] = "logistic"
    loglik: WireArray       # (1,): Σ y log π + (1 − y) log(1 − π)
    score: WireArray        # (p + 1,): Σ x̃ (y − π)
    information: WireArray  # (p + 1, p + 1): Σ π (1 − π) x̃ x̃ᵀ


class PweEventsReply(_Reply):
    SUMMED = ("counts", "sum_event_x")

    kind: Literal["pwe-events"] = "pwe-events"
    counts: WireArray       # [patients, events per interval k = 1…K]
    sum_event_x: WireArray  # Σ δ x̃


class PweRoundReply(_Reply):
    SUMMED = ("sums",)

    kind: Literal["pwe-round"] = "pwe-round"
    sums: WireArray  # (K, P): Σ e_ik u_i φ(x̃_i)


_FINITE = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MetricResult(BaseModel):
    """One metric (at one horizon, or ``None``): estimate, percentile-bootstrap 95% CI, and the
    bootstrap standard error on the pooling ``scale`` (for inverse-variance meta-analysis)."""

    model_config = _FINITE

    metric: str
    horizon: float | None = None
    estimate: float
    ci_lower: float | None = None
    ci_upper: float | None = None
    se: float | None = None
    scale: Literal["logit", "log", "identity"]
    n_boot: int = Field(ge=0)  # replicates in which the metric could be computed


class Unavailable(BaseModel):
    """A metric the site could not compute, and why (no values)."""

    model_config = _FINITE

    metric: str
    horizon: float | None = None
    reason: str


class EvaluationBlock(BaseModel):
    """Results for one group of patients (the site, or a subgroup); ``suppressed`` gives the
    disclosure rule that withheld them (counts ``None`` when they too are withheld)."""

    model_config = _FINITE

    name: str
    n: int | None = None
    events: int | None = None
    suppressed: str | None = None
    metrics: list[MetricResult] = Field(default_factory=list)
    unavailable: list[Unavailable] = Field(default_factory=list)


class RiskGroup(BaseModel):
    """One group of predicted risk (ordered low to high): per horizon the mean predicted risk and
    the observed risk 1 − KM with its log-log 95% CI; the KM curve at the released public times."""

    model_config = _FINITE

    group: int = Field(ge=1)
    n: int
    events: int
    horizons: list[float]  # the horizons inside the group's follow-up
    predicted: list[float]
    observed: list[float]
    observed_lower: list[float]
    observed_upper: list[float]
    km_times: list[float]
    km_survival: list[float]


class EvaluateReply(_Reply):
    #: per-site results are plaintext by design (aggregates only; the transcript shows them)
    DISCLOSED = ("overall", "subgroups", "risk_groups")

    kind: Literal["evaluate"] = "evaluate"
    overall: EvaluationBlock
    subgroups: list[EvaluationBlock] = Field(default_factory=list)
    risk_groups: list[RiskGroup] = Field(default_factory=list)


class RecalibrateReply(_Reply):
    """A model updated at one site (:mod:`federated.site.recalibration`): the slope γ̂ of the model's
    linear predictor η with its standard error (inverse observed information) and the log partial
    likelihoods at γ̂ and at 0; the Breslow baseline at the offset γ̂η released only at ``times`` where
    at least ``min_cell_count`` events accumulated since the previous one: ``cumulative_hazard`` H0
    there, and per released step the variance terms Σ d/S0² (``variance_increments``) and
    Σ (x̄ − c) dH0 (``xbar_increments``, steps × inputs). ``n`` and ``events`` are rounded to
    multiples of ``min_cell_count`` (the site's effective k); ``time_grid`` is the rung used."""

    #: plaintext by design: aggregates of one site (the transcript shows them)
    DISCLOSED = ("slope", "slope_se", "loglik", "loglik_null", "n", "events", "times", "cumulative_hazard",
                 "variance_increments", "xbar_increments")

    model_config = _FINITE
    kind: Literal["recalibrate"] = "recalibrate"
    slope: float
    slope_se: float = Field(gt=0)
    loglik: float
    loglik_null: float
    iterations: int = Field(ge=0)
    n: int = Field(ge=0)
    events: int = Field(ge=0)
    min_cell_count: int = Field(ge=1)
    time_grid: TimeGrid
    times: WireArray
    cumulative_hazard: WireArray
    variance_increments: WireArray
    xbar_increments: WireArray


class RecalibrateLogisticReply(_Reply):
    """A logistic model updated at one site (:mod:`federated.site.logistic_recalibration`): â and b̂
    of logit P(y = 1) = a + b η, η the model's linear predictor, with their 2×2 ``covariance``
    (inverse information, (a, b) order), the log-likelihood at (â, b̂) and at (0, 1) (the model
    unchanged), the Newton ``iterations``; ``n`` and ``events`` rounded to multiples of
    ``min_cell_count`` (the site's effective k). No intercept-only log-likelihood: a function of
    the exact counts alone, it would undo their rounding."""

    #: plaintext by design: aggregates of one site (the transcript shows them)
    DISCLOSED = ("intercept", "slope", "covariance", "loglik", "loglik_unchanged", "n", "events")

    model_config = _FINITE
    kind: Literal["recalibrate-logistic"] = "recalibrate-logistic"
    intercept: float
    slope: float
    covariance: WireArray
    loglik: float
    loglik_unchanged: float
    iterations: int = Field(ge=0)
    n: int = Field(ge=0)
    events: int = Field(ge=0)
    min_cell_count: int = Field(ge=1)


ErrorCode = Literal["bad-request", "data", "overflow", "policy", "not-approved", "cells", "bound",
                    "budget", "plaintext", "peers", "replayed", "consent"]


class ErrorReply(_Reply):
    """The site refuses: ``code`` is machine-readable, ``message`` one line for people.

    In a secure study the message carries no count or value (every digit outside a quoted name
    is replaced by ``#``): an error must not answer a question the coordinator chose.
    """

    kind: Literal["error"] = "error"
    code: ErrorCode
    message: str


Reply = Annotated[
    KeysReply | PrepareReply | GridReply | RiskSetReply | InformationReply | CountsReply
    | PweEventsReply | PweRoundReply | EvaluateReply | RecalibrateReply | LogisticReply | ErrorReply
    | CifPrepareReply | CifCountsReply | RecalibrateLogisticReply,
    Field(discriminator="kind"),
]

_REQUEST: TypeAdapter[Request] = TypeAdapter(Request)
_REPLY: TypeAdapter[Reply] = TypeAdapter(Reply)


def _decode(adapter: TypeAdapter[Any], payload: bytes, what: str) -> Any:
    try:
        return adapter.validate_json(payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        raise ProtocolError(f"invalid {what}: {loc}: {err['msg']}") from None


def decode_request(payload: bytes) -> Request:
    """Parse and validate a request; :class:`ProtocolError` on anything off-schema."""
    return _decode(_REQUEST, payload, "request")


def decode_reply(payload: bytes) -> Reply:
    """Parse and validate a reply; :class:`ProtocolError` on anything off-schema."""
    return _decode(_REPLY, payload, "reply")


def encode(message: BaseModel) -> bytes:
    """The wire form of a message: compact JSON."""
    return message.model_dump_json().encode("utf-8")

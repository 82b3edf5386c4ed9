"""What a site computes for each request: aggregates over its own rows (plaintext here;
:mod:`federated.site.handler` masks them before they leave).

Each array a site returns is shaped by public things only — the number of covariates, the
global labels and grid, the declared ranges — never by its own number of patients.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from federated import logistic_math
from federated import pwe_math as pwe
from federated.disclosure.cells import safe_counts
from federated.disclosure.policy import round_to_k
from federated.disclosure.rules import Refusal
from federated.exceptions import DataError
from federated.protocol.arrays import WireArray, expect_shape
from federated.protocol.messages import (
    CifCountsReply,
    CifCountsRequest,
    CifPrepareReply,
    CifPrepareRequest,
    CountsReply,
    CountsRequest,
    GridReply,
    GridRequest,
    InformationReply,
    InformationRequest,
    LogisticReply,
    LogisticRequest,
    PrepareReply,
    PrepareRequest,
    PweEventsReply,
    PweEventsRequest,
    PweRoundReply,
    PweRoundRequest,
    Reply,
    RiskSetReply,
    RiskSetRequest,
)
from federated.site import local_stats as ls
from federated.site.competing_counts import cause_counts
from federated.site.data import Cohort, coverage_bins
from federated.study import CohortSpec

wire = WireArray.from_numpy
_MAX_ETA = 690.0


@dataclass(frozen=True)
class InputBox:
    """The box the site's inputs lie in, and how far the centre may lie from 0: each covariate's
    declared range (the rows are clipped to it, :func:`federated.site.data.prepare_cohort`), the
    centre inside it; else [0 or −M, M] with M the site's largest |x| (at least 1) rounded up to a
    power of two, the centre within ±2M (a refusal tells the coordinator at most that magnitude;
    declare ranges to tell it nothing). ``reach`` is infinite for declared ranges.

    Adversary: a malicious coordinator with extreme β, which makes one patient dominate a risk-set
    sum, or many β along a line, to solve for the patients of a cell (Prony's method). Every
    decision here depends on public things (β, the centre, the declared box), never on a patient's
    value. It limits, but does not remove, dominance inside the box: e^30 still lets a patient
    isolated at the edge of a range carry most of her cell's weight (a residual risk, in FP-CYB).

    With a design (splines, dummies, interactions; :mod:`prognosis.design`) the bound is on each
    effect's spread over its inputs' declared ranges (``effects``: the effect's design columns at
    public points, :meth:`prognosis.design.Design.effect_grids`), not on Σ|β_j|·width_j, which the
    large opposite-signed coefficients of a spline's collinear columns would make meaningless.
    """

    lo: np.ndarray
    hi: np.ndarray
    reach: np.ndarray
    #: per non-linear effect with declared ranges: (its columns, their values at public points)
    effects: tuple[tuple[np.ndarray, np.ndarray], ...] = ()

    @classmethod
    def of(cls, x: np.ndarray, spec: CohortSpec) -> InputBox:
        """The box of the design columns ``x`` (n, m) (:meth:`CohortSpec.design_matrix`): a column
        whose covariates all have declared ranges spans what the design makes of them."""
        columns, ranges = spec.columns, spec.column_ranges()
        p = len(columns)
        lo, hi, reach = np.empty(p), np.empty(p), np.full(p, np.inf)
        for j, name in enumerate(columns):
            if name in ranges:
                lo[j], hi[j] = ranges[name]
            else:
                col = x[:, j]
                far = max(1.0, float(np.abs(col).max()) if col.size else 0.0)
                m = 2.0 ** float(np.ceil(np.log2(far)))
                lo[j], hi[j], reach[j] = (-m if col.size and col.min() < 0 else 0.0), m, 2.0 * m
        if columns == spec.covariates:
            return cls(lo, hi, reach)
        design, groups = spec.design(), np.array(spec.design().groups, dtype=object)
        effects = tuple((np.flatnonzero(groups == name), rows[:, groups == name])
                        for name, rows in design.effect_grids(dict(spec.ranges)).items()
                        if int((groups == name).sum()) > 1 or name not in spec.covariates)
        return cls(lo, hi, reach, effects)

    def check_centre(self, center: np.ndarray) -> None:
        """Refuse (code ``bound``) a centre outside the box."""
        declared = np.isinf(self.reach)
        outside = np.where(declared, (center < self.lo) | (center > self.hi), np.abs(center) > self.reach)
        if np.any(outside):
            raise Refusal("bound", "the centre lies outside the inputs' ranges")

    def check_beta(self, beta: np.ndarray, bound: float) -> None:
        """Refuse (code ``bound``) coefficients with Σ_j |β_j| · width_j > ``bound`` (at most 690:
        exp(690) · 10^9 rows is still below the float64 maximum). Then, with the centre in the box,
        |β·(x − c)| stays bounded and no two patients' weights differ by more than e^bound."""
        limit = min(bound, _MAX_ETA)
        linear = np.ones(beta.size, dtype=bool)
        spread = 0.0
        for cols, values in self.effects:
            linear[cols] = False
            eta = values @ beta[cols]
            spread += float(eta.max() - eta.min())
        if not spread + float(np.abs(beta[linear]) @ (self.hi - self.lo)[linear]) <= limit:
            raise Refusal("bound", f"|beta·(x − c)| can exceed {limit:g} on the inputs' ranges")


@dataclass
class SiteSession:
    """State of one fit at this site: its rows and the global grid layout."""

    cohort: Cohort
    spec: CohortSpec
    min_cell: int = 1
    max_abs_lp: float = 30.0
    labels: list[str] = field(default_factory=list)  # global labels, in the coordinator's order
    xc: np.ndarray | None = None  # covariates centred on the global centre
    box: InputBox | None = None   # the inputs' box, fixed with the centre by the grid round
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    blocks: list[tuple[slice, np.ndarray]] = field(default_factory=list)
    pwe: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # exposure, event interval, x̃
    pwe_bound: float = 0.0  # the approved bound on Σ|β_j| (standardised) for pwe rounds
    x: np.ndarray = field(init=False)  # the design columns of the rows (:meth:`CohortSpec.design_matrix`)

    def __post_init__(self) -> None:
        self.x = self.spec.design_matrix(self.cohort.x)

    @property
    def size(self) -> int:
        """K, the length of the flattened global grid."""
        return int(self.offsets[-1])

    def rows_of(self, labels: list[str]) -> list[slice]:
        """This site's rows for each global label (empty where it has none)."""
        c = self.cohort
        bounds = np.searchsorted(c.label, np.arange(len(c.labels) + 1))
        local = {lab: slice(int(bounds[i]), int(bounds[i + 1])) for i, lab in enumerate(c.labels)}
        missing = sorted(set(c.labels) - set(labels))
        if missing:
            raise DataError(f"{len(missing)} of this site's labels are not among the study's labels")
        return [local.get(lab, slice(0, 0)) for lab in labels]

    def set_layout(self, labels: list[str], grids: list[np.ndarray]) -> None:
        """Map the global labels' grids onto this site's rows."""
        if any(np.any(np.diff(g) <= 0) for g in grids):
            raise ValueError("grid times must be strictly increasing")
        self.labels = labels
        self.blocks = list(zip(self.rows_of(labels), grids, strict=True))
        self.offsets = np.concatenate(([0], np.cumsum([g.size for g in grids]))).astype(np.int64)

    # --------------------------------------------------------------- prepare
    def prepare_reply(self, req: PrepareRequest) -> PrepareReply:
        c, spec = self.cohort, self.spec
        labels = req.labels if req.labels is not None else list(c.labels)
        rows = self.rows_of(labels)
        out: dict[str, object] = {
            "counts": wire(np.array([c.time.size, int(c.event.sum())])),
            "sum_x": wire(self.x.sum(axis=0)), "sum_x2": wire((self.x ** 2).sum(axis=0)),
            "range_counts": self._range_counts() if spec.ranges else None,
            "labels": None if req.labels is not None else labels,
            "incomplete": None if spec.missing == "refuse" else int(round_to_k(c.incomplete, self.min_cell)),
        }
        if spec.time is None:  # a binary cohort: no event times to report
            pass
        elif spec.time_grid == "exact":
            out["event_times"] = [wire(np.unique(c.time[r][c.event[r] == 1])) for r in rows]
        else:
            out["event_histogram"] = wire(np.stack([self._histogram(r) for r in rows])) if rows \
                else wire(np.zeros((0, spec.n_bins()), dtype=np.int64))
        return PrepareReply(session=req.session, round=req.round, **out)  # type: ignore[arg-type]

    def _histogram(self, rows: slice) -> np.ndarray:
        """Events per interval 0…B−1 of the public grid."""
        c, spec = self.cohort, self.spec
        ev = c.event[rows] == 1
        idx = np.rint(c.time[rows][ev] / spec.bin_width()).astype(np.int64)
        over = int((idx >= spec.n_bins()).sum())
        if over:
            raise DataError(f"{over} event times exceed max_time; declare a larger max_time")
        return np.bincount(idx, minlength=spec.n_bins())

    def _range_counts(self) -> WireArray:
        """Per declared range (the intended-use envelope): patients below it, in each of
        ``range_bins`` bins, above it — every cell of fewer than k sent as 0 (coverage is
        descriptive; k-cells at the source)."""
        bins = coverage_bins(self.cohort, self.spec)  # clipped values count below/above, not at the edge
        rows = [safe_counts(np.bincount(col, minlength=self.spec.range_bins + 2), self.min_cell)
                for col in bins.T]
        return wire(np.array(rows, dtype=np.int64).reshape(len(rows), self.spec.range_bins + 2))

    # -------------------------------------------------------------- logistic
    def logistic(self, req: LogisticRequest) -> LogisticReply:
        """Σ of the Bernoulli log-likelihood, score and information at ``beta`` (intercept first)
        over the binary cohort's rows (:func:`federated.logistic_math.site_sums`).

        Adversary: a malicious coordinator with extreme coefficients, which make the rows near one
        patient's values carry the sums (π(1 − π) vanishes elsewhere). Refused (``bound``) when the
        slopes can move the log-odds by more than the approved bound over the inputs' box
        (:meth:`InputBox.check_beta`, public things only).
        """
        if self.spec.time is not None:
            raise Refusal("not-approved", "logistic rounds are answered only for a binary cohort")
        if self.box is None:
            self.box = InputBox.of(self.x, self.spec)
        beta = expect_shape("beta", req.beta.to_numpy(), (self.x.shape[1] + 1,))
        self.box.check_beta(beta[1:], self.max_abs_lp)
        sums = logistic_math.site_sums(self.x, self.cohort.event.astype(np.float64), beta)
        return LogisticReply(session=req.session, round=req.round, loglik=wire(np.array([sums.loglik])),
                             score=wire(sums.score), information=wire(sums.information))

    # ------------------------------------------------------------------- cox
    def grid(self, req: GridRequest) -> GridReply:
        c = self.cohort
        if self.spec.time is None:
            raise Refusal("not-approved", "Cox rounds are answered only for a survival cohort")
        if len(req.labels) != len(req.times):
            raise ValueError("labels and times differ in length")
        self.set_layout(req.labels, [t.to_numpy() for t in req.times])
        center = expect_shape("center", req.center.to_numpy(), (self.x.shape[1],))
        self.box = InputBox.of(self.x, self.spec)
        self.box.check_centre(center)
        self.xc = self.x - center
        events = np.zeros(self.size, dtype=np.int64)
        for (rows, grid), off in zip(self.blocks, self.offsets, strict=False):
            events[off:off + grid.size] = ls.event_counts(c.time[rows], c.event[rows], grid)
        return GridReply(session=req.session, round=req.round, events=wire(events),
                         sum_event_x=wire(self.xc[c.event == 1].sum(axis=0)))

    def _weights(self, beta_wire: WireArray) -> tuple[np.ndarray, np.ndarray]:
        if self.xc is None or self.box is None:
            raise ValueError("request before grid")
        beta = expect_shape("beta", beta_wire.to_numpy(), (self.xc.shape[1],))
        self.box.check_beta(beta, self.max_abs_lp)
        return np.exp(self.xc @ beta), self.xc

    def risk_set(self, req: RiskSetRequest) -> RiskSetReply:
        c = self.cohort
        w, xc = self._weights(req.beta)
        xw = xc * w[:, None]
        k, p = self.size, xc.shape[1]
        s0, s1 = np.zeros(k), np.zeros((k, p))
        t0, t1 = (np.zeros(k), np.zeros((k, p))) if req.efron else (None, None)
        for (rows, grid), off in zip(self.blocks, self.offsets, strict=False):
            part = slice(off, off + grid.size)
            b0, b1, e0, e1 = ls.risk_set_sums(c.time[rows], c.event[rows], xw[rows], w[rows], grid,
                                              req.efron)
            s0[part], s1[part] = b0, b1
            if t0 is not None and t1 is not None:
                t0[part], t1[part] = e0, e1
        return RiskSetReply(session=req.session, round=req.round, s0=wire(s0), s1=wire(s1),
                            t0=None if t0 is None else wire(t0), t1=None if t1 is None else wire(t1))

    def information(self, req: InformationRequest) -> InformationReply:
        c = self.cohort
        w, xc = self._weights(req.beta)
        a = expect_shape("a", req.a.to_numpy(), (self.size,))
        b = expect_shape("b", req.b.to_numpy(), (self.size,))
        total = np.zeros((xc.shape[1], xc.shape[1]))
        for (rows, grid), off in zip(self.blocks, self.offsets, strict=False):
            part = slice(off, off + grid.size)
            total += ls.information_sum(c.time[rows], c.event[rows], xc[rows], w[rows], grid,
                                        a[part], b[part])
        return InformationReply(session=req.session, round=req.round, matrix=wire(total))

    # --------------------------------------------- piecewise exponential (dp)
    def pwe_events(self, req: PweEventsRequest, bound: float) -> PweEventsReply:
        """Patients, events per interval of the public grid and Σ δ x̃ (:mod:`federated.pwe_math`):
        covariates standardised on the study's reference patient and declared ranges, exposure
        from the times before coarsening (administratively censored at ``max_time``)."""
        c, spec = self.cohort, self.spec
        lo = np.array([spec.ranges[n][0] for n in spec.covariates])
        hi = np.array([spec.ranges[n][1] for n in spec.covariates])
        center = spec.reference_point()
        xt = pwe.standardise(c.x, center, pwe.scales(lo, hi, center))
        k = spec.n_bins() - 1
        e, idx = pwe.exposure(c.raw_time, c.event, spec.bin_width(), k)
        self.pwe, self.pwe_bound = (e, idx, xt), bound
        sums = pwe.event_sums(idx, xt, k)
        return PweEventsReply(session=req.session, round=req.round, counts=wire(sums[:k + 1]),
                              sum_event_x=wire(sums[k + 1:]))

    def pwe_round(self, req: PweRoundRequest) -> PweRoundReply:
        """``Σ_i e_ik u_i φ(x̃_i)`` per interval at β; refused (``bound``) when Σ_j |β_j| exceeds the
        approved bound (a public decision on the request alone)."""
        if self.pwe is None:
            raise ValueError("pwe-round before pwe-events")
        e, _, xt = self.pwe
        beta = expect_shape("beta", req.beta.to_numpy(), (xt.shape[1],))
        if not float(np.abs(beta).sum()) <= self.pwe_bound:
            raise Refusal("bound", f"sum of |beta| exceeds the study's bound {self.pwe_bound:g}")
        return PweRoundReply(session=req.session, round=req.round, sums=wire(pwe.round_sums(e, xt, beta)))

    # -------------------------------------------------------- kaplan–meier
    def counts(self, req: CountsRequest) -> CountsReply:
        c = self.cohort
        grid = req.times.to_numpy()
        self.set_layout(req.labels, [grid] * len(req.labels))
        n = np.zeros((len(req.labels), grid.size), dtype=np.int64)
        d = np.zeros_like(n)
        for g, (rows, _) in enumerate(self.blocks):
            n[g] = ls.at_risk_counts(c.time[rows], grid)
            d[g] = ls.event_counts(c.time[rows], c.event[rows], grid)
        return CountsReply(session=req.session, round=req.round, at_risk=wire(n), events=wire(d))

    # ----------------------------------------------------- competing risks
    @staticmethod
    def by_cause(cohort: Cohort, causes: tuple[str, ...]) -> Cohort:
        """A competing-risks cohort's rows labelled by cause, sorted by time within each cause.

        ``cohort`` was prepared with the cause column as its partition (the declared codes ``"0"``,
        ``causes`` as its levels, so a row with any other code was refused) and every row an event,
        which administrative censoring at ``max_time`` turned into 0. The result has ``labels`` =
        ("0", *causes), ``label`` = the row's cause 0…C (0: censored, at ``max_time`` too) and
        ``event`` = 1 for a cause ≥ 1: what :func:`~federated.disclosure.cells.small_cells` and the
        consent and sparse-censoring rules read as the atoms (cause × interval).
        """
        codes = ("0", *causes)
        index = np.array([codes.index(lab) for lab in cohort.labels], dtype=np.int64)
        cause = np.where(cohort.event == 1, index[cohort.label], 0).astype(np.int64)
        out = dataclasses.replace(cohort, labels=codes, label=cause, event=(cause > 0).astype(np.int64))
        return out.take(np.lexsort((out.time, cause)))

    def cif_prepare(self, req: CifPrepareRequest) -> CifPrepareReply:
        """Patients and events of each cause of the cohort labelled :meth:`by_cause`, and the times of
        events of any cause: per interval of the public grid, or the distinct times on the exact grid."""
        c, spec = self.cohort, self.spec
        counts = np.bincount(c.label, minlength=len(req.causes) + 1)
        counts[0] = c.time.size
        out: dict[str, object] = {
            "counts": wire(counts),
            "incomplete": None if spec.missing == "refuse" else int(round_to_k(c.incomplete, self.min_cell)),
        }
        if spec.time_grid == "exact":
            out["event_times"] = wire(np.unique(c.time[c.event == 1]))
        else:
            out["event_histogram"] = wire(self._histogram(slice(None)))
        return CifPrepareReply(session=req.session, round=req.round, **out)  # type: ignore[arg-type]

    def cif_counts(self, req: CifCountsRequest) -> CifCountsReply:
        """Numbers at risk (K,) and events of each cause (C, K) on the request's grid
        (:func:`~federated.site.competing_counts.cause_counts`; an event time off it is refused)."""
        c = self.cohort
        at_risk, events = cause_counts(c.time, c.label, req.times.to_numpy(), len(req.causes))
        return CifCountsReply(session=req.session, round=req.round, at_risk=wire(at_risk),
                              events=wire(events))


def answer(sess: SiteSession, req: object) -> Reply:
    """Dispatch a request of a prepared session to its handler."""
    if isinstance(req, GridRequest):
        return sess.grid(req)
    if isinstance(req, RiskSetRequest):
        return sess.risk_set(req)
    if isinstance(req, InformationRequest):
        return sess.information(req)
    if isinstance(req, CountsRequest):
        return sess.counts(req)
    if isinstance(req, PweRoundRequest):
        return sess.pwe_round(req)
    if isinstance(req, LogisticRequest):
        return sess.logistic(req)
    if isinstance(req, CifPrepareRequest):
        return sess.cif_prepare(req)
    if isinstance(req, CifCountsRequest):
        return sess.cif_counts(req)
    raise ValueError(f"unsupported request {type(req).__name__}")

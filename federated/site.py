"""One hospital: holds its rows and answers the coordinator with aggregates only.

A :class:`Site` speaks bytes in, bytes out (:meth:`Site.handle`), so any transport can
carry its messages. It validates every request, refuses what it cannot answer with an
:class:`~federated.messages.ErrorReply`, and (optionally) records every message it sends
in an outbound transcript ``<dir>/<site>.jsonl`` so auditors can see what left the site.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import local_stats as ls
from .arrays import WireArray, expect_shape
from .data import Cohort, load_table, prepare_cohort
from .exceptions import DataError, LinearPredictorOverflow, ProtocolError
from .messages import (
    CountsReply,
    CountsRequest,
    ErrorReply,
    GridReply,
    GridRequest,
    InformationReply,
    InformationRequest,
    PrepareReply,
    PrepareRequest,
    Reply,
    RiskSetReply,
    RiskSetRequest,
    decode_request,
    encode,
)

_MAX_ETA = 690.0  # exp(690) · 10^9 rows is still below the float64 maximum


@dataclass
class _Session:
    """State of one fit at this site: its rows and the global grid layout."""

    cohort: Cohort
    xc: np.ndarray | None = None  # covariates centred on the global centre
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    blocks: list[tuple[slice, np.ndarray]] = field(default_factory=list)

    @property
    def size(self) -> int:
        """K, the length of the flattened global grid."""
        return int(self.offsets[-1])

    def set_layout(self, labels: list[str], grids: list[np.ndarray]) -> None:
        """Map the global labels' grids onto this site's rows (empty rows where absent)."""
        c = self.cohort
        bounds = np.searchsorted(c.label, np.arange(len(c.labels) + 1))
        local = {lab: slice(int(bounds[i]), int(bounds[i + 1])) for i, lab in enumerate(c.labels)}
        missing = sorted(set(c.labels) - set(labels))
        if missing:
            raise ValueError(f"no grid for label {missing[0]!r}")
        if any(np.any(np.diff(g) <= 0) for g in grids):
            raise ValueError("grid times must be strictly increasing")
        self.blocks = [(local.get(lab, slice(0, 0)), g) for lab, g in zip(labels, grids, strict=True)]
        self.offsets = np.concatenate(([0], np.cumsum([g.size for g in grids]))).astype(np.int64)


class Site:
    """A hospital's data behind the message protocol.

    Parameters
    ----------
    name : str
        The site's name, as the coordinator knows it.
    data : pandas.DataFrame or path
        The site's table, or a CSV/Parquet file read on first use.
    transcript_dir : path, optional
        Where to append ``<name>.jsonl``, one line per message sent.
    """

    def __init__(self, name: str, data: pd.DataFrame | Path | str,
                 transcript_dir: Path | None = None) -> None:
        self.name = name
        self._source = data
        self._table: pd.DataFrame | None = data if isinstance(data, pd.DataFrame) else None
        self._sessions: dict[str, _Session] = {}
        self._transcript = Path(transcript_dir) / f"{name}.jsonl" if transcript_dir else None
        self._transcript_started = False

    # ----------------------------------------------------------------- wire
    def handle(self, payload: bytes) -> bytes:
        """Answer one request (JSON bytes) with one reply (JSON bytes)."""
        try:
            request = decode_request(payload)
        except ProtocolError as exc:
            reply: Reply = ErrorReply(session="-", round=0, code="bad-request", message=str(exc))
        else:
            reply = self._answer(request)
        out = encode(reply)
        self._record(reply, out)
        return out

    def _answer(self, req: object) -> Reply:
        base = {"session": req.session, "round": req.round}  # type: ignore[attr-defined]
        try:
            if isinstance(req, PrepareRequest):
                return self._prepare(req)
            sess = self._sessions.get(req.session)  # type: ignore[attr-defined]
            if sess is None:
                return ErrorReply(**base, code="bad-request", message="unknown session (no prepare)")
            if isinstance(req, GridRequest):
                return self._grid(req, sess)
            if isinstance(req, RiskSetRequest):
                return self._risk_set(req, sess)
            if isinstance(req, InformationRequest):
                return self._information(req, sess)
            if isinstance(req, CountsRequest):
                return self._counts(req, sess)
        except LinearPredictorOverflow as exc:
            return ErrorReply(**base, code="overflow", message=str(exc))
        except DataError as exc:
            return ErrorReply(**base, code="data", message=str(exc))
        except ValueError as exc:  # shape or grid mismatch in a well-formed request
            return ErrorReply(**base, code="bad-request", message=str(exc))
        return ErrorReply(**base, code="bad-request", message=f"unsupported request {type(req).__name__}")

    def _record(self, reply: Reply, raw: bytes) -> None:
        if self._transcript is None:
            return
        shapes: dict[str, object] = {}
        for key, value in reply:
            if isinstance(value, WireArray):
                shapes[key] = list(value.shape)
            elif isinstance(value, list) and value and isinstance(value[0], WireArray):
                shapes[key] = [list(v.shape) for v in value]
        line = {"round": reply.round, "kind": reply.kind, "bytes": len(raw), "shapes": shapes,
                "sha256": hashlib.sha256(raw).hexdigest(), "masked": False}
        mode = "a" if self._transcript_started else "w"  # a fresh transcript per Site
        self._transcript.parent.mkdir(parents=True, exist_ok=True)
        self._transcript_started = True
        with self._transcript.open(mode, encoding="utf-8") as fh:
            fh.write(json.dumps(line, sort_keys=True) + "\n")

    # ------------------------------------------------------------- handlers
    def _prepare(self, req: PrepareRequest) -> PrepareReply:
        if self._table is None:
            self._table = load_table(Path(self._source))
        where = "table" if isinstance(self._source, pd.DataFrame) else str(self._source)
        cohort = prepare_cohort(self._table, req.cohort, self.name, where=where)
        self._sessions[req.session] = _Session(cohort=cohort)
        times = []
        for i in range(len(cohort.labels)):
            sel = (cohort.label == i) & (cohort.event == 1)
            times.append(WireArray.from_numpy(np.unique(cohort.time[sel])))
        return PrepareReply(
            session=req.session, round=req.round, n=int(cohort.time.size),
            events=int(cohort.event.sum()), labels=list(cohort.labels), event_times=times,
            sum_x=WireArray.from_numpy(cohort.x.sum(axis=0)),
            sum_x2=WireArray.from_numpy((cohort.x ** 2).sum(axis=0)))

    def _grid(self, req: GridRequest, sess: _Session) -> GridReply:
        c = sess.cohort
        if len(req.labels) != len(req.times):
            raise ValueError("labels and times differ in length")
        sess.set_layout(req.labels, [t.to_numpy() for t in req.times])
        center = expect_shape("center", req.center.to_numpy(), (c.x.shape[1],))
        sess.xc = c.x - center
        events = np.zeros(sess.size, dtype=np.int64)
        for (rows, grid), off in zip(sess.blocks, sess.offsets, strict=False):
            events[off:off + grid.size] = ls.event_counts(c.time[rows], c.event[rows], grid)
        return GridReply(session=req.session, round=req.round,
                         events=WireArray.from_numpy(events),
                         sum_event_x=WireArray.from_numpy(sess.xc[c.event == 1].sum(axis=0)))

    def _weights(self, sess: _Session, beta_wire: WireArray) -> np.ndarray:
        if sess.xc is None:
            raise ValueError("risk-set request before grid")
        beta = expect_shape("beta", beta_wire.to_numpy(), (sess.xc.shape[1],))
        eta = sess.xc @ beta
        if eta.size and eta.max() > _MAX_ETA:
            raise LinearPredictorOverflow("exp(beta·x) overflows at the requested coefficients")
        return np.exp(eta)

    def _risk_set(self, req: RiskSetRequest, sess: _Session) -> RiskSetReply:
        c, xc = sess.cohort, sess.xc
        w = self._weights(sess, req.beta)
        assert xc is not None
        xw = xc * w[:, None]
        k, p = sess.size, xc.shape[1]
        s0, s1 = np.zeros(k), np.zeros((k, p))
        t0, t1 = (np.zeros(k), np.zeros((k, p))) if req.efron else (None, None)
        for (rows, grid), off in zip(sess.blocks, sess.offsets, strict=False):
            part = slice(off, off + grid.size)
            b0, b1, e0, e1 = ls.risk_set_sums(c.time[rows], c.event[rows], xw[rows], w[rows],
                                              grid, req.efron)
            s0[part], s1[part] = b0, b1
            if t0 is not None and t1 is not None:
                t0[part], t1[part] = e0, e1
        wire = WireArray.from_numpy
        return RiskSetReply(session=req.session, round=req.round, s0=wire(s0), s1=wire(s1),
                            t0=None if t0 is None else wire(t0), t1=None if t1 is None else wire(t1))

    def _information(self, req: InformationRequest, sess: _Session) -> InformationReply:
        c, xc = sess.cohort, sess.xc
        w = self._weights(sess, req.beta)
        assert xc is not None
        a = expect_shape("a", req.a.to_numpy(), (sess.size,))
        b = expect_shape("b", req.b.to_numpy(), (sess.size,))
        p = xc.shape[1]
        total = np.zeros((p, p))
        for (rows, grid), off in zip(sess.blocks, sess.offsets, strict=False):
            part = slice(off, off + grid.size)
            total += ls.information_sum(c.time[rows], c.event[rows], xc[rows], w[rows], grid,
                                        a[part], b[part])
        return InformationReply(session=req.session, round=req.round,
                                matrix=WireArray.from_numpy(total))

    def _counts(self, req: CountsRequest, sess: _Session) -> CountsReply:
        c = sess.cohort
        grid = req.times.to_numpy()
        sess.set_layout(req.labels, [grid] * len(req.labels))
        n = np.zeros((len(req.labels), grid.size), dtype=np.int64)
        d = np.zeros_like(n)
        for g, (rows, _) in enumerate(sess.blocks):
            n[g] = ls.at_risk_counts(c.time[rows], grid)
            d[g] = ls.event_counts(c.time[rows], c.event[rows], grid)
        return CountsReply(session=req.session, round=req.round,
                           at_risk=WireArray.from_numpy(n), events=WireArray.from_numpy(d))

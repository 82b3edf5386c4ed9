"""One hospital: holds its rows and answers the coordinator with aggregates only.

A :class:`Site` speaks bytes in, bytes out (:meth:`Site.handle`), so any transport can
carry its messages. It validates every request, enforces the disclosure policy on itself,
masks every summed statistic when the round is secure (:mod:`federated.secagg`), refuses
what it cannot answer with an :class:`~federated.messages.ErrorReply` (which never quotes a
patient's value), and can record every message it sends in an outbound transcript
``<dir>/<site>.jsonl`` so auditors can see what left the site.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from . import secagg
from .arrays import WireArray
from .data import Cohort, load_table, prepare_cohort
from .evaluation import evaluate
from .exceptions import DataError, LinearPredictorOverflow, ProtocolError
from .messages import (
    ErrorReply,
    EvaluateRequest,
    KeysReply,
    KeysRequest,
    PrepareReply,
    PrepareRequest,
    Reply,
    decode_request,
    encode,
)
from .privacy import PolicyError
from .site_stats import SiteSession, answer


class ConsentSource(Protocol):
    """What a site needs from its consent registry (:class:`consent.registry.ConsentRegistry`)."""

    def ledger_root(self, size: int) -> bytes: ...

    def active_patients(self, as_of: int) -> set[str]: ...

    def record_usage(self, job: str, patients: Iterable[str]) -> None: ...


class Site:
    """A hospital's data behind the message protocol.

    Parameters
    ----------
    name : str
        The site's name, as the coordinator knows it.
    data : pandas.DataFrame or path
        The site's table, or a CSV/Parquet file read on first use.
    transcript_dir : path, optional
        Where to write ``<name>.jsonl``, one line per message sent (fresh per Site).
    consent : ConsentSource, optional
        The site's consent registry: every computation then uses only patients with
        active consent as of the ledger checkpoint the request names (and is refused
        without one); ``patient_column`` holds the patient ids.
    keygen : callable, optional
        ``(session, round) -> KeyPair`` for the key announced after each round; default a fresh
        random key. A deployment whose site process does not outlive a message passes
        :meth:`federated.secagg.KeyPair.derive` over a secret the site keeps.
    append_transcript : bool
        Append to an existing transcript instead of starting a fresh one.
    """

    def __init__(self, name: str, data: pd.DataFrame | Path | str,
                 transcript_dir: Path | None = None, consent: ConsentSource | None = None,
                 patient_column: str = "patient_id",
                 keygen: Callable[[str, int], secagg.KeyPair] | None = None,
                 append_transcript: bool = False) -> None:
        self.name = name
        self.consent = consent
        self.patient_column = patient_column
        self._source = data
        self._table: pd.DataFrame | None = data if isinstance(data, pd.DataFrame) else None
        self._sessions: dict[str, SiteSession] = {}
        self._keys: dict[str, secagg.KeyPair] = {}
        self._transcript = Path(transcript_dir) / f"{name}.jsonl" if transcript_dir else None
        self._transcript_started = append_transcript
        self._keygen = keygen or (lambda session, round_: secagg.KeyPair.generate())
        self.local_summary: tuple[int, int] | None = None  # (patients, events), never sent as such

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

    def replay(self, history: Sequence[bytes]) -> None:
        """Re-enter the state that answering ``history`` (earlier requests, in order) left.

        For a site whose process ends after each message: its requests are public (they came
        from the coordinator) and its rows are its own, so answering them again rebuilds the
        fit's state without keeping any patient-level value between messages. Nothing is
        recorded in the transcript, nothing is sent, and an evaluation is not recomputed (it
        leaves no state but its round key). Keys repeat only with a deterministic ``keygen``.
        """
        for payload in history:
            req = decode_request(payload)
            if isinstance(req, EvaluateRequest):
                if req.secure is not None:
                    self._next_key(req.session, req.round)
                continue
            reply = self._answer(req)
            if isinstance(reply, ErrorReply):
                raise ProtocolError(f"replaying {req.kind!r} round {req.round} failed: {reply.message}")

    def _answer(self, req: object) -> Reply:
        base = {"session": req.session, "round": req.round}  # type: ignore[attr-defined]
        try:
            if isinstance(req, KeysRequest):
                return self._secure(req, KeysReply(**base))
            if isinstance(req, PrepareRequest):
                return self._secure(req, self._prepare(req))
            if isinstance(req, EvaluateRequest):
                return self._secure(req, evaluate(self._cohort(req), req, self.name))
            sess = self._sessions.get(req.session)  # type: ignore[attr-defined]
            if sess is None:
                return ErrorReply(**base, code="bad-request", message="unknown session (no prepare)")
            return self._secure(req, answer(sess, req))
        except (LinearPredictorOverflow, secagg.SecAggOverflow) as exc:
            return ErrorReply(**base, code="overflow", message=str(exc))
        except PolicyError as exc:
            return ErrorReply(**base, code="policy", message=str(exc))
        except DataError as exc:
            return ErrorReply(**base, code="data", message=str(exc))
        except ValueError as exc:  # shape or grid mismatch in a well-formed request
            return ErrorReply(**base, code="bad-request", message=str(exc))

    def _cohort(self, req: PrepareRequest | EvaluateRequest) -> Cohort:
        """The checked rows of the patients this request may use."""
        if self._table is None:
            self._table = load_table(Path(self._source))
        where = "table" if isinstance(self._source, pd.DataFrame) else str(self._source)
        return prepare_cohort(self._consented(req, self._table, where), req.cohort, self.name, where=where)

    def _prepare(self, req: PrepareRequest) -> PrepareReply:
        cohort = self._cohort(req)
        n, events = int(cohort.time.size), int(cohort.event.sum())
        if req.cohort.block is None:
            self.local_summary = (n, events)
        req.policy.check_site(n, events)
        sess = SiteSession(cohort=cohort, spec=req.cohort)
        self._sessions[req.session] = sess
        return sess.prepare_reply(req)

    def _consented(self, req: PrepareRequest | EvaluateRequest, table: pd.DataFrame,
                   where: str) -> pd.DataFrame:
        """The rows this request may use: patients with active consent at the named checkpoint."""
        if self.consent is None:
            if req.consent is not None:
                raise PolicyError("consent", "this site has no consent registry to check the request against")
            return table
        gate = req.consent
        if gate is None:
            raise PolicyError("consent", "this site answers only requests that name a consent checkpoint")
        if self.consent.ledger_root(gate.size).hex() != gate.root:
            raise PolicyError("consent", f"checkpoint of size {gate.size} does not match this site's ledger")
        if self.patient_column not in table.columns:
            raise DataError(f"{where}: unknown patient id column {self.patient_column!r}")
        ids = table[self.patient_column].astype(str)
        keep = ids.isin(self.consent.active_patients(gate.size))
        if req.cohort.block is None:
            self.consent.record_usage(gate.job, ids[keep])
        return table[keep]

    # --------------------------------------------------- secure aggregation
    def _secure(self, req: object, reply: Reply) -> Reply:
        """Mask the reply's summed statistics for this round and attach the next public key."""
        secure = req.secure  # type: ignore[attr-defined]
        if secure is None and not isinstance(req, KeysRequest):
            return reply
        session = req.session  # type: ignore[attr-defined]
        updates: dict[str, object] = {}
        if secure is not None:
            keys = self._keys.get(session)
            mine = secure.peers.get(self.name)
            if keys is None or mine is None or base64.b64decode(mine) != keys.public_bytes():
                raise ValueError("secure round without this site's current key")
            peers = {name: base64.b64decode(pk) for name, pk in secure.peers.items()}
            updates = _masked_fields(reply, keys, peers, me=self.name, session=session,
                                     round_=req.round)  # type: ignore[attr-defined]
        nxt = self._next_key(session, req.round)  # type: ignore[attr-defined]
        updates["next_key"] = base64.b64encode(nxt.public_bytes()).decode("ascii")
        return reply.model_copy(update=updates)

    def _next_key(self, session: str, round_: int) -> secagg.KeyPair:
        """The key this site announces after ``round_`` (kept to mask the session's next round)."""
        self._keys[session] = self._keygen(session, round_)
        return self._keys[session]

    # ----------------------------------------------------------- transcript
    def _record(self, reply: Reply, raw: bytes) -> None:
        if self._transcript is None:
            return
        shapes: dict[str, object] = {}
        for key, value in reply:
            if isinstance(value, WireArray):
                shapes[key] = list(value.shape)
            elif isinstance(value, list) and value and isinstance(value[0], WireArray):
                shapes[key] = [list(v.shape) for v in value]
        plaintext = reply.plaintext_fields()
        line = {"round": reply.round, "kind": reply.kind, "bytes": len(raw), "shapes": shapes,
                "sha256": hashlib.sha256(raw).hexdigest(), "masked": not plaintext,
                "plaintext": plaintext}
        mode = "a" if self._transcript_started else "w"  # a fresh transcript per Site
        self._transcript.parent.mkdir(parents=True, exist_ok=True)
        self._transcript_started = True
        with self._transcript.open(mode, encoding="utf-8") as fh:
            fh.write(json.dumps(line, sort_keys=True) + "\n")


def _masked_fields(reply: Reply, keys: secagg.KeyPair, peers: dict[str, bytes], *, me: str,
                   session: str, round_: int) -> dict[str, object]:
    """Encode every summed field in Z_2^128 and add this site's pairwise masks (one stream)."""
    fields = [(name, getattr(reply, name)) for name in reply.SUMMED if getattr(reply, name) is not None]
    if not fields:
        return {}
    flat = np.concatenate([w.view().ravel().astype(np.float64) for _, w in fields])
    masked = secagg.mask(secagg.encode(flat), keys, peers, me=me, session=session, round=round_)
    out: dict[str, object] = {}
    start = 0
    for name, wire in fields:
        size = int(np.prod(wire.shape, dtype=np.int64))
        part = secagg.Ring(lo=masked.lo[start:start + size].reshape(wire.shape),
                           hi=masked.hi[start:start + size].reshape(wire.shape))
        out[name] = WireArray.from_ring(part)
        start += size
    return out

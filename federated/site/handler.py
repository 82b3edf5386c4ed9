"""One hospital: holds its rows and its rules, and answers the coordinator with aggregates only.

A :class:`Site` speaks bytes in, bytes out (:meth:`Site.handle`), so any transport can carry its
messages. The coordinator's request is untrusted input (:mod:`federated.disclosure.rules`): the site answers
only for a study its operator approved, under the stricter of the study's rules and its own
floors, with k-cells at the source (:mod:`federated.disclosure.cells`), masking with peers whose keys its
study pins, each round at most once per request, within a budget of rounds and a bound on the
linear predictor. It refuses what it cannot answer with an
:class:`~federated.protocol.messages.ErrorReply` (in a secure study a code and a message without counts
or values), and can record every message it sends in an outbound transcript
``<dir>/<site>.jsonl`` so auditors can see what left the site.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from federated.disclosure.cells import design_cells, design_indicators, small_cells
from federated.disclosure.dp import fresh_generator
from federated.disclosure.policy import DisclosurePolicy, PolicyError
from federated.disclosure.rules import (
    Refusal,
    SiteFloors,
    SiteIdentity,
    StudyProtocol,
    approved_cohort,
    effective_policy,
    verify_round_key,
)
from federated.exceptions import DataError, ProtocolError
from federated.protocol import secagg
from federated.protocol.arrays import WireArray
from federated.protocol.messages import (
    CifCountsRequest,
    CifPrepareRequest,
    ErrorReply,
    EvaluateRequest,
    KeysReply,
    KeysRequest,
    LogisticRequest,
    PrepareReply,
    PrepareRequest,
    PweEventsRequest,
    PweRoundRequest,
    RecalibrateRequest,
    Reply,
    Request,
    SignedKey,
    decode_request,
    encode,
)
from federated.site import privacy as site_dp
from federated.site import recalibration
from federated.site.binary_evaluation import evaluator
from federated.site.budget import Budget
from federated.site.data import Cohort, cause_index, load_table, prepare_cohort
from federated.site.evaluation import public_km_times
from federated.site.patients import ConsentSource, PatientGate
from federated.site.sparse import censor_sparse
from federated.site.statistics import SiteSession, answer
from federated.site.tables import TableFormat
from federated.site.transcript import Transcript
from federated.study import CohortSpec


class Site:
    """A hospital's data behind the message protocol.

    Parameters
    ----------
    name : str
        The site's name, as its approved studies list it.
    data : pandas.DataFrame or path
        The site's table, or a CSV/Parquet file read on first use.
    transcript_dir : path, optional
        Where to write ``<name>.jsonl``, one line per message sent (fresh per Site).
    consent : ConsentSource, optional
        The site's consent registry: every computation then uses only patients with active
        consent as of the ledger checkpoint the request names, which must be the freshest one
        (``witnessed``); ``patient_column`` holds the patient ids.
    keygen : callable, optional
        ``(session, round) -> KeyPair`` for the key announced after each round; default a fresh
        random key. A deployment whose site process does not outlive a message passes
        :meth:`federated.protocol.secagg.KeyPair.derive` over a secret the site keeps.
    append_transcript : bool
        Append to an existing transcript instead of starting a fresh one.
    identity : SiteIdentity, optional
        The site's long-term Ed25519 key (default: a fresh one, for a site living in one process).
    approved : sequence of StudyProtocol
        The studies the site's operator approved (more with :meth:`approve`).
    floors : SiteFloors, optional
        The operator's own minimums (default :class:`SiteFloors`).
    witnessed : callable, optional
        Size of the newest ledger checkpoint the site's own witness cosigned with a quorum; the
        only consent checkpoint it accepts (default: the ledger's newest signed checkpoint).
    budget : path, optional
        The site's record of rounds and evaluations spent per study (:mod:`federated.site.budget`),
        so that the budget survives the process; default in memory only.
    privacy : path, optional
        The site's differential-privacy accountant over all studies (:mod:`federated.site.privacy`,
        ``sites/<name>/privacy.json`` in a workspace); default in memory only.
    table_format : TableFormat, optional
        How the site's CSV file is written (delimiter, decimal mark, encoding); default UTF-8
        with the delimiter detected (:func:`federated.site.tables.read_table`).
    """

    def __init__(self, name: str, data: pd.DataFrame | Path | str,
                 transcript_dir: Path | None = None, consent: ConsentSource | None = None,
                 patient_column: str = "patient_id",
                 keygen: Callable[[str, int], secagg.KeyPair] | None = None,
                 append_transcript: bool = False, *, identity: SiteIdentity | None = None,
                 approved: Sequence[StudyProtocol] = (), floors: SiteFloors | None = None,
                 witnessed: Callable[[], int] | None = None, budget: Path | None = None,
                 privacy: Path | None = None, table_format: TableFormat | None = None) -> None:
        self.name = name
        self.consent = consent
        self.patient_column = patient_column
        self.identity = identity or SiteIdentity.generate()
        self.floors = floors or SiteFloors()
        self._approved = {p.sha256: p for p in approved}
        self._patients = None if consent is None else \
            PatientGate(consent, patient_column, witnessed, self.identity.derive("contribution"))
        self._source = data
        self._table_format = table_format
        self._table: pd.DataFrame | None = data if isinstance(data, pd.DataFrame) else None
        self._sessions: dict[tuple[str, str], SiteSession] = {}
        self._keys: dict[tuple[str, str], secagg.KeyPair] = {}
        self._answered: dict[tuple[str, str, int], tuple[str, bytes]] = {}
        self._budget = Budget(budget)
        self._privacy = site_dp.PrivacyAccountant(privacy)
        self._replaying = False
        self._transcript = Transcript(transcript_dir, name, append_transcript)
        self._keygen = keygen or (lambda session, round_: secagg.KeyPair.generate())
        self.local_summary: tuple[int, int] | None = None  # (patients, events), never sent as such

    def approve(self, protocol: StudyProtocol) -> str:
        """The operator approves ``protocol``; returns the SHA-256 requests must name."""
        self._approved[protocol.sha256] = protocol
        return protocol.sha256

    # ----------------------------------------------------------------- wire
    def handle(self, payload: bytes) -> bytes:
        """Answer one request (JSON bytes) with one reply (JSON bytes).

        A request is answered at most once per (study, session, round): the same request again
        gets the same bytes, a different one under a used round is refused (``replayed``). A
        differentially private round rebuilt by :meth:`replay` has no bytes to resend: asked again,
        it is answered with fresh noise, charged again.
        """
        try:
            request = decode_request(payload)
        except ProtocolError as exc:
            reply: Reply = ErrorReply(session="-", round=0, code="bad-request", message=str(exc))
            return self._send(reply)
        key, digest = _round_of(request), _digest(request)
        seen = self._answered.get(key)
        if seen is not None and (seen[0] != digest or seen[1]):
            if seen[0] == digest:
                return seen[1]
            return self._send(self._error(request, Refusal("replayed", "this round was already answered "
                                                                       "for a different request")))
        reply = self._answer(request, digest)
        out = self._send(reply)
        if not isinstance(reply, ErrorReply):
            self._answered[key] = (digest, out)
        return out

    def _send(self, reply: Reply) -> bytes:
        out = encode(reply)
        self._transcript.record(reply, out)
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
            digest = _digest(req)
            if isinstance(req, (EvaluateRequest, RecalibrateRequest)):  # not recomputed: answered afresh
                if req.secure is not None:
                    self._next_key(req.study, req.session, req.round)
                continue
            self._replaying = True
            try:
                reply = self._answer(req, digest)
            finally:
                self._replaying = False
            if isinstance(reply, ErrorReply):
                raise ProtocolError(f"replaying {req.kind!r} round {req.round} failed: {reply.message}")
            protocol = self._approved.get(req.study)
            private = protocol is not None and protocol.dp is not None and not isinstance(req, KeysRequest)
            self._answered[_round_of(req)] = (digest, b"" if private else encode(reply))

    def _answer(self, req: object, digest: str) -> Reply:
        base = {"session": req.session, "round": req.round}  # type: ignore[attr-defined]
        try:
            protocol = self._approved.get(req.study)  # type: ignore[attr-defined]
            if protocol is None:
                raise Refusal("not-approved", "this site's operator has not approved the study")
            policy = effective_policy(protocol, self.floors)
            if isinstance(req, KeysRequest):
                return self._secure(req, protocol, KeysReply(**base), digest)
            if protocol.secure and req.secure is None and not isinstance(req, _PLAINTEXT):  # type: ignore[attr-defined]
                raise Refusal("plaintext", "the study asks for secure aggregation")
            if protocol.dp is not None:
                site_dp.gate(req)
            self._spend(protocol)
            reply = self._statistics(req, protocol, policy)
            if protocol.dp is not None:
                reply = self._noised(req, protocol, reply, digest)
            return self._secure(req, protocol, reply, digest)
        except Refusal as exc:
            return self._error(req, exc)
        except secagg.SecAggOverflow as exc:
            return self._error(req, Refusal("overflow", str(exc)))
        except PolicyError as exc:
            return self._error(req, Refusal("policy", str(exc)))
        except DataError as exc:
            return self._error(req, Refusal("data", str(exc)))
        except ValueError as exc:  # shape or grid mismatch in a well-formed request
            return self._error(req, Refusal("bad-request", str(exc)))

    def _statistics(self, req: object, protocol: StudyProtocol, policy: DisclosurePolicy) -> Reply:
        """The reply to a statistic-bearing request, before noise and masking."""
        if isinstance(req, PrepareRequest):
            return self._prepare(req, protocol, policy)
        if isinstance(req, EvaluateRequest):
            return self._evaluate(req, protocol, policy)
        if isinstance(req, RecalibrateRequest):
            return self._recalibrate(req, protocol, policy)
        if isinstance(req, (PweEventsRequest, PweRoundRequest)) and protocol.dp is None:
            raise Refusal("not-approved", "pwe rounds are answered only in a differentially private study")
        if isinstance(req, PweEventsRequest):
            assert protocol.dp is not None
            return self._open(req, protocol, policy).pwe_events(req, protocol.dp.cox_bound)
        if isinstance(req, (CifPrepareRequest, CifCountsRequest)):
            return self._cif(req, protocol, policy)
        sess = self._sessions.get((req.study, req.session))  # type: ignore[attr-defined]
        if sess is None:
            raise Refusal("bad-request", "unknown session (no prepare)")
        if isinstance(req, LogisticRequest):
            self._spend_logistic(req.study)
        return answer(sess, req)

    def _spend_logistic(self, study: str) -> None:
        """Count a logistic round against the study's budget (the site's ``max_logistic_rounds``,
        :class:`~federated.disclosure.rules.SiteFloors`), kept in the
        site's budget file with its other rounds (:mod:`federated.site.budget`); ``budget`` beyond.

        Adversary: a malicious coordinator moving the peak of π(1 − π) across the inputs' range with
        many (bounded) coefficient vectors and solving the sums for the patients of each value. A fit
        takes about ten rounds; the budget allows a few fits, not the dozens of probes the attack needs
        (a residual risk remains below it: FP-CYB). A leave-one-site-out validation at n sites spends
        about n − 1 fits at each; an operator who expects retrains raises the floor knowingly.
        """
        budget = self.floors.max_logistic_rounds
        if not self._replaying and not self._budget.spend(study, "logistic", budget):
            raise Refusal("budget", f"this site's budget of logistic rounds for the study is spent "
                                    f"({budget}: max_logistic_rounds in the site's floors)")

    def _error(self, req: object, exc: Refusal) -> ErrorReply:
        """The refusal as it travels: in a secure (or unknown) study without counts or values."""
        protocol = self._approved.get(getattr(req, "study", ""))
        # the rules' own refusals quote only the site's and the study's rules; data and overflow
        # errors may quote counts, so in a secure (or unknown) study their numbers are removed
        open_ = protocol is not None and not protocol.secure or exc.code not in _MAY_QUOTE_DATA
        text = str(exc) if open_ or isinstance(self._source, pd.DataFrame) \
            else str(exc).replace(str(self._source), "the site's table")  # a path is the site's own
        message = text if open_ else scrub(text)
        return ErrorReply(session=req.session, round=req.round, code=exc.code,  # type: ignore[attr-defined,arg-type]
                          message=message)

    def _spend(self, protocol: StudyProtocol) -> None:
        """One statistic-bearing round of the study's budget (the stricter of study and site); a
        replayed request was counted when it was first answered."""
        if self._replaying:
            return
        if not self._budget.spend(protocol.sha256, "rounds", self._limit(protocol, "max_rounds")):
            raise Refusal("budget", "the study's budget of rounds at this site is spent")

    def _noised(self, req: object, protocol: StudyProtocol, reply: Reply, digest: str) -> Reply:
        """``reply`` with this site's share of the study's Skellam noise, charged to the site's
        accountant first (``budget`` refusal beyond the operator's ε, δ); the round's peers are
        checked before. Each of the n peers adds Sk(μ/n): the round decodes only if all of them
        answer, and then carries Sk(μ). A replayed request rebuilds state only: its reply is never
        sent, so it is neither noised nor charged.

        Adversary: a malicious coordinator (it decodes sum + noise, never the sum alone).
        """
        if self._replaying:
            return reply
        dp = protocol.dp
        assert dp is not None and req.secure is not None  # type: ignore[attr-defined]  # gate and plaintext rule
        peers, _ = self._round_peers(req, protocol)  # checked before anything is charged
        noisy, _, mu, release = site_dp.noised(reply, dp, len(peers), fresh_generator())
        if not self._privacy.charge(req.study, digest, release, mu, self.floors.dp_epsilon,  # type: ignore[attr-defined]
                                    self.floors.dp_delta):
            raise Refusal("budget", "this site's differential-privacy budget is spent")
        return noisy

    def _cohort(self, req: _Asked) -> Cohort:
        """The checked rows of the patients this request may use."""
        if self._table is None:
            self._table = load_table(Path(self._source), self._table_format)
        where = "table" if isinstance(self._source, pd.DataFrame) else str(self._source)
        protocol = self._approved[req.study]
        k = effective_policy(protocol, self.floors).min_cell_count
        if self._patients is None:
            if req.consent is not None:
                raise Refusal("consent", "this site has no consent registry to check the request against")
            cohort = prepare_cohort(self._table, req.cohort, self.name, where=where,
                                    required=study_columns(protocol))
        else:
            table = self._patients.consented(req, self._table, where)  # type: ignore[arg-type]
            cohort = prepare_cohort(table, req.cohort, self.name, where=where,
                                    required=study_columns(protocol))
            cohort = self._patients.contribute(req, table, cohort, k)  # type: ignore[arg-type]
        if not protocol.shift_sparse_censoring:
            return cohort
        return censor_sparse(cohort, req.cohort, k) if req.cohort.cause is None else \
            self._censor_sparse_by_code(req, cohort, k)

    def _censor_sparse_by_code(self, req: _Asked, cohort: Cohort, k: int) -> Cohort:
        """:func:`censor_sparse` on a cause-specific cohort's atoms (stratum × code of the cause column,
        :meth:`_by_code`): only the censored (code 0) move, never the events of another cause, which this
        cohort counts as censored but the Aalen–Johansen cohort over the same codes does not."""
        by_code = self._by_code(req, cohort)  # type: ignore[arg-type]
        events = (by_code % (len(req.cohort.causes) + 1) > 0).astype(np.int64)
        moved = censor_sparse(replace(cohort, label=by_code, event=events), req.cohort, k)
        back = pd.Index(cohort.rows).get_indexer(moved.rows)
        order = np.lexsort((moved.time, cohort.label[back]))
        return replace(moved, label=cohort.label[back][order], event=cohort.event[back][order],
                       time=moved.time[order], x=np.ascontiguousarray(moved.x[order]),
                       raw_time=moved.raw_time[order], outside=moved.outside[order], rows=moved.rows[order])

    def _prepare(self, req: PrepareRequest, protocol: StudyProtocol,
                 policy: DisclosurePolicy) -> PrepareReply:
        return self._open(req, protocol, policy).prepare_reply(req)

    def _open(self, req: PrepareRequest | PweEventsRequest, protocol: StudyProtocol,
              policy: DisclosurePolicy) -> SiteSession:
        """Check the cohort against the study and the rules, and start the fit's session."""
        approved_cohort(protocol, req.cohort)
        binary = req.cohort.time is None  # a recorded binary outcome: no time cells to check
        if not binary and req.cohort.time_grid == "exact" and not protocol.allow_small_time_cells:
            raise Refusal("not-approved", "exact event times need the study's allow_small_time_cells opt-in")
        cohort = self._cohort(req)
        n, events = int(cohort.time.size), int(cohort.event.sum())
        policy.check_site(n, events)
        if not binary and not protocol.allow_small_time_cells and small_cells(
                cohort.raw_time, cohort.event, cohort.label, req.cohort.time_grid, req.cohort.time_unit,
                policy.min_cell_count):
            raise Refusal("cells", f"a cell of the {req.cohort.time_grid} grid holds fewer than "
                          f"{policy.min_cell_count} of this site's patients")
        if req.cohort.cause is not None and not protocol.allow_small_time_cells and small_cells(
                cohort.raw_time, cohort.event, self._by_code(req, cohort), req.cohort.time_grid,
                req.cohort.time_unit, policy.min_cell_count):
            raise Refusal("cells", f"a cell of the {req.cohort.time_grid} grid holds fewer than "
                          f"{policy.min_cell_count} of this site's patients of one cause")
        spec = req.cohort
        split = design_indicators(spec, cohort.x, spec.design_matrix(cohort.x))
        thin = design_cells(cohort.raw_time, cohort.event, cohort.label, "exact", spec.time_unit,
                            policy.min_cell_count, split) if split else None
        if thin is not None:
            raise Refusal("cells", f"the patients with and without {thin!r} make a cell of fewer than "
                          f"{policy.min_cell_count} of this site's patients")
        if req.cohort.block is None:
            self.local_summary = (n, events)
            if self._patients is not None:
                self._patients.record_usage(req)
        sess = SiteSession(cohort=cohort, spec=req.cohort, min_cell=policy.min_cell_count,
                           max_abs_lp=self._limit(protocol, "max_abs_lp"))
        self._sessions[(req.study, req.session)] = sess
        return sess

    def _by_code(self, req: PrepareRequest | PweEventsRequest, cohort: Cohort) -> np.ndarray:
        """A cause-specific cohort's rows labelled by stratum and code of the cause column.

        Adversary: a coordinator differencing the fits of one study's cause-specific cohorts (the
        censored of one cause's fit are the censored and the other causes' events): their atoms are
        those of the Aalen–Johansen cohort over the same codes (code × interval), each 0 or ≥ k.
        """
        assert self._table is not None  # read by _cohort
        where = "table" if isinstance(self._source, pd.DataFrame) else str(self._source)
        table = self._table if self._patients is None else \
            self._patients.consented(req, self._table, where)
        code = cause_index(table.iloc[cohort.rows], req.cohort, where)
        return cohort.label * (len(req.cohort.causes) + 1) + code

    # ----------------------------------------------------- competing risks
    def _cif(self, req: CifPrepareRequest | CifCountsRequest, protocol: StudyProtocol,
             policy: DisclosurePolicy) -> Reply:
        """A competing-risks round (:mod:`federated.analyses.competing`), under Kaplan–Meier's rules.

        The cohort must be one the study approved (:func:`approved_cohort`), so its cause column
        (``event``) and declared codes (``levels``, :func:`~federated.protocol.messages.cause_codes`)
        are approved with it; a row holding another code is refused (``data``). The exact grid needs
        the study's ``allow_small_time_cells``; otherwise every atom — the site's patients of one cause
        in one interval of the grid and of every coarser rung — holds 0 or at least k of them
        (``cells``). The rows are read afresh for every request: nothing is kept between rounds.

        Adversary: a malicious coordinator asking for a cause column or codes the study did not approve
        (to count a sensitive column over time, or to isolate a rare cause by dropping or merging codes),
        a finer grid, or times between the grid's: refused, or answered with sums of approved atoms only
        (the rows are put on the grid before anything is counted).
        """
        spec = req.cohort
        approved_cohort(protocol, spec)
        if spec.time_grid == "exact" and not protocol.allow_small_time_cells:
            raise Refusal("not-approved", "exact event times need the study's allow_small_time_cells opt-in")
        k = policy.min_cell_count
        cohort = self._cif_rows(req, protocol, k)
        policy.check_site(int(cohort.time.size), int(cohort.event.sum()))
        if not protocol.allow_small_time_cells and small_cells(
                cohort.raw_time, cohort.event, cohort.label, spec.time_grid, spec.time_unit, k):
            raise Refusal("cells", f"a cell of the {spec.time_grid} grid holds fewer than {k} of this "
                          "site's patients of one cause")
        if isinstance(req, CifPrepareRequest) and self._patients is not None:
            self._patients.record_usage(req)  # type: ignore[arg-type]
        return answer(SiteSession(cohort=cohort, spec=spec, min_cell=k), req)

    def _cif_rows(self, req: CifPrepareRequest | CifCountsRequest, protocol: StudyProtocol,
                  k: int) -> Cohort:
        """The checked rows of the patients the request may use, labelled by cause
        (:meth:`SiteSession.by_cause`): prepared with the cause column as the partition, its declared
        codes as the levels and every row an event (column :data:`_EVERY_ROW`) until administrative
        censoring; then the consent, contribution and sparse-censoring rules of :meth:`_cohort`."""
        if self._table is None:
            self._table = load_table(Path(self._source), self._table_format)
        where = "table" if isinstance(self._source, pd.DataFrame) else str(self._source)
        table = self._table
        if self._patients is None and req.consent is not None:
            raise Refusal("consent", "this site has no consent registry to check the request against")
        if self._patients is not None:
            table = self._patients.consented(req, table, where)  # type: ignore[arg-type]
        every_row = req.cohort.model_copy(update={"event": _EVERY_ROW})
        rows = prepare_cohort(table.assign(**{_EVERY_ROW: 1}), every_row, self.name, where=where,
                              required=study_columns(protocol))
        cohort = SiteSession.by_cause(rows, req.causes)
        if self._patients is not None:
            cohort = self._patients.contribute(req, table, cohort, k)  # type: ignore[arg-type]
        return censor_sparse(cohort, req.cohort, k) if protocol.shift_sparse_censoring else cohort

    def _model_request(self, req: EvaluateRequest | RecalibrateRequest, protocol: StudyProtocol
                       ) -> CohortSpec:
        """The approved cohort of a request about a model (evaluate, recalibrate): all of the site's
        consented patients, at horizons the study approved."""
        approved = approved_cohort(protocol, req.cohort)
        if req.cohort.block is not None:
            raise Refusal("not-approved", "a model is judged on all of the site's consented patients")
        horizons = req.model.horizons.to_numpy()
        if protocol.horizons and not np.isin(horizons, np.array(protocol.horizons)).all():
            raise Refusal("not-approved", "a horizon the study did not approve")
        return approved

    def _evaluate(self, req: EvaluateRequest, protocol: StudyProtocol,
                  policy: DisclosurePolicy) -> Reply:
        approved = self._model_request(req, protocol)
        evaluate = evaluator(req)  # the model's kind against the approved outcome, before any spending
        if req.n_boot > protocol.max_n_boot:
            raise Refusal("not-approved", "more bootstrap replicates than the study approved")
        horizons = req.model.horizons.to_numpy()
        if req.risk_groups != protocol.risk_groups:
            raise Refusal("not-approved", f"the study evaluates {protocol.risk_groups} risk groups")
        fixed = public_km_times(approved, protocol.horizons or tuple(horizons.tolist()))
        km = req.km_times.to_numpy()
        if km.shape != fixed.shape or not np.allclose(km, fixed, rtol=0, atol=1e-9):
            raise Refusal("not-approved", "Kaplan–Meier times other than the study's public ones")
        if not self._budget.spend(protocol.sha256, "evaluations", self.floors.max_evaluations):
            raise Refusal("budget", "the study's budget of evaluations at this site is spent")
        cohort = self._cohort(req).within_envelope()  # the population the device serves
        return evaluate(cohort, req, self.name, policy, self._limit(protocol, "max_abs_lp"))

    def _recalibrate(self, req: RecalibrateRequest, protocol: StudyProtocol,
                     policy: DisclosurePolicy) -> Reply:
        """The model updated on this site's consented rows inside the envelope
        (:mod:`federated.site.recalibration`), on the request's grid if every cell of it holds 0 or at
        least k of those patients (``cells`` refusal otherwise, unless the study opted into small cells;
        with its ``shift_sparse_censoring``, sparse censored cells are censored earlier first); a logistic
        model on the binary cohort (no time cells), :mod:`federated.site.logistic_recalibration`. A
        release (a new model version): it spends an evaluation and is recorded as the job's usage.

        Adversary: an honest-but-curious coordinator reading the plaintext reply (steps of ≥ k events;
        for a logistic model two coefficients and counts rounded to k).
        """
        respond = recalibration.answerer(req)  # the model's kind against the cohort's outcome, first
        self._model_request(req, protocol)
        if not self._budget.spend(protocol.sha256, "evaluations", self.floors.max_evaluations):
            raise Refusal("budget", "the study's budget of evaluations at this site is spent")
        cohort = self._cohort(req).within_envelope()
        if req.cohort.time is not None and protocol.shift_sparse_censoring:  # the opt-in, on the rows used
            cohort = censor_sparse(cohort, req.cohort, policy.min_cell_count)
        if req.cohort.time is not None and not protocol.allow_small_time_cells and small_cells(
                cohort.raw_time, cohort.event, cohort.label, req.cohort.time_grid, req.cohort.time_unit,
                policy.min_cell_count):
            raise Refusal("cells", f"a cell of the {req.cohort.time_grid} grid holds fewer than "
                          f"{policy.min_cell_count} of this site's patients")
        reply = respond(cohort, req, policy, self._limit(protocol, "max_abs_lp"))
        if self._patients is not None:
            self._patients.record_usage(req)  # type: ignore[arg-type]
        return reply

    def _limit(self, protocol: StudyProtocol, name: str) -> float:
        """The stricter of the study's and the site's own limit ``name`` (``max_rounds``, ``max_abs_lp``)."""
        return min(getattr(protocol, name), getattr(self.floors, name))

    # --------------------------------------------------- secure aggregation
    def _secure(self, req: object, protocol: StudyProtocol, reply: Reply, digest: str) -> Reply:
        """Mask the reply's summed statistics for this round and attach the next signed key."""
        secure = req.secure  # type: ignore[attr-defined]
        if secure is None and not isinstance(req, KeysRequest):
            return reply
        study, session, round_ = req.study, req.session, req.round  # type: ignore[attr-defined]
        updates: dict[str, object] = {}
        if secure is not None:
            peers, keys = self._round_peers(req, protocol)
            updates = _masked_fields(reply, keys, peers, me=self.name, session=session, round_=round_,
                                     context=f"{study}|{digest}".encode())
        nxt = self._next_key(study, session, round_)
        key = nxt.public_bytes()
        signature = self.identity.sign_round_key(study, session, round_ + 1, key)
        updates["next_key"] = SignedKey(key=base64.b64encode(key).decode("ascii"), signature=signature)
        return reply.model_copy(update=updates)

    def _round_peers(self, req: object, protocol: StudyProtocol) -> tuple[dict[str, bytes], secagg.KeyPair]:
        """The verified peers of a secure round and this site's key for it (``peers`` refusal)."""
        study, session, round_ = req.study, req.session, req.round  # type: ignore[attr-defined]
        peers = self._verified_peers(protocol, req.secure.peers, study, session, round_)  # type: ignore[attr-defined]
        keys = self._keys.get((study, session))
        if keys is None or peers.get(self.name) != keys.public_bytes():
            raise Refusal("peers", "secure round without this site's current key")
        return peers, keys

    def _verified_peers(self, protocol: StudyProtocol, peers: dict[str, SignedKey], study: str,
                        session: str, round_: int) -> dict[str, bytes]:
        """The round's peers, each in the approved study and its key signed by its identity key.

        Adversary: a malicious coordinator that lists only this site (masking nothing), too few
        sites, a site the study does not list, or keys of its own (to unmask this site).
        """
        need = max(2, effective_policy(protocol, self.floors).min_sites)
        if len(peers) < need:
            raise Refusal("peers", f"a masked sum needs at least {need} sites")
        out = {}
        for name, signed in peers.items():
            identity = protocol.peers.get(name)
            if identity is None:
                raise Refusal("peers", f"site {name!r} is not a peer of the approved study")
            key = base64.b64decode(signed.key, validate=False)
            if not verify_round_key(identity, signed.signature, study, session, round_, key):
                raise Refusal("peers", f"the key of site {name!r} is not signed by its identity key")
            out[name] = key
        return out

    def _next_key(self, study: str, session: str, round_: int) -> secagg.KeyPair:
        """The key this site announces after ``round_`` (kept to mask the session's next round)."""
        self._keys[(study, session)] = self._keygen(session, round_)
        return self._keys[(study, session)]


def _round_of(req: Request) -> tuple[str, str, int]:
    """What a site answers once: (study, session, round)."""
    return req.study, req.session, req.round


def _digest(req: Request) -> str:
    """SHA-256 of the request's wire form: binds masks and the answer-once rule to one request."""
    return hashlib.sha256(encode(req)).hexdigest()


#: the requests that name a cohort (and a consent checkpoint)
_Asked = PrepareRequest | PweEventsRequest | EvaluateRequest | RecalibrateRequest
#: requests answered in plaintext by design, in a secure study too (aggregates of one site)
_PLAINTEXT = (EvaluateRequest, RecalibrateRequest)
#: a competing-risks cohort is prepared with this all-ones event column (its cause column is the partition)
_EVERY_ROW = "__fedprog_every_row__"
_MAY_QUOTE_DATA = ("data", "overflow", "bad-request")
_QUOTED = re.compile(r"('[^']*'|\"[^\"]*\")")
_NUMBER = re.compile(r"(?<![A-Za-z0-9.])(?<![A-Za-z]-)\d+(\.\d+)?(e[-+]?\d+)?")


def scrub(message: str) -> str:
    """``message`` with every number outside a quoted name replaced by ``#`` (an error in a secure
    study must not carry a count, a value or a threshold the coordinator could choose); digits that
    are part of a name (``cp1252``, ``UTF-8``) stay."""
    parts = _QUOTED.split(message)
    return "".join(p if i % 2 else _NUMBER.sub("#", p) for i, p in enumerate(parts))


def _masked_fields(reply: Reply, keys: secagg.KeyPair, peers: dict[str, bytes], *, me: str,
                   session: str, round_: int, context: bytes) -> dict[str, object]:
    """Encode every summed field in Z_2^128 and add this site's pairwise masks (one stream)."""
    fields = [(name, getattr(reply, name)) for name in reply.SUMMED if getattr(reply, name) is not None]
    if not fields:
        return {}
    flat = np.concatenate([w.view().ravel().astype(np.float64) for _, w in fields])
    masked = secagg.mask(secagg.encode(flat), keys, peers, me=me, session=session, round=round_,
                         context=context)
    out: dict[str, object] = {}
    start = 0
    for name, wire in fields:
        size = int(np.prod(wire.shape, dtype=np.int64))
        part = secagg.Ring(lo=masked.lo[start:start + size].reshape(wire.shape),
                           hi=masked.hi[start:start + size].reshape(wire.shape))
        out[name] = WireArray.from_ring(part)
        start += size
    return out


def study_columns(protocol: StudyProtocol) -> list[str]:
    """Every column of the approved study's cohorts (time, event, covariates, partition).

    Adversary: an honest-but-curious coordinator differencing two cohorts of one complete-case study
    (the Kaplan–Meier cohort keeps a woman whose nodes are missing, the Cox cohort leaves her out): in
    a complete-case study each site leaves out a row missing any of these, from every cohort alike.
    """
    cols = [c for co in protocol.cohorts for c in (co.time, co.event, *co.covariates, co.partition)
            if c is not None]
    return list(dict.fromkeys(cols))


def approve_in_process(sites: Sequence[Site], protocol: StudyProtocol) -> StudyProtocol:
    """``protocol`` over the identity keys of ``sites``, approved at each of them — for sites that
    live in one process, whose operator is the caller (tests, the estimator, one-machine runs)."""
    made = protocol.model_copy(update={"peers": dict(sorted((s.name, s.identity.public) for s in sites))})
    made = StudyProtocol.model_validate(made.model_dump())
    for site in sites:
        site.approve(made)
    return made

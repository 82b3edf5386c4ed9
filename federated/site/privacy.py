"""A site's differential privacy: noise added to its own replies, and its persistent accountant.

Adversary: an **honest-but-curious or malicious coordinator**, which decodes every masked sum, asks
as often as it likes, under as many studies, sessions and retries as it likes, and counts on the
site forgetting (a Flower ClientApp lives for one message). So:

* the site adds its share of the distributed Skellam noise (:mod:`federated.disclosure.dp`) to
  every summed statistic of a reply, in integers, before masking; the study's DP settings come
  from the approved :class:`~federated.disclosure.rules.StudyProtocol`, never from the request;
* it answers only replies it can noise soundly: a Kaplan–Meier ``prepare`` (no covariates, public
  labels, a public grid) and ``counts`` (distinct labels), and a Cox fit's ``pwe-events`` and
  ``pwe-round`` (piecewise exponential, bounded contributions, :mod:`federated.disclosure.dp_cox`).
  The exact Cox rounds (``prepare`` with covariates, ``grid``, ``risk-set``, ``information``) and
  evaluations are refused: differential privacy for them is not available;
* every fresh draw of noise is charged to an accountant kept in the site's own folder
  (``sites/<name>/privacy.json``, replaced atomically), over EVERY study that touches the site's
  data; a release whose composed (ε, δ) would exceed the operator's budget
  (:attr:`~federated.disclosure.rules.SiteFloors.dp_epsilon`, ``dp_delta``) is refused (``budget``).
  The same request answered again from memory resends the same bytes and costs nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from federated.disclosure import dp_cox
from federated.disclosure.dp import (
    KM_RELEASES,
    ORDERS,
    DPSettings,
    Release,
    km_cells,
    km_wire,
    rdp_curve,
    rdp_to_dp,
    release_mu,
    skellam_share,
)
from federated.disclosure.rules import Refusal
from federated.protocol.arrays import WireArray
from federated.protocol.messages import (
    CountsReply,
    CountsRequest,
    PrepareReply,
    PrepareRequest,
    PweEventsReply,
    PweEventsRequest,
    PweRoundReply,
    PweRoundRequest,
    Reply,
)
from ledger.files import write_json_atomic

_REL_TOL = 1e-9
_KM = {r.kind: r for r in KM_RELEASES}
NOT_AVAILABLE = ("differential privacy is not available for exact Cox rounds and evaluations "
                 "(a private Cox fit uses the pwe-events and pwe-round requests)")


class PrivacyAccountant:
    """Every noised release this site made, over all studies; in memory, or in ``path``.

    Each release is stored as its Skellam rate μ and sensitivities (Δ₁, Δ₂); the spent (ε, δ) is
    the RDP composition of all of them converted at the site's δ
    (:func:`federated.disclosure.dp.rdp_to_dp`), recomputed from the record (nothing cached).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.releases: list[dict[str, object]] = self._load()

    def _load(self) -> list[dict[str, object]]:
        if self.path is None or not self.path.is_file():
            return []
        bad = f"{self.path}: not a privacy accountant file; a site refuses to answer without it"
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            releases = raw["releases"]
            for r in releases:
                _positive_release(r)
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise ValueError(bad) from None
        return list(releases)

    def rdp(self, extra: tuple[float, float, float] | None = None) -> np.ndarray:
        """Total RDP at every order of :data:`~federated.disclosure.dp.ORDERS` (plus ``extra``)."""
        total = np.zeros(len(ORDERS))
        for r in self.releases:
            total += rdp_curve(float(r["mu"]), float(r["l1"]), float(r["l2"]))  # type: ignore[arg-type]
        if extra is not None:
            total += rdp_curve(*extra)
        return total

    def spent(self, delta: float) -> float:
        """ε spent so far at ``delta`` (0 before any release)."""
        return rdp_to_dp(self.rdp(), delta) if self.releases else 0.0

    def charge(self, study: str, digest: str, release: Release, mu: float, epsilon: float,
               delta: float) -> bool:
        """Record one ``release`` (its kind and sensitivities) with Skellam rate ``mu`` if the
        composition stays within (``epsilon``, ``delta``); whether it did (written to ``path``
        before the reply leaves)."""
        l1, l2 = release.l1, release.l2
        if rdp_to_dp(self.rdp((mu, l1, l2)), delta) > epsilon * (1 + _REL_TOL):
            return False
        self.releases.append({"study": study, "request": digest, "kind": release.kind, "mu": mu,
                              "l1": l1, "l2": l2})
        if self.path is not None:
            write_json_atomic(self.path, {"schema": "fedprog.privacy/v1", "releases": self.releases})
        return True


def _positive_release(r: dict[str, object]) -> None:
    for key in ("mu", "l1", "l2"):
        value = float(r[key])  # type: ignore[arg-type]
        if not (math.isfinite(value) and value > 0):
            raise ValueError(key)


def gate(req: object) -> None:
    """Refuse (``not-approved``) what a differentially private study cannot answer soundly.

    Adversary: a malicious coordinator asking for exact Cox sums, labels in plaintext, a label
    twice (which would count every patient of that label twice: sensitivity 2), or a private Cox
    fit whose contributions are not bounded (an input without a declared range) or whose grid is
    too fine (:data:`~federated.disclosure.dp_cox.MAX_INTERVALS`).
    """
    if isinstance(req, PweRoundRequest):
        return
    if isinstance(req, PweEventsRequest):
        cohort = req.cohort
        if cohort.time_grid == "exact" or cohort.partition is not None or cohort.partition_by_site:
            raise Refusal("not-approved", "a private Cox fit answers only unstratified, on a public grid")
        if not cohort.covariates or set(cohort.covariates) - set(cohort.ranges):
            raise Refusal("not-approved", "a private Cox fit needs a declared range for every input")
        if cohort.n_bins() - 1 > dp_cox.MAX_INTERVALS:
            raise Refusal("not-approved", f"a private Cox fit answers on at most {dp_cox.MAX_INTERVALS} "
                                          "intervals of the public grid")
        return
    if isinstance(req, PrepareRequest):
        if req.cohort.covariates or req.cohort.ranges:
            raise Refusal("not-approved", NOT_AVAILABLE)
        if req.cohort.time_grid == "exact" or req.labels is None:
            raise Refusal("not-approved", "a differentially private study answers only on a public "
                                          "time grid with public labels")
    elif isinstance(req, CountsRequest):
        if len(set(req.labels)) != len(req.labels):
            raise Refusal("not-approved", "a label is listed twice")
    else:
        raise Refusal("not-approved", NOT_AVAILABLE)


def noised(reply: Reply, dp: DPSettings, n_sites: int,
           rng: np.random.Generator) -> tuple[Reply, str, float, Release]:
    """``reply`` with this site's share of the Skellam noise; also the release's kind, μ and
    sensitivities (what the accountant charges).

    ``prepare``: [patients, events] + ``Sk(μ_p/n)`` each; the event histogram (unused on a public
    grid) is sent as zeros. ``counts``: events ``d`` and censorings ``c`` per interval
    (:func:`~federated.disclosure.dp.km_cells`) each + ``Sk(μ_c/n)``, sent as
    (Σ_{j≥k} (d̃_j + c̃_j), d̃) (:func:`~federated.disclosure.dp.km_wire`). ``n_sites`` is the
    number of peers of the round: every one of them must answer for the masks to cancel, so the
    decoded sum carries ``Sk(μ)`` whenever it decodes at all. ``pwe-events`` and ``pwe-round``:
    every sum quantised by γ (:func:`~federated.disclosure.dp_cox.quantise`) + ``Sk(μ/n)``, with
    K and p read from the reply's public shapes.
    """
    wire = WireArray.from_numpy
    if isinstance(reply, (PweEventsReply, PweRoundReply)):
        return _noised_pwe(reply, dp, n_sites, rng)
    if isinstance(reply, PrepareReply):
        mu = release_mu(dp, "prepare")
        counts = reply.counts.to_numpy().astype(np.int64)
        hist = reply.event_histogram
        update: dict[str, object] = {
            "counts": wire(counts + skellam_share(counts.shape, mu, n_sites, rng)),
            "event_histogram": None if hist is None else wire(np.zeros(hist.shape, dtype=np.int64))}
        return reply.model_copy(update=update), "prepare", mu, _KM["prepare"]
    if isinstance(reply, CountsReply):
        mu = release_mu(dp, "counts")
        n, d = reply.at_risk.to_numpy(), reply.events.to_numpy()
        c = km_cells(n, d)
        at_risk, events = km_wire(d + skellam_share(d.shape, mu, n_sites, rng),
                                  c + skellam_share(c.shape, mu, n_sites, rng))
        return (reply.model_copy(update={"at_risk": wire(at_risk), "events": wire(events)}), "counts", mu,
                _KM["counts"])
    raise Refusal("not-approved", NOT_AVAILABLE)


def _noised_pwe(reply: PweEventsReply | PweRoundReply, dp: DPSettings, n_sites: int,
                rng: np.random.Generator) -> tuple[Reply, str, float, Release]:
    """A Cox release: quantised sums + this site's ``Sk(μ/n)`` share (:mod:`federated.disclosure.dp_cox`)."""
    def noisy(values: np.ndarray, mu: float) -> WireArray:
        q = dp_cox.quantise(values, rng)
        return WireArray.from_numpy(q + skellam_share(q.shape, mu, n_sites, rng))

    if isinstance(reply, PweEventsReply):
        counts, z = reply.counts.to_numpy(), reply.sum_event_x.to_numpy()
        rel, mu = dp_cox.release(dp, dp_cox.EVENTS, counts.size - 1, z.size)
        update = {"counts": noisy(counts, mu), "sum_event_x": noisy(z, mu)}
    else:
        sums = reply.sums.to_numpy()
        p = int(round((math.sqrt(1 + 8 * sums.shape[1]) - 3) / 2))  # P = (p + 1)(p + 2) / 2
        rel, mu = dp_cox.release(dp, dp_cox.ROUND, sums.shape[0], p)
        update = {"sums": noisy(sums, mu)}
    return reply.model_copy(update=update), rel.kind, mu, rel

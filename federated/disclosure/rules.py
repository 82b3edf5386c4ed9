"""The rules a site holds: the studies its operator approved, its own floors, its identity key.

A coordinator's request is untrusted input, like an HTTP body. A site answers only for a study
its operator approved (:class:`StudyProtocol`, pinned by its SHA-256), under the stricter of the
study's disclosure rules and its own :class:`SiteFloors` — a study can raise a floor, no request
can lower one. Every request names the approved study; anything outside it (a cohort, subset,
grid finer than approved, plaintext where the study asks for masking, a peer the study does not
list) is refused.

Adversary: a **malicious coordinator** that writes whatever request it likes (attacks 2, 4, 7 and 8
of issue 14). Each rule below is tested in ``tests/privacy/`` by a coordinator that tries it.

Identity: each site has a long-term Ed25519 key (RFC 8032). It signs every per-round X25519 key
it announces, bound to (study, session, round); peers verify against the keys pinned in the
approved study, so a coordinator that substitutes keys is caught (Bonawitz et al. 2017, §6, the
"active adversary" variant).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from federated.disclosure.dp import DPSettings
from federated.disclosure.policy import DisclosurePolicy
from federated.study import CohortSpec, StudySpec, range_edges, rungs_from
from ledger.canonical import canonical_json
from ledger.files import secret_file

_ROUND_KEY = b"fedprog/round-key/v1"


class SiteFloors(DisclosurePolicy):
    """A site operator's own minimums: the disclosure rules of :class:`DisclosurePolicy` (same
    defaults: common statistical disclosure control practice), plus the site's own limits.

    ``max_rounds`` is the number of statistic-bearing rounds the site answers per approved study
    (a budget against a coordinator that asks many questions); ``max_abs_lp`` bounds |β·(x − c)|
    over the declared input ranges (extreme β make one patient dominate a risk-set sum);
    ``max_evaluations`` the evaluations (plaintext validation replies) per approved study;
    ``max_logistic_rounds`` the logistic rounds per approved study (a fit takes about ten; against a
    coordinator probing the weights across an input's range, :mod:`federated.site.handler`).
    ``dp_epsilon`` and ``dp_delta`` are the site's total differential-privacy budget over every
    differentially private release of every study (:mod:`federated.site.privacy`): a release whose
    composition would exceed it is refused.
    """

    max_rounds: int = Field(default=2000, ge=1)
    max_abs_lp: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    max_evaluations: int = Field(default=20, ge=0)
    max_logistic_rounds: int = Field(default=40, ge=0)
    dp_epsilon: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    dp_delta: float = Field(default=1e-5, gt=0, lt=1)


class StudyProtocol(BaseModel):
    """A study as a site operator approves it; its SHA-256 (:attr:`sha256`) names it in requests.

    ``cohorts`` are the analyses' cohorts (columns, partition, declared ranges, the *finest*
    approved time grid, ``max_time``); ``peers`` every participating site's Ed25519 identity key
    (raw, base64). ``allow_small_time_cells`` is the loud opt-in to per-interval exactness on data
    too thin for k-cells; ``dp`` the study's differential privacy (ε and δ of one release, the
    mechanism), which the sites apply (:mod:`federated.site.privacy`) — it is part of the hash, so
    no request can change it. Differential privacy needs secure aggregation (each site adds only
    its share of the noise).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: str = "fedprog.study/v1"
    study_id: str = Field(min_length=1, max_length=200)
    cohorts: tuple[CohortSpec, ...] = Field(min_length=1)
    policy: DisclosurePolicy = Field(default_factory=DisclosurePolicy)
    secure: bool = True
    peers: dict[str, str] = Field(default_factory=dict)
    allow_small_time_cells: bool = False
    #: on the yearly grid, sites censor earlier the censored patients of sparse cells instead of refusing
    #: (:func:`federated.disclosure.cells.shift_sparse_censoring`)
    shift_sparse_censoring: bool = False
    max_rounds: int = Field(default=2000, ge=1)
    max_abs_lp: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    horizons: tuple[float, ...] = ()
    dp: DPSettings | None = None
    max_n_boot: int = Field(default=1000, ge=0)
    #: groups of predicted risk an evaluation reports (fixed: no request can pick another number)
    risk_groups: int = Field(default=5, ge=0, le=10)

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("dp_blocks") is not None:
            raise ValueError("dp_blocks (Cox sample-and-aggregate) was removed: it showed the coordinator "
                             "exact block fits; approve the study again without it")
        if isinstance(data, dict) and "dp_blocks" in data:
            data = {k: v for k, v in data.items() if k != "dp_blocks"}
        return data

    @model_validator(mode="after")
    def _dp_needs_masking(self) -> StudyProtocol:
        if self.dp is not None and not self.secure:
            raise ValueError("differential privacy against the coordinator needs secure aggregation "
                             "(each site adds only its share of the noise)")
        return self

    @field_validator("dp")
    @classmethod
    def _dp_on(cls, dp: DPSettings | None) -> DPSettings | None:
        return dp if dp is not None and dp.enabled else None

    @field_validator("cohorts")
    @classmethod
    def _no_blocks(cls, cohorts: tuple[CohortSpec, ...]) -> tuple[CohortSpec, ...]:
        if any(c.block is not None for c in cohorts):
            raise ValueError("an approved cohort names no block")
        return cohorts

    @field_validator("peers")
    @classmethod
    def _keys(cls, peers: dict[str, str]) -> dict[str, str]:
        for name, key in peers.items():
            if len(_b64(key)) != 32:
                raise ValueError(f"peer {name!r}: an identity key is 32 raw Ed25519 bytes in base64")
        return peers

    @property
    def sha256(self) -> str:
        """The study's name on the wire: SHA-256 of its canonical JSON."""
        return hashlib.sha256(canonical_json(self.model_dump(mode="json"))).hexdigest()


class Refusal(Exception):
    """A request the site's rules refuse; ``code`` is all that travels in a secure round."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def effective_policy(protocol: StudyProtocol, floors: SiteFloors) -> DisclosurePolicy:
    """The stricter of the study's rules and the site's floors, field by field."""
    study = protocol.policy
    return DisclosurePolicy(**{name: max(getattr(study, name), getattr(floors, name))
                               for name in DisclosurePolicy.model_fields})


def approved_cohort(protocol: StudyProtocol, asked: CohortSpec) -> CohortSpec:
    """The approved cohort ``asked`` is a permitted form of, else :class:`Refusal`.

    Permitted: an approved cohort as it is, on its own or a coarser ladder grid, with the knots of
    each spline it places at quantiles either not yet placed (the input enters as it is) or placed on
    public edges (:func:`placed_on_edges`). Blocks of
    patients are never answered (sample-and-aggregate showed the coordinator exact block fits). A
    cause-specific cohort (``cause``) is answered only for a cause, a cause column and codes approved
    together: no request makes another code, or another column, the event.
    """
    if asked.block is not None:
        raise Refusal("not-approved", "this site answers for no block of its patients")
    for cohort in protocol.cohorts:
        declared = {n: t for n, t in asked.splines.items() if n not in cohort.knot_quantiles}
        if asked.model_copy(update={"time_grid": cohort.time_grid, "block": None,
                                    "splines": declared}) == cohort:
            if cohort.time_grid != "exact" and asked.time_grid not in rungs_from(cohort.time_grid):
                raise Refusal("not-approved", f"time grid {asked.time_grid!r} is finer than the "
                              f"approved {cohort.time_grid!r}")
            placed_on_edges(cohort, asked)
            return cohort
    if asked.cause is not None and any(asked.model_copy(update={"time_grid": c.time_grid, "cause": c.cause})
                                       == c for c in protocol.cohorts):
        raise Refusal("not-approved", f"cause {asked.cause!r} is not one the study approved for this cohort")
    raise Refusal("not-approved", "the cohort is not one the study approved")


def placed_on_edges(approved: CohortSpec, asked: CohortSpec) -> None:
    """Refuse (``not-approved``) knots of a spline the study places at k quantiles unless they are k
    distinct public bin edges of the input's declared range (:func:`federated.study.range_edges`).

    Adversary: a **malicious coordinator** that places a knot where the histogram has no edge — at one
    patient's exact age, so that a spline column is non-zero for her alone and its sums are her
    values — or asks for more knots than approved, to cut the range finer. An edge is public, fixed
    by the approved study before any data is seen, and known to bound its bins' patients: the site
    checks the knots against the study alone, never against its rows, so a refusal tells nothing. A
    knot on an edge beyond which 1 to k − 1 patients of an event class lie is still refused
    (``cells``, :func:`federated.disclosure.cells.design_cells`).
    """
    for name, k in approved.knot_quantiles.items():
        knots = asked.splines.get(name)
        if knots is None:  # the round that places them (the input enters as it is)
            continue
        edges = range_edges(*approved.ranges[name], approved.range_bins)
        if len(knots) != k or len(set(knots)) != k or not np.isin(np.asarray(knots), edges).all():
            raise Refusal("not-approved", f"the knots of {name!r} must be {k} distinct edges of the "
                          f"{approved.range_bins} bins of its declared range, as the study approved")


# ------------------------------------------------------------------------------ identity
def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return b""


def round_key_message(study: str, session: str, round_: int, key: bytes) -> bytes:
    """What a site signs when it announces the X25519 ``key`` for ``round_`` of ``session``."""
    return b"|".join([_ROUND_KEY, study.encode(), session.encode(), str(round_).encode(), key])


class SiteIdentity:
    """A site's long-term Ed25519 identity key (never leaves the site)."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def generate(cls) -> SiteIdentity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_file(cls, path: Path) -> SiteIdentity:
        """The key whose 32-byte seed is in ``path`` (created, 0600, on first use)."""
        return cls(Ed25519PrivateKey.from_private_bytes(secret_file(path)))

    @property
    def public(self) -> str:
        """The public key, raw 32 bytes in base64 (as a study's ``peers`` lists it)."""
        raw = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")

    def derive(self, label: str) -> bytes:
        """A 32-byte secret for ``label`` derived from the identity key (HMAC-SHA256, RFC 2104): the
        site's own randomness for things it must redo identically (e.g. which patients it withholds)."""
        seed = self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return hmac.new(seed, f"fedprog/identity-derive/v1|{label}".encode(), hashlib.sha256).digest()

    def sign_round_key(self, study: str, session: str, round_: int, key: bytes) -> str:
        sig = self._private.sign(round_key_message(study, session, round_, key))
        return base64.b64encode(sig).decode("ascii")


def verify_round_key(identity: str, signature: str, study: str, session: str, round_: int,
                     key: bytes) -> bool:
    """Whether ``signature`` is the site with public ``identity``'s signature of ``key``."""
    try:
        public = Ed25519PublicKey.from_public_bytes(_b64(identity))
        public.verify(_b64(signature), round_key_message(study, session, round_, key))
    except (InvalidSignature, ValueError):
        return False
    return True


def protocol_of(study: StudySpec, peers: dict[str, str]) -> StudyProtocol:
    """The approvable part of ``study`` (what a site pins), with the peers' identity keys.

    Cohorts: for a logistic model its binary cohort alone; otherwise the Cox cohort, the Kaplan–Meier
    cohort and the evaluation cohort (the Cox cohort
    without strata). The model's version, timeouts and solver settings are not part of it, so a
    retrained version runs under the same approval.
    """
    cox = study.cohort()
    cohorts = [cox] if study.model == "logistic" else \
        [cox, study.cohort(for_km=True), cox.model_copy(update={"partition": None, "partition_by_site": False,
                                                               "levels": None})]
    unique = tuple(c for i, c in enumerate(cohorts) if c not in cohorts[:i])
    return StudyProtocol(study_id=study.model_id, cohorts=unique, policy=study.policy,
                         secure=study.secure_aggregation, peers=dict(sorted(peers.items())),
                         horizons=tuple(study.horizons), dp=study.dp if study.dp.enabled else None,
                         allow_small_time_cells=study.allow_small_time_cells,
                         shift_sparse_censoring=study.shift_sparse_censoring)

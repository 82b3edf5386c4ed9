"""Which consented patients a site contributes to a job, so that no two jobs differ by one patient.

Adversary: a **reader of releases** (and an honest-but-curious coordinator) who differences the
results of two jobs of one study — a model and its successor retrained after a withdrawal, a KM
curve before and after a new consent. Any exact release (coefficients, a baseline step, a count)
of the two jobs then differs by a function of the patients whose data differ between them; when
that is one patient, the difference describes her (issue 15: ``n₁·c₁ − n₂·c₂`` gave her covariate
vector, the event count her event).

The rule a site holds: for every earlier job J of the study at this site, the set S of patients it
contributes differs from the set P_J it contributed to J by **0 or at least k** patients
(``|S Δ P_J| ∈ {0} ∪ [k, ∞)``, k = ``min_cell_count``). A withdrawal (or a new consent) that
would make the difference 1 … k−1 is padded by withholding further patients, drawn at random
among those J used, until it reaches k: a difference then always mixes at least k patients, of
whom the reader cannot tell which withdrew. The withheld patients are drawn by a generator
keyed by the site's secret and the job, so a re-run of the same job withholds the same ones.

The withheld patients' data simply stay out of that job: the fit is exact on the patients who
contribute (the k-anonymity of differences, in the sense of Sweeney 2002, costs at most k−1
patients per site and job).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet

import numpy as np

from federated.site.data import Cohort, coverage_bins
from federated.study import CohortSpec

_MAX_PASSES = 64


class ContributionError(ValueError):
    """No subset of the consented patients keeps every difference to an earlier job at 0 or ≥ k."""


def contribution(active: Iterable[str], earlier: Mapping[str, AbstractSet[str]], k: int,
                 key: bytes, prefer: AbstractSet[str] = frozenset()) -> frozenset[str]:
    """The largest set this greedy rule finds of ``active`` patients to contribute.

    Parameters
    ----------
    active : iterable of str
        The patients the site may use now (consent active at the newest witnessed checkpoint).
    earlier : mapping of job → set of str
        The patients each earlier job of the study used at this site (the current job excluded).
    k : int
        The smallest difference allowed besides 0.
    key : bytes
        Seeds the draw of the withheld patients (secret to the site, bound to the job).
    prefer : set of str, optional
        Patients to withhold first, while enough of them are eligible (:func:`robust`): those whose
        withholding cannot shrink a cell the site sends below k.

    Returns
    -------
    frozenset of str
        S ⊆ active with ``|S Δ P_J| == 0 or >= k`` for every earlier job J.

    Raises
    ------
    ContributionError
        When withholding cannot reach k for some job (too few of its patients left).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    chosen = set(active)
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest(), "big"))
    jobs = sorted(earlier)
    for _ in range(_MAX_PASSES):
        changed = False
        for job in jobs:
            used = earlier[job]
            short = k - len(chosen ^ used)
            if short <= 0 or short == k:  # a difference of 0 or of at least k
                continue
            pool = sorted(chosen & used)  # withholding one of them widens the difference by one
            preferred = [p for p in pool if p in prefer]
            pool = preferred if len(preferred) >= short else pool
            if len(pool) < short:
                raise ContributionError("withholding cannot make this job differ from an earlier one "
                                        "by 0 or at least k patients")
            chosen -= set(rng.choice(pool, size=short, replace=False).tolist())
            changed = True
        if not changed:
            return frozenset(chosen)
    raise ContributionError("no contribution found that differs from every earlier job by 0 or at least k "
                            "patients")


def job_key(secret: bytes, study: str, job: str) -> bytes:
    """HMAC-SHA256 (RFC 2104) of the study and job under the site's ``secret``: the draw of the
    withheld patients is the site's own and the same for every run of one job."""
    return hmac.new(secret, f"fedprog/contribution/v1|{study}|{job}".encode(), hashlib.sha256).digest()


def robust(cohort: Cohort, spec: CohortSpec, k: int) -> np.ndarray:
    """Rows whose every cell holds at least 2k of the site's rows: the time atom (label × event ×
    interval of the requested grid, :mod:`federated.disclosure.cells`) and the coverage bin of every
    declared range. Withholding up to k − 1 of them leaves each such cell at k or more, so the
    padding never turns an answerable cohort into one that k-cells refuse."""
    keys = [cohort.label, cohort.event, np.unique(cohort.time, return_inverse=True)[1]]
    bins = coverage_bins(cohort, spec)
    ok = np.ones(cohort.time.size, dtype=bool)
    for cell in [np.column_stack(keys), *(bins[:, [i]] for i in range(bins.shape[1]))]:
        _, inverse, counts = np.unique(cell, axis=0, return_inverse=True, return_counts=True)
        ok &= counts[inverse.ravel()] >= 2 * k
    return ok

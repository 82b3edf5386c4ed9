"""Bootstrap replicates of every metric of :mod:`federated.site.performance`, all resamples at once.

A resample of a group's ``n`` rows with replacement (Efron & Tibshirani 1993) is a vector of
counts ``c`` (how often each original row was drawn). Every metric is a function of the original
rows weighted by ``c``, so ``B`` resamples are a ``(B, n)`` count matrix and each metric becomes a
few matrix products over it instead of ``B`` calls of scikit-survival on expanded copies. The
formulas are those scikit-survival 0.28 evaluates, term for term, on the expanded rows:

* Harrell's and Uno's C (``_estimate_concordance_index``): an event row ``i`` is comparable with
  every later time and every censored row at its time; the count of concordant (and tied, ½) and
  comparable partners is ``C @ K.T`` for a fixed (events × n) matrix ``K``; Uno's weights are
  Ĝ(tᵢ)⁻² of the resample's censoring Kaplan–Meier, zero at or past τ (Uno et al. 2011);
* the cumulative/dynamic AUC (Uno et al. 2007) as the IPCW Mann–Whitney sum over cases
  (event by h) and controls (alive past h), ties ½ — the trapezoidal area scikit-survival takes;
* the Brier score (Graf et al. 1999) and its trapezoidal integral over the resample's grid points;
* E/O and log(O/E) with O = 1 − Kaplan–Meier (Kaplan & Meier 1958);
* the calibration slope (Royston & Altman 2013): the Efron (1977) partial likelihood of the
  expanded rows (``d_k`` copies of tied events give ``d_k`` Efron terms), Newton–Raphson from
  γ = 1 with step halving, run for all resamples in lock-step with the stopping rules of
  :func:`federated.site.performance.cox_slope`.

Kaplan–Meier curves of a resample are products over the ORIGINAL unique times, where a time the
resample lacks contributes the factor 1.0 exactly, so they equal the resample's own curves bit for
bit. Every value agrees with :func:`federated.site.performance.metrics` on the expanded resample to
rounding (≤ 1e-12; ``tests/federated/site/test_performance_bootstrap.py``); a replicate that
function cannot compute is NaN here. When two distinct linear predictors lie within
scikit-survival's tie tolerance the tie rules of the two concordance codes differ, and
:func:`replicates` falls back to :func:`reference_replicates` (the slow, obviously equal path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from federated.site.performance import Key, Rows, metrics
from prognosis import CoxModel

#: scikit-survival's tolerance for tied predictions in its concordance and AUC code
TIED_TOL = 1e-8


def counts_of(draws: np.ndarray, n: int) -> np.ndarray:
    """Resamples given as drawn row indices ``(B, n)`` → how often each row was drawn ``(B, n)``."""
    return np.stack([np.bincount(d, minlength=n) for d in draws]).astype(float) if len(draws) \
        else np.zeros((0, n))


def reference_replicates(rows: Rows, model: CoxModel, horizons: Sequence[float], grid: np.ndarray,
                         tau: float | None, draws: np.ndarray, keys: list[Key], min_cell: int = 5
                         ) -> dict[Key, np.ndarray]:
    """Replicates by :func:`~federated.site.performance.metrics` on each expanded resample (NaN where
    it cannot compute one): the definition :func:`replicates` must equal."""
    reps = {k: np.full(len(draws), np.nan) for k in keys}
    for b, idx in enumerate(draws):
        values, _ = metrics(rows.take(np.sort(idx)), model, horizons, grid, tau, min_cell)
        for k in keys:
            reps[k][b] = values.get(k, np.nan)
    return reps


@dataclass(frozen=True)
class _Frame:
    """The original rows (sorted by time) and what every resample shares."""

    rows: Rows
    starts: np.ndarray      # first row of each unique time (K,)
    utimes: np.ndarray      # the unique times (K,)
    ev_rows: np.ndarray     # indices of the event rows (E,)
    beats: np.ndarray       # (E, n): 1 if lp_event > lp_j, ½ if equal, else 0
    comparable: np.ndarray  # (E, n): j is later, or censored at the event's time

    @classmethod
    def of(cls, rows: Rows) -> _Frame:
        t, d, lp = rows.time, rows.event, rows.lp
        utimes, starts = np.unique(t, return_index=True)
        ev = np.flatnonzero(d == 1)
        diff = lp[ev][:, None] - lp[None, :]
        beats = np.where(diff > 0, 1.0, np.where(diff == 0, 0.5, 0.0))
        comparable = (t[None, :] > t[ev][:, None]) | ((t[None, :] == t[ev][:, None]) & (d[None, :] == 0))
        return cls(rows, starts, utimes, ev, beats, comparable.astype(float))

    def per_time(self, values: np.ndarray) -> np.ndarray:
        """Row values ``(B, n)`` summed per unique time ``(B, K)``."""
        return np.add.reduceat(values, self.starts, axis=1)

    def km(self, counts: np.ndarray, reverse: bool) -> np.ndarray:
        """Kaplan–Meier of each resample at the unique times ``(B, K)``: of the event (``reverse``
        false) or of censoring (``reverse``: ``kaplan_meier_estimator(..., reverse=True)``, where the
        events at a time leave the risk set before its censorings)."""
        total = self.per_time(counts)
        events = self.per_time(counts * self.rows.event)
        at_risk = np.cumsum(total[:, ::-1], axis=1)[:, ::-1]
        num, den = (total - events, at_risk - events) if reverse else (events, at_risk)
        ratio = np.divide(num, den, out=np.zeros_like(num), where=num != 0)
        return np.cumprod(1.0 - ratio, axis=1)

    def at_or_before(self, t: np.ndarray) -> np.ndarray:
        """Index of the last unique time ≤ each ``t`` (−1 before the first)."""
        return np.searchsorted(self.utimes, t, side="right") - 1


def _take(curve: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``curve[:, idx]`` with 1.0 where ``idx`` is −1 (before the first time)."""
    return np.where(idx >= 0, curve[:, np.maximum(idx, 0)], 1.0)


def replicates(rows: Rows, model: CoxModel, horizons: Sequence[float], grid: np.ndarray, tau: float | None,
               draws: np.ndarray, keys: list[Key], min_cell: int = 5) -> dict[Key, np.ndarray]:
    """Every metric in ``keys`` on each resample ``draws`` (``(B, n)`` row indices into ``rows``):
    arrays ``(B,)``, NaN where :func:`~federated.site.performance.metrics` could not compute it."""
    lp = np.unique(rows.lp)
    if lp.size > 1 and np.diff(lp).min() <= TIED_TOL:
        return reference_replicates(rows, model, horizons, grid, tau, draws, keys, min_cell)
    frame = _Frame.of(rows)
    counts = counts_of(np.asarray(draws), rows.n)
    out: dict[Key, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out.update(_concordance(frame, counts, tau))
        out[("integrated_brier", None)] = _integrated_brier(frame, model, counts, grid, tau, min_cell)
        out[("calibration_slope", None)] = _slope(frame, counts, rows.event)
        hs = np.asarray(horizons, dtype=float)
        t = rows.time
        inside = np.stack([(counts @ (t >= h) >= min_cell) & (counts @ (t <= h) >= min_cell) for h in hs],
                          axis=1) if hs.size else np.zeros((len(counts), 0), bool)
        for j, h in enumerate(hs):
            slope = np.full(len(counts), np.nan)
            if inside[:, j].any():
                slope[inside[:, j]] = _slope(frame, counts[inside[:, j]], rows.event * (t <= h))
            out[("calibration_slope", float(h))] = slope
        per_horizon: dict[Key, np.ndarray] = {
            (m, float(h)): np.full(len(counts), np.nan) for h in hs
            for m in ("td_auc", "brier", "e_o_ratio", "calibration_intercept")}
        for pattern in np.unique(inside, axis=0):
            if not pattern.any():
                continue
            sel = (inside == pattern).all(axis=1)
            for key, values in _at_horizons(frame, model, counts[sel], hs[pattern]).items():
                per_horizon[key][sel] = values
        out.update(per_horizon)
    missing = np.full(len(counts), np.nan)
    return {k: np.where(np.isfinite(out.get(k, missing)), out.get(k, missing), np.nan) for k in keys}


def _concordance(f: _Frame, counts: np.ndarray, tau: float | None) -> dict[Key, np.ndarray]:
    """Harrell's C, and Uno's C truncated at ``tau`` (NaN where scikit-survival refuses)."""
    c_ev = counts[:, f.ev_rows]
    comparable = counts @ f.comparable.T       # (B, E): comparable partners of each event row
    concordant = counts @ (f.comparable * f.beats).T
    has_events = c_ev.sum(axis=1) > 0
    n_ok = counts.sum(axis=1) >= 2
    den = (c_ev * comparable).sum(axis=1)
    harrell = np.where(has_events & n_ok & (den > 0), (c_ev * concordant).sum(axis=1) / den, np.nan)
    uno = np.full(len(counts), np.nan)
    t = f.rows.time
    present = counts > 0
    t_max = np.where(present, t[None, :], -np.inf).max(axis=1)
    if tau is not None:
        g = f.km(counts, reverse=True)[:, np.searchsorted(f.utimes, t[f.ev_rows])]  # Ĝ at each event
        early = t[f.ev_rows] < tau
        zero = ((g == 0) & (c_ev > 0) & early[None, :]).any(axis=1)
        w = np.where(early[None, :], np.square(1.0 / g), 0.0)
        den_u = (c_ev * w * comparable).sum(axis=1)
        ok = has_events & ~zero & (tau < t_max) & (den_u > 0)
        uno = np.where(ok, (c_ev * w * concordant).sum(axis=1) / den_u, np.nan)
    return {("harrell_c", None): harrell, ("uno_c", None): uno}


def _brier_at(f: _Frame, counts: np.ndarray, cens: np.ndarray, surv: np.ndarray, times: np.ndarray
              ) -> np.ndarray:
    """IPCW Brier score of each resample ``(B, T)`` at ``times`` given S(t | x) ``surv`` (n, T) and
    the resamples' censoring curves ``cens`` (B, K); an Ĝ of 0 weighs 0, as scikit-survival's ∞."""
    t, d = f.rows.time, f.rows.event
    g_rows = cens[:, np.searchsorted(f.utimes, t)]                 # Ĝ(tᵢ) of each row (B, n)
    inv_rows = np.where(g_rows > 0, 1.0 / g_rows, 0.0)
    g_t = _take(cens, f.at_or_before(times))                     # Ĝ(t) (B, T)
    inv_t = np.where(g_t > 0, 1.0 / g_t, 0.0)
    case = (t[:, None] <= times[None, :]) & (d[:, None] == 1)
    cases = (counts * inv_rows) @ (np.square(surv) * case)
    controls = counts @ (np.square(1.0 - surv) * (t[:, None] > times[None, :]))
    return np.asarray((cases + controls * inv_t) / counts.sum(axis=1)[:, None])


def _range(f: _Frame, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    present = counts > 0
    t = f.rows.time[None, :]
    return np.where(present, t, np.inf).min(axis=1), np.where(present, t, -np.inf).max(axis=1)


def _integrated_brier(f: _Frame, model: CoxModel, counts: np.ndarray, grid: np.ndarray, tau: float | None,
                      min_cell: int) -> np.ndarray:
    """Integrated Brier score over each resample's own grid points (those of
    :func:`~federated.site.performance.metrics`), by the trapezoidal rule."""
    out = np.full(len(counts), np.nan)
    t_min, t_max = _range(f, counts)
    if tau is None or grid.size < 2:
        return out
    n = counts.sum(axis=1)[:, None]
    ended = counts @ (f.rows.time[:, None] <= grid[None, :])   # rows ended by each grid point (B, G)
    use = (ended >= min_cell) & (n - ended >= min_cell) & (grid <= tau)[None, :] \
        & (grid[None, :] >= t_min[:, None]) & (grid[None, :] < t_max[:, None])
    ok = (use.sum(axis=1) >= 2) & (tau < t_max) & ((counts @ f.rows.event) > 0)
    if not ok.any():
        return out
    c = counts[ok]
    scores = _brier_at(f, c, f.km(c, reverse=True), model.survival_at(f.rows.lp, grid), grid)
    u = use[ok]
    pair = u[:, 1:] & u[:, :-1]                                   # the selected points are contiguous
    area = (np.diff(grid)[None, :] * (scores[:, 1:] + scores[:, :-1]) / 2.0 * pair).sum(axis=1)
    first = np.argmax(u, axis=1)
    last = u.shape[1] - 1 - np.argmax(u[:, ::-1], axis=1)
    out[ok] = area / (grid[last] - grid[first])
    return out


def _at_horizons(f: _Frame, model: CoxModel, counts: np.ndarray, hs: np.ndarray) -> dict[Key, np.ndarray]:
    """td-AUC, Brier, E/O and calibration intercept at ``hs`` (the horizons inside the follow-up of
    every one of these resamples); each family is NaN together where scikit-survival refuses it."""
    d, lp = f.rows.event, f.rows.lp
    b = len(counts)
    nan = np.full((b, hs.size), np.nan)
    t_min, t_max = _range(f, counts)
    n_events = counts @ d
    surv = model.survival_at(lp, hs)
    cens = f.km(counts, reverse=True)
    in_range = (hs.max() < t_max) & (hs.min() >= t_min) & (n_events > 0)
    brier = np.where(in_range[:, None], _brier_at(f, counts, cens, surv, hs), nan)
    # E/O: O = 1 − KM(h), E = mean predicted risk; refused when any O or E is 0
    observed = 1.0 - _take(f.km(counts, reverse=False), f.at_or_before(hs))
    expected = counts @ (1.0 - surv) / counts.sum(axis=1)[:, None]
    cal_ok = ((observed > 0) & (expected > 0)).all(axis=1)[:, None]
    e_o = np.where(cal_ok, expected / observed, nan)
    intercept = np.where(cal_ok, np.log(observed / expected), nan)
    auc = _td_auc(f, counts, cens, hs, t_min, t_max)
    out: dict[Key, np.ndarray] = {}
    for j, h in enumerate(hs):
        out.update({("td_auc", float(h)): auc[:, j], ("brier", float(h)): brier[:, j],
                    ("e_o_ratio", float(h)): e_o[:, j], ("calibration_intercept", float(h)): intercept[:, j]})
    return out


def _td_auc(f: _Frame, counts: np.ndarray, cens: np.ndarray, hs: np.ndarray, t_min: np.ndarray,
            t_max: np.ndarray) -> np.ndarray:
    """Cumulative/dynamic AUC (B, H): Σ_cases Σ_controls wᵢ cᵢ cⱼ [ηᵢ > ηⱼ] (½ if equal) over
    Σ wᵢ cᵢ · Σ cⱼ, wᵢ = 1/Ĝ(tᵢ); follow-up censored past max(hs) changes neither (see
    :func:`federated.site.performance._censored_after`)."""
    t = f.rows.time
    t_ev = t[f.ev_rows]
    c_ev = counts[:, f.ev_rows]
    g = cens[:, np.searchsorted(f.utimes, t_ev)]
    early = t_ev <= hs.max()
    ok = ((c_ev * early) .sum(axis=1) > 0) & (hs.min() >= t_min) & (t_max > hs.max()) \
        & ~((g == 0) & (c_ev > 0) & early[None, :]).any(axis=1)
    w = np.where(g > 0, 1.0 / g, 0.0) * c_ev
    out = np.full((len(counts), hs.size), np.nan)
    for j, h in enumerate(hs):
        case = t_ev <= h
        control = t > h
        beats = f.beats[case][:, control]
        wins = (counts[:, control] @ beats.T * w[:, case]).sum(axis=1)
        den = w[:, case].sum(axis=1) * counts[:, control].sum(axis=1)
        ok &= den > 0
        out[:, j] = wins / den
    return np.where(ok[:, None], out, np.nan)


def _monotone(f: _Frame, counts: np.ndarray, event: np.ndarray) -> np.ndarray:
    """:func:`~federated.site.performance.monotone_likelihood` of each resample ``(B,)``."""
    lp, present = f.rows.lp, counts > 0
    start = np.searchsorted(f.rows.time, f.rows.time, side="left")
    top = np.maximum.accumulate(np.where(present, lp, -np.inf)[:, ::-1], axis=1)[:, ::-1][:, start]
    low = np.minimum.accumulate(np.where(present, lp, np.inf)[:, ::-1], axis=1)[:, ::-1][:, start]
    ev = present & (event == 1)[None, :]
    return ~(((lp < top) & ev).any(axis=1) & ((lp > low) & ev).any(axis=1))


def _slope(f: _Frame, counts: np.ndarray, event: np.ndarray, *, tol: float = 1e-10,
           max_iter: int = 50) -> np.ndarray:
    """The calibration slope γ of each resample (rows with ``event`` 0/1, risk sets by the sorted
    times): :func:`federated.site.performance.cox_slope` on the expanded rows, in lock-step."""
    b = len(counts)
    lp, t = f.rows.lp, f.rows.time
    z = lp[None, :] - (counts @ lp / counts.sum(axis=1))[:, None]
    ev = np.flatnonzero(event == 1)
    out = np.full(b, np.nan)
    if ev.size == 0:
        return out
    u, first_ev = np.unique(t[ev], return_index=True)
    at_risk_from = np.searchsorted(t, u, side="left")
    d = np.add.reduceat(counts[:, ev], first_ev, axis=1)          # tied events per time (B, K)
    present = counts > 0
    spread = np.where(present, lp, -np.inf).max(axis=1) > np.where(present, lp, np.inf).min(axis=1)
    active = (d.sum(axis=1) > 0) & spread & ~_monotone(f, counts, event)
    z_events = (counts[:, ev] * z[:, ev]).sum(axis=1)
    # one Efron term per event copy: (resample, event time, l / d) with l = 0 … d − 1 (cf. cox_math.tie_terms)
    rb, rk = np.nonzero(d > 0)
    per = d[rb, rk].astype(np.int64)
    term_b, term_k = np.repeat(rb, per), np.repeat(rk, per)
    frac = (np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)) / np.repeat(d[rb, rk], per)

    def loglik(gamma: np.ndarray, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        zs, cs = z[sel], counts[sel]
        cw = cs * np.exp(gamma[:, None] * zs)
        parts = (cw, cw * zs, cw * zs * zs)
        sums = [np.cumsum(v[:, ::-1], axis=1)[:, ::-1][:, at_risk_from] for v in parts]
        ties = [np.add.reduceat(v[:, ev], first_ev, axis=1) for v in parts]
        pos = np.full(b, -1)
        pos[sel] = np.arange(sel.size)
        keep = pos[term_b] >= 0
        i, k, a = pos[term_b[keep]], term_k[keep], frac[keep]
        s0, s1, s2 = (s[i, k] - a * tt[i, k] for s, tt in zip(sums, ties, strict=True))
        mean = s1 / s0
        ll = gamma * z_events[sel] - np.bincount(i, np.log(s0), sel.size)
        score = z_events[sel] - np.bincount(i, mean, sel.size)
        info = np.bincount(i, s2 / s0 - mean * mean, sel.size)
        return ll, score, info

    gamma = np.ones(b)
    idx = np.flatnonzero(active)
    ll, score, info = np.full(b, np.nan), np.full(b, np.nan), np.full(b, np.nan)
    ll[idx], score[idx], info[idx] = loglik(gamma[idx], idx)
    active &= np.isfinite(ll) & np.isfinite(score) & np.isfinite(info)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        step = score[idx] / info[idx]
        todo = np.ones(idx.size, bool)
        for _halving in range(30):
            sub = idx[todo]
            new_ll, new_score, new_info = loglik(gamma[sub] + step[todo], sub)
            finite = np.isfinite(new_ll) & np.isfinite(new_score) & np.isfinite(new_info)
            better = finite & (new_ll >= ll[sub] - 1e-12 * np.maximum(1.0, np.abs(ll[sub])))
            moved = sub[better]
            gamma[moved] += step[todo][better]
            ll[moved], score[moved], info[moved] = new_ll[better], new_score[better], new_info[better]
            active[sub[~finite]] = False  # the old code's floating-point error: no slope
            done = np.flatnonzero(todo)
            converged = np.abs(step[done[better]]) < tol
            out[moved[converged]] = gamma[moved[converged]]
            active[moved[converged]] = False
            todo[done[better | ~finite]] = False
            step[done[finite & ~better]] /= 2
            if not todo.any():
                break
        active[idx[todo]] = False  # no step improves the likelihood
    return out

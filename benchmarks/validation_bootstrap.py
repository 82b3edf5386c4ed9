"""Cost of a site's bootstrap CIs: the vectorised replicates against one scikit-survival call per
resample (issue 18 target: a 274-patient site, 1000 resamples in ≤ 10 s on one core).

Both paths compute every metric of :mod:`federated.site.performance` on the same resamples of the
demo hospitals (GBSG2, the demo study's model); the reference is timed on ``--reference``
resamples and scaled to ``--resamples``. Prints seconds and the ratio per hospital, and the largest
difference between the two paths on the resamples both computed.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/validation_bootstrap.py [--resamples 1000] [--reference 50]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from federated.analyses.runner import train
from federated.demo_study import HOSPITALS, gbsg2_table, split, write_demo_study
from federated.site.bootstrap import reference_replicates, replicates
from federated.site.data import coarsen
from federated.site.performance import Rows, metrics, truncation
from prognosis import CoxModel

GRID = np.linspace(0.0, 1826.25, 51)[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--reference", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        study = write_demo_study(Path(folder))
        model = CoxModel.from_artifact(train(study)[1])
    horizons = tuple(sorted(model.horizons))
    print(f"{'hospital':<12}{'n':>5}{'events':>8}{'fast (s)':>10}{'reference (s)':>15}{'ratio':>8}"
          f"{'max |diff|':>12}")
    for name, part in zip(HOSPITALS, split(gbsg2_table()), strict=False):
        time_ = part["time"].to_numpy(float)
        event = np.where(time_ > 1826.25, 0, part["event"].to_numpy())
        rows = Rows.sorted(coarsen(np.minimum(time_, 1826.25), "day", "day"), event,
                           model.lp(part[list(model.names)].to_numpy(float)))
        tau = truncation(rows, horizons)
        keys = list(metrics(rows, model, horizons, GRID, tau)[0])
        rng = np.random.default_rng(0)
        draws = np.array([rng.integers(0, rows.n, rows.n) for _ in range(args.resamples)])
        start = time.perf_counter()
        fast = replicates(rows, model, horizons, GRID, tau, draws, keys)
        t_fast = time.perf_counter() - start
        start = time.perf_counter()
        slow = reference_replicates(rows, model, horizons, GRID, tau, draws[:args.reference], keys)
        t_slow = (time.perf_counter() - start) * args.resamples / args.reference
        diff = max(float(np.nanmax(np.abs(fast[k][:args.reference] - slow[k]), initial=0.0)) for k in keys)
        print(f"{name:<12}{rows.n:>5}{rows.events:>8}{t_fast:>10.2f}{t_slow:>15.1f}{t_slow / t_fast:>8.0f}"
              f"{diff:>12.1e}")


if __name__ == "__main__":
    main()

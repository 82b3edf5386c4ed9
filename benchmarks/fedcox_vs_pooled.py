"""Federated Cox (fedprog, 4 sites) against lifelines' CoxPHFitter on the same pooled rows.

Synthetic cohorts (exponential event times from a true Cox model, ~40 % censoring, times
in whole days, so the default day grid is exact), split into four equal sites written as CSV
files. For each size it prints, side by side:

* whole process: ``fedprog train --site …`` (secure aggregation on, the default) against a
  script that loads the same CSVs with pandas and fits ``lifelines.CoxPHFitter`` (Efron
  ties, its default settings), and the largest coefficient difference;
* in process, data in memory: the federated fit with secure aggregation off and on, against
  ``CoxPHFitter.fit`` on the pooled DataFrame;
* bytes one site sends per round (mean over the fit, from its outbound transcript), which
  must not depend on n.

Targets: whole-process ratio fedprog / lifelines ≤ 1.0 at 200 000 × 20 (issue 2); secure
aggregation on / off ≤ 1.5 in wall time (issue 3).

Usage: ``python benchmarks/fedcox_vs_pooled.py [--sizes 200000x20,200000x30] [--repeat 1]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_SITES = 4
DEFAULT_SIZES = "20000x10,100000x20,200000x20,200000x30"

PEER_SCRIPT = textwrap.dedent("""
    import sys, json
    import pandas as pd
    from lifelines import CoxPHFitter
    paths, covariates = sys.argv[1:-1], sys.argv[-1].split(",")
    df = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    cph = CoxPHFitter().fit(df[[*covariates, "time", "event"]], "time", "event")
    print(json.dumps(cph.params_.to_dict()))
""")


def synthetic(n: int, p: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    beta = rng.normal(scale=0.3, size=p)
    t = rng.exponential(scale=np.exp(-x @ beta)) * 365.0
    c = rng.exponential(scale=365.0 * 1.5, size=n)
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(p)])
    df["time"] = np.ceil(np.minimum(t, c))
    df["event"] = (t <= c).astype(int)
    return df


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, res.stdout


def best_of(repeat: int, cmd: list[str]) -> tuple[float, str]:
    runs = [timed(cmd) for _ in range(repeat)]
    return min(r[0] for r in runs), runs[0][1]


def bench(n: int, p: int, folder: Path, repeat: int) -> dict[str, float]:
    from lifelines import CoxPHFitter

    from federated import CohortSpec, Coordinator, InProcessTransport, Site, fit_cox
    from federated.disclosure.rules import StudyProtocol
    from federated.site.handler import approve_in_process

    df = synthetic(n, p)
    cov = [f"x{i}" for i in range(p)]
    parts = np.array_split(np.arange(n), N_SITES)
    paths = []
    for i, rows in enumerate(parts):
        paths.append(folder / f"site{i}.csv")
        df.iloc[rows].to_csv(paths[-1], index=False)

    fed_cmd = [str(Path(sys.executable).parent / "fedprog"), "train", "--json",
               *[a for i, path in enumerate(paths) for a in ("--site", f"s{i}={path}")],
               "--time", "time", "--event", "event", "--covariates", ",".join(cov),
               "--transcript-dir", str(folder / "tx"), "--out", str(folder / "model.json")]
    peer = folder / "peer.py"
    peer.write_text(PEER_SCRIPT)
    fed_s, fed_out = best_of(repeat, fed_cmd)
    plain_cmd = [str(folder / "tx-plain") if a == str(folder / "tx") else a for a in fed_cmd]
    plain_s, _ = best_of(repeat, [*plain_cmd, "--no-secure-agg"])
    peer_s, peer_out = best_of(repeat, [sys.executable, str(peer), *map(str, paths), ",".join(cov)])
    fed_coef = json.loads(fed_out)["coefficients"]
    peer_coef = json.loads(peer_out)
    diff = max(abs(fed_coef[c] - peer_coef[c]) for c in cov)
    sent = [json.loads(line)["bytes"] for line in (folder / "tx" / "s0.jsonl").read_text().splitlines()]

    timings = {}
    cohort = CohortSpec(time="time", event="event", covariates=tuple(cov))
    for secure in (False, True):
        sites = [Site(f"s{i}", df.iloc[rows].reset_index(drop=True)) for i, rows in enumerate(parts)]
        protocol = approve_in_process(sites, StudyProtocol(study_id="bench", cohorts=(cohort,),
                                                           secure=secure))
        start = time.perf_counter()
        fit_cox(Coordinator(InProcessTransport(sites), session="bench", protocol=protocol), cohort)
        timings[secure] = time.perf_counter() - start
    start = time.perf_counter()
    CoxPHFitter().fit(df, "time", "event")
    peer_in = time.perf_counter() - start
    return {"n": n, "p": p, "fed_proc": fed_s, "plain_proc": plain_s, "peer_proc": peer_s,
            "plain_in": timings[False],
            "secure_in": timings[True], "peer_in": peer_in, "diff": diff,
            "bytes_per_round": sum(sent) / len(sent)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated NxP")
    parser.add_argument("--repeat", type=int, default=1, help="best of R whole-process runs")
    args = parser.parse_args()
    header = (f"{'n':>8} {'p':>3} | {'fedprog proc':>12} {'lifelines proc':>14} {'ratio':>6} "
              f"{'max |Δβ|':>9} {'plain proc':>10} {'sec/plain':>9} | {'plain fit':>9} {'secure fit':>10} "
              f"{'sec/plain':>9} "
              f"{'lifelines fit':>13} {'secure/ll':>9} | {'bytes/site/round':>16}")
    print(f"federated Cox ({N_SITES} sites, Efron, day grid) vs lifelines CoxPHFitter on the pooled rows")
    print(header)
    print("-" * len(header))
    for size in args.sizes.split(","):
        n, p = (int(v) for v in size.lower().split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            r = bench(n, p, Path(tmp), args.repeat)
        print(f"{n:>8} {p:>3} | {r['fed_proc']:>11.2f}s {r['peer_proc']:>13.2f}s "
              f"{r['fed_proc'] / r['peer_proc']:>6.2f} {r['diff']:>9.1e} {r['plain_proc']:>9.2f}s "
              f"{r['fed_proc'] / r['plain_proc']:>9.2f} | {r['plain_in']:>8.2f}s "
              f"{r['secure_in']:>9.2f}s {r['secure_in'] / r['plain_in']:>9.2f} {r['peer_in']:>12.2f}s "
              f"{r['secure_in'] / r['peer_in']:>9.2f} | {r['bytes_per_round']:>16,.0f}", flush=True)


if __name__ == "__main__":
    main()

"""Ledger throughput and proof costs (issue 4 targets in brackets).

* durable single-entry appends per second, each committed (WAL, synchronous=FULL) before the
  next, receipt included [≥ 1 000/s];
* batched appends per second (one transaction per batch);
* inclusion-proof generation from storage and verification at 10^6 entries
  [≤ 1 ms and ≤ 50 µs], consistency proofs, and proof sizes (32·⌈log2 n⌉ bytes).

Usage: ``python benchmarks/ledger_bench.py [--entries 1000000] [--folder DIR]``
(the 10^6-entry log is built once in DIR and reused).
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from pathlib import Path

from ledger import merkle
from ledger.checkpoint import NoteSigner
from ledger.log import Ledger

BODY = {"site": "hospital-a", "study": "urn:fedprog:study:bench", "status": "active", "decision": "permit",
        "version": 1, "commitment": "ab" * 32}


def per_second(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    signer = NoteSigner.generate("bench/log")

    with Ledger(folder / "single.sqlite", signer=signer, origin="bench/log") as log:
        n = 2000
        start = time.perf_counter()
        for i in range(n):
            log.append("consent", {**BODY, "i": i})
        single = time.perf_counter() - start
    print(f"durable single appends (with receipts): {per_second(n, single)}  "
          f"({single / n * 1e3:.2f} ms each)  [target ≥ 1,000/s]")

    big = folder / "big.sqlite"
    log = Ledger(big, signer=signer, origin="bench/log")
    batch = 10_000
    start = time.perf_counter()
    built = 0
    while log.size < args.entries:
        k = min(batch, args.entries - log.size)
        log.append_many([("consent", {**BODY, "i": log.size + j}) for j in range(k)])
        built += k
    if built:
        rate = per_second(built, time.perf_counter() - start)
        print(f"batched appends ({batch:,} per transaction): {rate}")
    size = log.size
    rng = random.Random(1)
    indices = [rng.randrange(size) for _ in range(500)]
    root = log.root()
    start = time.perf_counter()
    proofs = [log.inclusion_proof(i) for i in indices]
    gen = (time.perf_counter() - start) / len(indices)
    leaves = [log.receipt(i).leaf_hash for i in indices[:50]]
    start = time.perf_counter()
    for _ in range(20):
        for i, leaf in zip(indices[:50], leaves, strict=True):
            merkle.verify_inclusion(leaf, i, size, proofs[indices.index(i)], root)
    ver = (time.perf_counter() - start) / 1000
    print(f"inclusion proof at {size:,} entries: generate {gen * 1e3:.3f} ms [≤ 1 ms], "
          f"verify {ver * 1e6:.1f} µs [≤ 50 µs], size {32 * len(proofs[0])} bytes "
          f"(32·⌈log2 n⌉ = {32 * math.ceil(math.log2(size))})")
    start = time.perf_counter()
    for s1 in (1, size // 3, size // 2, size - 1):
        proof = log.consistency_proof(s1, size)
        merkle.verify_consistency(s1, size, proof, log.root(s1), root)
    print(f"consistency proof + verification: {(time.perf_counter() - start) / 4 * 1e3:.2f} ms each, "
          f"≤ {32 * len(proof)} bytes")
    log.close()


if __name__ == "__main__":
    main()

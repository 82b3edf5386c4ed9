"""FHIR endpoint under load (issue 5 targets in brackets): a real ``fedprog serve`` process on
loopback over the demo workspace, 20 concurrent clients posting single-patient
``$predict-risk`` requests.

* latency p50 / p95 / p99 [p95 ≤ 50 ms] and throughput [≥ 200 requests/s];
* the first request after start against the median of later ones [as fast];
* one 1 000-patient ``batch`` Bundle [≤ 1 s].

Every request writes its RiskAssessment and AuditEvent durably (SQLite, synchronous=FULL),
as in production. Usage: ``python benchmarks/fhir_load.py [--clients 20] [--seconds 15]
[--workspace DIR]`` (the demo workspace is created once in DIR and reused).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from device.fhir.examples import DEMO_PATIENT, parameters, patient_bundle
from device.model import load_model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fedprog(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "fedprog", *args], capture_output=True, text=True, check=True)
    return out.stdout


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> float:
    """Seconds until ``/fhir/metadata`` answers (the server process is started before)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"fedprog serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"fedprog serve did not answer within {timeout:.0f} s")


async def load(base: str, headers: dict[str, str], bodies: list[bytes], clients: int,
               seconds: float) -> tuple[list[float], int, float]:
    """Latencies (s), error count and wall time of ``clients`` closed-loop clients."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as client:
        async def worker(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < stop:
                t = time.perf_counter()
                resp = await client.post("/Patient/$predict-risk", content=bodies[i % len(bodies)])
                latencies.append(time.perf_counter() - t)
                errors += resp.status_code != 200
                i += clients
        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        wall = time.perf_counter() - start
    return latencies, errors, wall


def requests(model_inputs: Any, n: int) -> list[dict[str, Any]]:
    """``n`` distinct admissible patients (pnodes and tumour size varied)."""
    rng = np.random.default_rng(20261129)
    out = []
    for i in range(n):
        values = {**DEMO_PATIENT, "tsize": float(rng.integers(5, 60)), "pnodes": int(rng.integers(0, 20)),
                  "age": float(rng.integers(30, 80))}
        out.append(parameters(patient_bundle(model_inputs, values, patient_id=f"bench-{i}")))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workspace", type=Path, default=None)
    args = parser.parse_args()
    ws = args.workspace or Path(tempfile.mkdtemp(prefix="fhir-bench-")) / "ws"
    if not (ws / "workspace.json").exists():
        fedprog("demo", "--workspace", str(ws))
    model = load_model(json.loads(fedprog("model", "show", "gbsg2-recurrence", "--workspace", str(ws))))
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    token = fedprog("token", "--workspace", str(ws), "--audience", base,
                    "--scope", "user/RiskAssessment.c").strip()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    bodies = [json.dumps(r).encode() for r in requests(model.inputs, 200)]
    cmd = [sys.executable, "-m", "fedprog", "serve", "--workspace", str(ws), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        ready = wait_ready(base, proc)
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            firsts = []
            for body in bodies[:21]:
                t = time.perf_counter()
                assert client.post("/Patient/$predict-risk", content=body).status_code == 200
                firsts.append(time.perf_counter() - t)
            batch = {"resourceType": "Bundle", "type": "batch", "entry": [
                {"resource": r, "request": {"method": "POST", "url": "Patient/$predict-risk"}}
                for r in requests(model.inputs, 1000)]}
            raw = json.dumps(batch).encode()
            t = time.perf_counter()
            resp = client.post(base, content=raw)
            if resp.status_code != 200:
                raise SystemExit(f"batch failed: {resp.status_code} {resp.text[:300]}")
            batch_s = time.perf_counter() - t
            ok = sum(e["response"]["status"] == "200 OK" for e in resp.json()["entry"])
        lat, errors, wall = asyncio.run(load(base, headers, bodies, args.clients, args.seconds))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    ms = np.array(lat) * 1e3
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    rps = len(lat) / wall
    print(f"fedprog FHIR $predict-risk, real server on loopback, {args.clients} clients, {wall:.1f} s "
          f"({os.cpu_count()} cores shared by server and clients); server ready in {ready:.2f} s")
    print(f"{'measure':<34}{'fedprog':>12}{'target':>12}{'ratio':>8}")
    rows = [("latency p50 (ms)", p50, None), ("latency p95 (ms)", p95, 50.0), ("latency p99 (ms)", p99, None),
            ("requests/s", rps, 200.0), ("first request (ms)", firsts[0] * 1e3, None),
            ("median of next 20 (ms)", float(np.median(firsts[1:])) * 1e3, None),
            ("1 000-patient batch (s)", batch_s, 1.0)]
    for name, value, target in rows:
        ratio = "" if target is None else f"{value / target:.2f}"
        print(f"{name:<34}{value:>12.2f}{'' if target is None else f'{target:.0f}':>12}{ratio:>8}")
    print(f"errors: {errors} of {len(lat)}; batch: {ok} of 1000 scored")


if __name__ == "__main__":
    main()

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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to report the server's cost per request."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


class Connection:
    """A minimal HTTP/1.1 keep-alive client on one loopback socket: the load generator shares the
    machine with the server, so it must cost far less than httpx (≈ 0.1 ms vs ≈ 2.5 ms of CPU
    per request) or it measures itself. Responses must carry Content-Length (uvicorn's do)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self.reader, self.writer, self.head = reader, writer, head

    @classmethod
    async def open(cls, base: str, headers: dict[str, str]) -> Connection:
        url = httpx.URL(base)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        lines = [f"POST {url.path}/Patient/$predict-risk HTTP/1.1", f"Host: {url.host}:{url.port}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        return cls(reader, writer, ("\r\n".join(lines) + "\r\n").encode())

    async def post(self, body: bytes) -> int:
        self.writer.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    def close(self) -> None:
        self.writer.close()


async def load(base: str, headers: dict[str, str], bodies: list[bytes], clients: int, seconds: float,
               rate: float | None = None) -> tuple[list[float], int, float]:
    """Latencies (s), error count and wall time of ``clients`` concurrent clients.

    ``rate=None``: closed loop, each client sends its next request as soon as the last is
    answered (measures capacity). ``rate``: open loop, the clients together send ``rate``
    requests/s on a fixed schedule and latency counts from the scheduled send time, so a slow
    server cannot hide its queue (no coordinated omission; Tene, "How NOT to measure latency").
    """
    latencies: list[float] = []
    errors = 0
    conns = [await Connection.open(base, headers) for _ in range(clients)]
    start = time.perf_counter()
    stop = start + seconds

    async def worker(k: int) -> None:
        nonlocal errors
        i = k
        while True:
            due = time.perf_counter() if rate is None else start + i / rate
            if due >= stop:
                return
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            status = await conns[k].post(bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - due)
            errors += status != 200
            i += clients

    try:
        await asyncio.gather(*(worker(k) for k in range(clients)))
    finally:
        for c in conns:
            c.close()
    return latencies, errors, time.perf_counter() - start


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (uvicorn workers)."""
    total = cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += tree_cpu(int(child))
    return total


def requests(model_inputs: Any, n: int) -> list[dict[str, Any]]:
    """``n`` distinct admissible patients (pnodes and tumour size varied)."""
    rng = np.random.default_rng(20261129)
    out = []
    for i in range(n):
        values = {**DEMO_PATIENT, "tsize": float(rng.integers(5, 60)), "pnodes": int(rng.integers(1, 20)),
                  "age": float(rng.integers(30, 80))}
        out.append(parameters(patient_bundle(model_inputs, values, patient_id=f"bench-{i}")))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=1, help="fedprog serve --workers")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop request rate (per second)")
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
    cmd = [sys.executable, "-m", "fedprog", "serve", "--workspace", str(ws), "--port", str(port),
           "--workers", str(args.workers)]
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
        cpu0 = tree_cpu(proc.pid)
        closed = asyncio.run(load(base, headers, bodies, args.clients, args.seconds))
        server_cpu = (tree_cpu(proc.pid) - cpu0) / max(len(closed[0]), 1)
        opened = asyncio.run(load(base, headers, bodies, args.clients, args.seconds, rate=args.rate))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    report(args, ready, closed, opened, server_cpu, firsts, batch_s, ok)


def report(args: argparse.Namespace, ready: float, closed: tuple[list[float], int, float],
           opened: tuple[list[float], int, float], server_cpu: float, firsts: list[float],
           batch_s: float, ok: int) -> None:
    print(f"fedprog FHIR $predict-risk, real server on loopback ({args.workers} worker process(es)), "
          f"{args.clients} clients, {os.cpu_count()} cores shared by server and clients; "
          f"ready in {ready:.2f} s")
    print(f"{'measure':<46}{'fedprog':>10}{'target':>9}{'ratio':>7}")
    rows: list[tuple[str, float, float | None]] = []
    for label, (lat, _, wall) in (("closed loop", closed), (f"open loop at {args.rate:.0f}/s", opened)):
        p50, p95, p99 = np.percentile(np.array(lat) * 1e3, [50, 95, 99])
        rows += [(f"{label}: requests/s", len(lat) / wall, 200.0 if label == "closed loop" else None),
                 (f"{label}: latency p50 (ms)", p50, None),
                 (f"{label}: latency p95 (ms)", p95, None if label == "closed loop" else 50.0),
                 (f"{label}: latency p99 (ms)", p99, None)]
    rows += [("server CPU per request (ms, all workers)", server_cpu * 1e3, None),
             ("first request after start (ms)", firsts[0] * 1e3, None),
             ("median of the next 20 (ms)", float(np.median(firsts[1:])) * 1e3, None),
             ("1 000-patient batch (s)", batch_s, 1.0)]
    for name, value, target in rows:
        ratio = "" if target is None else f"{value / target:.2f}"
        print(f"{name:<46}{value:>10.2f}{'' if target is None else f'{target:g}':>9}{ratio:>7}")
    n = len(closed[0]) + len(opened[0])
    print(f"errors: {closed[1] + opened[1]} of {n}; batch: {ok} of 1000 scored")
    print("(requests/s is higher-is-better: ratio >= 1 meets it; the others lower-is-better: ratio <= 1)")


if __name__ == "__main__":
    main()

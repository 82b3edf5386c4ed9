"""FHIR endpoint under load (issues 5 and 21, targets in brackets): a real ``fedprog serve`` process
on loopback over the demo workspace, 20 concurrent clients posting single-patient
``$predict-risk`` requests, ``--runs`` times (a fresh server each; median and range reported).

* the server's CPU per request, from its own process times and its workers' [≤ 3 ms]: the figure
  to track, stable where wall-clock latency moves with the machine's other load;
* throughput [≥ 200 requests/s] and latency p50 / p95 / p99 [p95 ≤ 50 ms at 200 requests/s, open
  loop]; an open loop that did not keep its schedule is reported as starved, not as a latency;
* the first request after start against the median of later ones [as fast];
* one 1 000-patient ``batch`` Bundle [≤ 1 s].

``--profile`` runs one worker under cProfile instead and prints where its CPU goes, by bucket.
Every request writes its RiskAssessment and AuditEvent durably (SQLite, synchronous=FULL),
as in production. Usage: ``python benchmarks/fhir_load.py [--workers 2] [--runs 3] [--clients 20]
[--seconds 15] [--workspace DIR] [--profile]`` (the demo workspace is created once in DIR and reused).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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
    """``n`` distinct admissible patients (pnodes, tumour size and age varied inside the model's ranges)."""
    rng = np.random.default_rng(20261129)
    nodes = next(s for s in model_inputs if s.name == "pnodes")
    top = int(nodes.max) if nodes.max is not None else 19
    out = []
    for i in range(n):
        values = {**DEMO_PATIENT, "tsize": float(rng.integers(5, 60)),
                  "pnodes": int(rng.integers(1, top + 1)), "age": float(rng.integers(30, 80))}
        out.append(parameters(patient_bundle(model_inputs, values, patient_id=f"bench-{i}")))
    return out


# ------------------------------------------------------------------ profile
#: where a request's CPU goes: (bucket, functions whose inclusive CPU it is, functions nested inside
#: them that belong to another bucket). Functions are (file suffix, name); the rest of the server's
#: CPU is the HTTP stack (uvicorn, Starlette/FastAPI routing and dependencies, our middleware).
BUCKETS: list[tuple[str, list[tuple[str, str]], list[tuple[str, str]]]] = [
    ("input validation (compiled shapes, else fhir.resources)", [("device/fhir/inputs.py", "_entries")], []),
    ("extraction: units, envelope, newest observation", [("device/fhir/inputs.py", "extract")],
     [("device/fhir/inputs.py", "_entries")]),
    ("scoring (risks, intervals, contributions)", [("device/scoring.py", "score")], []),
    ("RiskAssessment built", [("device/fhir/resources.py", "risk_assessment")], []),
    ("output validation (RiskAssessment check)", [("device/fhir/resources.py", "check_risk_assessment")], []),
    ("token verification (ES256 JWT, cache, deny-list)", [("device/fhir/auth.py", "verify")], []),
    ("AuditEvent built, rows serialised", [("device/fhir/audit.py", "audit_event"),
                                           ("device/fhir/store.py", "_row")], []),
    ("SQLite commit (writer thread)", [("device/fhir/store.py", "_commit")], []),
    ("JSON parse and response render",
     [("device/fhir/http.py", "render"), ("~", "<built-in method orjson.loads>")], []),
]


def _serve_profiled(stats_path: str, workspace: str, port: int) -> None:
    """Run ``fedprog serve``'s app in this process (one worker, batches in-process) with cProfile on
    every thread, timed by each thread's own CPU clock (``time.thread_time``), so the profile counts
    CPU, not waiting; the merged profile is written to ``stats_path`` when the server stops."""
    import cProfile
    import gc
    import pstats
    import threading

    import uvicorn

    from fedprog.serve_cmd import build_app

    profiles: list[cProfile.Profile] = []

    def start(*_: Any) -> None:  # the first profile event of a new thread: give it its own profiler
        prof = cProfile.Profile(time.thread_time)
        profiles.append(prof)
        prof.enable()

    threading.setprofile(start)  # before the app starts its threads (the store's writer)
    app = build_app(Path(workspace), base_url=f"http://127.0.0.1:{port}/fhir", batch_workers=0)
    gc.freeze()
    # uvicorn re-raises SIGTERM after its graceful shutdown, to the handler found before it started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main_prof = cProfile.Profile(time.thread_time)
    main_prof.enable()
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    finally:
        main_prof.disable()
        threading.setprofile(None)
        stats = pstats.Stats(main_prof)
        for prof in list(profiles):  # calls completed so far; disabling a thread's profiler from another
            prof.snapshot_stats()  # thread would close its pending calls on the wrong thread's clock
            stats.add(_Snapshot(prof.stats))  # type: ignore[arg-type]
        stats.dump_stats(stats_path)


@dataclass
class _Snapshot:
    """A profile already taken, as :class:`pstats.Stats` reads one."""

    stats: dict[Any, Any]

    def create_stats(self) -> None:
        pass


def profile_buckets(stats_path: str) -> list[tuple[str, float]]:
    """Shares of the server's profiled CPU per :data:`BUCKETS` bucket (the remainder last)."""
    import pstats

    # pstats keeps {(file, line, name): (primitive calls, calls, own time, inclusive time, callers)}
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = \
        pstats.Stats(stats_path).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())

    def inclusive(funcs: list[tuple[str, str]]) -> float:
        return sum(v[3] for (file, _, name), v in raw.items() for suffix, fn in funcs
                   if name == fn and file.endswith(suffix))

    out = [(label, (inclusive(funcs) - inclusive(nested)) / total) for label, funcs, nested in BUCKETS]
    out.append(("HTTP stack: uvicorn, Starlette/FastAPI routing, dependencies, middleware, event loop",
                1.0 - sum(share for _, share in out)))
    return out


#: an open loop that achieved less than this share of its target rate starved: its latency is not reported
STARVED = 0.97


@dataclass
class Setup:
    """What every run shares: the workspace, the token's headers and the request bodies."""

    args: argparse.Namespace
    ws: Path
    headers: dict[str, str]
    bodies: list[bytes]
    batch: bytes
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"


def setup(args: argparse.Namespace) -> Setup:
    ws = args.workspace or Path(tempfile.mkdtemp(prefix="fhir-bench-")) / "ws"
    if not (ws / "workspace.json").exists():
        fedprog("demo", "--workspace", str(ws))
    shown = fedprog("model", "show", "gbsg2-recurrence", "--json", "--workspace", str(ws))
    model = load_model(json.loads(shown))
    port = free_port()
    token = fedprog("token", "--workspace", str(ws), "--audience", f"http://127.0.0.1:{port}/fhir",
                    "--scope", "user/RiskAssessment.c").strip()
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": r, "request": {"method": "POST", "url": "Patient/$predict-risk"}}
        for r in requests(model.inputs, 1000)]}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    bodies = [json.dumps(r).encode() for r in requests(model.inputs, 200)]
    return Setup(args, ws, headers, bodies, json.dumps(batch).encode(), port)


def one_run(su: Setup) -> dict[str, float | None]:
    """One fresh server: first requests, the 1 000-patient batch, the closed loop, the open loop."""
    args = su.args
    cmd = [sys.executable, "-m", "fedprog", "serve", "--workspace", str(su.ws), "--port", str(su.port),
           "--workers", str(args.workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out: dict[str, float | None] = {}
    try:
        out["ready (s)"] = wait_ready(su.base, proc)
        with httpx.Client(base_url=su.base, headers=su.headers, timeout=60) as client:
            firsts = []
            for body in su.bodies[:21]:
                t = time.perf_counter()
                assert client.post("/Patient/$predict-risk", content=body).status_code == 200
                firsts.append(time.perf_counter() - t)
            t, cpu0 = time.perf_counter(), tree_cpu(proc.pid)
            resp = client.post(su.base, content=su.batch)
            out["1 000-patient batch (s)"] = time.perf_counter() - t
            out["1 000-patient batch: server CPU (s)"] = tree_cpu(proc.pid) - cpu0
            if resp.status_code != 200:
                raise SystemExit(f"batch failed: {resp.status_code} {resp.text[:300]}")
            entries = resp.json()["entry"]
            out["batch entries scored"] = sum(e["response"]["status"] == "200 OK" for e in entries)
        out["first request after start (ms)"] = firsts[0] * 1e3
        out["median of the next 20 (ms)"] = float(np.median(firsts[1:])) * 1e3
        for label, rate in (("closed loop", None), (f"open loop at {args.rate:g}/s", args.rate)):
            cpu0 = tree_cpu(proc.pid)
            lat, errors, wall = asyncio.run(load(su.base, su.headers, su.bodies, args.clients, args.seconds,
                                                 rate))
            cpu = (tree_cpu(proc.pid) - cpu0) / len(lat)
            out[f"{label}: server CPU per request (ms, all workers)"] = cpu * 1e3
            achieved = len(lat) / wall
            out[f"{label}: requests/s"] = achieved
            out[f"{label}: errors"] = errors
            starved = rate is not None and achieved < STARVED * rate
            for q, v in zip((50, 95, 99), np.percentile(np.array(lat) * 1e3, [50, 95, 99]), strict=True):
                out[f"{label}: latency p{q} (ms)"] = None if starved else float(v)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def profile(su: Setup) -> None:
    """``--profile``: the server (one worker) under cProfile on every thread for one closed loop; where
    its CPU goes, by bucket (the profiler's own cost inflates the absolute figure, not the shares)."""
    stats = str(Path(tempfile.mkdtemp(prefix="fhir-prof-")) / "server.pstats")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import fhir_load; "
            "fhir_load._serve_profiled(sys.argv[2], sys.argv[3], int(sys.argv[4]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(Path(__file__).parent), stats, str(su.ws),
                             str(su.port)])
    try:
        wait_ready(su.base, proc)
        cpu0 = cpu_seconds(proc.pid)
        lat, errors, _ = asyncio.run(load(su.base, su.headers, su.bodies, su.args.clients, su.args.seconds))
        cpu = (cpu_seconds(proc.pid) - cpu0) / len(lat) * 1e3
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    print(f"profile: {len(lat)} single-patient $predict-risk ({errors} errors), one worker under cProfile "
          f"(per-thread CPU clocks): {cpu:.2f} ms CPU per request with the profiler's overhead")
    for label, share in profile_buckets(stats):
        print(f"{share * 100:6.1f}%  {label}")
    print(f"(pstats file: {stats})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=1, help="fedprog serve --workers")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop request rate (per second)")
    parser.add_argument("--runs", type=int, default=3, help="fresh servers measured (median and range)")
    parser.add_argument("--profile", action="store_true", help="where the CPU goes (cProfile), then exit")
    args = parser.parse_args()
    su = setup(args)
    if args.profile:
        profile(su)
        return
    load0 = os.getloadavg()[0]
    runs = [one_run(su) for _ in range(args.runs)]
    report(args, runs, load0, os.getloadavg()[0])


TARGETS = {"closed loop: requests/s": 200.0, "1 000-patient batch (s)": 1.0,
           "closed loop: server CPU per request (ms, all workers)": 3.0}


def report(args: argparse.Namespace, runs: list[dict[str, float | None]], load0: float, load1: float) -> None:
    print(f"fedprog FHIR $predict-risk, real server on loopback ({args.workers} worker process(es)), "
          f"{args.clients} clients, {args.seconds:g} s per loop, {len(runs)} runs (fresh server each), "
          f"{os.cpu_count()} cores shared by server and clients; load average {load0:.2f} -> {load1:.2f}")
    print(f"{'measure':<58}{'median':>9}{'range':>20}{'target':>8}")
    for name in runs[0]:
        values = [v for r in runs if (v := r[name]) is not None]
        target = TARGETS.get(name)
        shown = f"{target:g}" if target is not None else ""
        if not values:
            print(f"{name:<58}{'starved':>9}{'':>20}{shown:>8}")
            continue
        median = float(np.median(values))
        spread = f"{min(values):.2f}-{max(values):.2f}"
        spread += f" ({len(values)} runs)" if len(values) < len(runs) else ""
        print(f"{name:<58}{median:>9.2f}{spread:>20}{shown:>8}")
    rate_key = f"open loop at {args.rate:g}/s: requests/s"
    starved = [r[rate_key] for r in runs if r.get(f"open loop at {args.rate:g}/s: latency p95 (ms)") is None]
    if starved:
        print(f"open loop STARVED in {len(starved)} of {len(runs)} runs (achieved "
              f"{', '.join(f'{x:.0f}' for x in starved if x is not None)}/s of {args.rate:g}/s): the "
              "schedule was not kept on the shared cores, so those latencies are not reported")
    print("server CPU per request: user+system time of the server and its workers (/proc), over the loop's "
          "requests; the figure to track (wall-clock latency moves with the machine's other load)")


if __name__ == "__main__":
    main()

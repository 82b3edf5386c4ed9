"""Crash durability of the FHIR endpoint: a burst of ``$predict-risk`` requests, ``kill -9`` of the
server mid-burst, a restart, and a check of everything the server had acknowledged.

For each trial: a real ``fedprog serve`` process on loopback over the demo workspace; ``--clients``
threads post single-patient requests until the server dies; SIGKILL (no shutdown, no flush)
after a random delay in ``--kill-after``; then a fresh server on the same workspace. A request is
*acknowledged* when it got 200 with a ``Location``. After the restart:

* **lost**: an acknowledged RiskAssessment that ``GET Location`` no longer finds (404);
* **corrupt**: one found with a different body than the one acknowledged, or a store that fails
  SQLite's ``PRAGMA integrity_check``;
* **audit lost**: fewer new AuditEvents in the store (read from the file after the kill, before the
  restart) than acknowledged requests (every request is audited in the same transaction as its
  RiskAssessment, before the response starts).

Usage: ``python benchmarks/kill_trials.py [--trials 10] [--clients 8] [--kill-after 0.3 1.5]
[--workspace DIR]``. Prints one line per trial and the totals.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fhir_load import fedprog, free_port, requests, wait_ready  # noqa: E402

from device.model import load_model  # noqa: E402


def start(ws: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "fedprog", "serve", "--workspace", str(ws), "--port", str(port)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _kill(proc: subprocess.Popen[bytes], stop: threading.Event) -> None:
    """SIGKILL: no shutdown handler, no flush, as a power cut or the OOM killer would."""
    os.kill(proc.pid, signal.SIGKILL)
    stop.set()


def burst(base: str, headers: dict[str, str], bodies: list[bytes], clients: int,
          stop: threading.Event) -> list[tuple[str, dict[str, object]]]:
    """Post until ``stop`` or the server dies; the acknowledged (Location, RiskAssessment) pairs."""
    acked: list[tuple[str, dict[str, object]]] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=10) as http:
            i = k
            while not stop.is_set():
                try:
                    resp = http.post("/Patient/$predict-risk", content=bodies[i % len(bodies)])
                except httpx.HTTPError:
                    return  # the server is gone: what it acknowledged before is what counts
                if resp.status_code == 200 and "location" in resp.headers:
                    with lock:
                        acked.append((resp.headers["location"], resp.json()))
                i += clients

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return acked


def audited(ws: Path) -> int:
    """AuditEvents in the store file (read directly: the count must not include the checks' own)."""
    db = sqlite3.connect(ws / "fhir.sqlite")
    try:
        return int(db.execute("SELECT COUNT(*) FROM resources WHERE type = 'AuditEvent'").fetchone()[0])
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--kill-after", type=float, nargs=2, default=(0.3, 1.5), metavar=("MIN", "MAX"))
    parser.add_argument("--workspace", type=Path, default=None)
    args = parser.parse_args()
    ws = args.workspace or Path(tempfile.mkdtemp(prefix="kill-trials-")) / "ws"
    if not (ws / "workspace.json").exists():
        fedprog("demo", "--workspace", str(ws))
    model = load_model(json.loads(fedprog("model", "show", "gbsg2-recurrence", "--workspace", str(ws))))
    bodies = [json.dumps(r).encode() for r in requests(model.inputs, 200)]
    rng = random.Random()
    totals = {"acknowledged": 0, "lost": 0, "corrupt": 0, "audit lost": 0}
    print(f"{'trial':>5} {'killed after':>12} {'acknowledged':>12} {'lost':>5} {'corrupt':>7} "
          f"{'audit lost':>10}")
    for trial in range(1, args.trials + 1):
        port = free_port()
        base = f"http://127.0.0.1:{port}/fhir"
        scope = "user/RiskAssessment.c user/RiskAssessment.r"
        token = fedprog("token", "--workspace", str(ws), "--audience", base, "--scope", scope).strip()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        proc = start(ws, port)
        wait_ready(base, proc)
        audit_before = audited(ws)
        stop = threading.Event()
        delay = rng.uniform(*args.kill_after)
        killer = threading.Timer(delay, _kill, args=(proc, stop))
        killer.start()
        acked = burst(base, headers, bodies, args.clients, stop)
        killer.join()
        proc.wait(timeout=30)
        audit_lost = max(0, len(acked) - (audited(ws) - audit_before))
        proc = start(ws, port)
        try:
            wait_ready(base, proc)
            lost = corrupt = 0
            with httpx.Client(headers=headers, timeout=30) as http:
                for location, body in acked:
                    resp = http.get(location)
                    if resp.status_code == 404:
                        lost += 1
                    elif resp.status_code != 200 or resp.json() != body:
                        corrupt += 1
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        db = sqlite3.connect(ws / "fhir.sqlite")
        corrupt += db.execute("PRAGMA integrity_check").fetchone()[0] != "ok"
        db.close()
        for name, value in (("acknowledged", len(acked)), ("lost", lost), ("corrupt", corrupt),
                            ("audit lost", audit_lost)):
            totals[name] += value
        print(f"{trial:>5} {delay:>11.2f}s {len(acked):>12} {lost:>5} {corrupt:>7} {audit_lost:>10}")
    print(f"total: {totals['acknowledged']} acknowledged, {totals['lost']} lost, {totals['corrupt']} "
          f"corrupt, {totals['audit lost']} audit events missing, over {args.trials} kill -9 trials")


if __name__ == "__main__":
    main()

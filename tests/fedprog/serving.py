"""A real ``fedprog serve`` on a free loopback port, as a user starts it (shared by the tests that
need the server as a separate process: the FHIR endpoint, the risk page in a browser)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.fedprog.test_cli import run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token(ws: Path, base: str, scope: str, *extra: str) -> str:
    res = run("token", "--workspace", ws, "--audience", base, "--scope", scope, *extra)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@contextmanager
def serving(ws: Path, log: Path, *extra: str) -> Iterator[str]:
    """``fedprog serve --workspace ws [extra…]`` until the block ends; yields the FHIR base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    cmd = [sys.executable, "-m", "fedprog", "serve", "--workspace", str(ws), "--port", str(port),
           "--base-url", base, *extra]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "fedprog serve did not answer within 60 s"
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)

"""Crash safety: SIGKILL a process appending to the log at random moments, many times.

After every kill the log must verify (no corruption), hold every entry whose append was
acknowledged (printed after commit), and its checkpoints must still be consistent.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ledger.checkpoint import NoteSigner
from ledger.log import Ledger
from ledger.verify import verify_ledger

pytestmark = pytest.mark.req("SRS-LEDG-002")

SEED = bytes(range(32))
APPENDER = textwrap.dedent("""
    import sys
    from ledger.checkpoint import NoteSigner
    from ledger.log import Ledger
    log = Ledger(sys.argv[1], signer=NoteSigner.from_seed("fedprog.test/crash", bytes(range(32))),
                 origin="fedprog.test/crash")
    while True:
        n = log.size
        log.append("consent", {"n": n, "pad": "x" * (n % 50)})
        print(n, flush=True)              # acknowledged: committed before this line
        if n % 7 == 0:
            log.checkpoint()
""")


def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    script = tmp_path / "appender.py"
    script.write_text(APPENDER)
    rng = random.Random(20261129)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    acknowledged = -1
    for _ in range(15):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE,
                                text=True, env=env)
        time.sleep(rng.uniform(0.3, 1.0))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        acks = [int(x) for x in out.split()]
        if acks:
            acknowledged = max(acknowledged, acks[-1])
        log = Ledger(path)
        report = verify_ledger(log)
        assert report.ok, report.problems
        assert log.size >= acknowledged + 1
        assert [body["n"] for _, _, body in log.entries()] == list(range(log.size))
        log.close()
    assert acknowledged > 30  # the appender really ran between kills
    final = Ledger(path, signer=NoteSigner.from_seed("fedprog.test/crash", SEED))
    final.checkpoint()  # still consistent with every checkpoint signed before the crashes
    assert verify_ledger(final).ok

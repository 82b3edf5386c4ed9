"""The README's "Your own study" walk, run exactly as written: three hospitals' CSV exports (one
``;``-separated with decimal commas in Windows-1252, one tab-separated), one with FHIR consent and two
under a declared legal basis, to a served, validated model that returns a RiskAssessment over HTTP."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- own-study-walk -->"


def readme_walk() -> str:
    """The bash block that follows the walk's marker in README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert MARKER in text, "README.md lost its 'Your own study' walk"
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARKER):], re.S)
    assert block is not None
    return block.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def set_variable(script: str, name: str, value: str) -> str:
    """The walk with the first assignment of ``name`` replaced (where the reader would type their own)."""
    new, n = re.subn(rf"^{name}=\S+", f"{name}={value}", script, count=1, flags=re.M)
    assert n == 1, f"the walk no longer sets {name}"
    return new


@pytest.mark.req("SRS-CLI-004", "SRS-CONS-011", "SRS-PRIV-024", "SRS-DATA-001")
@pytest.mark.skipif(shutil.which("curl") is None, reason="the walk scores with curl, which is not installed")
def test_the_readme_walk_reaches_a_served_validated_model(tmp_path: Path) -> None:
    workspace = tmp_path / "my-study"
    script = readme_walk()
    script = set_variable(script, "F", str(Path(sys.executable).parent / "fedprog"))
    script = set_variable(script, "W", str(workspace))
    script = set_variable(script, "PORT", str(free_port()))
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("FEDPROG_WORKSPACE", None)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # every step said what it did
    out = done.stdout
    assert "hospital-a added: 1342 patients" in out and "30 refused" in out
    assert "hospital-b added: 1044 patients" in out and "legal basis: GDPR Art. 9(2)(j)" in out
    assert "registered rotterdam-os@1 as a candidate" in out
    assert "rotterdam-os@1: validated" in out or "PASS" in out
    # the last line is the server's answer: a RiskAssessment of the released model for the example patient
    answer = json.loads(out.strip().splitlines()[-1][out.strip().splitlines()[-1].index("{"):])
    assert answer["resourceType"] == "RiskAssessment", answer
    assert answer["subject"]["reference"] == "Patient/example-1"
    risks = [p["probabilityDecimal"] for p in answer["prediction"]]
    assert len(risks) == 2 and 0 < risks[0] < risks[1] < 1  # 5- and 10-year risks, increasing

    # the workspace: released, anchored, consent of the three kinds recorded, the ledger verifies
    def fedprog(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fedprog", *args, "--workspace", str(workspace)],
                              capture_output=True, text=True, timeout=300, env=env)

    models = json.loads(fedprog("model", "list", "--json").stdout)["models"]
    assert [(m["model_id"], m["version"], m["status"]) for m in models] == [("rotterdam-os", "1", "released")]
    assert fedprog("ledger", "verify").returncode == 0
    consent = json.loads(fedprog("consent", "status", "--json").stdout)["patients"]
    by_site = {s: sum(1 for p in consent if p["site"] == s and p["status"] == "active")
               for s in ("hospital-a", "hospital-b", "hospital-c")}
    assert by_site == {"hospital-a": 1312, "hospital-b": 1044, "hospital-c": 596}
    artifact = json.loads(fedprog("model", "show", "rotterdam-os@1", "--json").stdout)
    assert artifact["training"]["time_grid"] == "year"
    assert "censored at the start of their year" in artifact["training"]["exact_on"]
    registry = workspace / "sites" / "hospital-b" / "consent.sqlite"
    assert registry.is_file()

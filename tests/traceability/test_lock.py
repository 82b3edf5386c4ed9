"""The locked, hash-checked configuration: requirements/*.lock and `make install` (IEC 62304 §8.1.2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from traceability.installed import DEV_LOCK, ROOT, RUNTIME_LOCK, read_lock

pytestmark = pytest.mark.req("SRS-SOUP-003")
LOCKS = (RUNTIME_LOCK, DEV_LOCK)


def _recipe(makefile: str, target: str) -> str:
    """The rule line and recipe of ``target`` in a Makefile's text."""
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert match, f"no rule for {target}"
    return match.group(0)


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_requirement_is_pinned_with_hashes_and_no_index_is_named(lock: Path) -> None:
    text = lock.read_text(encoding="utf-8")
    options = [ln for ln in text.splitlines() if ln.startswith("-")]
    assert options == []  # no --index-url, --extra-index-url, --find-links, -e
    assert "://" not in text and "/opt/" not in text and "/tmp/" not in text
    pins = read_lock(lock)  # ValueError for a requirement without == or without a hash
    assert pins and all(pin.hashes for pin in pins.values())
    assert "fedprog" not in pins  # installed from the checkout, without dependencies
    assert "# by the following command:\n#\n#    make lock\n" in text


def test_the_dev_lock_holds_the_runtime_pins_unchanged() -> None:
    runtime, dev = read_lock(RUNTIME_LOCK), read_lock(DEV_LOCK)
    differ = {n for n, p in runtime.items()
              if n not in dev or (dev[n].version, dev[n].hashes) != (p.version, p.hashes)}
    assert differ == set()  # the same version with the same hashes
    assert {"pytest", "reportlab", "cyclonedx-python-lib"} <= set(dev) - set(runtime)


def test_make_install_installs_the_lock_with_hashes_then_fedprog_without_dependencies() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    stamp = _recipe(makefile, "$(STAMP)")
    assert re.search(r"^\$\(STAMP\): pyproject\.toml \$\(LOCKS\)$", stamp, re.M)
    assert "LOCKS  := requirements/runtime.lock requirements/dev.lock" in makefile
    installs = [ln.strip() for ln in stamp.splitlines() if "pip install" in ln]
    assert installs == ["$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock",
                        "$(BIN)/python -m pip install --quiet --no-deps -e ."]
    lock = _recipe(makefile, "lock")
    assert "--extra flower -o requirements/runtime.lock" in lock
    assert "--extra dev -c requirements/runtime.lock -o requirements/dev.lock" in lock


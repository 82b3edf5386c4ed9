"""Secret key files: created once with owner-only permissions, then read back."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def secret_file(path: Path, nbytes: int = 32) -> bytes:
    """The ``nbytes`` random secret in ``path``, created (mode 0600, exclusively) on first use."""
    path = Path(path)
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret)
    return secret

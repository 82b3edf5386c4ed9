"""A site's spent budget per approved study: rounds answered and evaluations given.

Adversary: a malicious coordinator that asks many questions (many β along a line, many
evaluations) and counts on the site forgetting — a Flower ClientApp lives for one message, a
workspace site for one command. With a file the budget survives both: it is the site's own record,
kept at the hospital (``sites/<name>/budget.json`` in a workspace), replaced atomically on each spend.
"""

from __future__ import annotations

import json
from pathlib import Path

from ledger.files import write_json_atomic


class Budget:
    """Counts per study (its SHA-256): ``rounds`` and ``evaluations``; in memory, or in ``path``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._spent: dict[str, dict[str, int]] = self._load()

    def _load(self) -> dict[str, dict[str, int]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{self.path}: not a budget file; a site refuses to answer without it") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{self.path}: not a budget file; a site refuses to answer without it")
        return {str(k): {str(a): int(b) for a, b in v.items()} for k, v in raw.items() if isinstance(v, dict)}

    def spent(self, study: str, what: str) -> int:
        return self._spent.get(study, {}).get(what, 0)

    def spend(self, study: str, what: str, limit: float) -> bool:
        """Count one ``what`` for ``study`` if fewer than ``limit`` were spent; whether it was."""
        done = self.spent(study, what)
        if done >= limit:
            return False
        self._spent.setdefault(study, {})[what] = done + 1
        if self.path is not None:
            write_json_atomic(self.path, self._spent)
        return True

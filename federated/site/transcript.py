"""A site's outbound transcript: one JSON line per message it sent, so auditors can see what left it.

Each line holds the message's form (round, kind, array shapes, size), its SHA-256, whether any
field travelled unmasked, and the message itself, so that :mod:`federated.disclosure.audit` can
re-check the masking on the bytes rather than trust a flag.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from federated.protocol.arrays import WireArray
from federated.protocol.messages import Reply


class Transcript:
    """``<folder>/<site>.jsonl``, started afresh unless ``append``; ``folder=None`` records nothing."""

    def __init__(self, folder: Path | None, site: str, append: bool = False) -> None:
        self.path = Path(folder) / f"{site}.jsonl" if folder else None
        self._started = append

    def record(self, reply: Reply, raw: bytes) -> None:
        """Append the line for ``reply``, sent as ``raw``."""
        if self.path is None:
            return
        shapes: dict[str, object] = {}
        for key, value in reply:
            if isinstance(value, WireArray):
                shapes[key] = list(value.shape)
            elif isinstance(value, list) and value and isinstance(value[0], WireArray):
                shapes[key] = [list(v.shape) for v in value]
        plaintext = reply.plaintext_fields()
        line = {"round": reply.round, "kind": reply.kind, "bytes": len(raw), "shapes": shapes,
                "sha256": hashlib.sha256(raw).hexdigest(), "masked": not plaintext,
                "plaintext": plaintext, "message": json.loads(raw)}
        mode = "a" if self._started else "w"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._started = True
        with self.path.open(mode, encoding="utf-8") as fh:
            fh.write(json.dumps(line, sort_keys=True) + "\n")

"""Audit of the outbound transcripts sites write (``--transcript-dir``).

Three rules, checked from what the sites themselves recorded:

1. **masked** — every message that left a site carried its statistics masked (no
   ``plaintext`` field; error replies, which carry no statistics, are exempt);
2. **masks applied** — checked on the bytes, not the flag: each line holds the message itself,
   and a masked array whose ring elements decode to in-range fixed-point values (as an unmasked
   encoding does; a masked element does so with probability about 2⁻¹⁰) was not masked. Adversary:
   a coordinator that got a site to "mask" with a peer set of itself, or a site that lies in its
   ``masked`` flag;
3. **size independence** — in every round, every site sent the same kind of message with
   the same shapes and the same number of bytes. Sites differ in their number of patients,
   so any payload whose size or shape depends on it shows up as a difference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from federated.exceptions import DataError


class TranscriptLine(BaseModel):
    """One message a site sent (DESIGN.md, "Outbound transcript")."""

    model_config = ConfigDict(extra="allow", frozen=True)

    round: int
    kind: str
    bytes: int
    shapes: dict[str, object]
    sha256: str
    masked: bool
    plaintext: list[str] = []


@dataclass
class AuditReport:
    """Outcome of :func:`audit_transcripts`; ``ok`` when no problem was found."""

    sites: list[str]
    messages: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "sites": self.sites, "messages": self.messages, "problems": self.problems}


def read_transcripts(folder: Path) -> dict[str, list[TranscriptLine]]:
    """``<site>.jsonl`` files of ``folder``, by site name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    out: dict[str, list[TranscriptLine]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        lines = []
        for no, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                lines.append(TranscriptLine.model_validate(json.loads(text)))
            except (json.JSONDecodeError, ValidationError) as exc:
                raise DataError(f"{path}:{no}: not a transcript line ({str(exc).splitlines()[0]})") from None
        out[path.stem] = lines
    if not out:
        raise DataError(f"{folder}: no <site>.jsonl transcripts")
    return out


#: an unmasked fixed-point element has |hi| < 2**52 per summed term; a masked one is uniform
_IN_RANGE = 2**53


def unmasked_fields(message: dict[str, object]) -> list[str]:
    """Names of ``r128`` arrays in ``message`` that decode to in-range values: masks not applied."""
    from federated.protocol.arrays import WireArray

    out = []
    for name, value in sorted(message.items()):
        if isinstance(value, dict) and value.get("dtype") == "r128":
            hi = WireArray.model_validate(value).ring().hi.ravel().view(np.int64)
            if hi.size >= 4 and float(np.mean(np.abs(hi.astype(np.float64)) < _IN_RANGE)) > 0.5:
                out.append(name)
    return out


def audit_transcripts(folder: Path) -> AuditReport:
    """Check the masked, masks-applied and size-independence rules over every site's transcript."""
    logs = read_transcripts(folder)
    report = AuditReport(sites=sorted(logs), messages=sum(len(v) for v in logs.values()))
    if len(logs) < 2:
        report.problems.append("size independence cannot be checked from one site's transcript; "
                               "audit the transcripts of at least two sites")
    for site, lines in logs.items():
        for line in lines:
            if line.kind != "error" and (not line.masked or line.plaintext):
                fields = ", ".join(line.plaintext) or "(unspecified)"
                report.problems.append(f"site {site!r} round {line.round} {line.kind!r}: sent unmasked "
                                       f"{fields}")
            message = getattr(line, "message", None)
            bare = unmasked_fields(message) if isinstance(message, dict) else []
            if bare:
                report.problems.append(f"site {site!r} round {line.round} {line.kind!r}: "
                                       f"{', '.join(bare)} marked masked but not masked (decodes in range)")
    by_round: dict[tuple[int, str], dict[str, TranscriptLine]] = {}
    for site, lines in logs.items():
        for line in lines:
            if line.kind != "error":
                by_round.setdefault((line.round, line.kind), {})[site] = line
    for (rnd, kind), lines_by_site in sorted(by_round.items()):
        forms = {(json.dumps(x.shapes, sort_keys=True), x.bytes) for x in lines_by_site.values()}
        if len(forms) > 1:
            detail = "; ".join(f"{s}: {x.bytes} bytes, shapes {x.shapes}"
                               for s, x in sorted(lines_by_site.items()))
            report.problems.append(f"round {rnd} {kind!r}: payload size or shape differs between "
                                   f"sites, so it depends on their data ({detail})")
    return report

"""The demo's second model (age as a restricted cubic spline, hormone therapy × menopause), trained
once per session by the federated pipeline, as the device receives it."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from typing import Any


@functools.cache
def _trained() -> str:
    from federated.analyses.runner import train
    from federated.demo_study import spline_study, write_demo_study

    with tempfile.TemporaryDirectory() as folder:
        return json.dumps(train(spline_study(write_demo_study(Path(folder))))[1])


def spline_artifact() -> dict[str, Any]:
    """A fresh copy of the sealed artifact of the demo's spline model."""
    art: dict[str, Any] = json.loads(_trained())
    return art

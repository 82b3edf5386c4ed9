"""The server's consistency check of the ledger it serves from (the Tessera/Trillian habit).

The model in service is chosen by replaying the ledger (:class:`device.fhir.service.ReleasedModel`
over :class:`device.registry.ModelRegistry`). The adversary is someone with write access to
``ledger.sqlite`` (an insider, or malware on the coordinator host) who is not the witnesses: by
editing a withdrawal's ``kind`` cell they could otherwise put a withdrawn model back in service
(issue 16, H2). So the server checks the ledger — every leaf recomputed from its entry, the
root recomputed from the leaves and compared with the latest checkpoint a quorum of pinned
witnesses cosigned and with each site witness's own state (:func:`ledger.trusted.read_verified`)
— on start, whenever the file changes (a cheap change mark: size and SQLite ``data_version``),
and in full every ``interval`` seconds from a background thread (an edit that bypasses SQLite's
change counter is caught there). While the ledger fails, every request that needs the model is
answered 503 with an OperationOutcome naming the reason; the server serves again once the
ledger passes (e.g. restored from a copy the witnesses cosigned).
"""

from __future__ import annotations

import logging
import threading

from ledger.log import LedgerError
from ledger.trusted import UntrustedLedger, read_verified

from ..model import PrognosticModel
from ..registry import ModelRegistry
from .errors import FhirError
from .service import ReleasedModel

log = logging.getLogger("fedprog.fhir")

#: seconds between full re-verifications of the ledger in a running server
CHECK_INTERVAL = 60.0


class LedgerGuard:
    """The verdict on a registry's ledger: None while it passes, else the reason it fails."""

    def __init__(self, registry: ModelRegistry, interval: float | None = CHECK_INTERVAL) -> None:
        self.registry = registry
        self.interval = interval
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._stop = threading.Event()
        self.check(fresh=True)  # on start
        if interval is not None and interval > 0:
            threading.Thread(target=self._loop, name="fedprog-ledger-check", daemon=True).start()

    def check(self, fresh: bool = False) -> str | None:
        """Check the ledger now (``fresh``: recompute even if nothing seems to have changed)."""
        try:
            read_verified(self.registry.ledger, self.registry.anchors, fresh=fresh)
            reason = None
        except UntrustedLedger as exc:
            more = f" (and {len(exc.problems) - 1} more problems)" if len(exc.problems) > 1 else ""
            reason = exc.problems[0] + more
        except LedgerError as exc:
            reason = str(exc)
        with self._lock:
            if reason != self._reason:
                (log.error if reason else log.warning)("ledger check: %s", reason or "passes again")
            self._reason = reason
        return reason

    @property
    def reason(self) -> str | None:
        """The last verdict (None: the ledger passed)."""
        with self._lock:
            return self._reason

    def _loop(self) -> None:
        assert self.interval is not None
        while not self._stop.wait(self.interval):
            self.check(fresh=True)

    def close(self) -> None:
        """Stop the periodic check."""
        self._stop.set()


class GuardedReleasedModel(ReleasedModel):
    """:class:`ReleasedModel` that serves only from a ledger passing :class:`LedgerGuard`.

    Each request costs one change-mark query while the ledger is unchanged (the verdict is
    cached by it); a change re-verifies the ledger before the registry replays it.
    """

    def __init__(self, registry: ModelRegistry, model_id: str | None = None, *,
                 interval: float | None = CHECK_INTERVAL) -> None:
        super().__init__(registry, model_id)
        self.guard = LedgerGuard(registry, interval)

    def current(self) -> PrognosticModel:
        reason = self.guard.check()
        if reason is not None:
            raise FhirError(503, "processing", "refusing to serve: the ledger fails its consistency check "
                            f"against the witnessed checkpoint: {reason}")
        return super().current()

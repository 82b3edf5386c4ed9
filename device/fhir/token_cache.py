"""Verified bearer tokens remembered until they expire (issue 21): an ES256 signature check and the
claim checks cost ~0.3 ms per request, and a client sends the same token for hours.

Keyed by the SHA-256 of the token (the token itself is not kept). Only what a token *is* is
cached — its signature, claims and scopes, which cannot change — never whether it is *allowed*:
the deny-list is still consulted on every request (:meth:`device.fhir.auth.TokenVerifier.verify`),
so a revocation takes effect on the next request, and an entry is dropped once ``exp`` plus the
leeway has passed, so an expired token goes through the full check again (and is refused there, in
the same words). The cache is bounded; when full, expired entries go first, then the oldest.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .auth import Principal

#: most tokens remembered at once (per server process)
MAX_ENTRIES = 4096


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    #: the instant (seconds since the epoch) after which the token is no longer accepted: ``exp + leeway``
    until: float


class VerifiedTokens:
    """A bounded map from SHA-256(token) to its verified :class:`~device.fhir.auth.Principal`."""

    def __init__(self, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[bytes, _Verified] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def get(self, token: str) -> Principal | None:
        """The principal of a token verified before and not yet expired (None: verify it in full)."""
        key = self.key(token)
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            if self.clock() >= hit.until:  # PyJWT refuses once exp <= now - leeway
                del self._entries[key]
                return None
            return hit.principal

    def put(self, token: str, principal: Principal, until: float) -> None:
        """Remember a token whose signature and claims were just verified, until ``until``."""
        with self._lock:
            if len(self._entries) >= self.max_entries:
                now = self.clock()
                for k in [k for k, v in self._entries.items() if now >= v.until]:
                    del self._entries[k]
                while len(self._entries) >= self.max_entries:
                    del self._entries[next(iter(self._entries))]
            self._entries[self.key(token)] = _Verified(principal, until)

    def __len__(self) -> int:
        return len(self._entries)

"""How messages reach the sites. The engine only needs :class:`Transport`.

The in-process transport still encodes every message to JSON bytes and decodes the
reply, exactly as a network transport (Flower) would, so nothing can pass between
coordinator and site that the wire format does not carry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable


class Endpoint(Protocol):
    """What a transport needs of a site: its name and bytes in, bytes out
    (:class:`federated.site.Site`; the protocol package never imports the site's code)."""

    name: str

    def handle(self, payload: bytes) -> bytes: ...


@runtime_checkable
class Transport(Protocol):
    """Delivers one request to each named site and returns the replies that came in time."""

    @property
    def sites(self) -> Sequence[str]:
        """Names of the sites this transport reaches, in a fixed order."""
        ...

    def exchange(self, payloads: Mapping[str, bytes], timeout: float) -> dict[str, bytes]:
        """Send ``payloads[site]`` to each site; return the replies received within ``timeout``
        seconds. A site missing from the result did not answer in time (or could not be reached)."""
        ...

    def only(self, names: Sequence[str]) -> Transport:
        """The same transport restricted to the sites ``names`` (e.g. all but a held-out site)."""
        ...


def as_transport(sites: Sequence[Endpoint] | Transport, *, parallel: bool = True) -> Transport:
    """``sites`` itself if it is a transport, else an :class:`InProcessTransport` over them."""
    if isinstance(sites, Transport):
        return sites
    return InProcessTransport(list(sites), parallel=parallel)


class InProcessTransport:
    """Sites living in this process, each request on its own daemon thread.

    NumPy releases the GIL in its kernels, so sites compute in parallel on a multi-core
    machine. A site that does not answer within the timeout is left behind (its thread is
    a daemon, so it cannot keep the process alive) and reported missing.
    """

    def __init__(self, sites: Sequence[Endpoint], parallel: bool = True) -> None:
        names = [s.name for s in sites]
        if len(set(names)) != len(names):
            raise ValueError(f"site names must be unique, got {names}")
        self._sites = {s.name: s for s in sites}
        self._parallel = parallel
        #: sites whose handler crashed in the last exchange, with the error (a dropout, not a refusal)
        self.failures: dict[str, str] = {}

    @property
    def sites(self) -> list[str]:
        return list(self._sites)

    def only(self, names: Sequence[str]) -> InProcessTransport:
        return InProcessTransport([self._sites[n] for n in names], parallel=self._parallel)

    def members(self) -> list[Endpoint]:
        """The sites themselves (their operator is this process's user)."""
        return list(self._sites.values())

    def exchange(self, payloads: Mapping[str, bytes], timeout: float) -> dict[str, bytes]:
        replies: dict[str, bytes] = {}
        self.failures = {}
        lock = threading.Lock()
        done = threading.Semaphore(0)

        def run(name: str, payload: bytes) -> None:
            try:
                out = self._sites[name].handle(payload)
            except Exception as exc:  # noqa: BLE001 — a crashed site is a dropout, reported by name
                with lock:
                    self.failures[name] = f"site crashed: {type(exc).__name__}: {exc}"
            else:
                with lock:
                    replies[name] = out
            finally:
                done.release()

        if not self._parallel:
            for name, payload in payloads.items():
                run(name, payload)
            return replies

        for name, payload in payloads.items():
            threading.Thread(target=run, args=(name, payload), daemon=True,
                             name=f"site-{name}").start()
        deadline = time.monotonic() + timeout
        for _ in payloads:
            if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
        with lock:
            return dict(replies)

"""How messages reach the sites. The engine only needs :class:`Transport`.

The in-process transport still encodes every message to JSON bytes and decodes the
reply, exactly as a network transport (Flower) would, so nothing can pass between
coordinator and site that the wire format does not carry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from .site import Site


class Transport(Protocol):
    """Delivers one request to each named site and returns their raw replies."""

    @property
    def sites(self) -> Sequence[str]:
        """Names of the sites this transport reaches, in a fixed order."""
        ...

    def exchange(self, payloads: Mapping[str, bytes], timeout: float) -> dict[str, bytes]:
        """Send ``payloads[site]`` to each site; return each site's reply bytes.

        Raises :class:`~federated.exceptions.SiteError` naming any site that did not
        answer within ``timeout`` seconds.
        """
        ...


class InProcessTransport:
    """Sites living in this process; requests run on a small thread pool.

    NumPy releases the GIL in its kernels, so sites compute in parallel on a multi-core
    machine; in-process there is nothing that can hang, so ``timeout`` is not needed.
    """

    def __init__(self, sites: Sequence[Site], parallel: bool = True) -> None:
        names = [s.name for s in sites]
        if len(set(names)) != len(names):
            raise ValueError(f"site names must be unique, got {names}")
        self._sites = {s.name: s for s in sites}
        self._parallel = parallel and len(sites) > 1

    @property
    def sites(self) -> list[str]:
        return list(self._sites)

    def exchange(self, payloads: Mapping[str, bytes], timeout: float) -> dict[str, bytes]:
        if not self._parallel:
            return {name: self._sites[name].handle(p) for name, p in payloads.items()}
        with ThreadPoolExecutor(max_workers=min(len(payloads), 4)) as pool:
            futures = {name: pool.submit(self._sites[name].handle, p) for name, p in payloads.items()}
            return {name: f.result() for name, f in futures.items()}

"""`Prober`: runs one probe of a service and returns what it found as a `Probe` fact."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Literal, Self

import httpx
from httpx_aiohttp import AiohttpTransport

from hbsm.config.model import ServiceConfig
from hbsm.events import Probe

from ._classify import short
from ._command import probe_command
from ._http import probe_http
from ._outcome import Outcome
from ._tcp import probe_tcp

__all__ = ["Prober", "Transport"]

log = logging.getLogger("hbsm.probes")

Transport = Literal["aiohttp", "httpx"]

_HEADERS = {
    "user-agent": "hbsm-probe",
    # An uncompressed body, please: one compressed anyway is inflated only as far as the
    # bounded read (hbsm.probes._http._Inflate), and only from gzip or deflate.
    "accept-encoding": "identity",
}


def _client(concurrency: int, transport: Transport) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    # httpx's default transport scans its pool per request and queues client-side under
    # concurrency (docs/performance.md); aiohttp's connector does not. "httpx" stays for comparison.
    backend: httpx.AsyncBaseTransport
    if transport == "aiohttp":
        backend = AiohttpTransport(limits=limits, trust_env=False)
    elif transport == "httpx":
        backend = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    else:
        raise ValueError(f"transport must be 'aiohttp' or 'httpx', not {transport!r}")
    # trust_env=False: a probe measures the target, not a proxy named in the environment; and
    # both transports then behave alike. Redirects are answers, not something to follow.
    return httpx.AsyncClient(
        transport=backend, headers=_HEADERS, follow_redirects=False, trust_env=False, timeout=None
    )


def _target(service: ServiceConfig) -> str:
    config = service.probe
    if config.kind == "command":
        return "command " + " ".join(config.argv)
    if config.kind == "tcp":
        return f"tcp {service.url}"
    return f"{config.method} {service.url}"


class Prober:
    """Probes services over one shared HTTP client, at most `concurrency` probes at a time.

    `probe` never raises for trouble with the target: every outcome is a `Probe` fact whose
    `ts` is `clock()` when the result is known and whose `seq` is 0 (the log stamps it).
    """

    def __init__(
        self,
        *,
        concurrency: int = 200,
        transport: Transport = "aiohttp",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.concurrency = concurrency
        self.transport = transport
        self._clock = clock
        self._client = _client(concurrency, transport)
        self._slots = asyncio.Semaphore(concurrency)

    async def probe(self, service: ServiceConfig) -> Probe:
        kind = service.probe.kind
        async with self._slots:
            try:
                if kind == "http":
                    outcome = await probe_http(self._client, service)
                elif kind == "tcp":
                    outcome = await probe_tcp(service)
                elif kind == "command":
                    outcome = await probe_command(service)
                else:
                    outcome = Outcome(False, error="other", detail=f"unknown probe kind {kind!r}")
            except Exception as exc:  # a bug of ours: logged loudly, still never raised
                log.exception("probe of %s failed unexpectedly", service.name)
                outcome = Outcome(False, error="other", detail=short(f"probe crashed: {exc!r}"))
        slow_ms = service.probe.slow_ms
        if outcome.ok and slow_ms is not None and (outcome.latency_ms or 0.0) > slow_ms:
            detail = short(f"{_target(service)}: {outcome.latency_ms:.0f} ms > slow_ms {slow_ms:g}")
            outcome = outcome._replace(ok=False, error="slow", detail=detail)
        return Probe(
            service=service.name,
            ok=outcome.ok,
            # Microseconds are the most a probe's latency means; more digits only fill the log.
            latency_ms=None if outcome.latency_ms is None else round(outcome.latency_ms, 3),
            status=outcome.status,
            error=outcome.error,
            detail=outcome.detail,
            ts=self._clock(),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

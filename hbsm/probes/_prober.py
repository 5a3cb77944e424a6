"""`Prober`: runs one probe of a service and returns what it found as a `Probe` fact."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self

from hbsm.config.model import ServiceConfig
from hbsm.events import Probe

from ._body import PROBE_HEADERS
from ._classify import short
from ._command import probe_command
from ._http import probe_http, probe_lean
from ._lean import TLS_MAX_AGE, LeanClient, LeanRequest, lean_request
from ._outcome import Outcome
from ._tcp import probe_tcp
from ._tls import PeerCert, tls_context

if TYPE_CHECKING:
    import httpx

__all__ = ["TRANSPORTS", "Prober", "Transport"]

log = logging.getLogger("hbsm.probes")

# lean: a plain http:// GET or HEAD on the lean path (hbsm.probes._lean), the rest through httpx
# over aiohttp. aiohttp, httpx: every HTTP probe through httpx on that transport, for comparison.
Transport = Literal["lean", "aiohttp", "httpx"]
TRANSPORTS: tuple[Transport, ...] = ("lean", "aiohttp", "httpx")


def _client(concurrency: int, transport: Transport, ca_file: str | None) -> httpx.AsyncClient:
    # Imported here, on the first probe that needs httpx: a monitor whose probes all take the
    # lean path never loads httpx and aiohttp (their memory and start-up time).
    import httpx
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    # The lean path's trust: the system's store and the service's CA file, if any.
    verify = tls_context(ca_file)
    # httpx's default transport scans its pool per request and queues client-side under
    # concurrency (docs/performance.md); aiohttp's connector does not. "httpx" stays for comparison.
    backend: httpx.AsyncBaseTransport
    if transport in ("lean", "aiohttp"):
        backend = AiohttpTransport(limits=limits, trust_env=False, verify=verify)
    elif transport == "httpx":
        backend = httpx.AsyncHTTPTransport(limits=limits, trust_env=False, verify=verify)
    else:
        raise AssertionError(transport)
    # trust_env=False: a probe measures the target, not a proxy named in the environment; and
    # both transports then behave alike. Redirects are answers, not something to follow.
    return httpx.AsyncClient(
        transport=backend,
        headers=PROBE_HEADERS,
        follow_redirects=False,
        trust_env=False,
        timeout=None,
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
        transport: Transport = "lean",
        clock: Callable[[], float] = time.time,
        tls_max_age: float = TLS_MAX_AGE,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        self.concurrency = concurrency
        self.transport = transport
        self._clock = clock
        # tls_max_age: how long an https connection is kept before a new handshake (which shows
        # a renewed certificate).
        self._lean = LeanClient(max_idle=concurrency, tls_max_age=tls_max_age)
        # Made on the first probe that needs one: one client per CA file (None: the system's).
        self._httpx: dict[str | None, httpx.AsyncClient] = {}
        # Each service's lean request (None: it needs httpx), built once.
        self._requests: dict[
            tuple[str, str, tuple[tuple[str, str], ...], str | None], LeanRequest | None
        ]
        self._requests = {}
        self._slots = asyncio.Semaphore(concurrency)

    def _lean_request(self, service: ServiceConfig) -> LeanRequest | None:
        if self.transport != "lean":
            return None
        config = service.probe
        key = (
            config.method,
            service.url,
            tuple(config.headers.items()) if config.headers else (),
            config.ca_file,
        )
        try:
            return self._requests[key]
        except KeyError:
            if len(self._requests) > 100_000:  # URLs changed by many reloads: start afresh
                self._requests.clear()
            request = lean_request(config.method, service.url, config.headers, config.ca_file)
            self._requests[key] = request
            return request

    async def _probe_http(self, service: ServiceConfig) -> Outcome:
        request = self._lean_request(service)
        if request is not None:
            return await probe_lean(self._lean, request, service)
        ca_file = service.probe.ca_file
        client = self._httpx.get(ca_file)
        if client is None:
            client = self._httpx[ca_file] = _client(self.concurrency, self.transport, ca_file)
        return await probe_http(client, service)

    async def probe(self, service: ServiceConfig) -> Probe:
        return (await self.probe_with_cert(service))[0]

    async def probe_with_cert(self, service: ServiceConfig) -> tuple[Probe, PeerCert | None]:
        """The probe, and the TLS certificate the service presented (https on the lean path;
        None otherwise, or when the connection failed before it was verified)."""
        kind = service.probe.kind
        async with self._slots:
            try:
                if kind == "http":
                    outcome = await self._probe_http(service)
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
        fact = Probe(
            service=service.name,
            ok=outcome.ok,
            # Microseconds are the most a probe's latency means; more digits only fill the log.
            latency_ms=None if outcome.latency_ms is None else round(outcome.latency_ms, 3),
            status=outcome.status,
            error=outcome.error,
            detail=outcome.detail,
            ts=self._clock(),
        )
        return fact, outcome.cert

    async def aclose(self) -> None:
        self._lean.close()
        clients, self._httpx = list(self._httpx.values()), {}
        for client in clients:
            await client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

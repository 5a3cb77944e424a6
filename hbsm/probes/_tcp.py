"""The TCP probe: the target is up when a connection opens."""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

from hbsm.config.model import ServiceConfig

from ._classify import classify, short
from ._outcome import Outcome

__all__ = ["parse_target", "probe_tcp"]


def parse_target(target: str) -> tuple[str, int]:
    """("host", port) from "host:port", "[::1]:port" or "tcp://host:port"; ValueError if not."""
    parts = urlsplit(target if "://" in target else "tcp://" + target)
    if parts.scheme != "tcp" or not parts.hostname:
        raise ValueError(f"not a TCP target (host:port): {target!r}")
    port = parts.port  # raises ValueError when out of range
    if port is None:
        raise ValueError(f"no port in TCP target {target!r}")
    return parts.hostname, port


async def probe_tcp(service: ServiceConfig) -> Outcome:
    try:
        host, port = parse_target(service.url)
    except ValueError as exc:
        return Outcome(False, error="other", detail=short(str(exc)))
    what = f"tcp {short(host, 100)}:{port}"
    started = time.perf_counter()
    try:
        async with asyncio.timeout(service.probe.timeout):
            _, writer = await asyncio.open_connection(host, port)
    except Exception as exc:
        error, reason = classify(exc)
        return Outcome(False, None, None, error, short(f"{what}: {reason}"))
    latency_ms = (time.perf_counter() - started) * 1000.0
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Outcome(True, latency_ms)

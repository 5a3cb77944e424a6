"""The HTTP probe: one request (the lean path, or httpx), a bounded read, the configured checks.

Both paths end in the same judgement (`_judged`, `_failed`): the status, the body checks and the
failure classes do not depend on which one asked.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import msgspec

from hbsm.config.model import ProbeConfig, ServiceConfig

from ._body import BODY_LIMIT, Inflate, inflater
from ._classify import classify, short
from ._lean import LeanClient, LeanRequest, _PartialAnswer
from ._outcome import Outcome

if TYPE_CHECKING:  # httpx is imported only when a probe needs it (hbsm.probes._prober)
    import httpx

__all__ = ["BODY_LIMIT", "json_lookup", "probe_http", "probe_lean"]

_MISSING: Any = object()


def json_lookup(document: Any, path: str) -> Any:
    """The value at a dotted path ("checks.db", "items.0.name"), or _MISSING."""
    current = document
    for key in path.split("."):
        if isinstance(current, dict):
            current = current.get(key, _MISSING)
        elif isinstance(current, list) and key.lstrip("-").isdigit():
            index = int(key)
            current = current[index] if -len(current) <= index < len(current) else _MISSING
        else:
            return _MISSING
        if current is _MISSING:
            return _MISSING
    return current


async def _read_bounded(response: httpx.Response, limit: int) -> tuple[bytes, bool, str | None]:
    """Up to `limit` bytes of the (decoded) body, whether reading stopped before its end, and
    the content encoding left undecoded (None when the body is plain)."""
    decoder = inflater(response.headers.get("content-encoding", ""))
    chunks: list[bytes] = []
    size = 0
    # Raw bytes, decoded here: httpx's own decoding has no bound (see Inflate).
    async for raw in response.aiter_raw():
        chunk = decoder.decode(raw, limit - size) if isinstance(decoder, Inflate) else raw
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            return b"".join(chunks)[:limit], True, None
    return b"".join(chunks), False, decoder if isinstance(decoder, str) else None


def _status_failure(status: int, expected: list[int]) -> tuple[str, str] | None:
    if (status in expected) if expected else (200 <= status < 400):
        return None
    if status >= 500:
        error = "http_5xx"
    elif status >= 400:
        error = "http_4xx"
    else:
        error = "other"
    wanted = f", expected {'/'.join(map(str, expected))}" if expected else ""
    return error, f"HTTP {status}{wanted}"


def _body_failure(
    config: ProbeConfig, body: bytes, truncated: bool, undecoded: str | None
) -> str | None:
    if config.body_contains is None and config.json_field is None:
        return None
    if undecoded is not None:
        return f"body has Content-Encoding {undecoded!r}, which hbsm does not decode"
    where = f" (first {BODY_LIMIT // 1024} KiB)" if truncated else ""
    if config.body_contains is not None and config.body_contains.encode() not in body:
        return f"body{where} does not contain {config.body_contains!r}"
    if config.json_field is None:
        return None
    try:
        document = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        # msgspec raises UnicodeDecodeError for invalid UTF-8 inside a JSON string.
        return f"body{where} is not JSON"
    value = json_lookup(document, config.json_field)
    if value is _MISSING:
        return f"JSON has no field {config.json_field!r}"
    # json_equals unset: the field only has to be there.
    if config.json_equals is not None and value != config.json_equals:
        return f"JSON {config.json_field} = {value!r}, expected {config.json_equals!r}"
    return None


def _what(config: ProbeConfig, url: str) -> str:
    return f"{config.method} {short(url, 100)}"


def _needs_body(config: ProbeConfig) -> bool:
    return config.body_contains is not None or config.json_field is not None


def _failed(service: ServiceConfig, exc: BaseException, status: int | None) -> Outcome:
    error, reason = classify(exc)
    what = _what(service.probe, service.url)
    return Outcome(False, None, status, error, short(f"{what}: {reason}"))


def _judged(
    service: ServiceConfig,
    status: int,
    latency_ms: float,
    body: bytes,
    truncated: bool,
    undecoded: str | None,
) -> Outcome:
    config = service.probe
    failure = _status_failure(status, config.expect_status)
    if failure is not None:
        error, reason = failure
        detail = short(f"{_what(config, service.url)}: {reason}")
        return Outcome(False, latency_ms, status, error, detail)
    mismatch = _body_failure(config, body, truncated, undecoded)
    if mismatch is not None:
        detail = short(f"{_what(config, service.url)}: {mismatch}")
        return Outcome(False, latency_ms, status, "body_mismatch", detail)
    return Outcome(True, latency_ms, status)


async def probe_lean(client: LeanClient, request: LeanRequest, service: ServiceConfig) -> Outcome:
    """A plain GET or HEAD (hbsm.probes._lean), judged as `probe_http` judges."""
    # The clock starts here, after the caller's semaphore: our own queueing is not counted.
    started = time.perf_counter()
    try:
        answer = await client.fetch(request, service.probe.timeout)
    except _PartialAnswer as exc:
        return _failed(service, exc, exc.status)
    except Exception as exc:
        return _failed(service, exc, None)
    # With a body check, the answer is in once the body is; otherwise once the headers are.
    answered = time.perf_counter() if _needs_body(service.probe) else answer.answered
    latency_ms = (answered - started) * 1000.0
    outcome = _judged(
        service, answer.status, latency_ms, answer.body, answer.truncated, answer.undecoded
    )
    # Whatever the answer said, the certificate is what it is: it is watched all the same.
    return outcome if answer.cert is None else outcome._replace(cert=answer.cert)


async def probe_http(client: httpx.AsyncClient, service: ServiceConfig) -> Outcome:
    config = service.probe
    status: int | None = None
    # The clock starts here, after the caller's semaphore: our own queueing is not counted.
    started = time.perf_counter()
    try:
        async with (
            asyncio.timeout(config.timeout),
            client.stream(
                config.method, service.url, headers=config.headers, timeout=config.timeout
            ) as response,
        ):
            status = response.status_code
            answered = time.perf_counter()
            # Read (a bounded part of) the body even when no check needs it: a connection
            # whose response was read to the end can be reused.
            body, truncated, undecoded = await _read_bounded(response, BODY_LIMIT)
            if _needs_body(config):
                answered = time.perf_counter()
    except Exception as exc:
        return _failed(service, exc, status)
    return _judged(service, status, (answered - started) * 1000.0, body, truncated, undecoded)

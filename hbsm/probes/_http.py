"""The HTTP probe: one request through the shared client, a bounded read, the configured checks."""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any

import httpx
import msgspec

from hbsm.config.model import ProbeConfig, ServiceConfig

from ._classify import classify, short
from ._outcome import Outcome

__all__ = ["BODY_LIMIT", "json_lookup", "probe_http"]

# The most of a body a probe reads: enough for any health document, and a 10 MB page
# (or an endless stream) costs no more than this.
BODY_LIMIT = 64 * 1024

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


class _Inflate:
    """A gzip or deflate body decoded with a cap on what each call may produce.

    Fix (tests/reliability): httpx decodes a chunk whole, and a hostile target that ignores our
    `accept-encoding: identity` and answers a gzip bomb turned each 64 KiB chunk into ~64 MiB
    (a 200 MiB bomb cost one probe 45 to 140 MB); `max_length` keeps it to what is read.
    """

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        # 32 + 15: a zlib or gzip header, detected. Raw deflate (no header) is tried on failure.
        self._inflate = zlib.decompressobj(32 + zlib.MAX_WBITS)
        self._started = False

    def decode(self, data: bytes, max_length: int) -> bytes:
        try:
            out = self._inflate.decompress(data, max_length)
        except zlib.error as exc:
            if self._started or self.encoding != "deflate":
                raise _BadEncoding(f"{self.encoding} body does not decode: {exc}") from None
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            self._started = True
            return self.decode(data, max_length)
        self._started = True
        return out


class _BadEncoding(Exception):
    pass


_INFLATED = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


def _decoder(response: httpx.Response) -> _Inflate | str | None:
    """How to decode the body: an _Inflate, None (as is), or the encoding we do not decode."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in _INFLATED:
        return _Inflate(_INFLATED[encoding])
    # Anything else (br, zstd, stacked encodings) stays as sent: hbsm asked for identity.
    return encoding


async def _read_bounded(response: httpx.Response, limit: int) -> tuple[bytes, bool, str | None]:
    """Up to `limit` bytes of the (decoded) body, whether reading stopped before its end, and
    the content encoding left undecoded (None when the body is plain)."""
    decoder = _decoder(response)
    chunks: list[bytes] = []
    size = 0
    # Raw bytes, decoded here: httpx's own decoding has no bound (see _Inflate).
    async for raw in response.aiter_raw():
        chunk = decoder.decode(raw, limit - size) if isinstance(decoder, _Inflate) else raw
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


async def probe_http(client: httpx.AsyncClient, service: ServiceConfig) -> Outcome:
    config = service.probe
    needs_body = config.body_contains is not None or config.json_field is not None
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
            if needs_body:
                answered = time.perf_counter()
    except Exception as exc:
        error, reason = classify(exc)
        return Outcome(False, None, status, error, short(f"{_what(config, service.url)}: {reason}"))
    latency_ms = (answered - started) * 1000.0
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

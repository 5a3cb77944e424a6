"""Exceptions to failure classes (hbsm.state.ERROR_CLASSES) and short, readable reasons.

The class is read from the whole chain of an exception (causes, contexts, exception-group
members, exceptions carried as arguments, aiohttp's `os_error`), because the outermost
exception often lies: httpx-aiohttp maps every `aiohttp.ClientConnectionError` (refused, reset,
server disconnected) to `httpx.ConnectTimeout`, and httpx wraps TLS and DNS failures alike in
`httpx.ConnectError` (with the cause chain cut by httpcore's pool).
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator

import aiohttp
import httpcore
import httpx

__all__ = ["DETAIL_MAX", "classify", "short"]

# Probe.detail stays short: it is written to the log with every failed probe.
DETAIL_MAX = 200

_TLS_ERRORS = (ssl.SSLError, ssl.CertificateError, aiohttp.ClientSSLError)
_DNS_ERRORS = (socket.gaierror, aiohttp.ClientConnectorDNSError)
_TIMEOUTS = (TimeoutError, httpx.TimeoutException, httpcore.TimeoutException)
# The target broke HTTP: closed the connection before or during its answer, or sent something
# that does not parse (not HTTP, a header line or header block beyond the parser's limits).
_PROTOCOL_ERRORS = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientPayloadError,
    aiohttp.http_exceptions.HttpProcessingError,
    httpx.RemoteProtocolError,
    httpcore.RemoteProtocolError,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        # aiohttp keeps the OSError in `os_error`; httpcore wraps the original exception as
        # its argument and its pool re-raises with `from None`, cutting the cause chain.
        wrapped = [getattr(current, "os_error", None), *current.args]
        stack.extend(e for e in wrapped if isinstance(e, BaseException))
        if current.__cause__ is not None:
            stack.append(current.__cause__)
        elif current.__context__ is not None and not current.__suppress_context__:
            stack.append(current.__context__)


def _is_refused(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED
    )


def _is_timeout(chain: list[BaseException]) -> bool:
    if any(isinstance(e, TimeoutError) for e in chain):
        return True  # asyncio's, the socket's, aiohttp's ServerTimeoutError
    # httpx's own timeouts are real unless httpx-aiohttp mapped an aiohttp error to one.
    if any(isinstance(e, aiohttp.ClientError) for e in chain):
        return False
    return any(isinstance(e, _TIMEOUTS) for e in chain)


def _reason(chain: list[BaseException]) -> str:
    """The innermost exception that says something, as `Name: message`."""
    for exc in reversed(chain):
        message = " ".join(str(exc).split())
        if message:
            return f"{type(exc).__name__}: {message}"
    return type(chain[0]).__name__


def classify(exc: BaseException) -> tuple[str, str]:
    """The failure class of `exc` and a short reason, e.g. ("refused", "connection refused")."""
    chain = list(_chain(exc))
    if any(isinstance(e, _TLS_ERRORS) for e in chain):
        tls = next(e for e in reversed(chain) if isinstance(e, _TLS_ERRORS))
        return "tls", f"TLS error: {getattr(tls, 'reason', None) or _reason([tls])}"
    if any(isinstance(e, _DNS_ERRORS) for e in chain):
        return "dns", f"name resolution failed ({_reason(chain)})"
    if any(_is_refused(e) for e in chain):
        return "refused", "connection refused"
    if _is_timeout(chain):
        return "timeout", "timed out"
    if any(isinstance(e, _PROTOCOL_ERRORS) for e in chain):
        return "protocol", f"invalid or incomplete HTTP answer ({_reason(chain)})"
    return "other", _reason(chain)


def short(text: str, limit: int = DETAIL_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

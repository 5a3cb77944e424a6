"""Exceptions to failure classes (hbsm.state.ERROR_CLASSES) and short, readable reasons.

The class is read from the whole chain of an exception (causes, contexts, exception-group
members, exceptions carried as arguments, aiohttp's `os_error`), because the outermost
exception often lies: httpx-aiohttp maps every `aiohttp.ClientConnectionError` (refused, reset,
server disconnected) to `httpx.ConnectTimeout`, and httpx wraps TLS and DNS failures alike in
`httpx.ConnectError` (with the cause chain cut by httpcore's pool).
"""

from __future__ import annotations

import errno
import functools
import socket
import ssl
import sys
from collections.abc import Iterator

from ._lean import _PartialAnswer, _ProtocolError

__all__ = ["DETAIL_MAX", "classify", "short"]

# Probe.detail stays short: it is written to the log with every failed probe.
DETAIL_MAX = 200


class _Kinds:
    """The exception types of each class. httpx, httpcore and aiohttp are imported only when a
    probe needs them (hbsm.probes._prober): an exception of theirs can only exist once they are,
    so their types join the tuples then, not at start-up."""

    def __init__(self, libraries: frozenset[str]) -> None:
        aiohttp = sys.modules.get("aiohttp") if "aiohttp" in libraries else None
        httpx = sys.modules.get("httpx") if "httpx" in libraries else None
        httpcore = sys.modules.get("httpcore") if "httpcore" in libraries else None
        self.tls: tuple[type[BaseException], ...] = (ssl.SSLError, ssl.CertificateError)
        self.dns: tuple[type[BaseException], ...] = (socket.gaierror,)
        self.timeouts: tuple[type[BaseException], ...] = (TimeoutError,)
        # The target broke HTTP: closed the connection before or during its answer, or sent
        # something that does not parse (not HTTP, a header line or block beyond the limits).
        self.protocol: tuple[type[BaseException], ...] = (_ProtocolError,)
        self.aiohttp_error: tuple[type[BaseException], ...] = ()
        if aiohttp is not None:
            self.tls += (aiohttp.ClientSSLError,)
            self.dns += (aiohttp.ClientConnectorDNSError,)
            self.protocol += (
                aiohttp.ServerDisconnectedError,
                aiohttp.ClientPayloadError,
                aiohttp.http_exceptions.HttpProcessingError,
            )
            self.aiohttp_error = (aiohttp.ClientError,)
        if httpx is not None:
            self.timeouts += (httpx.TimeoutException,)
            self.protocol += (httpx.RemoteProtocolError,)
        if httpcore is not None:
            self.timeouts += (httpcore.TimeoutException,)
            self.protocol += (httpcore.RemoteProtocolError,)


_LIBRARIES = ("aiohttp", "httpx", "httpcore")


@functools.cache
def _kinds_for(libraries: frozenset[str]) -> _Kinds:
    return _Kinds(libraries)


def _kinds() -> _Kinds:
    return _kinds_for(frozenset(name for name in _LIBRARIES if name in sys.modules))


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


def _is_timeout(chain: list[BaseException], kinds: _Kinds) -> bool:
    if any(isinstance(e, TimeoutError) for e in chain):
        return True  # asyncio's, the socket's, aiohttp's ServerTimeoutError
    # httpx's own timeouts are real unless httpx-aiohttp mapped an aiohttp error to one.
    if kinds.aiohttp_error and any(isinstance(e, kinds.aiohttp_error) for e in chain):
        return False
    return any(isinstance(e, kinds.timeouts) for e in chain)


def _reason(chain: list[BaseException]) -> str:
    """The innermost exception that says something, as `Name: message`."""
    for exc in reversed(chain):
        if isinstance(exc, _PartialAnswer):
            continue  # it only carries the status
        message = " ".join(str(exc).split())
        if message:
            return f"{type(exc).__name__}: {message}"
    return type(chain[0]).__name__


def classify(exc: BaseException) -> tuple[str, str]:
    """The failure class of `exc` and a short reason, e.g. ("refused", "connection refused")."""
    chain = list(_chain(exc))
    kinds = _kinds()
    if any(isinstance(e, kinds.tls) for e in chain):
        tls = next(e for e in reversed(chain) if isinstance(e, kinds.tls))
        reason = getattr(tls, "reason", None) or _reason([tls])
        # Why verification failed, in OpenSSL's words ("certificate has expired"), if it did.
        why = getattr(tls, "verify_message", None)
        return "tls", f"TLS error: {reason}" + (f" ({why})" if why else "")
    if any(isinstance(e, kinds.dns) for e in chain):
        return "dns", f"name resolution failed ({_reason(chain)})"
    if any(_is_refused(e) for e in chain):
        return "refused", "connection refused"
    if _is_timeout(chain, kinds):
        return "timeout", "timed out"
    if any(isinstance(e, kinds.protocol) for e in chain):
        return "protocol", f"invalid or incomplete HTTP answer ({_reason(chain)})"
    return "other", _reason(chain)


def short(text: str, limit: int = DETAIL_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""The lean HTTP path: a plain `http://` or `https://` GET or HEAD over a kept-alive connection.

Most probes are exactly this, and httpx over aiohttp spent most of a probe's CPU on what a probe
does not need: request and response models, cookie extraction, several tasks and futures per
request, headers and body written in separate sends (docs/performance.md has the profile). Here a
probe is one prebuilt write and one parse (httptools, the C parser uvicorn uses) on an asyncio
Protocol, awaited as one future. Anything else (other methods, credentials in the URL) takes
httpx (`Prober`). The failure classes, the timeout and what the latency measures are the same
on both paths: the probe tests run against both. HTTPS is asyncio's own TLS (verified by
`hbsm.probes._tls.tls_context`, the target's name checked), which also hands over the peer's
certificate: what the certificate watch records.
"""

from __future__ import annotations

import asyncio
import time
from typing import NamedTuple
from urllib.parse import urlsplit

import httptools

from ._body import BODY_LIMIT, PROBE_HEADERS, Inflate, _BadEncoding, inflater
from ._tls import PeerCert, peer_cert, tls_context

__all__ = [
    "LeanAnswer",
    "LeanClient",
    "LeanRequest",
    "_PartialAnswer",
    "_ProtocolError",
    "lean_request",
]


def _plain(word: str) -> bool:
    """Printable ASCII: nothing a request line or header could be split or smuggled by."""
    return word.isascii() and word.isprintable()


# An https connection is kept this long at most (seconds), then opened anew: a kept-alive
# connection shows the certificate it was opened with, and a renewed one must be seen.
TLS_MAX_AGE = 600.0

# The most a status line and headers may take. llhttp sets no bound of its own: a target sending
# one endless header line would otherwise be buffered until the timeout. (aiohttp's: 8 KiB a
# line, 32 KiB in all.)
HEAD_LIMIT = 32 * 1024


class _ProtocolError(Exception):
    """The target broke HTTP: closed before or during its answer, or sent what does not parse."""


class _PartialAnswer(Exception):
    """What cut an answer short after its status line (its cause), with that status."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status


class LeanRequest(NamedTuple):
    host: str
    port: int
    data: bytes  # the whole request, built once per (method, url, headers)
    head: bool  # a HEAD: the answer has no body whatever its headers say
    tls: bool = False  # https
    ca_file: str | None = None  # https: CAs trusted besides the system's


# Idle connections are kept per (host, port, tls, ca_file): an https connection verified
# against one CA file is no connection for a probe that trusts another.
_Key = tuple[str, int, bool, str | None]


def _key(request: LeanRequest) -> _Key:
    return (request.host, request.port, request.tls, request.ca_file)


class LeanAnswer(NamedTuple):
    status: int
    answered: float  # perf_counter when the headers were in
    body: bytes
    truncated: bool  # reading stopped at BODY_LIMIT
    undecoded: str | None  # a content encoding left as sent
    cert: PeerCert | None = None  # https: the certificate the connection was opened with


def lean_request(
    method: str, url: str, headers: dict[str, str], ca_file: str | None = None
) -> LeanRequest | None:
    """The request for the lean path, or None when the probe needs httpx."""
    if method not in ("GET", "HEAD"):
        return None
    try:
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
    except ValueError:
        return None  # httpx reports it, in its words
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username is not None:
        return None
    fields = dict(PROBE_HEADERS)
    for name, value in headers.items():
        fields[name.lower()] = value
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    words = [target, parts.netloc, *fields, *fields.values()]
    if " " in target or not all(_plain(word) for word in words):
        return None  # httpx quotes what needs quoting, or refuses it with its reason
    lines = [f"{method} {target} HTTP/1.1", f"host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in fields.items() if name != "host"]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return LeanRequest(parts.hostname, port, data, method == "HEAD", tls, ca_file if tls else None)


class _Connection(asyncio.Protocol):
    """One kept-alive connection; answers one request at a time (no pipelining)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._waiter: asyncio.Future[LeanAnswer] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._head = False
        self._received = False
        self._head_size = 0
        self._reusable = False
        self._status = 0
        self._answered = 0.0
        self._encoding: bytes | None = None
        self._until_close = True
        self._decoder: Inflate | str | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self.cert: PeerCert | None = None
        self.opened = loop.time()

    # --- asking --------------------------------------------------------------------------------

    def ask(self, request: LeanRequest) -> asyncio.Future[LeanAnswer]:
        assert self.transport is not None
        self._waiter = waiter = self.loop.create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._head = request.head
        self._received = False
        self._head_size = 0
        self._reusable = False
        self._status = 0
        self._encoding = None
        self._until_close = True
        self._decoder = None
        self._chunks = []
        self._size = 0
        self.transport.write(request.data)
        return waiter

    @property
    def status(self) -> int:
        """The status of the answer being read, 0 until its status line is in."""
        return self._status

    @property
    def idle_and_open(self) -> bool:
        return not self.closed and self._reusable

    def time_out(self) -> None:
        self._fail(TimeoutError())

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # --- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # Verified by now (the handshake is over): read once, kept with the connection.
        self.cert = peer_cert(transport.get_extra_info("ssl_object"))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._parser is None:
            # Bytes nobody asked for on an idle connection: what follows cannot be trusted.
            self.abort()
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(_ProtocolError(f"not HTTP: {exc}"))
            return
        if not self._status and self._waiter is not None:
            self._head_size += len(data)
            if self._head_size > HEAD_LIMIT:
                self._fail(_ProtocolError(f"no end of the headers in {HEAD_LIMIT // 1024} KiB"))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._reusable = False
        if self._waiter is not None:
            if self._until_close and self._status >= 200:
                # A body with neither a length nor chunks ends with the connection.
                self._finish(reusable=False)
            else:
                where = "during" if self._status else "before"
                error = _ProtocolError(f"connection closed {where} the answer")
                error.__cause__ = exc
                self._fail(error)

    # --- httptools callbacks --------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-encoding":
            self._encoding = value
        elif name in (b"content-length", b"transfer-encoding"):
            self._until_close = False

    def on_headers_complete(self) -> None:
        if self._parser is None:
            return
        self._status = status = self._parser.get_status_code()
        self._answered = time.perf_counter()
        if 100 <= status < 200:
            self._until_close = True  # for the real answer, which follows
            return
        if status in (204, 304):
            self._until_close = False  # no body, whatever the headers say
        encoding = (self._encoding or b"").decode("latin-1")
        self._decoder = inflater(encoding)
        if self._head:
            # No body follows a HEAD's headers; this parser would wait for the one they describe.
            self._finish(reusable=self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self._waiter is None:
            return
        decoder = self._decoder
        if type(decoder) is Inflate:
            try:
                chunk = decoder.decode(body, BODY_LIMIT - self._size)
            except _BadEncoding as exc:
                self._fail(exc)  # not raised: the parser would wrap it as its own error
                return
        else:
            chunk = body
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size >= BODY_LIMIT:
            # Enough: hang up rather than read (or be fed) the rest.
            self._finish(reusable=False, truncated=True)

    def on_message_complete(self) -> None:
        if self._parser is None or 100 <= self._status < 200:
            return
        self._finish(reusable=self._parser.should_keep_alive())

    # --- ending an answer -----------------------------------------------------------------------

    def _finish(self, *, reusable: bool, truncated: bool = False) -> None:
        waiter, self._waiter = self._waiter, None
        self._parser = None
        self._reusable = reusable
        if not reusable:
            self.abort()
        body = b"".join(self._chunks)
        if truncated:
            body = body[:BODY_LIMIT]
        undecoded = self._decoder if isinstance(self._decoder, str) else None
        if waiter is not None and not waiter.done():
            answer = LeanAnswer(self._status, self._answered, body, truncated, undecoded, self.cert)
            waiter.set_result(answer)

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        self._parser = None
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def stale(self) -> bool:
        """Whether a failure of this request is the server having closed an idle connection
        (kept-alive, reused, not one byte answered): worth one more try on a new connection."""
        return self.reused and not self._received


class LeanClient:
    """Kept-alive connections per (host, port, tls, CA file), at most `max_idle` idle ones in
    all."""

    def __init__(self, max_idle: int, tls_max_age: float = TLS_MAX_AGE) -> None:
        self._max_idle = max_idle
        self._tls_max_age = tls_max_age
        self._idle: dict[_Key, list[_Connection]] = {}
        self._idle_count = 0

    async def fetch(self, request: LeanRequest, timeout: float) -> LeanAnswer:
        """The answer to `request` within `timeout` seconds, connecting included.

        Raises what went wrong: OSError (refused, name resolution, ...), ssl.SSLError (the
        handshake or the certificate's verification failed), TimeoutError, _ProtocolError;
        _PartialAnswer, caused by one of those, once the status was in. A connection whose
        answer was cut short is closed, never reused.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        connection = self._take(request)
        if connection is not None:
            try:
                return await self._ask(connection, request, deadline)
            except _ProtocolError:
                if not connection.stale():
                    raise
                # The server closed it as we sent (its keep-alive ran out): once more, anew.
        async with asyncio.timeout_at(deadline):
            if request.tls:
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop),
                    request.host,
                    request.port,
                    ssl=tls_context(request.ca_file),
                    server_hostname=request.host,
                )  # the handshake included: bounded by the probe's deadline (timeout_at)
            else:
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop), request.host, request.port
                )
        return await self._ask(connection, request, deadline)

    async def _ask(
        self, connection: _Connection, request: LeanRequest, deadline: float
    ) -> LeanAnswer:
        waiter = connection.ask(request)
        # One timer that fails the waiter: cheaper than asyncio.timeout's context per probe.
        timer = connection.loop.call_at(deadline, connection.time_out)
        try:
            answer = await waiter
        except Exception as exc:
            connection.abort()  # its state is unknown
            if connection.status:
                raise _PartialAnswer(connection.status) from exc
            raise
        except BaseException:
            connection.abort()
            raise
        finally:
            timer.cancel()
        if connection.idle_and_open:
            self._give_back(request, connection)
        return answer

    def _take(self, request: LeanRequest) -> _Connection | None:
        idle = self._idle.get(_key(request))
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if request.tls and connection.loop.time() - connection.opened >= self._tls_max_age:
                connection.abort()  # old enough: a new handshake shows the current certificate
                continue
            if not connection.closed:
                connection.reused = True
                return connection
        return None

    def _give_back(self, request: LeanRequest, connection: _Connection) -> None:
        if self._idle_count >= self._max_idle:
            self._drop_closed()
        if self._idle_count >= self._max_idle:
            connection.abort()
            return
        self._idle.setdefault(_key(request), []).append(connection)
        self._idle_count += 1

    def _drop_closed(self) -> None:
        """Forget idle connections the other side has closed since they were given back."""
        for key, idle in list(self._idle.items()):
            idle[:] = [connection for connection in idle if not connection.closed]
            if not idle:
                del self._idle[key]
        self._idle_count = sum(map(len, self._idle.values()))

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
        self._idle.clear()
        self._idle_count = 0

"""The limits of the standalone API's connections, held before any route, token check or body.

uvicorn's own HTTP protocol (httptools) reads a request's head without bound (a 50 MB header is
buffered whole, twenty of them took `hbsm run` from 60 MB to 887 MB), waits for it without end
(a client sending a byte now and then holds its connection for ever), accepts connections until
the process runs out of file descriptors (then asyncio logged a traceback per failed accept(),
~113,000 in 4 s, and the probes could open no socket), and answers a request it cannot parse in
plain text. `protocol_class(limits)` is that protocol with:

* the request line and headers bounded in bytes and in count: past either, 431 (JSON) and the
  connection closed, before the rest is read;
* a deadline for the request head (from the connection, or from the end of the previous
  answer): past it, 408 (JSON) and closed; and one for the body, counted from the head: closed;
* at most `max_connections` open at once. At the cap, a new connection takes the place of the
  oldest one still waiting for its request head (an idle or a slow client, closed with 408),
  so a flood of slow connections cannot keep a real client out; if every connection is busy
  with a request, the new one gets 503 (JSON) and is closed at once. `connection_cap` keeps the
  cap below the descriptor limit, with room for the monitor's own probes, repairs and log;
* a request it cannot parse answered with the API's JSON error body, not uvicorn's text.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from hbsm.api.answer import error

__all__ = ["ACCEPT_BATCH", "Limits", "connection_cap", "out_of_descriptors", "protocol_class"]

log = logging.getLogger("hbsm.api")

# The listening socket's queue, and so how many connections asyncio accepts in one go before
# any of them is looked at: part of what `connection_cap` keeps below the descriptor limit.
ACCEPT_BATCH = 128
# Never fewer connections than this, whatever the descriptor limit says.
_MIN_CAP = 8


@dataclass(frozen=True, slots=True)
class Limits:
    max_header_bytes: int = 32 * 2**10
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 256


def connection_cap(wanted: int, probes_in_flight: int) -> tuple[int, str]:
    """How many connections the API may hold at once, and why: `wanted`, unless the descriptor
    limit (RLIMIT_NOFILE) leaves less once the monitor's share is kept aside: two descriptors
    per probe in flight (a socket, or a command's pipes), 64 for the log, its readers and the
    supervised services, and two batches of connections accepted before they can be refused."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted, f"at most {wanted} connections at once"
    # Two batches: a connection replaced at the cap frees its descriptor one loop iteration
    # after the newer one took its place, and by then the next batch may be accepted too.
    reserve = 2 * probes_in_flight + 64 + 2 * ACCEPT_BATCH
    room = soft - reserve
    if room >= wanted:
        return wanted, f"at most {wanted} connections at once"
    cap = max(_MIN_CAP, room)
    return cap, (
        f"at most {cap} connections at once (not {wanted}: the descriptor limit is {soft}, "
        f"{reserve} of them kept for probes, repairs, the log and accepting; raise `ulimit -n` "
        "for more)"
    )


# asyncio's words when accept() fails for want of descriptors (it then pauses accepting for 1 s).
_ACCEPT_FAILED = "socket.accept() out of system resource"


def out_of_descriptors(
    loop: asyncio.AbstractEventLoop, context: dict[str, Any], previous: Any = None
) -> None:
    """An asyncio exception handler: a failed accept() for want of descriptors is one warning
    line (asyncio writes a traceback), in hbsm's diagnostics, whose repeat guard counts the
    repeats; anything else goes to `previous`, or to asyncio's default handler. The cap above
    keeps descriptors for accepting, so this is for a burst that outran it."""
    if context.get("message") == _ACCEPT_FAILED:
        exc = context.get("exception")
        log.warning("the API could not accept a connection: %s (out of descriptors; asyncio "
                    "accepts again in 1 s)", exc)  # fmt: skip
        return
    if previous is not None:
        previous(loop, context)
    else:
        loop.default_exception_handler(context)


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that broke a limit."""


def _raw_answer(status: int, message: str) -> bytes:
    answer = error(status, message, extra={"Connection": "close"})
    headers = {**answer.headers(), "Content-Length": str(len(answer.body))}
    head = b"".join(b"%s: %s\r\n" % (k.lower().encode(), v.encode()) for k, v in headers.items())
    return STATUS_LINE[status] + head + b"\r\n" + answer.body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol under `limits` (a subclass per server sets them)."""

    limits: ClassVar[Limits] = Limits()
    # Connections still waiting for a request head, oldest first: those a new one may replace.
    waiting: ClassVar[OrderedDict[GuardedProtocol, None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._refusal: tuple[int, str] | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # --- connections ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if len(self.connections) >= self.limits.max_connections and not self._make_room():
            self._refused = True
            self.transport = transport
            log.warning(
                "refused a connection: %d open, the limit (every one busy with a request)",
                len(self.connections),
            )
            transport.write(_raw_answer(503, "too many connections; try again shortly"))
            transport.close()
            return
        super().connection_made(transport)
        self._await_head()

    def _make_room(self) -> bool:
        """Close the oldest connection still waiting for its request head, if there is one."""
        if not self.waiting:
            return False
        oldest, _ = self.waiting.popitem(last=False)
        oldest._head_timed_out(why="a newer connection took its place at the connection limit")
        # Its own connection_lost comes later: count it out now, so this one fits.
        self.connections.discard(oldest)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._stop_timers()
        self.waiting.pop(self, None)
        super().connection_lost(exc)

    def _stop_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    # --- the request head ----------------------------------------------------------------

    def _await_head(self) -> None:
        """From now on the next request's head must come within `header_timeout`."""
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self.waiting[self] = None
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _head_timed_out(self, why: str = "") -> None:
        self.waiting.pop(self, None)
        if self.transport.is_closing():
            return
        if self._head_bytes or why:  # else an idle connection, closed without a word
            limit = self.limits.header_timeout
            reason = why or f"the request line and headers did not arrive within {limit:g} s"
            log.warning("HTTP 408 to %s: %s", _peer(self.client), reason)
            self.transport.write(_raw_answer(408, reason))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._in_head:
            room = self.limits.max_header_bytes - self._head_bytes
            self._head_bytes += len(data)
            if len(data) > room:
                # Parse only what the limit allows: a head that ends within it goes on (the
                # rest is its body, or the next request); one that does not is refused unread.
                if not self._feed(data[:room]) or self.transport.is_closing():
                    return
                if self._in_head:
                    self._refuse(
                        431, f"request line and headers over {self.limits.max_header_bytes} bytes"
                    )
                    return
                data = data[room:]
        self._feed(data)

    def _feed(self, data: bytes) -> bool:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError as exc:
            if self._refusal is not None:
                self._refuse(*self._refusal)
            else:
                why = (
                    str(exc.__context__ or exc)
                    if isinstance(exc, httptools.HttpParserCallbackError)
                    else str(exc)
                )
                self._refuse(400, f"malformed HTTP request: {why}")
            return False
        return True

    def _refuse(self, status: int, message: str) -> None:
        log.warning("HTTP %d to %s: %s", status, _peer(self.client), message)
        self.waiting.pop(self, None)
        self._stop_timers()
        self.transport.write(_raw_answer(status, message))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own path for a request it cannot parse: the API's JSON error instead.
        self._refuse(400, f"malformed HTTP request: {msg}")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # a pipelined request: its head is bounded as the first was
            self._in_head = True
            self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._refusal = (431, f"more than {self.limits.max_headers} header lines")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self.waiting.pop(self, None)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if any(n in (b"content-length", b"transfer-encoding") for n, _ in self.headers):
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if not self.transport.is_closing():
            log.warning(
                "closed %s: its request body did not arrive within %g s",
                _peer(self.client),
                self.limits.body_timeout,
            )
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Idle now (no pipelined request started in its place): the next head is awaited.
        idle = self.cycle is None or self.cycle.response_complete
        if idle and not self.transport.is_closing():
            self._await_head()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"


def protocol_class(limits: Limits) -> type[GuardedProtocol]:
    """The protocol class for one server: its own limits, and its own list of connections
    waiting for a head (a class per server, as uvicorn builds protocols from a class)."""
    attributes = {"limits": limits, "waiting": OrderedDict()}
    return type("GuardedProtocol", (GuardedProtocol,), attributes)

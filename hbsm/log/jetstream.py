"""The event log on NATS JetStream: `JetStreamLog`, an `EventStore` like the file log.

One stream holds the log (`HBSM` by default). Every event is one message, on a subject of its
service (`hbsm.<stream>.svc.<service>`, or `hbsm.<stream>.monitor` for the monitor's own), so a
reader can take one service's history by subject; the stream's sequence is the event's `seq`.

A single writer, as with the file log: `append` stamps seq = last_seq + 1, ... and buffers;
`flush` publishes the buffer in order, pipelined (at most `window` answers outstanding:
`hbsm.log.jetstream_io.Acks`), each message with `Nats-Expected-Last-Sequence` = its seq - 1.
The stream takes a message only if it would get exactly the seq the event carries: a second
writer, or a writer that lost track, is refused (`JetStreamWriterError`) instead of
interleaving. Each message also carries `Nats-Msg-Id` (stream and seq), so a flush retried after
a timeout, whose messages the server took the first time, is de-duplicated rather than written
twice (within the stream's duplicate window, two minutes).

nats-py is asyncio; the `EventStore` interface is plain calls (the monitor flushes from its loop
before a side effect, the replay reads from a plain thread). The store runs its client on a
loop thread of its own and waits there for each call, bounded by `timeout`: a NATS server that
does not answer is a `LogError` naming it, never a hang: every wait here has a deadline.
Reading (the history, a follower, `read_stream` for `hbsm export`) is hbsm.log.jetstream_read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from hbsm._event_codec import encode
from hbsm.events import Event, OpaqueEvent, ProbeSeen
from hbsm.log.errors import LogError, LogUnavailableError
from hbsm.log.jetstream_io import Acks, LoopThread
from hbsm.log.jetstream_read import (
    DEFAULT_STREAM,
    JetStreamFollower,
    read_history,
    read_once,
    read_stream,
    server_urls,
    subject_prefix,
    where,
)
from hbsm.log.store import EventStore, Follower

__all__ = ["JetStreamLog", "JetStreamWriterError", "read_stream"]

log = logging.getLogger("hbsm.log")

T = TypeVar("T")

# The server's answer to a message whose Nats-Expected-Last-Sequence is not the stream's last.
_WRONG_LAST_SEQUENCE = 10071
_DUPLICATE_WINDOW = 120.0


class JetStreamWriterError(LogUnavailableError):
    """The stream refused an event at the seq this writer gave it: another writer appended in
    between (two monitors on one stream). This one writes nothing more: a monitor holding it
    stays in an outage (probing, repairing and restarting nothing) and says why."""


def subject_of(prefix: str, event: Event | OpaqueEvent, node: str | None = None) -> str:
    """The subject an event is published on: its service's; a vantage point's fact about a
    service (`probe.seen`); or the monitor's own (with several nodes, the node's own)."""
    service = getattr(event, "service", None)
    if not service:
        return f"{prefix}.monitor" if node is None else f"{prefix}.node.{node}"
    return service_subject(prefix, service, seen=isinstance(event, ProbeSeen))


def service_subject(prefix: str, service: str, *, seen: bool = False) -> str:
    """The subject of a service's events (the fenced one), or of what vantage points saw."""
    # A service name may hold dots (a token separator in a subject): one token per service.
    return f"{prefix}.{'seen' if seen else 'svc'}.{service.replace('.', '_')}"


class JetStreamLog(EventStore):
    """`JetStreamLog.open("nats://127.0.0.1:4222")`: the log in the stream `stream` (made
    if missing, with `replicas` copies). Raises LogError when the server cannot be reached.

    `url` may name several servers of one cluster, comma-separated
    (`nats://a:4222,nats://b:4222,nats://c:4222`): the client connects to one of them and, when
    that one dies, reconnects to another, so a stream with replicas outlives any one server."""

    def __init__(
        self,
        url: str,
        *,
        stream: str = DEFAULT_STREAM,
        replicas: int = 1,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
        window: int = 1024,
    ) -> None:
        self.url = url
        self.stream = stream
        self.replicas = replicas
        self.timeout = timeout
        self.window = window
        self.prefix = subject_prefix(stream)
        self._clock = clock
        self._pending: list[Event] = []
        self._closed = False
        self._io = LoopThread("hbsm-jetstream")
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._acks: Acks | None = None
        # Set once the stream refused this writer: it writes nothing more (what it buffered
        # would be refused the same), and says why again at every flush.
        self._fenced: JetStreamWriterError | None = None
        # Whether the client is connected (set on its loop); while it is not, a flush fails at
        # once instead of waiting out its timeout on the monitor's loop. False until the first
        # connection: the attempts before it are `open`'s to report, in one line.
        self._connected = False
        self._last_error = ""  # the client's last error, for a failed first connection
        self.last_seq = 0

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> JetStreamLog:
        log = cls(url, **kwargs)
        try:
            log.last_seq = log._io.run(log._connect(), log.timeout, f"{log.where}: cannot connect")
        except BaseException:
            log._io.stop()
            raise
        return log

    @property
    def where(self) -> str:
        return where(self.url, self.stream)

    @property
    def connected(self) -> bool:
        """Whether the client is connected to the server now (it reconnects by itself)."""
        return self._connected

    async def _connect(self) -> int:
        try:
            self._nc = await nats.connect(
                servers=server_urls(self.url),
                connect_timeout=self.timeout,
                allow_reconnect=True,
                # Two attempts per server, half a second apart, to connect at all: a server
                # that is not there is said at once (nats-py would try it forever, and we
                # would say "no answer" only at our timeout).
                max_reconnect_attempts=1,
                reconnect_time_wait=0.5,
                # One line each, not nats-py's traceback per failed reconnection attempt.
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except (OSError, nats.errors.Error) as exc:
            # nats-py's own error says only that no server was left to try: the last
            # attempt's says why (refused, unknown host, ...).
            why = self._last_error or str(exc) or type(exc).__name__
            raise LogError(f"{self.where}: cannot connect: {why}") from None
        # Once connected, a lost connection is tried again without end (an outage until then),
        # every two seconds, each attempt given two seconds: an attempt into a network that
        # drops everything must not hold the reconnection up for the whole `timeout` after the
        # network is back. nats-py reads its options at each attempt.
        self._nc.options["max_reconnect_attempts"] = -1
        self._nc.options["reconnect_time_wait"] = 2.0
        self._nc.options["connect_timeout"] = min(self.timeout, 2.0)
        self._connected = True
        self._js = self._nc.jetstream(timeout=self.timeout)
        self._acks = Acks(self._nc, self.window)
        await self._acks.start()
        return await _ensure_stream(self._js, self.stream, self.replicas)

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = str(exc) or type(exc).__name__
        if self._connected:  # while disconnected, each retry fails the same way: said once
            log.warning("%s: %s", self.where, self._last_error)

    async def _on_disconnected(self) -> None:
        # A flush waiting on the server that went (the stream's leader, killed) fails now, not
        # after its timeout: the monitor's loop waits on it.
        if self._acks is not None:
            self._acks.abandon("disconnected from its NATS server before it answered")
        if self._connected and not self._closed:  # closing drains, then disconnects: no news
            self._connected = False
            log.warning("%s: disconnected; reconnecting", self.where)

    async def _on_reconnected(self) -> None:
        self._connected = True
        log.warning("%s: reconnected", self.where)

    # --- writing ------------------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> list[Event]:
        self._check_open()
        return self._stamp_into(self._pending, events, self._clock)

    def flush(self) -> None:
        self._check_open()
        if self._fenced is not None:
            raise self._fenced
        if not self._pending:
            return
        # The monitor names the store in its message: these say what is wrong with it.
        if not self._connected:
            raise LogUnavailableError("not connected to its NATS server (reconnecting)")
        try:
            self._io.run(self._publish(self._pending), self.timeout, "publishing")
        except JetStreamWriterError as exc:
            self._fenced = exc
            raise
        except LogError as exc:  # no answer in time, or no connection: worth a retry
            raise LogUnavailableError(str(exc)) from None
        # Else kept on a failure: the next flush sends them again (de-duplicated by Msg-Id).
        self._pending = []

    async def _publish(self, events: list[Event]) -> None:
        acks = self._acks
        assert acks is not None
        pending: list[asyncio.Future[dict[str, Any]]] = []
        try:
            for event in events:
                headers = {
                    "Nats-Msg-Id": f"{self.stream}:{event.seq}",
                    "Nats-Expected-Last-Sequence": str(event.seq - 1),
                }
                subject = subject_of(self.prefix, event)
                pending.append(await acks.publish(subject, encode(event), headers))
            for future, event in zip(pending, events, strict=True):
                self._check_ack(await future, event)
        except nats.errors.Error as exc:
            raise LogError(f"{self.where}: {str(exc) or type(exc).__name__}") from None
        finally:
            for left in pending:
                left.cancel()

    def _check_ack(self, ack: dict[str, Any], event: Event) -> None:
        error = ack.get("error")
        if error is not None:
            if error.get("err_code") == _WRONG_LAST_SEQUENCE:
                raise JetStreamWriterError(
                    f"{self.where}: another writer appended to the stream (seq {event.seq} "
                    "refused): one hbsm writes a log at a time"
                )
            raise LogError(f"{self.where}: seq {event.seq}: {error.get('description', error)}")
        if ack.get("seq") != event.seq and not ack.get("duplicate"):
            raise JetStreamWriterError(
                f"{self.where}: event {event.seq} was stored at seq {ack.get('seq')}"
            )

    # --- reading ------------------------------------------------------------------------------

    def read(self, after_seq: int = 0) -> Iterator[Event | OpaqueEvent]:
        # The history as of the call, like a file read. After close, on a connection of its own.
        if not self._closed:
            history = read_history(self.js, self.stream, after_seq, self.timeout, self.url)
            return iter(self._io.run(history, None, f"{self.where}: reading"))
        return iter(read_once(self.url, self.stream, after_seq, self.timeout))

    def follow(self, after_seq: int = 0) -> Follower:
        self._check_open()
        follower = JetStreamFollower(self._io, self.js, self.stream, self.timeout,
                                     after_seq, where=self.where)  # fmt: skip
        self._io.run(follower.start(), self.timeout, f"{self.where}: following")
        return follower

    @property
    def js(self) -> JetStreamContext:
        """The client's JetStream context, for work run on the store's loop (`submit`): the
        KV buckets of several nodes share the log's connection."""
        assert self._js is not None
        return self._js

    def submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `work` on the store's loop (where its client lives), not waiting for it."""
        return self._io.submit(work)

    # --- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._pending and self._nc is not None and self._fenced is None:
                # A clean close keeps what was appended.
                self.flush()
        finally:
            self._closed = True
            self._connected = False  # the drain's disconnection is ours: no warning about it
            if self._nc is not None:
                with contextlib.suppress(Exception):
                    self._io.run(self._nc.drain(), self.timeout, f"{self.where}: closing")
            self._io.stop()

    def _check_open(self) -> None:
        if self._closed:
            raise LogError(f"{self.where}: the log is closed")


async def _ensure_stream(js: JetStreamContext, stream: str, replicas: int) -> int:
    """The stream's last seq; the stream is made first when it does not exist yet."""
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        config = StreamConfig(
            name=stream,
            subjects=[f"{subject_prefix(stream)}.>"],
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=_DUPLICATE_WINDOW,
        )
        info = await js.add_stream(config)
    return int(info.state.last_seq)

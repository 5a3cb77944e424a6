"""The event log on NATS JetStream: `JetStreamLog`, an `EventStore` like the file log.

One stream holds the log (`HBSM` by default). Every event is one message, on a subject of its
service (`hbsm.<stream>.svc.<service>`, or `hbsm.<stream>.monitor` for the monitor's own), so a
reader can take one service's history by subject; the stream's sequence is the event's `seq`.

A single writer, as with the file log: `append` stamps seq = last_seq + 1, ... and buffers;
`flush` publishes the buffer in order, pipelined (`publish_async`, at most `window` acks
outstanding), each message with `Nats-Expected-Last-Sequence` = its seq - 1. The stream takes a
message only if it would get exactly the seq the event carries: a second writer, or a writer
that lost track, is refused (`JetStreamWriterError`) instead of interleaving. Each message also
carries `Nats-Msg-Id` (stream and seq), so a flush retried after a timeout, whose messages the
server took the first time, is de-duplicated rather than written twice (within the stream's
duplicate window, two minutes).

nats-py is asyncio; the `EventStore` interface is plain calls (the monitor flushes from its loop
before a side effect, the replay reads from a plain thread). The store runs its client on a
loop thread of its own and waits there for each call, bounded by `timeout`: a NATS server that
does not answer is a `LogError` naming it, never a hang. nats-py's `publish_async` futures
never time out by themselves: every wait here has a deadline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from hbsm._event_codec import decode, encode
from hbsm.events import Event, OpaqueEvent
from hbsm.log.errors import LogError, LogUnavailableError
from hbsm.log.store import EventStore, Follower

__all__ = ["JetStreamLog", "JetStreamWriterError", "read_stream"]

T = TypeVar("T")
log = logging.getLogger("hbsm.log")

DEFAULT_STREAM = "HBSM"
# The server's answer to a message whose Nats-Expected-Last-Sequence is not the stream's last.
_WRONG_LAST_SEQUENCE = 10071
_DUPLICATE_WINDOW = 120.0


class JetStreamWriterError(LogUnavailableError):
    """The stream refused an event at the seq this writer gave it: another writer appended in
    between (two monitors on one stream). This one writes nothing more: a monitor holding it
    stays in an outage (probing, repairing and restarting nothing) and says why."""


class _LoopThread:
    """An asyncio loop on a daemon thread, for a client whose callers are plain threads."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
        """`work` on the loop, waited for here; at most `timeout` s (None: its own waits bound
        it, each step of a long read, say)."""
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(work, timeout), self.loop)
        try:
            return future.result()
        except TimeoutError:
            raise LogError(f"{what}: no answer within {timeout:g} s") from None

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


def subject_of(prefix: str, event: Event | OpaqueEvent) -> str:
    """The subject an event is published on: its service's, or the monitor's."""
    service = getattr(event, "service", None)
    if not service:
        return f"{prefix}.monitor"
    # A service name may hold dots (a token separator in a subject): one token per service.
    return f"{prefix}.svc.{service.replace('.', '_')}"


class JetStreamLog(EventStore):
    """`JetStreamLog.open("nats://127.0.0.1:4222")`: the log in the stream `stream` (made
    if missing, with `replicas` copies). Raises LogError when the server cannot be reached."""

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
        self.prefix = f"hbsm.{stream}"
        self._clock = clock
        self._pending: list[Event] = []
        self._closed = False
        self._io = _LoopThread("hbsm-jetstream")
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._acks: _Acks | None = None
        # Set once the stream refused this writer: it writes nothing more (what it buffered
        # would be refused the same), and says why again at every flush.
        self._fenced: JetStreamWriterError | None = None
        # Whether the client is connected (set on its loop); while it is not, a flush fails at
        # once instead of waiting out its timeout on the monitor's loop. False until the first
        # connection: the attempts before it are `open`'s to report, in one line.
        self._connected = False
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
        return f"the JetStream stream {self.stream} at {self.url}"

    @property
    def connected(self) -> bool:
        """Whether the client is connected to the server now (it reconnects by itself)."""
        return self._connected

    async def _connect(self) -> int:
        try:
            self._nc = await nats.connect(
                servers=[self.url],
                connect_timeout=self.timeout,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                # One line each, not nats-py's traceback per failed reconnection attempt.
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except (OSError, nats.errors.Error) as exc:
            raise LogError(f"{self.where}: cannot connect: {exc or type(exc).__name__}") from None
        self._connected = True
        self._js = self._nc.jetstream(timeout=self.timeout)
        self._acks = _Acks(self._nc, self.window)
        await self._acks.start()
        return await _ensure_stream(self._js, self.stream, self.prefix, self.replicas)

    async def _on_error(self, exc: Exception) -> None:
        if self._connected:  # while disconnected, each retry fails the same way: said once
            log.warning("%s: %s", self.where, exc or type(exc).__name__)

    async def _on_disconnected(self) -> None:
        if self._connected:
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
            raise LogError(f"{self.where}: {exc or type(exc).__name__}") from None
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
        if self._nc is not None and not self._closed:
            return iter(self._io.run(self._read(self._js_ctx(), after_seq), None,
                                     f"{self.where}: reading"))  # fmt: skip
        return iter(_read_once(self.url, self.stream, self.prefix, after_seq, self.timeout))

    async def _read(self, js: JetStreamContext, after_seq: int) -> list[Event | OpaqueEvent]:
        return await _read_history(js, self.stream, self.prefix, after_seq, self.timeout)

    def follow(self, after_seq: int = 0) -> Follower:
        self._check_connected()
        follower = JetStreamFollower(self._io, self._js_ctx(), self.stream, self.timeout, after_seq)
        self._io.run(follower.start(self.prefix), self.timeout, f"{self.where}: following")
        return follower

    def _js_ctx(self) -> JetStreamContext:
        assert self._js is not None
        return self._js

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
            if self._nc is not None:
                with contextlib.suppress(Exception):
                    self._io.run(self._nc.drain(), self.timeout, f"{self.where}: closing")
            self._io.stop()

    def _check_open(self) -> None:
        if self._closed:
            raise LogError(f"{self.where}: the log is closed")

    def _check_connected(self) -> None:
        if self._closed or self._nc is None:
            raise LogError(f"{self.where}: the log is closed")


class JetStreamFollower(Follower):
    """Follows the stream from `after_seq`: an ordered consumer delivers on the store's loop
    into a queue; `poll` (from any thread) first asks the stream for its last seq and waits,
    briefly, for what was published up to it, so that what is flushed is seen at the next poll
    as with a file (`position` is the last seq polled)."""

    def __init__(self, io: _LoopThread, js: JetStreamContext, stream: str, timeout: float,
                 after_seq: int) -> None:  # fmt: skip
        self.position: int = after_seq
        self._io, self._js, self._stream, self._timeout = io, js, stream, timeout
        self._queue: collections.deque[Event | OpaqueEvent] = collections.deque()
        self._delivered = after_seq  # the last seq the consumer handed over (loop thread)
        self._arrived: asyncio.Event | None = None
        self._sub: JetStreamContext.PushSubscription | None = None
        self._closed = False

    async def start(self, prefix: str) -> None:
        self._arrived = asyncio.Event()

        async def deliver(msg: Msg) -> None:
            self._queue.append(decode(msg.data))
            self._delivered = msg.metadata.sequence.stream
            assert self._arrived is not None
            self._arrived.set()

        self._sub = await self._js.subscribe(
            f"{prefix}.>",
            stream=self._stream,
            cb=deliver,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=self.position + 1),
        )

    async def _caught_up(self) -> None:
        info = await self._js.stream_info(self._stream)
        last = int(info.state.last_seq)
        arrived = self._arrived
        assert arrived is not None
        while self._delivered < last:
            arrived.clear()
            await arrived.wait()

    def poll(self) -> list[Event | OpaqueEvent]:
        if self._closed:
            raise LogError("follower is closed")
        with contextlib.suppress(LogError):  # slow to arrive: the next poll has it
            self._io.run(self._caught_up(), self._timeout, "following")
        new: list[Event | OpaqueEvent] = []
        while self._queue:
            new.append(self._queue.popleft())  # deque ends are thread-safe
        if new:
            self.position = new[-1].seq
        return new

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sub is not None:
            with contextlib.suppress(Exception):
                self._io.run(self._sub.unsubscribe(), self._timeout, "closing a follower")


class _Acks:
    """Pipelined publishes to the stream, each answered on an inbox of ours, at most `window`
    unanswered at a time. nats-py's own `publish_async` loses the answer of a refused message
    (its reply handler raises instead of failing the future, so the future never ends): this
    keeps every answer, refusals included, as the server's JSON."""

    def __init__(self, nc: Client, window: int) -> None:
        self._nc = nc
        self._room = asyncio.Semaphore(window)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._inbox = nc.new_inbox()
        self._next = 0

    async def start(self) -> None:
        await self._nc.subscribe(f"{self._inbox}.*", cb=self._answered)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[dict[str, Any]]:
        await self._room.acquire()
        self._next += 1
        token = str(self._next)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        future.add_done_callback(lambda _: self._done(token))
        await self._nc.publish(subject, payload, reply=f"{self._inbox}.{token}", headers=headers)
        return future

    def _done(self, token: str) -> None:
        if self._waiting.pop(token, None) is not None:
            self._room.release()

    async def _answered(self, msg: Msg) -> None:
        future = self._waiting.get(msg.subject.rsplit(".", 1)[-1])
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_result({"error": {"description": "no stream takes this subject"}})
            return
        try:
            future.set_result(json.loads(msg.data))
        except ValueError:
            future.set_result({"error": {"description": f"unreadable answer {msg.data[:80]!r}"}})


async def _ensure_stream(js: JetStreamContext, stream: str, prefix: str, replicas: int) -> int:
    """The stream's last seq; the stream is made first when it does not exist yet."""
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        config = StreamConfig(
            name=stream,
            subjects=[f"{prefix}.>"],
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=_DUPLICATE_WINDOW,
        )
        info = await js.add_stream(config)
    return int(info.state.last_seq)


async def _read_history(
    js: JetStreamContext, stream: str, prefix: str, after_seq: int, timeout: float
) -> list[Event | OpaqueEvent]:
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        raise LogError(f"no stream {stream} on this NATS server: no hbsm has written it") from None
    last = int(info.state.last_seq)
    if after_seq >= last:
        return []
    sub = await js.subscribe(
        f"{prefix}.>",
        stream=stream,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        config=ConsumerConfig(opt_start_seq=after_seq + 1),
    )
    out: list[Event | OpaqueEvent] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout)
            except nats.errors.TimeoutError:
                raise LogError(
                    f"the JetStream stream {stream}: reading stalled after seq "
                    f"{out[-1].seq if out else after_seq} (of {last}) for {timeout:g} s"
                ) from None
            out.append(decode(msg.data))
            if msg.metadata.sequence.stream >= last:
                return out
    finally:
        await sub.unsubscribe()


def read_stream(
    url: str, stream: str = DEFAULT_STREAM, *, timeout: float = 10.0
) -> Iterator[Event | OpaqueEvent]:
    """The whole log of `stream` at `url`, oldest first (`hbsm export`). Raises LogError."""
    return iter(_read_once(url, stream, f"hbsm.{stream}", 0, timeout))


def _read_once(
    url: str, stream: str, prefix: str, after_seq: int, timeout: float
) -> list[Event | OpaqueEvent]:
    """The history, on a connection (and a loop thread) of its own: for a closed store."""
    io = _LoopThread("hbsm-jetstream-read")

    async def quiet(exc: Exception) -> None:
        pass  # the failure is raised below, in one line; not nats-py's traceback per attempt

    async def read() -> list[Event | OpaqueEvent]:
        try:
            # Two attempts, half a second apart: a reader that cannot connect says so, it does
            # not retry for minutes (nats-py's default: 60 attempts, 2 s apart).
            nc = await nats.connect(servers=[url], connect_timeout=timeout, allow_reconnect=False,
                                    max_reconnect_attempts=1, reconnect_time_wait=0.5,
                                    error_cb=quiet)  # fmt: skip
        except (OSError, nats.errors.Error) as exc:
            raise LogError(f"the JetStream stream {stream} at {url}: cannot connect: "
                           f"{exc or type(exc).__name__}") from None  # fmt: skip
        try:
            return await _read_history(nc.jetstream(timeout=timeout), stream, prefix,
                                       after_seq, timeout)  # fmt: skip
        finally:
            await nc.close()

    try:
        return io.run(read(), None, f"the JetStream stream {stream} at {url}: reading")
    finally:
        io.stop()

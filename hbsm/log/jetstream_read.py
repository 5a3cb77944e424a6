"""Reading the JetStream log (hbsm.log.jetstream): its history at once, or followed as it grows.

`JetStreamReader` is a reader with no store of its own (`hbsm export`, `hbsm replay --store`,
`hbsm dashboard --store`): read-only, it never creates the stream a writer has not made yet,
and one connection attempt that fails is its caller's to retry (the dashboard does). The
messages of its errors name the server and the stream (`where`)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Coroutine, Iterator
from typing import Any, Self, TypeVar

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from hbsm._event_codec import decode
from hbsm.events import Event, EventDecodeError, OpaqueEvent
from hbsm.log.errors import LogError
from hbsm.log.jetstream_io import LoopThread
from hbsm.log.store import Follower

__all__ = [
    "DEFAULT_STREAM",
    "JetStreamFollower",
    "JetStreamReader",
    "event_of",
    "read_history",
    "read_once",
    "read_stream",
    "server_urls",
    "subject_prefix",
    "where",
]

DEFAULT_STREAM = "HBSM"

T = TypeVar("T")


def where(url: str, stream: str) -> str:
    """How errors name a stream: the server is half of it (one stream name on many servers)."""
    return f"the JetStream stream {stream} at {url}"


def server_urls(url: str) -> list[str]:
    """The servers a store's `url` names: one, or several comma-separated
    (`nats://a:4222,nats://b:4222`), the servers of one cluster. The client connects to one
    and, when that one goes, to another: a replicated stream outlives any one of them."""
    return [part.strip() for part in url.split(",") if part.strip()]


def subject_prefix(stream: str) -> str:
    """The subjects of a stream's events all begin with this (`<prefix>.svc.<service>`, ...)."""
    return f"hbsm.{stream}"


async def _subscribe_from(
    js: JetStreamContext, stream: str, after_seq: int, **kwargs: Any
) -> JetStreamContext.PushSubscription:
    """An ordered consumer of every event of `stream` after `after_seq`."""
    return await js.subscribe(
        f"{subject_prefix(stream)}.>",
        stream=stream,
        ordered_consumer=True,
        # A consumer left behind by a reconnection (the server forgot it) is noticed after two
        # missed heartbeats and made again from the next seq: a second apart, not nats-py's
        # five, or a node back from a network split folds nothing for ten seconds.
        idle_heartbeat=1.0,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        config=ConsumerConfig(opt_start_seq=after_seq + 1),
        **kwargs,
    )


class JetStreamFollower(Follower):
    """Follows the stream from `after_seq`: an ordered consumer delivers on the store's loop
    into a queue; `poll` (from any thread) first asks the stream for its last seq and waits,
    briefly, for what was published up to it, so that what is flushed is seen at the next poll
    as with a file (`position` is the last seq polled)."""

    def __init__(self, io: LoopThread, js: JetStreamContext, stream: str, timeout: float,
                 after_seq: int, *, where: str = "") -> None:  # fmt: skip
        self.position: int = after_seq
        self._where = where or f"the JetStream stream {stream}"  # for its errors
        self._io, self._js, self._stream, self._timeout = io, js, stream, timeout
        self._queue: collections.deque[Event | OpaqueEvent] = collections.deque()
        self._delivered = after_seq  # the last seq the consumer handed over (loop thread)
        self._arrived: asyncio.Event | None = None
        self._sub: JetStreamContext.PushSubscription | None = None
        self._closed = False

    async def start(self) -> None:
        self._arrived = asyncio.Event()

        async def deliver(msg: Msg) -> None:
            self._queue.append(event_of(msg))
            self._delivered = msg.metadata.sequence.stream
            assert self._arrived is not None
            self._arrived.set()

        self._sub = await _subscribe_from(self._js, self._stream, self.position, cb=deliver)

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
            raise LogError(f"{self._where}: follower is closed")
        try:
            self._io.run(self._caught_up(), self._timeout, "following")
        except LogError:
            pass  # slow to arrive: the next poll has it
        except nats.errors.Error as exc:
            # The connection is closed (a reader's is, once its server went away): the caller
            # follows again on a new one, from `position`; nothing after it is lost.
            raise LogError(f"{self._where}: following: {str(exc) or type(exc).__name__}") from None
        return self.arrived()

    def arrived(self) -> list[Event | OpaqueEvent]:
        """What has arrived since the last call, without asking the server anything: for a
        caller on an event loop, which must not wait."""
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


def event_of(msg: Msg) -> Event | OpaqueEvent:
    """A message's event, its seq the stream's: where several nodes write, the stream numbers
    their events (they are published without one)."""
    event = decode(msg.data)
    seq = msg.metadata.sequence.stream
    return event if event.seq == seq else msgspec.structs.replace(event, seq=seq)


async def _last_seq(js: JetStreamContext, stream: str, url: str) -> int:
    """The stream's last seq; LogError if there is no such stream (never made here)."""
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        raise LogError(f"{url}: no stream {stream} on this NATS server: no hbsm has written it "
                       "(--stream names another)") from None  # fmt: skip
    except nats.errors.Error as exc:
        # No answer (a replicated stream between two leaders, say): a LogError like any other
        # failure to read, not a timeout the caller would take for its own.
        raise LogError(f"{where(url, stream)}: reading: {str(exc) or type(exc).__name__}") from None
    return int(info.state.last_seq)


async def read_history(
    js: JetStreamContext, stream: str, after_seq: int, timeout: float, url: str
) -> list[Event | OpaqueEvent]:
    """The events of `stream` (on the server at `url`) after `after_seq` up to its last as of
    the call."""
    last = await _last_seq(js, stream, url)
    if after_seq >= last:
        return []
    sub = await _subscribe_from(js, stream, after_seq)
    out: list[Event | OpaqueEvent] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout)
            except nats.errors.TimeoutError:
                raise LogError(
                    f"{where(url, stream)}: reading stalled after seq "
                    f"{out[-1].seq if out else after_seq} (of {last}) for {timeout:g} s"
                ) from None
            try:
                out.append(event_of(msg))
            except EventDecodeError as exc:
                seq = msg.metadata.sequence.stream
                raise LogError(f"{where(url, stream)}: seq {seq}: not an event: {exc}") from None
            if msg.metadata.sequence.stream >= last:
                return out
    finally:
        await sub.unsubscribe()


def read_stream(
    url: str, stream: str = DEFAULT_STREAM, *, timeout: float = 10.0
) -> Iterator[Event | OpaqueEvent]:
    """The whole log of `stream` at `url`, oldest first (`hbsm export`). Raises LogError."""
    return iter(read_once(url, stream, 0, timeout))


def read_once(url: str, stream: str, after_seq: int, timeout: float) -> list[Event | OpaqueEvent]:
    """The history, on a connection (and a loop thread) of its own: for a closed store."""
    with JetStreamReader.open(url, stream, timeout=timeout) as reader:
        return reader.read(after_seq)


class JetStreamReader:
    """`JetStreamReader.open(url, stream)`: a read-only connection to a stream hbsm writes.

    `read(after_seq)` is its history as of the call, `follow(after_seq)` a `JetStreamFollower`.
    It makes nothing: no stream (a reader pointed at the wrong name must not leave an empty
    one behind for a writer to adopt), no consumer that outlives it. Its connection does not
    reconnect: once the server is gone, `poll` and `read` raise LogError, and the caller opens
    a new reader and follows on from the follower's `position`, saying so meanwhile."""

    def __init__(self, url: str, stream: str = DEFAULT_STREAM, *, timeout: float = 10.0) -> None:
        self.url, self.stream, self.timeout = url, stream, timeout
        self.where = where(url, stream)
        self._io = LoopThread("hbsm-jetstream-read")
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    @classmethod
    def open(cls, url: str, stream: str = DEFAULT_STREAM, *, timeout: float = 10.0) -> Self:
        """Raises LogError: the server cannot be reached, or it has no such stream."""
        reader = cls(url, stream, timeout=timeout)
        try:
            reader._io.run(reader._connect(), None, f"{reader.where}: connecting")
        except BaseException:
            reader.close()
            raise
        return reader

    async def _connect(self) -> None:
        async def quiet(exc: Exception) -> None:
            pass  # the failure is raised below, in one line; not nats-py's traceback per attempt

        try:
            # Two attempts, half a second apart: a reader that cannot connect says so, it does
            # not retry for minutes (nats-py's default, even with allow_reconnect off: 60
            # attempts, 2 s apart). Once connected it never reconnects (the class says why).
            self._nc = await nats.connect(servers=server_urls(self.url),
                                          connect_timeout=self.timeout,
                                          allow_reconnect=False, max_reconnect_attempts=1,
                                          reconnect_time_wait=0.5, error_cb=quiet)  # fmt: skip
        except (OSError, nats.errors.Error) as exc:
            raise LogError(
                f"{self.where}: cannot connect: {str(exc) or type(exc).__name__}"
            ) from None
        self._js = self._nc.jetstream(timeout=self.timeout)
        await self._call(_last_seq(self._js, self.stream, self.url))

    async def _call(self, work: Coroutine[Any, Any, T]) -> T:
        try:
            return await work
        except nats.errors.Error as exc:  # no answer, connection lost: one line naming where
            raise LogError(f"{self.where}: {str(exc) or type(exc).__name__}") from None

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def read(self, after_seq: int = 0) -> list[Event | OpaqueEvent]:
        """The events after `after_seq`, up to the stream's last as of the call."""
        history = read_history(self._js_ctx(), self.stream, after_seq, self.timeout, self.url)
        return self._io.run(self._call(history), None, f"{self.where}: reading")

    def follow(self, after_seq: int = 0) -> JetStreamFollower:
        follower = JetStreamFollower(self._io, self._js_ctx(), self.stream, self.timeout,
                                     after_seq, where=self.where)  # fmt: skip
        self._io.run(self._call(follower.start()), self.timeout, f"{self.where}: following")
        return follower

    def _js_ctx(self) -> JetStreamContext:
        if self._js is None:
            raise LogError(f"{self.where}: the reader is closed")
        return self._js

    def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                self._io.run(nc.close(), self.timeout, f"{self.where}: closing")
        self._io.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

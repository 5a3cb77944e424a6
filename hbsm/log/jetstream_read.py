"""Reading the JetStream log (hbsm.log.jetstream): its history at once, or followed as it grows,
and `read_stream` for a reader with no store of its own (`hbsm export`)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from hbsm._event_codec import decode
from hbsm.events import Event, OpaqueEvent
from hbsm.log.errors import LogError
from hbsm.log.jetstream_io import LoopThread
from hbsm.log.store import Follower

__all__ = [
    "DEFAULT_STREAM",
    "JetStreamFollower",
    "read_history",
    "read_once",
    "read_stream",
    "server_urls",
    "subject_prefix",
]

DEFAULT_STREAM = "HBSM"


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
                 after_seq: int) -> None:  # fmt: skip
        self.position: int = after_seq
        self._io, self._js, self._stream, self._timeout = io, js, stream, timeout
        self._queue: collections.deque[Event | OpaqueEvent] = collections.deque()
        self._delivered = after_seq  # the last seq the consumer handed over (loop thread)
        self._arrived: asyncio.Event | None = None
        self._sub: JetStreamContext.PushSubscription | None = None
        self._closed = False

    async def start(self) -> None:
        self._arrived = asyncio.Event()

        async def deliver(msg: Msg) -> None:
            self._queue.append(decode(msg.data))
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


async def read_history(
    js: JetStreamContext, stream: str, after_seq: int, timeout: float
) -> list[Event | OpaqueEvent]:
    """The events of `stream` after `after_seq` up to its last as of the call."""
    try:
        info = await js.stream_info(stream)
        last = int(info.state.last_seq)
        if after_seq >= last:
            return []
        sub = await _subscribe_from(js, stream, after_seq)
    except nats.js.errors.NotFoundError:
        raise LogError(f"no stream {stream} on this NATS server: no hbsm has written it") from None
    except nats.errors.Error as exc:
        # No answer (a replicated stream between two leaders, say): a LogError like any other
        # failure to read, not a timeout the caller would take for its own.
        raise LogError(
            f"the JetStream stream {stream}: reading: {exc or type(exc).__name__}"
        ) from None
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
    return iter(read_once(url, stream, 0, timeout))


def read_once(url: str, stream: str, after_seq: int, timeout: float) -> list[Event | OpaqueEvent]:
    """The history, on a connection (and a loop thread) of its own: for a closed store."""
    io = LoopThread("hbsm-jetstream-read")

    async def quiet(exc: Exception) -> None:
        pass  # the failure is raised below, in one line; not nats-py's traceback per attempt

    async def read() -> list[Event | OpaqueEvent]:
        try:
            # Two attempts, half a second apart: a reader that cannot connect says so, it does
            # not retry for minutes (nats-py's default: 60 attempts, 2 s apart).
            nc = await nats.connect(servers=server_urls(url), connect_timeout=timeout,
                                    allow_reconnect=False, max_reconnect_attempts=1,
                                    reconnect_time_wait=0.5, error_cb=quiet)  # fmt: skip
        except (OSError, nats.errors.Error) as exc:
            raise LogError(f"the JetStream stream {stream} at {url}: cannot connect: "
                           f"{exc or type(exc).__name__}") from None  # fmt: skip
        try:
            return await read_history(nc.jetstream(timeout=timeout), stream, after_seq, timeout)
        finally:
            await nc.close()

    try:
        return io.run(read(), None, f"the JetStream stream {stream} at {url}: reading")
    finally:
        io.stop()

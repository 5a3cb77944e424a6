"""The embedded monitor as a `hbsm.api.source.Source`, and where the blueprint runs the handler.

Flask answers on request threads of its own, while the projection is mutated by the monitor's
asyncio loop (embedded) or by a follower thread (`hbsm.api.LogSource`). The request handler
(hbsm.api.handler) is the standalone app's, a coroutine: a `Dispatcher` runs it where the
projection may be read. For the embedded monitor that is the monitor's own loop, so no body is
built between two of its steps, exactly as `hbsm run` serves it; once that loop has ended (the
monitor shut down) nothing mutates the projection any more, and the routes go on answering with
its final state from a loop of the dispatcher's own. A followed log is read under its lock, on
that same private loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from hbsm.api.relay import RELAY_SUPPORTED, RelayClient
from hbsm.api.source import Control, LogSource, MonitorSource, NotRunning, Relay, redact
from hbsm.events import Event, OpaqueEvent
from hbsm.flask.embedded import standby_message
from hbsm.log import Follower
from hbsm.projection import Projection

if TYPE_CHECKING:
    from hbsm.flask.embedded import MonitorThread
    from hbsm.monitor import Monitor
    from hbsm.outage import Outage

__all__ = ["ADMIN_TIMEOUT", "READ_TIMEOUT", "Dispatcher", "EmbeddedSource"]

T = TypeVar("T")

# How long a request thread waits for the monitor's loop to answer a read, or an admin action.
READ_TIMEOUT = 5.0
ADMIN_TIMEOUT = 30.0
# How long a closing event stream waits for its generator to be closed on the loop.
_CLOSE_TIMEOUT = 5.0
# The longest wait for one chunk of an event stream: it sends a keep-alive every 15 s (by
# default) when nothing happens, so a longer silence means its loop no longer runs.
_STEP_TIMEOUT = 60.0


class EmbeddedSource(MonitorSource):
    """The Monitor a `MonitorThread` runs: a `MonitorSource` that exists before the monitor
    does, and says why it cannot answer (NotRunning) while there is none. While another
    process of the app holds the log (the runner stands by), `standby` (a `LogSource` of that
    log) answers instead; with monitoring disabled, an empty projection does."""

    def __init__(self, runner: MonitorThread, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(None, str(runner.config.log.path), clock=clock)
        self.runner = runner
        self.standby: LogSource | None = None
        self._idle = _Idle()
        self._relay = (
            RelayClient(runner.config.log.path, lambda: standby_message(runner.holder))
            if RELAY_SUPPORTED
            else None
        )

    @property
    def monitor(self) -> Monitor:
        monitor = self.runner.monitor
        if monitor is None:
            raise NotRunning(self.runner.why_not_running())
        return monitor

    def standing_by(self) -> bool:
        """Whether this process serves another one's log (standing by, or trying its lock)."""
        return self.standby is not None and self.runner.state != "running"

    def _elsewhere(self) -> _Idle | LogSource | None:
        """What answers instead of the monitor, if anything: nothing monitored (disabled), or
        the log another process writes (standing by)."""
        if self.runner.state == "disabled":
            return self._idle
        return self.standby if self.standing_by() else None

    @property
    def projection(self) -> Projection:
        other = self._elsewhere()
        return other.projection if other is not None else self.monitor.projection

    @property
    def lock(self) -> contextlib.AbstractContextManager[Any]:
        other = self._elsewhere()
        return other.lock if other is not None else super().lock

    @property
    def outage(self) -> Outage | None:
        other = self._elsewhere()
        return other.outage if other is not None else self.monitor.outage

    def running(self) -> bool:
        other = self._elsewhere()
        return other.running() if other is not None else self.monitor.heartbeat_running

    def follow(self, after_seq: int) -> Follower:
        other = self._elsewhere()
        return (
            other.follow(after_seq) if other is not None else self.monitor.store.follow(after_seq)
        )

    @property
    def admin_token(self) -> str | None:
        return self.runner.config.admin_token or None

    @property
    def control(self) -> Control | None:
        # Not while the monitor is stopping: a `start` then would restart its scheduler.
        if self.runner.state != "running":
            if self.standing_by():
                raise NotRunning(standby_message(self.runner.holder))
            raise NotRunning(self.runner.why_not_running())
        return self.monitor

    def catch_up(self) -> None:
        """Standing by: fold what the monitoring process wrote since the last poll, so that an
        answer is as fresh as the log on disk (a client that acted through another worker
        then reads its own action here). Trouble reading is the polling thread's to report."""
        standby = self.standby
        if standby is not None and self.standing_by():
            with contextlib.suppress(Exception):
                standby.refresh()

    @property
    def relay(self) -> Relay | None:
        # Standing by, admin actions go to the process that monitors.
        return self._relay if self.standing_by() else None

    def config_view(self) -> dict[str, Any]:
        if self.standby is not None and self.standing_by():
            return self.standby.config_view()  # what the monitoring process recorded
        config = msgspec.to_builtins(self.runner.config)
        return redact(config) if isinstance(config, dict) else {}


class Dispatcher:
    """Runs the handler's coroutines for request threads: on the embedded monitor's loop while
    it runs (`runner`), else on a loop thread of its own, started when first needed."""

    def __init__(
        self,
        runner: MonitorThread | None = None,
        standing_by: Callable[[], bool] = lambda: False,
    ) -> None:
        self.runner = runner
        # True while the process serves another one's log (hbsm.flask.handle's standby).
        self.standing_by = standing_by
        self._lock = threading.Lock()
        self._own: tuple[asyncio.AbstractEventLoop, threading.Thread] | None = None
        self._closed = False
        self._streams = threading.Condition()
        self._open = 0  # event streams being served

    def reads_here(self) -> bool:
        """Whether a read may be answered on the request thread: a followed log (read under
        its lock), or a monitor whose loop has ended, never runs, or stands by."""
        runner = self.runner
        return runner is None or runner.finished() or self.standing_by()

    def run(self, work: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
        """`await work()` on the right loop; its result. Raises NotRunning when there is no
        loop to run it (the monitor not started yet), or when it did not end within
        `timeout` s."""
        for loop in self._loops():
            if loop is None:  # closed: on a loop of this call's own, in this thread
                return asyncio.run(work())
            try:
                return _await_on(loop, work(), timeout)
            except RuntimeError:  # the loop closed meanwhile: the next one
                continue
            except concurrent.futures.TimeoutError:
                raise NotRunning(f"the monitor did not answer within {timeout:g} s") from None
            except concurrent.futures.CancelledError:
                continue  # the loop was shut down before it ran
        assert self.runner is not None  # our own loop always takes the work
        raise NotRunning(self.runner.why_not_running())

    def stream(self, chunks: AsyncIterator[bytes]) -> Iterator[bytes]:
        """A generator for a WSGI server over an async stream, each chunk awaited on the loop
        that made it. Closed early (the client went away), it closes the stream there too.
        Nothing once the dispatcher is closed (the app is stopping)."""
        loop = next(iter(self._loops()), None)
        if loop is None:
            return

        async def step() -> bytes:
            return await anext(chunks)

        with self._streams:
            self._open += 1
        try:
            while True:
                try:
                    yield _await_on(loop, step(), _STEP_TIMEOUT)
                except (StopAsyncIteration, RuntimeError, concurrent.futures.CancelledError):
                    return  # the stream ended, or its loop did
                except concurrent.futures.TimeoutError:
                    return  # a loop that stopped answering: end rather than hang the thread
        finally:
            with contextlib.suppress(Exception):  # a stream failing to close ends all the same
                _await_on(loop, _aclose(chunks), _CLOSE_TIMEOUT)
            with self._streams:
                self._open -= 1
                self._streams.notify_all()

    def _loops(self) -> Iterator[asyncio.AbstractEventLoop | None]:
        """The monitor's loop while it runs; else (the monitor gone, or none) our own loop
        thread; None (the caller's thread) once closed, or when monitoring is disabled."""
        runner = self.runner
        if runner is not None and runner.state == "disabled":
            yield None  # nothing runs, nor will: in the caller's thread, no thread of ours
            return
        if self.standing_by():
            yield self._own_loop()  # the log another process writes: read under its lock
            return
        if runner is not None:
            loop = runner.loop
            if loop is not None and runner.state in ("running", "stopping"):
                yield loop
            if not runner.finished():
                return
        yield self._own_loop()

    def _own_loop(self) -> asyncio.AbstractEventLoop | None:
        with self._lock:
            if self._closed:
                return None
            if self._own is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_serve_forever, args=(loop,), name="hbsm-http", daemon=True
                )
                thread.start()
                self._own = (loop, thread)
            return self._own[0]

    def close(self, timeout: float = 5.0) -> None:
        """Stop the loop thread of its own, once the open streams have ended (they end at their
        next poll once the handler is closing; at most `timeout` s); later calls run on a loop
        of their own in the calling thread (slower, but no thread outlives the app's handle)."""
        with self._streams:
            self._streams.wait_for(lambda: self._open == 0, timeout)
        with self._lock:
            self._closed = True
            own, self._own = self._own, None
        if own is not None:
            loop, thread = own
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)


def _await_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], timeout: float) -> T:
    """`coro` run on `loop` (another thread's), its result within `timeout` s. A coroutine
    that never started (the loop closed, stopped or cancelled it first) is closed here, so it
    is not left behind unawaited."""
    try:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # the loop has closed
        coro.close()
        raise
    try:
        return future.result(timeout)
    except BaseException:
        future.cancel()
        if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            coro.close()
        raise


class _Idle:
    """What an app that monitors nothing (`enabled = false`) answers from: no services, no
    monitoring, no events."""

    def __init__(self) -> None:
        self.projection = Projection()
        self.lock = contextlib.nullcontext()
        self.outage: Outage | None = None

    def running(self) -> bool:
        return False

    def follow(self, after_seq: int) -> Follower:
        return _NoEvents()


class _NoEvents(Follower):
    """The follower of a log that is never written (monitoring disabled)."""

    position = 0

    def poll(self) -> list[Event | OpaqueEvent]:
        return []

    def close(self) -> None:
        pass


def _serve_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        # What still runs (an event stream between two chunks) is cancelled, so the request
        # thread waiting for it gets its answer (the stream ends) instead of waiting for ever.
        with contextlib.suppress(Exception):
            left = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in left:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()

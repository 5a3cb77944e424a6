"""Where the blueprint's bodies come from: a monitor running in this process, or a followed log.

A source hands the projection to a function while nothing else touches it (`read`), and carries
out admin actions (`admin`). Flask serves requests on threads of its own, while the projection is
mutated by the monitor's asyncio loop (embedded) or by a follower thread (follow): reading it
from a request thread without that guard could see a service half folded.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec

from hbsm.api.bodies import AdminResult
from hbsm.api.source import redact
from hbsm.errors import HbsmError
from hbsm.log import LogError
from hbsm.log.fold import LineSkipped, LogFold, describe_gap
from hbsm.projection import Projection

if TYPE_CHECKING:
    from hbsm.flask.embedded import MonitorThread
    from hbsm.outage import Outage

__all__ = [
    "READ_ONLY_MESSAGE",
    "EmbeddedSource",
    "FollowSource",
    "HeartbeatSource",
    "NotRunning",
    "ReadOnly",
]

T = TypeVar("T")
log = logging.getLogger("hbsm.flask")

# How long a request thread waits for the monitor's loop to build a body or carry out an action.
READ_TIMEOUT = 5.0
ADMIN_TIMEOUT = 30.0
READ_ONLY_MESSAGE = "read-only: this app projects the log of another hbsm run; use its own API"


class NotRunning(HbsmError):
    """The source cannot answer now (monitor not started, stopped, or busy past the timeout)."""


class ReadOnly(HbsmError):
    """Admin actions are not possible: this source only projects another process's log."""


class HeartbeatSource(abc.ABC):
    """The projection, guarded, and what the routes need besides it."""

    mode: Literal["embedded", "follow"]
    read_only: bool

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        # `now` of every body: injectable so tests can compare bodies built at one instant.
        self.clock = clock

    @property
    @abc.abstractmethod
    def admin_token(self) -> str | None:
        """The bearer token admin routes require; None: only loopback clients are served."""

    @property
    @abc.abstractmethod
    def log_path(self) -> str:
        """The event log, as `GET /admin/heartbeat/status` names it."""

    @abc.abstractmethod
    def version(self) -> Hashable:
        """Changes whenever the projection does: the key of the blueprint's body cache.

        Read without the guard: one attribute read of an int, atomic in CPython."""

    @abc.abstractmethod
    def read(self, fn: Callable[[Projection], T]) -> T:
        """`fn(projection)` while no other thread mutates it; its result. Raises NotRunning."""

    def config_view(self, projection: Projection) -> dict[str, Any]:
        """The config in force as the status route shows it, secrets masked (called under the
        guard): by default the one the log's last `monitor.started` recorded."""
        return redact(dict(projection.monitor.config))

    def scheduler_running(self) -> bool | None:
        """Whether the probe scheduler runs, when this source knows better than the log
        (called under the guard); None: the projection's word."""
        return None

    def outage(self) -> Outage | None:
        """Set while the monitor cannot write its log; None when it can, or when only the
        writer could know (a follower sees the log stop growing, not why)."""
        return None

    @abc.abstractmethod
    def admin(
        self, action: str, *, who: str, source: str, allowed: bool, suppressed: int = 0
    ) -> AdminResult:
        """Carry out (or, not allowed, just record) a monitor-wide admin action. `suppressed`:
        refused attempts the record stands for besides this one (hbsm.api.refusals).

        Raises ReadOnly when this source cannot act, NotRunning when the monitor is not there."""


class EmbeddedSource(HeartbeatSource):
    """A Monitor running in this process, on its own asyncio loop in a background thread.

    Bodies are built inside that loop (`run_coroutine_threadsafe`), so they never see the
    projection between two of the monitor's steps. Once the thread has ended nothing mutates the
    projection any more: the routes keep answering with its final state."""

    mode: Literal["embedded", "follow"] = "embedded"
    read_only = False

    def __init__(self, runner: MonitorThread, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.runner = runner

    @property
    def admin_token(self) -> str | None:
        return self.runner.config.admin_token or None

    @property
    def log_path(self) -> str:
        return self.runner.config.log.path

    def config_view(self, projection: Projection) -> dict[str, Any]:
        config = msgspec.to_builtins(self.runner.config)
        return redact(config) if isinstance(config, dict) else {}

    def scheduler_running(self) -> bool | None:
        monitor = self.runner.monitor
        return monitor.heartbeat_running if monitor is not None else None

    def outage(self) -> Outage | None:
        monitor = self.runner.monitor
        return monitor.outage if monitor is not None else None

    def version(self) -> Hashable:
        monitor = self.runner.monitor
        if monitor is None:
            raise NotRunning(self.runner.why_not_running())
        outage = monitor.outage
        # An outage changes no projection version (nothing is appended): it is part of the key.
        if outage is None:
            return monitor.projection.version
        return (monitor.projection.version, outage.since, outage.skipped)

    def read(self, fn: Callable[[Projection], T]) -> T:
        async def call() -> T:
            assert self.runner.monitor is not None
            return fn(self.runner.monitor.projection)

        return self._in_loop(call, fn, READ_TIMEOUT)

    def admin(
        self, action: str, *, who: str, source: str, allowed: bool, suppressed: int = 0
    ) -> AdminResult:
        async def act() -> AdminResult:
            monitor = self.runner.monitor
            assert monitor is not None
            before = monitor.heartbeat_running
            await monitor.admin(
                action, who=who, source=source, allowed=allowed, suppressed=suppressed
            )
            after = monitor.heartbeat_running
            return admin_result(action, before=before, after=after)

        def too_late(projection: Projection) -> AdminResult:
            raise NotRunning("the embedded monitor has been shut down")

        # Not while the monitor is stopping: a `start` then would restart its scheduler.
        return self._in_loop(act, too_late, ADMIN_TIMEOUT, while_stopping=False)

    def _in_loop(
        self,
        coro: Callable[[], Coroutine[Any, Any, T]],
        after: Callable[[Projection], T],
        timeout: float,
        *,
        while_stopping: bool = True,
    ) -> T:
        runner = self.runner
        loop = runner.loop
        usable = ("running", "stopping") if while_stopping else ("running",)
        if loop is not None and runner.state in usable:
            work = coro()
            try:
                future = asyncio.run_coroutine_threadsafe(work, loop)
            except RuntimeError:  # the loop closed meanwhile
                work.close()
            else:
                try:
                    return future.result(timeout)
                except concurrent.futures.TimeoutError:
                    future.cancel()
                    raise NotRunning(f"the monitor did not answer within {timeout:g} s") from None
                except concurrent.futures.CancelledError:
                    pass  # the loop was shut down before it ran
        if runner.finished():
            # The loop thread has ended: nothing mutates the projection any more.
            assert runner.monitor is not None
            with runner.lock:
                return after(runner.monitor.projection)
        raise NotRunning(runner.why_not_running())


def admin_result(action: str, *, before: bool, after: bool) -> AdminResult:
    """The answer to `start`/`stop` of the whole monitor; idempotent, so `changed` may be false."""
    if action == "start":
        message = "heartbeat started" if after and not before else "heartbeat already running"
    elif action == "stop":
        message = "heartbeat stopped" if before and not after else "heartbeat already stopped"
    else:
        message = action
    return AdminResult(action=action, ok=True, changed=before != after, running=after,
                       message=message)  # fmt: skip


class FollowSource(HeartbeatSource):
    """The log another `hbsm run` writes, followed by a thread that folds it into a projection.

    The lock is held while folding and while a body is built; reading and decoding the file
    happen outside it. Admin actions raise ReadOnly: only the writer can act.

    Every event is folded once, in order, by a `hbsm.log.fold.LogFold`. Fallen so far behind
    that retention deleted a segment before it was read, it goes on from the oldest segment kept,
    whose opening snapshot puts the projection right (never emptied meanwhile); the gaps it
    hands back are logged and kept here (`error`: the last trouble, `lost`: the seqs lost).
    Starting over with an empty projection is left to errors that are no gap (the log cannot be
    read, or a bug), as the routes must not serve a projection frozen by one."""

    mode: Literal["embedded", "follow"] = "follow"
    read_only = True

    def __init__(
        self,
        path: str | Path,
        *,
        admin_token: str | None = None,
        poll_interval: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock=clock)
        self.path = Path(path)
        self.poll_interval = poll_interval
        self._token = admin_token or None
        self._lock = threading.Lock()
        self._projection = Projection()
        # Bumped when the projection is rebuilt from scratch (its version starts over).
        self._generation = 0
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        # The seq of the last event folded (0: none yet), and the (first, last) seqs of every
        # run of events lost to this app (pruned by retention before it read them, say).
        self.last_seq = 0
        self.lost: list[tuple[int, int]] = []

    @property
    def admin_token(self) -> str | None:
        return self._token

    @property
    def log_path(self) -> str:
        return str(self.path)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def version(self) -> Hashable:
        return (self._generation, self._projection.version)

    def read(self, fn: Callable[[Projection], T]) -> T:
        with self._lock:
            return fn(self._projection)

    def admin(
        self, action: str, *, who: str, source: str, allowed: bool, suppressed: int = 0
    ) -> AdminResult:
        raise ReadOnly(READ_ONLY_MESSAGE)

    # --- the follower thread --------------------------------------------------------------

    def start(self, *, wait: float = 10.0) -> None:
        """Start following; returns once the log's history is folded (or after `wait` s)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._follow, name="hbsm-follow", daemon=True)
        self._thread.start()
        self._caught_up.wait(wait)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _follow(self) -> None:
        fold: LogFold | None = None
        try:
            while True:
                try:
                    if fold is None:
                        fold = LogFold(self.path, self._projection, lock=self._lock)
                    caught_up = self._poll(fold)
                except Exception as exc:
                    # The log is not readable, or a bug of ours: start over from the active
                    # segment, which opens with a snapshot of everything before it. The thread
                    # must not die silently and leave the routes serving a frozen projection.
                    if not isinstance(exc, LogError | OSError):
                        log.exception("following %s failed", self.path)
                    self._report(exc)
                    if fold is not None:
                        fold.close()
                        fold = None
                    with self._lock:
                        self._projection = Projection()
                        self._generation += 1
                        self.last_seq = 0
                    caught_up = True
                if caught_up:
                    self._caught_up.set()
                    if self._stop.wait(self.poll_interval):
                        return
        finally:
            if fold is not None:
                fold.close()
            self._caught_up.set()

    def _report(self, exc: Exception | str) -> None:
        message = str(exc)
        if message != self.error:  # once per distinct trouble, not once per poll
            log.warning("following %s: %s", self.path, message)
        self.error = message

    def _poll(self, fold: LogFold) -> bool:
        """Fold one batch; True when the log had nothing more to give. A gap (a bad line passed
        over, events lost to a pruned segment) is reported, and the seqs lost kept in `lost`."""
        if self._stop.is_set():
            return True
        step = fold.poll()
        for gap in step.gaps:
            if not isinstance(gap, LineSkipped):
                self.lost.append((gap.first, gap.last))
            self._report(describe_gap(gap))
        self.last_seq = fold.last_seq
        return not step.events

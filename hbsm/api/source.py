"""Where the API's answers come from: a monitor in this process, or a log another one writes.

`ApiSource` is what the routes need: the projection (read under `lock`), the admin token, the
config in force (redacted), the log's path, a clock, a way to follow new events (for `/events`
and the latency histogram of `/metrics`), and, for a live monitor only, `control` to carry out
admin actions.

* `MonitorSource(monitor)`: the monitor's own projection, in the monitor's asyncio loop. No lock
  is needed there (everything runs on one thread), so `lock` is a no-op.
* `LogSource(path)`: a projection of a log written by another process, kept up to date by a
  thread polling a `hbsm.log.fold.LogFold` every `poll_interval` s. Usable from asyncio and from
  plain threads (a WSGI server): decoding happens outside the lock, folding and reading inside
  it. A gap in what it could read is logged; the projection is never emptied by one.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

import msgspec

from hbsm.config.secrets import mask_secrets
from hbsm.events import Event
from hbsm.log import Follower, LogFollower
from hbsm.log.fold import LineSkipped, LogFold, describe_gap
from hbsm.log.follower import position_after
from hbsm.projection import Projection

if TYPE_CHECKING:
    from hbsm.config import Config
    from hbsm.monitor.runtime import Monitor
    from hbsm.outage import Outage

__all__ = ["ApiSource", "Control", "LogSource", "MonitorSource", "redact"]

log = logging.getLogger("hbsm.api")


class Control(Protocol):
    """What the API asks of the monitor that carries out admin actions (hbsm.monitor.Monitor
    is one): the API depends on this, not on the monitor."""

    @property
    def services(self) -> Mapping[str, Any]:
        """The monitored services, by name."""
        ...

    @property
    def heartbeat_running(self) -> bool: ...

    async def admin(
        self,
        action: str,
        service: str | None = None,
        *,
        who: str = "",
        source: str = "",
        allowed: bool = True,
        suppressed: int = 0,
    ) -> list[Event]:
        """Record an operator's action (allowed or not) and carry it out if allowed."""
        ...


class ApiSource(Protocol):
    @property
    def projection(self) -> Projection: ...

    @property
    def lock(self) -> contextlib.AbstractContextManager[Any]:
        """Held while a body is built from the projection (and while the projection changes)."""
        ...

    @property
    def admin_token(self) -> str | None: ...

    @property
    def log_path(self) -> str: ...

    @property
    def control(self) -> Control | None:
        """The monitor that carries out admin actions; None when only reading a log."""
        ...

    def now(self) -> float: ...

    @property
    def outage(self) -> Outage | None:
        """Set while the monitor cannot write its log; None when it can or when unknown."""
        ...

    def running(self) -> bool:
        """Whether monitoring (the probe scheduler) runs."""
        ...

    def config_view(self) -> dict[str, Any]:
        """The config in force as `GET /admin/heartbeat/status` shows it: secrets redacted."""
        ...

    def follow(self, after_seq: int) -> Follower:
        """A non-blocking follower of the events after `after_seq` (may do I/O: call it, and
        its `poll`, off the event loop)."""
        ...


# --- redaction -------------------------------------------------------------------------------


def redact(value: Any) -> Any:
    """A config (as builtins) with its secrets masked: hbsm.config.secrets decides which, for
    the log, this view and `hbsm config` alike. A config read from a log written before that
    rule (its secrets in clear) is masked here too."""
    return mask_secrets(value)


# --- a monitor in this process ----------------------------------------------------------------


class MonitorSource:
    """The live monitor: its projection, its control, its store's followers."""

    def __init__(self, monitor: Monitor, log_path: str | None = None) -> None:
        self.monitor = monitor
        self._log_path = log_path if log_path is not None else str(monitor.config.log.path)
        self._lock = contextlib.nullcontext()

    @property
    def projection(self) -> Projection:
        return self.monitor.projection

    @property
    def lock(self) -> contextlib.AbstractContextManager[Any]:
        return self._lock

    @property
    def admin_token(self) -> str | None:
        return self.monitor.config.admin_token or None

    @property
    def log_path(self) -> str:
        return self._log_path

    @property
    def control(self) -> Control | None:
        return self.monitor

    def now(self) -> float:
        return time.time()

    @property
    def outage(self) -> Outage | None:
        return self.monitor.outage

    def running(self) -> bool:
        return self.monitor.heartbeat_running

    def config_view(self) -> dict[str, Any]:
        config = msgspec.to_builtins(self.monitor.config)
        return redact(config) if isinstance(config, dict) else {}

    def follow(self, after_seq: int) -> Follower:
        return self.monitor.store.follow(after_seq)


# --- a log another process writes -------------------------------------------------------------


class LogSource:
    """A projection of the log at `path`, kept current by a polling thread (`start()`/`close()`,
    or `with LogSource(path) as source:`). `refresh()` folds what is new, once, on the caller's
    thread: tests and single-threaded callers can use it without the thread."""

    def __init__(
        self,
        path: str | Path,
        *,
        config: Config | None = None,
        admin_token: str | None = None,
        poll_interval: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.poll_interval = poll_interval
        self._token = admin_token or (config.admin_token if config is not None else None) or None
        self._clock = clock
        self._lock = threading.RLock()
        self._projection = Projection()
        # From the start of the active segment: its snapshot holds everything before it. Fallen
        # behind a pruned segment it goes on at the next one kept, the projection kept as it is.
        self._fold = LogFold(self.path, self._projection, lock=self._lock)
        self._poll_lock = threading.Lock()  # one poller at a time (thread and refresh())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bad_lines = 0

    # ApiSource

    @property
    def projection(self) -> Projection:
        return self._projection

    @property
    def lock(self) -> contextlib.AbstractContextManager[Any]:
        return self._lock

    @property
    def admin_token(self) -> str | None:
        return self._token

    @property
    def log_path(self) -> str:
        return str(self.path)

    @property
    def control(self) -> Control | None:
        return None

    def now(self) -> float:
        return self._clock()

    @property
    def outage(self) -> Outage | None:
        return None  # known only to the writer; a reader sees the log stop growing

    def running(self) -> bool:
        return self._projection.monitor.running

    def config_view(self) -> dict[str, Any]:
        with self._lock:
            config = dict(self._projection.monitor.config)
        return redact(config)

    def follow(self, after_seq: int) -> Follower:
        start = position_after(self.path, after_seq)
        return LogFollower(self.path, start, after_seq=after_seq, skip_bad=True)

    # Keeping up

    def refresh(self) -> int:
        """Fold every event written since the last call; how many there were. A gap (a bad
        line passed over, events lost to a pruned segment) is logged as a warning."""
        with self._poll_lock:
            folded = 0
            while True:
                step = self._fold.poll()
                for gap in step.gaps:
                    if isinstance(gap, LineSkipped):
                        self.bad_lines += 1
                    log.warning("%s", describe_gap(gap))
                if not step.events:
                    return folded
                folded += len(step.events)

    def start(self) -> Self:
        """Fold what the log holds now, then keep folding in a daemon thread."""
        if self._thread is None:
            self.refresh()
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"hbsm-log-source:{self.path.name}", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.refresh()
            except Exception:  # keep following: one bad poll must not end the projection
                log.exception("following %s", self.path)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with self._poll_lock:
            self._fold.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""Where the API's answers come from: a monitor in this process, or a log another one writes.

`Source` is what the request handler (hbsm.api.handler) needs, whichever framework serves it:
the projection (read under `lock`), the admin token, the config in force (redacted), the log's
path, one clock (`now()`), one outage view (`outage`), a way to follow new events (for `/events`
and the latency histogram of `/metrics`), and, for a live monitor only, `control` to carry out
admin actions.

* `MonitorSource(monitor)`: the monitor's own projection. `hbsm run` serves it from a thread of
  its own (hbsm/api/thread.py), so that a monitor whose loop is saturated by probes still
  answers: bodies are built from the projection as it is, without a lock (the monitor's loop
  must never wait for a reader), and `control` hands admin actions to the monitor's loop and
  awaits them there. Served in the monitor's own loop instead (the demo, tests), `control` is
  the monitor itself. The Flask blueprint's embedded monitor is one too
  (hbsm.flask.sources.EmbeddedSource), its requests handed to the monitor's loop.
* `LogSource(path)`: a projection of a log written by another process, kept up to date by a
  thread polling a `hbsm.log.fold.LogFold` every `poll_interval` s. Usable from asyncio and from
  plain threads (a WSGI server): decoding happens outside the lock, folding and reading inside
  it. A gap in what it could read is logged and kept (`lost`, `error`); the projection is never
  emptied by one, nor by a log it cannot read for a while (it reads on from where it was).

A source that cannot answer now (an embedded monitor not started yet, or shut down) raises
`NotRunning`; the handler answers 503 with its message.
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
from hbsm.errors import HbsmError
from hbsm.events import Event
from hbsm.log import Follower, LogError, LogFollower
from hbsm.log.fold import LineSkipped, LogFold, describe_gap
from hbsm.log.follower import position_after
from hbsm.projection import Projection

if TYPE_CHECKING:
    from hbsm.api.admin import AdminAsk
    from hbsm.api.answer import Answer
    from hbsm.config import Config
    from hbsm.monitor.reload import ReloadResult
    from hbsm.monitor.runtime import Monitor
    from hbsm.outage import Outage

__all__ = [
    "Control",
    "LogSource",
    "MonitorSource",
    "NotRunning",
    "Relay",
    "Source",
    "redact",
]

log = logging.getLogger("hbsm.api")


class NotRunning(HbsmError):
    """The source cannot answer now (monitor not started, stopped, or busy past a timeout)."""


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

    async def reload(self, *, source: str, who: str = "") -> ReloadResult:
        """Read the configuration file again and apply it (hbsm/monitor/reload.py)."""
        ...


class Relay(Protocol):
    """Admin actions carried out by the monitor of another process (hbsm.api.relay), its
    answer relayed as it is."""

    async def act(self, ask: AdminAsk) -> Answer: ...


class Source(Protocol):
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
        """The monitor that carries out admin actions; None when only reading a log. Raises
        NotRunning when there is a monitor that cannot act now."""
        ...

    @property
    def relay(self) -> Relay | None:
        """The monitor of another process that carries out admin actions for this one (the
        process serving the log another process of its app writes); None otherwise."""
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

    def __init__(
        self,
        monitor: Monitor | None,
        log_path: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # None only for a subclass whose `monitor` comes later (hbsm.flask's embedded one).
        self._monitor = monitor
        if log_path is None:
            assert monitor is not None
            log_path = str(monitor.config.log.path)
        self._log_path = log_path
        self._clock = clock
        self._lock = contextlib.nullcontext()

    @property
    def monitor(self) -> Monitor:
        assert self._monitor is not None
        return self._monitor

    @property
    def projection(self) -> Projection:
        return self.monitor.projection

    @property
    def lock(self) -> contextlib.AbstractContextManager[Any]:
        # None to take. Only the monitor's loop changes its projection; the API reads it from
        # its own thread without waiting for anything, so a reader can never hold the monitor's
        # loop up (a lock held while a 1,000-service body was built stopped the probes for as
        # long, at every request). A body may so mix services folded a moment apart; each
        # reader copies the services dict in one C call (list(...items())) before walking it,
        # so a service registered meanwhile cannot break the walk.
        return self._lock

    @property
    def admin_token(self) -> str | None:
        return self.monitor.config.admin_token or None

    @property
    def log_path(self) -> str:
        return self._log_path

    @property
    def control(self) -> Control | None:
        from hbsm.api.control import control_of  # it imports NotRunning from here

        return control_of(self.monitor)

    @property
    def relay(self) -> Relay | None:
        return None

    def now(self) -> float:
        return self._clock()

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
    thread: tests and single-threaded callers can use it without the thread.

    What it could not read is kept for whoever shows it: `lost` the (first, last) seqs of every
    run of events lost to this reader (pruned by retention before it read them, say), `error`
    the last trouble met, `bad_lines` how many lines were passed over, `last_seq` the seq of
    the last event folded."""

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
        self.error: str | None = None
        self.lost: list[tuple[int, int]] = []

    # Source

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

    @property
    def relay(self) -> Relay | None:
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

    @property
    def last_seq(self) -> int:
        return self._fold.last_seq

    @property
    def following(self) -> bool:
        """Whether the polling thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def refresh(self) -> int:
        """Fold every event written since the last call; how many there were. A gap (a bad
        line passed over, events lost to a pruned segment) is logged as a warning and kept.
        Raises what is not a gap (the log cannot be read); the next call reads on from where
        this one stopped."""
        with self._poll_lock:
            folded = 0
            while True:
                step = self._fold.poll()
                for gap in step.gaps:
                    if isinstance(gap, LineSkipped):
                        self.bad_lines += 1
                    else:
                        self.lost.append((gap.first, gap.last))
                    self._report(describe_gap(gap))
                if not step.events:
                    return folded
                folded += len(step.events)

    def start(self) -> Self:
        """Fold what the log holds now, then keep folding in a daemon thread."""
        if self._thread is None:
            self._poll_safely()
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"hbsm-log-source:{self.path.name}", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            self._poll_safely()

    def _poll_safely(self) -> None:
        try:
            self.refresh()
        except Exception as exc:
            # Keep following: the routes must not serve a projection frozen by one bad poll.
            # The next poll reads on from the active segment, skipping what was folded.
            if not isinstance(exc, LogError | OSError):
                log.exception("following %s failed", self.path)
            self._report(f"following {self.path}: {exc}")
            with self._poll_lock:
                self._fold.reopen(str(exc))

    def _report(self, message: str) -> None:
        if message != self.error:  # once per distinct trouble, not once per poll
            log.warning("%s", message)
        self.error = message

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

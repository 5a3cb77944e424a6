"""`init_heartbeat` (embedded monitor) and `follow_log` (read-only), and the handle both return."""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self, TypeVar

from flask import Blueprint, Flask

from hbsm.api.refusals import RefusalLimiter
from hbsm.api.relay import RELAY_SUPPORTED, RelayServer
from hbsm.api.source import LogSource, Source
from hbsm.config import Config, LoadedConfig
from hbsm.flask.blueprint import HeartbeatRoutes, page_taken, routes_taken
from hbsm.flask.embedded import MonitorThread, resolve_config
from hbsm.flask.shutdown import stop_on_sigterm
from hbsm.flask.sources import READ_TIMEOUT, EmbeddedSource
from hbsm.log import LogLockedError
from hbsm.projection import Projection

if TYPE_CHECKING:
    from hbsm.monitor import Monitor

__all__ = ["HeartbeatHandle", "follow_log", "init_heartbeat"]

T = TypeVar("T")
log = logging.getLogger("hbsm.flask")

# The key of `app.extensions` under which the handle is kept.
EXTENSION = "hbsm"


class HeartbeatHandle:
    """What `init_heartbeat`/`follow_log` set up in an app: its source, blueprint and thread.

    `stop()` ends the thread (the embedded monitor records `monitor.stopped` and closes the log);
    it is registered with atexit too, so an app that just exits stops cleanly. The handle is
    also a context manager that stops it."""

    def __init__(
        self,
        app: Flask,
        source: Source,
        routes: HeartbeatRoutes,
        *,
        runner: MonitorThread | None = None,
    ) -> None:
        self.app = app
        self.source = source
        self.routes = routes
        self.blueprint: Blueprint = routes.blueprint
        self._runner = runner
        self._lock = threading.Lock()
        self._stopped = False
        self._on_stop: list[Callable[[], None]] = []
        # Standing by while another process monitors: the thread that tries to take over.
        self._standing: threading.Thread | None = None
        self._end_standby = threading.Event()
        atexit.register(self.stop)

    @property
    def mode(self) -> Literal["embedded", "follow"]:
        return "embedded" if self._runner is not None else "follow"

    @property
    def config(self) -> Config | None:
        """The configuration the embedded monitor runs with (None when following a log)."""
        return self._runner.config if self._runner is not None else None

    @property
    def monitor(self) -> Monitor | None:
        """The embedded Monitor. It lives on another thread's loop: read it with `read`, act on
        it through the admin routes or `asyncio.run_coroutine_threadsafe(..., handle.loop)`."""
        return self._runner.monitor if self._runner is not None else None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The embedded monitor's asyncio loop (None when following a log, or not running)."""
        return self._runner.loop if self._runner is not None else None

    @property
    def running(self) -> bool:
        if self._runner is not None:
            return self._runner.state == "running"
        assert isinstance(self.source, LogSource)
        return self.source.following

    def read(self, fn: Callable[[Projection], T]) -> T:
        """`fn(projection)` while nothing mutates the projection (on the monitor's loop, or
        under the follower's lock); keep it short. Raises NotRunning as the routes answer 503."""
        source = self.source

        async def call() -> T:
            with source.lock:
                return fn(source.projection)

        return self.routes.dispatcher.run(call, READ_TIMEOUT)

    def start(self) -> None:
        """Start the monitor (or follower) thread; idempotent. Raises what kept it from
        starting (the log held by another writer, say)."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("this heartbeat handle has been stopped")
        if self._runner is not None:
            try:
                self._runner.start()
            except LogLockedError:
                if self._runner.state != "standby":
                    raise
                self._stand_by()
        else:
            assert isinstance(self.source, LogSource)
            self.source.start()

    def _stand_by(self) -> None:
        """Another process of this app monitors (one gunicorn worker of several): serve its
        log, and try the log's lock every check interval, to take over if that one ends."""
        runner, source = self._runner, self.source
        assert runner is not None and isinstance(source, EmbeddedSource)
        if source.standby is None:
            config = runner.config
            source.standby = LogSource(config.log.path, admin_token=config.admin_token or None,
                                       clock=source.now).start()  # fmt: skip
            log.warning("hbsm: %s", runner.why_not_running())
        if self._standing is None:
            self._standing = threading.Thread(target=self._take_over, name="hbsm-standby",
                                              daemon=True)  # fmt: skip
            self._standing.start()

    def _take_over(self) -> None:
        runner, source = self._runner, self.source
        assert runner is not None and isinstance(source, EmbeddedSource)
        while not self._end_standby.wait(max(0.05, runner.config.check_interval)):
            try:
                runner.start()
            except LogLockedError:
                continue  # still held: stand by
            except Exception:
                # Not the lock: the monitor cannot start here at all (and would not at the
                # next try either). Said once; this process goes on serving the log.
                log.exception(
                    "hbsm: taking over monitoring failed; this process only serves the log"
                )
                return
            reader, source.standby = source.standby, None
            if reader is not None:
                reader.close()
            log.warning("hbsm: the log's monitor ended: this process (pid %d) monitors now",
                        os.getpid())  # fmt: skip
            return

    def on_stop(self, undo: Callable[[], None]) -> None:
        """Call `undo` when the handle stops (what it set up in the process: a handler)."""
        self._on_stop.append(undo)

    def stop(self, timeout: float = 30.0, *, reason: str = "the Flask app stopped") -> None:
        """Stop the thread and wait for it (at most `timeout` s); idempotent. `reason`: what
        the embedded monitor's `monitor.stopped` says."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        atexit.unregister(self.stop)
        for undo in self._on_stop:
            undo()
        self.routes.close()  # while the monitor still records what it drains
        self._end_standby.set()
        if self._standing is not None:
            self._standing.join(timeout)
        if isinstance(self.source, EmbeddedSource) and self.source.standby is not None:
            self.source.standby.close()
        if self._runner is not None:
            self._runner.stop(reason, timeout=timeout)
        else:
            assert isinstance(self.source, LogSource)
            self.source.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def init_heartbeat(
    app: Flask,
    config: Config | LoadedConfig | str | os.PathLike[str] | None = None,
    *,
    log_path: str | os.PathLike[str] | None = None,
    url_prefix: str | None = None,
    config_files: Sequence[str | os.PathLike[str]] = (),
    start: bool = True,
    clock: Callable[[], float] = time.time,
    refusals: RefusalLimiter | None = None,
) -> HeartbeatHandle:
    """Run an hbsm monitor inside `app` (the original feature's embedded mode) and serve the
    heartbeat routes from it.

    `config`: a Config, a LoadedConfig, a path to hbsm.toml (missing: a ConfigError naming it),
    or None for the built-in defaults and the environment, `$HEARTBEAT_CONFIG` included
    (./hbsm.toml is not looked for; with no services configured: this app's `/health` and its
    login page — call this after the login route is defined). `log_path` overrides the config's
    event log. `config_files`: the app's own configuration files (say, the JSON it reads),
    checked by those services' `check_config` step before restarting the app; while one is
    broken the restart is held back, since the app would not start again.

    The monitor starts now, on a thread with its own asyncio loop; with `start=False` it starts
    at the app's first request instead (for processes that import the app but never serve: a
    reloader's parent, a pre-fork master). One monitor per log: in a second process
    (another gunicorn worker) it stands by, serving the log the first one writes, and takes
    over within a check interval of that one ending. `refusals`: how refused admin attempts
    are rate-limited (hbsm.api.refusals).
    """
    resolved = resolve_config(app, config, log_path=log_path, url_prefix=url_prefix,
                              config_files=config_files)  # fmt: skip
    reread: Callable[[], LoadedConfig] | None = None
    if not isinstance(config, Config | LoadedConfig):
        # Read from a file (or the environment): a reload reads it again the same way.
        where = Path(config) if config is not None else None

        def reread() -> LoadedConfig:
            again = resolve_config(app, config, log_path=log_path, url_prefix=url_prefix,
                                   config_files=config_files)  # fmt: skip
            return LoadedConfig(config=again, sources={}, path=where)

    runner = MonitorThread(resolved, clock=time.time, reread=reread)
    source = EmbeddedSource(runner, clock=clock)
    handle = _install(app, source, url_prefix, runner=runner, refusals=refusals)
    if RELAY_SUPPORTED:
        runner.relay = RelayServer(resolved.log.path, handle.routes.handler.desk)
    handle.on_stop(stop_on_sigterm(lambda why: handle.stop(reason=why)))
    if start:
        try:
            handle.start()
        except BaseException:
            handle.stop()
            raise
    else:

        @app.before_request
        def start_heartbeat() -> None:
            if runner.state != "new":
                return
            try:
                handle.start()
            except Exception:
                # The host app goes on serving; the heartbeat routes answer 503 with the reason.
                log.exception("hbsm: the embedded monitor failed to start")

    return handle


def follow_log(
    app: Flask,
    path: str | os.PathLike[str],
    *,
    admin_token: str | None = None,
    url_prefix: str | None = None,
    poll_interval: float = 0.2,
    clock: Callable[[], float] = time.time,
) -> HeartbeatHandle:
    """Serve the heartbeat routes from the log another `hbsm run` writes at `path`.

    A thread follows the log (across rotations) and folds it into a projection; admin actions
    answer 409, since only the writer can act. `admin_token` (default: $HEARTBEAT_ADMIN_TOKEN)
    guards `GET /admin/heartbeat/status` and the targets in `/health/detailed` as in the
    embedded mode. Returns once the log's history is folded.
    """
    if admin_token is None:
        admin_token = os.environ.get("HEARTBEAT_ADMIN_TOKEN", "").strip() or None
    source = LogSource(Path(path), admin_token=admin_token, poll_interval=poll_interval,
                       clock=clock)  # fmt: skip
    handle = _install(app, source, url_prefix)
    handle.start()
    return handle


def _install(
    app: Flask,
    source: Source,
    url_prefix: str | None,
    *,
    runner: MonitorThread | None = None,
    refusals: RefusalLimiter | None = None,
) -> HeartbeatHandle:
    if EXTENSION in app.extensions:
        raise RuntimeError("hbsm is already set up in this app (app.extensions['hbsm'])")
    taken = routes_taken(app, url_prefix)
    if taken:
        # One line, naming both sides: the app keeps its routes, hbsm's are hidden there.
        log.warning(
            "hbsm: this app already serves %s, so hbsm's route there is hidden; pass "
            'url_prefix="/heartbeat" (or another) to serve all of hbsm\'s routes under it',
            ", ".join(taken),
        )
    if page_taken(app, url_prefix):
        # Not a warning: an app's own home page is the rule, and the API is all there.
        log.info(
            "hbsm: this app serves %s/ itself, so hbsm's status page is not shown there; pass "
            'url_prefix="/heartbeat" (or another) to have it at /heartbeat/',
            (url_prefix or "").rstrip("/"),
        )
    routes = HeartbeatRoutes(source, refusals=refusals)
    app.register_blueprint(routes.blueprint, url_prefix=url_prefix)
    handle = HeartbeatHandle(app, source, routes, runner=runner)
    app.extensions[EXTENSION] = handle
    return handle

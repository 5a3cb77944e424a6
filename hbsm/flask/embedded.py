"""The embedded mode: a real Monitor on its own asyncio loop in a background thread.

Wired as `hbsm run` wires it (file log with a snapshot per segment, prober, repair runner,
supervisor, notifier); the host's Flask app only reads its projection and asks it for admin
actions, both through that loop (see `EmbeddedSource`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import msgspec

from hbsm.api.relay import RelayServer
from hbsm.config import Config, LoadedConfig, load_config
from hbsm.config.load import own_base_url
from hbsm.log import LogLockedError
from hbsm.monitor import Monitor
from hbsm.monitor.build import open_monitor

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["DISABLED", "MonitorThread", "own_health_rule", "resolve_config", "standby_message"]

log = logging.getLogger("hbsm.flask")

State = Literal["new", "starting", "running", "stopping", "stopped", "disabled", "standby"]
# Why an embedded monitor that is switched off does nothing.
DISABLED = "monitoring is disabled (enabled = false, or HEARTBEAT_ENABLED=false)"


def standby_message(holder: int | None) -> str:
    """Why a process standing by does not act: it names the one that does."""
    who = f"pid {holder}" if holder is not None else "another process"
    return (
        f"the monitor of this app runs in another process ({who}); this one serves its log, "
        "and takes over if that one ends"
    )


class MonitorThread:
    """Runs one Monitor in a daemon thread. `start()` returns once it is monitoring (or raises
    what kept it from starting: a log held by another writer, say); `stop()` stops it as
    `hbsm run` does on SIGTERM, records `monitor.stopped` and closes the log."""

    def __init__(
        self,
        config: Config,
        *,
        startup_timeout: float = 30.0,
        stop_grace: float = 10.0,
        clock: Callable[[], float] = time.time,
        reread: Callable[[], LoadedConfig] | None = None,
    ) -> None:
        self.config = config
        # How the configuration is read again on a reload (None: it was given in code).
        self.reread = reread
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.clock = clock
        self.state: State = "new"
        self.monitor: Monitor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # Held by readers once the thread has ended (nothing else touches the projection then).
        self.lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._reason = "stopped"
        self._error: BaseException | None = None
        # The pid holding the log's lock, while this one stands by ("standby").
        self.holder: int | None = None
        # Served on the monitor's loop while it monitors: the admin actions that the app's other
        # processes (standing by) relay to it.
        self.relay: RelayServer | None = None

    def start(self) -> None:
        """Start monitoring; with `enabled = false` nothing at all: no thread, no log opened,
        no process started (the state says "disabled")."""
        with self._state_lock:
            if not self.config.enabled:
                self.state = "disabled"
                return
            if self.state == "standby":  # another try at the log's lock: from the start
                self.state = "new"
                self._ready = threading.Event()
                self._error = None
            if self.state != "new":
                if self.state == "stopped" and self.monitor is None:
                    raise RuntimeError("the embedded monitor failed to start") from self._error
                return
            self.state = "starting"
            self._thread = threading.Thread(target=self._main, name="hbsm-monitor", daemon=True)
            self._thread.start()
        if not self._ready.wait(self.startup_timeout):
            raise RuntimeError(f"the embedded monitor did not start within "
                               f"{self.startup_timeout:g} s")  # fmt: skip
        error = self._error
        if isinstance(error, LogLockedError):
            # Another process of this app monitors (a gunicorn worker, say): stand by.
            with self._state_lock:
                if self.state == "stopped":
                    self.state = "standby"
                    self.holder = error.pid
        if error is not None:
            raise error

    def stop(self, reason: str = "the Flask app stopped", timeout: float = 30.0) -> None:
        """Stop monitoring and end the thread; idempotent."""
        with self._state_lock:
            if self.state == "disabled":
                return
            if self.state in ("new", "stopped", "standby"):
                self.state = "stopped"
                return
            self._reason = reason
            if self.state in ("starting", "running"):
                self.state = "stopping"
            loop, stop = self.loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed already
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the embedded monitor did not stop within %g s", timeout)

    def finished(self) -> bool:
        """The loop is done (or never runs): nothing will mutate the projection any more."""
        return self.state in ("stopped", "disabled")

    def why_not_running(self) -> str:
        if self.state == "disabled":
            return DISABLED
        if self.state == "standby":
            return standby_message(self.holder)
        if self.state in ("new", "starting"):
            return "the embedded monitor has not started yet"
        if self._error is not None:
            return f"the embedded monitor failed to start: {self._error}"
        return "the embedded monitor has been shut down"

    # --- the thread -----------------------------------------------------------------------

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._run(loop))
        except BaseException as exc:  # pragma: no cover - _run reports its own failures
            log.exception("the embedded monitor crashed")
            self._error = self._error or exc
        finally:
            with contextlib.suppress(Exception):
                _cancel_leftovers(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            with self._state_lock:
                self.state = "stopped"
                self.loop = None
            loop.close()
            self._ready.set()

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        config = self.config
        self._stop = asyncio.Event()
        try:
            store, monitor = open_monitor(config, clock=self.clock)
        except BaseException as exc:
            self._error = exc
            return
        monitor.reloader.loader = self.reread
        try:
            try:
                await monitor.start()
            except BaseException as exc:
                self._error = exc
                with contextlib.suppress(Exception):
                    await monitor.prober.aclose()
                    await monitor.notifier.aclose()
                return
            with self._state_lock:
                self.monitor = monitor
                self.loop = loop
                stopping = self.state == "stopping"
                if not stopping:
                    self.state = "running"
            self._ready.set()
            log.info("hbsm: monitoring %d services; event log %s",
                     len(monitor.services), config.log.path)  # fmt: skip
            if not stopping:
                await self._open_relay()
                await self._stop.wait()
            if self.relay is not None:
                await self.relay.close()
            await monitor.stop(self._reason, grace=self.stop_grace)
        finally:
            store.close()

    async def _open_relay(self) -> None:
        if self.relay is None:
            return
        try:
            await self.relay.start()
        except OSError as exc:
            # Admin actions reaching the app's other processes answer 503 instead; this one's
            # own are not concerned.
            log.warning("hbsm: the app's other processes cannot relay admin actions here: %s", exc)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


# --- the configuration --------------------------------------------------------------------


def resolve_config(
    app: Flask,
    config: Config | LoadedConfig | str | os.PathLike[str] | None,
    *,
    log_path: str | os.PathLike[str] | None = None,
    url_prefix: str | None = None,
    config_files: Sequence[str | os.PathLike[str]] = (),
) -> Config:
    """The Config the embedded monitor runs with.

    A Config or LoadedConfig is taken as it is. A path is loaded with `load_config`, the
    environment laid over it (a missing file is a ConfigError naming it); None means the
    built-in defaults and the environment (`$HEARTBEAT_CONFIG` may name a file): a `hbsm.toml`
    that happens to be in the working directory is not read, as the app never asked for it;
    without services configured, hbsm monitors what the original feature did — this app's own
    `/health` (under `url_prefix`) and its login page: `login_url` if set, else the app's own (a
    `/login` rule, or an endpoint named `login`) when it has one, else `<host:port>/login`.
    `log_path` replaces the log's path. `config_files`: the app's own configuration files,
    which those services' `check_config` step checks before a restart (a broken one holds the
    restart back: the app would not start again); ignored with services configured or with a
    Config given (name the files in their `[services.steps.check_config]`).
    """
    if isinstance(config, Config):
        resolved = config
    elif isinstance(config, LoadedConfig):
        resolved = config.config
    else:
        files = tuple(os.fspath(f) for f in config_files)
        loaded = load_config(config, embedded=True, discover=False, embedded_config_files=files)
        base = own_base_url(loaded.config.host, loaded.config.port)
        login = _login_rule(app)
        health = own_health_rule(app)
        # A login_url the operator set (file or HEARTBEAT_LOGIN_URL) wins over the app's route.
        login_url = base + login if login is not None and not loaded.config.login_url else None
        health_url = base + health if health is not None else None
        if login_url is not None or health_url is not None:
            loaded = load_config(config, embedded_login_url=login_url, embedded=True,
                                 embedded_health_url=health_url, discover=False,
                                 embedded_config_files=files)  # fmt: skip
        resolved = loaded.config
        if health is None:  # then main_service probes hbsm's own /health, under the prefix
            resolved = _prefixed_own_health(resolved, url_prefix)
    if log_path is not None:
        log = msgspec.structs.replace(resolved.log, path=os.fspath(log_path))
        resolved = msgspec.structs.replace(resolved, log=log)
    return resolved


def own_health_rule(app: Flask) -> str | None:
    """ "/health" when the app serves a GET /health of its own (not hbsm's)."""
    for rule in app.url_map.iter_rules():
        ours = rule.endpoint.startswith("hbsm_heartbeat.")
        if rule.rule == "/health" and "GET" in (rule.methods or ()) and not ours:
            return rule.rule
    return None


def _login_rule(app: Flask) -> str | None:
    """The path of the app's login page: a `/login` rule, else a GET rule whose endpoint is
    `login` (or `<blueprint>.login`), without arguments."""
    candidates = [
        rule
        for rule in app.url_map.iter_rules()
        if not rule.arguments and "GET" in (rule.methods or ())
    ]
    for rule in candidates:
        if rule.rule == "/login":
            return rule.rule
    for rule in candidates:
        if rule.endpoint == "login" or rule.endpoint.endswith(".login"):
            return rule.rule
    return None


def _prefixed_own_health(config: Config, url_prefix: str | None) -> Config:
    """The default `main_service` probes `<base>/health`; with a url_prefix the blueprint
    answers at `<base><prefix>/health` instead."""
    prefix = (url_prefix or "").rstrip("/")
    if not prefix:
        return config
    own = f"{own_base_url(config.host, config.port)}/health"
    services = [
        msgspec.structs.replace(s, url=own.removesuffix("/health") + prefix + "/health")
        if s.name == "main_service" and s.url == own
        else s
        for s in config.services
    ]
    return msgspec.structs.replace(config, services=services)

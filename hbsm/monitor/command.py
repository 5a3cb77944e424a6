"""`hbsm run`: load the config, take the log, run the monitor and its HTTP API until
SIGTERM/SIGINT. SIGHUP reads the configuration file again (hbsm/monitor/reload.py).

The API (hbsm.api, on uvicorn) runs in the monitor's own asyncio loop. Listening on an address
that is not loopback without an admin token is refused unless `--insecure` is given.

Exit codes: 0 stopped cleanly, 2 bad configuration (or a non-loopback address without a token),
3 the event log cannot be used (held by another writer, corrupt), 4 the API cannot listen
(address in use, say), 1 anything unexpected. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from hbsm.config import ConfigError, LoadedConfig, load_config
from hbsm.log import LogError

if TYPE_CHECKING:
    from hbsm.monitor.runtime import Monitor
    from hbsm.monitor.systemd import SystemdLink

__all__ = ["add_parser", "run", "serve"]

EXIT_CONFIG = 2
EXIT_LOG = 3
EXIT_LISTEN = 4

log = logging.getLogger("hbsm")


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run the monitor (probes, repairs, restarts) until stopped",
        description="Run the monitor and its HTTP API until SIGTERM or SIGINT; SIGHUP reads "
        "the configuration file again (as `hbsm reload` does). Exit codes: "
        "0 stopped cleanly, 2 bad configuration (or a non-loopback --host without an admin "
        "token), 3 the event log cannot be used, 4 the API cannot listen (address in use), "
        "1 unexpected error.",
    )
    parser.add_argument("--config", metavar="FILE", help="hbsm.toml (default: $HEARTBEAT_CONFIG "
                        "or ./hbsm.toml if present, else the built-in defaults)")  # fmt: skip
    parser.add_argument("--log", metavar="PATH", help="event log (overrides the config)")
    parser.add_argument("--store", metavar="URL",
                        help="keep the event log in NATS JetStream at URL (nats://host:4222; "
                        "several servers of one cluster comma-separated: "
                        "nats://a:4222,nats://b:4222), not in the file (overrides config, "
                        "HEARTBEAT_EVENT_STORE)")  # fmt: skip
    parser.add_argument("--node", metavar="NAME",
                        help="run as node NAME of several sharing the --store stream: each "
                        "decides the services it holds the lease of (overrides cluster.node, "
                        "HEARTBEAT_NODE)")  # fmt: skip
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="stop by itself after this long (for demos and tests)")  # fmt: skip
    parser.add_argument("--host", metavar="ADDRESS",
                        help="API address (overrides the config and HEARTBEAT_HOST)")  # fmt: skip
    parser.add_argument("--port", type=_port, metavar="PORT",
                        help="API port (overrides the config and HEARTBEAT_PORT)")  # fmt: skip
    parser.add_argument("--insecure", action="store_true",
                        help="listen on a non-loopback address even without an admin token "
                        "(admin routes still answer loopback clients only)")  # fmt: skip
    parser.set_defaults(handler=run)
    return parser


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 1-65535, got {text!r}")
    return port


def run(args: argparse.Namespace) -> int:
    # --host/--port act as HEARTBEAT_HOST/PORT would, so the built-in services (which probe
    # the API's own /health) get the address actually served.
    env = dict(os.environ)
    if getattr(args, "host", None):
        env["HEARTBEAT_HOST"] = args.host
    if getattr(args, "port", None):
        env["HEARTBEAT_PORT"] = str(args.port)
    if getattr(args, "store", None):
        env["HEARTBEAT_EVENT_STORE"] = args.store
    if getattr(args, "node", None):
        env["HEARTBEAT_NODE"] = args.node
    log_override = args.log

    def read() -> LoadedConfig:
        """The configuration as this command reads it: at start, and again at each reload."""
        loaded = load_config(args.config, env)
        if not log_override:
            return loaded
        import msgspec

        config = msgspec.structs.replace(
            loaded.config, log=msgspec.structs.replace(loaded.config.log, path=log_override)
        )
        return LoadedConfig(config=config, sources=loaded.sources, path=loaded.path)

    try:
        loaded = read()
    except ConfigError as exc:
        print(f"hbsm run: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    config = loaded.config
    from hbsm.api.security import binds_loopback_only

    insecure = getattr(args, "insecure", False)
    if not config.admin_token and not insecure and not binds_loopback_only(config.host):
        print(
            f"hbsm run: refusing to serve the API on {config.host}, which is not loopback, "
            "without an admin token: set HEARTBEAT_ADMIN_TOKEN (or admin_token), or pass "
            "--insecure",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    from hbsm.monitor.diagnostics import setup_logging

    guard = setup_logging(config.log)
    from hbsm.api.listen import ListenError

    try:
        return asyncio.run(serve(loaded, duration=args.duration, reread=read))
    except LogError as exc:
        print(f"hbsm run: {exc}", file=sys.stderr)
        return EXIT_LOG
    except ListenError as exc:
        print(f"hbsm run: {exc}", file=sys.stderr)
        return EXIT_LISTEN
    finally:
        guard.flush()  # the counts of repeated messages not written yet


async def serve(
    loaded: LoadedConfig,
    *,
    duration: float | None = None,
    api: bool = True,
    reread: Callable[[], LoadedConfig] | None = None,
) -> int:
    """Run the monitor (and, with `api`, its HTTP API) until SIGTERM/SIGINT or `duration`.
    With `reread` (how the configuration is read again), SIGHUP and `POST
    /admin/config/reload` reload it (hbsm/monitor/reload.py).

    The log is opened before the API's address is taken, so a second monitor on the same log
    is refused for the log (exit 3) whatever the port."""
    from hbsm.api.listen import bind
    from hbsm.monitor.build import open_monitor  # heavy: only `hbsm run` needs it

    config = loaded.config
    store, monitor = open_monitor(config)
    log_path = store.where  # the file's path, or the stream and its server
    sock = None
    systemd = None
    try:
        # Before anything is started: what hbsm starts must not inherit systemd's variables.
        systemd = _systemd_link(monitor)
        sock = bind(config.host, config.port) if api else None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        reason = {"why": "stopped"}

        def on_signal(name: str) -> None:
            reason["why"] = name
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)
        monitor.reloader.loader = reread
        reloads: set[asyncio.Task[object]] = set()

        def on_hangup() -> None:
            # The outcome (applied, refused) is on stderr and in the log: nobody awaits it.
            task = loop.create_task(_reload_on_signal(monitor))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        if reread is not None:
            loop.add_signal_handler(signal.SIGHUP, on_hangup)
        await monitor.start()
        # Everything built so far (config, states, views, the machine) lives as long as the
        # process: out of the collector's sight, its pauses no longer land in probe latencies
        # (measured: p99 latency error 12.7 ms -> 3.7 ms at 1,000 probes/s, docs/performance.md).
        gc.collect()
        gc.freeze()
        server = None
        if sock is not None:
            # The API's stack (Starlette, uvicorn) is imported only when the API serves.
            from hbsm.api import MonitorSource, create_app
            from hbsm.api.guard import Limits
            from hbsm.api.server import ApiServer
            from hbsm.api.thread import ApiThread

            api_config = config.api
            limits = Limits(
                max_header_bytes=api_config.max_header_bytes,
                max_headers=api_config.max_headers,
                header_timeout=api_config.header_timeout,
                body_timeout=api_config.body_timeout,
                max_connections=api_config.max_connections,
            )
            # In a thread of its own: it answers while the probes saturate the monitor's loop.
            server = ApiThread(
                ApiServer(
                    create_app(MonitorSource(monitor, str(log_path))),
                    sock,
                    limits=limits,
                    trusted_proxies=api_config.trusted_proxies,
                    probes_in_flight=config.concurrency,
                )
            )
            try:
                await server.start()
            except BaseException:
                await monitor.stop("the API did not start")
                raise
            log.info("API on %s, %s", server.url, server.cap_note)
        node = f" as node {monitor.node} (of those whose lease it holds)" if monitor.node else ""
        log.info("monitoring %d services%s; event log %s", len(monitor.services), node, log_path)
        if systemd is not None:
            systemd.ready(loop)  # resumed from the log, and the API answers
        try:
            await asyncio.wait_for(stop.wait(), timeout=duration)
        except TimeoutError:
            reason["why"] = f"ran for {duration:g} s as asked"
        log.info("stopping: %s", reason["why"])
        if systemd is not None:
            systemd.stopping(reason["why"])
        # The stop is under way: another SIGTERM (a supervisor's, an impatient operator's)
        # must not cut it short, nor turn the exit code into -15 once the loop has closed
        # and its handler is gone. SIGKILL still ends it; Ctrl-C twice still interrupts.
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if reread is not None:
            loop.remove_signal_handler(signal.SIGHUP)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # too late to reload: stopping
        await asyncio.gather(*reloads, return_exceptions=True)
        if server is not None:
            # First: no admin action may reach a monitor that is stopping.
            await server.stop()
        await monitor.stop(reason["why"])
    finally:
        if systemd is not None:
            systemd.close()
        if sock is not None:
            sock.close()
        try:
            store.close()
        except (OSError, LogError) as exc:
            # The disk is still full: monitor.stop has said what was not written.
            log.error("closing the event log %s: %s", log_path, exc)
    return 0


def _systemd_link(monitor: Monitor) -> SystemdLink | None:
    """systemd's notifications, when it started us as a Type=notify unit (NOTIFY_SOCKET set);
    otherwise nothing, not even the module."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return None
    from hbsm.monitor.systemd import SystemdLink, monitor_status

    return SystemdLink.from_environ(os.environ, os.getpid(), lambda: monitor_status(monitor))


async def _reload_on_signal(monitor: Monitor) -> None:
    from hbsm.monitor.outage import LogUnwritableError
    from hbsm.monitor.reload import ReloadUnavailableError

    log.info("SIGHUP: reading the configuration again")
    try:
        await monitor.reload(source="signal", who="SIGHUP")
    except (ReloadUnavailableError, LogUnwritableError) as exc:
        log.error("config reload not done: %s", exc)
    except Exception:
        log.exception("config reload failed")

"""`hbsm demo`: flaky local services, monitored and repaired by hbsm, the dashboard on them.

    hbsm demo                                  # services + monitor + API + dashboard
    hbsm demo --chaos                          # ... and a fault every few seconds
    hbsm demo --headless --chaos --duration 60 # progress lines and a summary; exit 0 iff
                                               # every injected fault was repaired

The demo services (hbsm.demo.service) run as real child processes supervised by hbsm, on free
loopback ports; the monitor and its API run in this process on 127.0.0.1:5000 (or the next free
port). Chaos stops injecting in the last part of the run (20 s, or 40 % of a shorter run) so
that the last fault can be repaired, and at the end the demo waits up to DRAIN_S more for a
fault still being repaired. The event log stays behind for `hbsm replay` and
`hbsm dashboard --replay`; the summary says where.

Exit codes: 0 every injected fault repaired (each detected within the bound of
hbsm.demo.workdir.detection_bound, and no restart broke the cooldown), 1 not, 2 bad
usage (a --dir that already holds a demo run), 4 no free port for the API, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import logging.handlers
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Demo", "add_parser", "main", "run"]

EXIT_NOT_REPAIRED = 1
EXIT_USAGE = 2
EXIT_LISTEN = 4
EXIT_INTERRUPTED = 130
DEFAULT_EVERY = 3.0  # seconds between fault injections
QUIET_TAIL = 20.0  # no new fault this close to the end
DRAIN_S = 15.0  # at most this much longer, for a fault still being repaired
_POLL = 0.1


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="run flaky demo services under hbsm, with the dashboard on them",
        description="Start three demo services (main_service, login_page, worker) as processes "
        "hbsm supervises, monitor and repair them with small thresholds, serve the API on "
        "127.0.0.1 (port 5000 or the next free one) and open the dashboard. --chaos injects a "
        "fault (crash, hang, error, slow, badconfig) every few seconds. With --headless: "
        "progress lines and a summary; exit 0 iff every injected fault was repaired.",
    )
    parser.add_argument("--chaos", action="store_true", help="inject faults every few seconds")
    parser.add_argument("--headless", action="store_true",
                        help="no dashboard: print progress and a summary")  # fmt: skip
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="stop after this long (default: until Ctrl-C)")  # fmt: skip
    parser.add_argument("--port", type=int, default=5000, metavar="PORT",
                        help="the API's port, or the next free one (default 5000)")  # fmt: skip
    parser.add_argument("--dir", metavar="DIR",
                        help="working directory (default: ./demo-run/TIMESTAMP)")  # fmt: skip
    parser.add_argument("--seed", type=int, metavar="N", help="seed of the chaos schedule")
    parser.add_argument("--every", type=float, default=DEFAULT_EVERY, metavar="SECONDS",
                        help=f"seconds between faults (default {DEFAULT_EVERY:g})")  # fmt: skip
    parser.set_defaults(handler=run)
    return parser


class Demo:
    """The monitor, its API, chaos and the progress printer, in one asyncio loop."""

    def __init__(
        self,
        setup: Any,
        sock: socket.socket,
        *,
        chaos: bool,
        duration: float | None,
        seed: int | None,
        every: float = DEFAULT_EVERY,
        progress: bool = True,
        out: Callable[[str], None] = print,
    ) -> None:
        from hbsm.demo.chaos import Chaos, FaultTracker

        self.setup = setup
        self.sock = sock
        self.duration = duration
        self.every = every
        self.progress = progress
        self.out = out
        self.tracker = FaultTracker()
        self.chaos = (
            Chaos(
                control_dir=setup.control_dir,
                configs={name: s.config for name, s in setup.services.items()},
                record=setup.faults_path,
                seed=seed,
            )
            if chaos
            else None
        )
        self.started = time.time()
        self.interrupted = False  # SIGINT/SIGTERM
        self.user_stopped = False  # SIGINT/SIGTERM, or the dashboard closed
        self.api_url = ""
        self.ready = threading.Event()  # the API is serving
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def request_stop(self, *, user: bool = False) -> None:
        """Stop the demo (from any thread); `user`: the user asked (the dashboard was closed)."""
        self.user_stopped = self.user_stopped or user
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)

    def _say(self, text: str) -> None:
        if self.progress:
            self.out(f"{time.time() - self.started:7.1f}s  {text}")

    async def main(self, *, signals: bool = True) -> None:
        import signal

        from hbsm.api import MonitorSource, create_app
        from hbsm.api.server import ApiServer
        from hbsm.config import load_config
        from hbsm.monitor.build import open_monitor

        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEAT_")}
        config = load_config(self.setup.config_path, env).config
        store, monitor = open_monitor(config)
        server = None
        follower = None
        stopped = False
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(sig, self._on_signal)
        try:
            self.started = time.time()
            await monitor.start()
            server = ApiServer(create_app(MonitorSource(monitor, str(config.log.path))), self.sock)
            await server.start()
            self.api_url = server.url
            self.ready.set()
            follower = store.follow()
            tasks = [asyncio.create_task(self._follow(follower), name="demo-progress")]
            if self.chaos is not None:
                tasks.append(asyncio.create_task(self._chaos(), name="demo-chaos"))
            await self._wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.stop()
            server = None
            await monitor.stop("stopped by the user" if self.user_stopped else "the demo is over")
            stopped = True
            self._take(follower.poll())
        finally:
            if server is not None:
                await server.stop()
            if not stopped:
                # An error on the way: still stop the children (stop_on_exit).
                with contextlib.suppress(Exception):
                    await monitor.supervisor.stop_all(grace=2.0)
            if follower is not None:
                follower.close()
            with contextlib.suppress(OSError):
                self.sock.close()
            store.close()
            self.ready.set()

    def _on_signal(self) -> None:
        self.interrupted = True
        self.user_stopped = True
        if self._stop is not None:
            self._stop.set()

    async def _wait(self) -> None:
        assert self._stop is not None
        if self.duration is None:
            await self._stop.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=self.duration)
        if self._stop.is_set() or not self.tracker.pending:
            return
        self._say(f"time is up; waiting up to {DRAIN_S:g} s for the faults being repaired")
        deadline = time.time() + DRAIN_S
        while self.tracker.pending and time.time() < deadline and not self._stop.is_set():
            await asyncio.sleep(_POLL)

    async def _follow(self, follower: Any) -> None:
        while True:
            self._take(follower.poll())
            await asyncio.sleep(_POLL)

    def _take(self, events: list[Any]) -> None:
        from hbsm.events import RestartStarted, Transition

        for e in events:
            if isinstance(e, Transition):
                repaired = self.tracker.transition(e.service, e.dst, e.ts)
                reason = f"  ({e.reason})" if e.reason else ""
                self._say(f"{e.service:<13} {e.src} -> {e.dst}{reason}")
                if repaired is not None:
                    self._say(
                        f"{e.service:<13} fault #{repaired.n} ({repaired.kind}) repaired "
                        f"after {e.ts - repaired.ts:.1f}s"
                    )
            elif isinstance(e, RestartStarted):
                self._say(f"{e.service:<13} restart #{e.attempt} (cooldown {e.cooldown_s:g}s)")

    async def _chaos(self) -> None:
        assert self.chaos is not None
        names = list(self.setup.services)
        if self.duration is None:
            last = float("inf")
        else:
            last = self.duration - (QUIET_TAIL if self.duration >= 50 else 0.4 * self.duration)
        # Let every service come up first.
        while not all(self.tracker.states.get(n) == "healthy" for n in names):
            await asyncio.sleep(_POLL)
        await asyncio.sleep(1.0)
        while time.time() - self.started < last:
            fault = self.chaos.inject_random(self.tracker.ready(names), time.time())
            if fault is None:
                await asyncio.sleep(_POLL)
                continue
            self.tracker.injected(fault)
            self._say(f"{fault.service:<13} CHAOS #{fault.n}: {fault.kind}")
            await asyncio.sleep(self.every)


def _setup_logging(log_file: Path) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.handlers.RotatingFileHandler(log_file, maxBytes=10 * 2**20, backupCount=2)
    to_file.setLevel(logging.INFO)
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.ERROR)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[to_file, to_stderr],
        force=True,
    )
    from hbsm.monitor.diagnostics import quiet_libraries

    quiet_libraries()


def _workdir(args: argparse.Namespace) -> Path | None:
    if args.dir:
        work = Path(args.dir)
        if (work / "events" / "demo.jsonl").exists():
            return None
        return work
    return Path("demo-run") / time.strftime("%Y%m%d-%H%M%S")


def run(args: argparse.Namespace) -> int:
    from hbsm.api.server import ListenError
    from hbsm.demo.chaos import read_faults
    from hbsm.demo.report import analyze_log, format_summary, hbsm_command
    from hbsm.demo.workdir import THRESHOLDS, bind_api, detection_bound, prepare

    work = _workdir(args)
    if work is None:
        print(
            f"hbsm demo: {args.dir} already holds a demo run (events/demo.jsonl): "
            "choose another --dir",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        sock = bind_api(args.port)
    except ListenError as exc:
        print(f"hbsm demo: {exc}", file=sys.stderr)
        return EXIT_LISTEN
    port = int(sock.getsockname()[1])
    setup = prepare(work, api_port=port)
    _setup_logging(setup.log_path.parent / "hbsm.log")
    print(f"hbsm demo: working directory {setup.workdir}")
    for svc in setup.services.values():
        print(f"hbsm demo: {svc.name:<13} {svc.url}")
    print(f"hbsm demo: API on http://127.0.0.1:{port}" + ("" if port == args.port else
          f" (port {args.port} was taken)"))  # fmt: skip
    print(f"hbsm demo: event log {setup.log_path}")
    if args.chaos:
        print(f"hbsm demo: chaos on: a fault every {args.every:g} s (seed {args.seed})")
    sys.stdout.flush()

    demo = Demo(
        setup,
        sock,
        chaos=args.chaos,
        duration=args.duration,
        seed=args.seed,
        every=args.every,
        out=lambda line: print(line, flush=True),
    )
    dashboard = None if args.headless else _dashboard_runner()
    if dashboard is None:
        if not args.headless:
            print("hbsm demo: the dashboard (tui) is not available here: showing progress "
                  "instead", file=sys.stderr)  # fmt: skip
        asyncio.run(demo.main())
    else:
        demo.progress = False
        # The dashboard owns the main thread: a SIGTERM must unwind it like Ctrl-C does, so
        # the `finally` below stops the monitor and every supervised child.
        signal.signal(signal.SIGTERM, _interrupt)
        thread = threading.Thread(target=lambda: asyncio.run(demo.main(signals=False)))
        thread.start()
        demo.ready.wait()
        try:
            if demo.api_url and thread.is_alive():
                dashboard(demo.api_url)
        except KeyboardInterrupt:
            demo.interrupted = True
        finally:
            demo.request_stop(user=demo.duration is None or thread.is_alive())
            thread.join()

    report = analyze_log(
        setup.log_path,
        read_faults(setup.faults_path),
        restart_cooldown=float(THRESHOLDS["restart_cooldown"]),
        detection_bound=detection_bound(),
    )
    if demo.user_stopped:
        report.in_progress = {f.n for f in demo.tracker.pending.values()}
    log_path, faults_path = str(setup.log_path), str(setup.faults_path)
    print(format_summary(report, log_path=log_path, faults_path=faults_path, hbsm=hbsm_command()))
    if demo.interrupted:
        return EXIT_INTERRUPTED
    return 0 if report.ok else EXIT_NOT_REPAIRED


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _dashboard_runner() -> Callable[[str], Any] | None:
    """A function running the dashboard on an API URL, or None when it is not installed.

    The dashboard runs as its own process (`hbsm dashboard --api URL`) on this terminal: the
    core never imports the UI, and the demo's monitor keeps its own loop and signals.
    """
    if importlib.util.find_spec("tui") is None:
        return None

    def show(url: str) -> int:
        argv = [sys.executable, "-m", "hbsm", "dashboard", "--api", url]
        return subprocess.run(argv, check=False).returncode

    return show


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hbsm.demo")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["demo", *(sys.argv[1:] if argv is None else argv)])
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        print("hbsm demo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())

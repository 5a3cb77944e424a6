"""Helpers for the monitor's integration tests: supervised child scripts, hbsm.toml files,
reading the log back, and cleaning up processes. (Configs, waiting and ports: tests/support.)"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from probes.servers import SwitchableTarget, closed_port
from support.net import free_port

from hbsm.events import Event, OpaqueEvent, Probe, RestartStarted, Transition
from hbsm.log import read_history
from hbsm.repair._process import alive

__all__ = [
    "CHILD_SCRIPT",
    "PY",
    "ChildService",
    "SwitchableTarget",
    "alive",
    "closed_port",
    "events",
    "http_get",
    "kill_pids",
    "of",
    "restart_gaps",
    "transitions",
    "verify_log",
    "write_toml_config",
]

PY = sys.executable
T = TypeVar("T")


# A supervised service: an HTTP server on 127.0.0.1:PORT answering 200 "ok pid=N", or 500 while
# the FLAG file exists. It appends its pid to PIDS at start (so the tests can always clean up),
# with --ignore-term it ignores SIGTERM (a restart must then wait out the grace period), and
# with --bind-after=SECONDS it starts listening only that long after it started (a slow start).
CHILD_SCRIPT = """\
import http.server, os, pathlib, signal, sys, time
port, flag, pids = int(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
if "--ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(pids, "a") as f:
    f.write(f"{os.getpid()}\\n")
for arg in sys.argv:
    if arg.startswith("--bind-after="):
        time.sleep(float(arg.partition("=")[2]))

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        bad = flag.exists()
        body = f"{'broken' if bad else 'ok'} pid={os.getpid()}\\n".encode()
        self.send_response(500 if bad else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
server.serve_forever(poll_interval=0.05)
"""


class ChildService:
    """One supervised service: its script, port, failure flag and pid file."""

    def __init__(
        self, root: Path, name: str, *, ignore_term: bool = False, bind_after: float = 0.0
    ) -> None:
        self.name = name
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.script = root / f"{name}_service.py"
        self.script.write_text(CHILD_SCRIPT)
        self.port = free_port()
        self.flag = root / f"{name}.broken"
        self.pids = root / f"{name}.pids"
        self.ignore_term = ignore_term
        self.bind_after = bind_after

    @property
    def argv(self) -> list[str]:
        argv = [PY, str(self.script), str(self.port), str(self.flag), str(self.pids)]
        if self.bind_after:
            argv.append(f"--bind-after={self.bind_after:g}")
        return [*argv, "--ignore-term"] if self.ignore_term else argv

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def started_pids(self) -> list[int]:
        try:
            return [int(x) for x in self.pids.read_text().split()]
        except FileNotFoundError:
            return []

    def break_it(self) -> None:
        self.flag.touch()

    def mend(self) -> None:
        self.flag.unlink(missing_ok=True)

    def kill_all(self) -> None:
        kill_pids(self.started_pids(), must_mention=str(self.script))


def kill_pids(pids: Iterable[int], *, must_mention: str) -> None:
    """SIGKILL each live pid whose command line mentions `must_mention` (a pid of ours, not a
    reused one), with its process group if it leads one."""
    for pid in pids:
        if not alive(pid):
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if must_mention not in cmdline:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)


def processes_mentioning(text: str) -> list[int]:
    """Live pids whose command line contains `text` (arguments joined by spaces)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def exported_and_verified(url: str, path: Path) -> str:
    """`hbsm export --store URL -o PATH`, then `hbsm replay --verify PATH`, as a user runs them:
    both must exit 0. Returns what the verify printed."""
    for args in (["export", "--store", url, "-o", str(path)], ["replay", "--verify", str(path)]):
        done = subprocess.run([PY, "-m", "hbsm", *args], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert done.returncode == 0, f"hbsm {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) of a GET; (0, reason) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (OSError, urllib.error.URLError) as exc:
        return 0, str(exc)


# --- the log, read back ----------------------------------------------------------------------


def events(path: Path) -> list[Event | OpaqueEvent]:
    return list(read_history(path))


def of(
    history: Iterable[Event | OpaqueEvent], kind: type[T], service: str | None = None
) -> list[T]:
    """The events of one class (and service), in log order."""
    return [
        e
        for e in history
        if isinstance(e, kind) and (service is None or getattr(e, "service", None) == service)
    ]


def transitions(
    history: Iterable[Event | OpaqueEvent], service: str, after_seq: int = 0
) -> list[tuple[str, str, str]]:
    return [
        (t.src, t.dst, t.trigger) for t in of(history, Transition, service) if t.seq > after_seq
    ]


def restart_gaps(history: Sequence[Event | OpaqueEvent], service: str) -> list[float]:
    """Seconds between consecutive restart.started decisions of a service (their own ts)."""
    stamps = [r.ts for r in of(history, RestartStarted, service)]
    return [b - a for a, b in itertools.pairwise(stamps)]


def probes_between(
    history: Iterable[Event | OpaqueEvent], service: str, first_seq: int, last_seq: int
) -> list[Probe]:
    return [p for p in of(history, Probe, service) if first_seq < p.seq < last_seq]


def verify_log(path: Path) -> subprocess.CompletedProcess[str]:
    """`hbsm replay --verify PATH`, as an operator would run it."""
    return subprocess.run(
        [PY, "-m", "hbsm", "replay", "--verify", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def toml_value(value: Any) -> str:
    # JSON's strings, numbers, booleans and arrays are TOML too; tables become inline tables.
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def write_toml_config(
    path: Path, services: list[dict[str, Any]], log: dict[str, Any] | None = None, **top: Any
) -> Path:
    """An hbsm.toml: the API on a free loopback port (not the default 5000), the top-level
    settings `top`, [log] (level INFO unless given), then the services."""
    settings: dict[str, Any] = {"host": "127.0.0.1", "port": free_port(), **top}
    lines = [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    lines += ["", "[log]"]
    lines += [
        f"{key} = {toml_value(value)}" for key, value in {"level": "INFO", **(log or {})}.items()
    ]
    for svc in services:
        lines += ["", "[[services]]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in svc.items()]
    path.write_text("\n".join(lines) + "\n")
    return path

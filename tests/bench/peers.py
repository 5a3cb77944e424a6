"""Three supervisors of one kind of target, for the recovery benchmark: hbsm (`hbsm run`),
Monit (`monit -I`) and supervisord (`supervisord -n`), each a child process with its own config
files in its own folder, each supervising its own copy of the target on its own port.

The target is hbsm's demo service (`python -m hbsm.demo.service`): `/health` answers 200, or
500 while its control file says "error" (a restart clears it). The settings are the same for
the three where they have them: a probe every second, a restart after 3 failed ones, a probe
timeout of 2 s, a stop of SIGTERM (with SIGCONT, so a stopped process acts on it) then SIGKILL
after 2 s. supervisord has no probe: it restarts a process that exits, and nothing else.

Monit and supervisord are Debian's packages: `ensure_peers` tries `apt-get install -y monit
supervisor` once (root only) when they are missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from hbsm.demo.service import set_mode
from tests.bench.debian import ensure_command

__all__ = [
    "CHECK_INTERVAL",
    "FAILURES",
    "PROBE_TIMEOUT",
    "Hbsm",
    "Monit",
    "Peer",
    "Supervisord",
    "answers_200",
    "ensure_peers",
]

ROOT = Path(__file__).resolve().parents[2]
CHECK_INTERVAL = 1.0
FAILURES = 3
PROBE_TIMEOUT = 2.0
GRACE = 2.0
NAME = "main_service"  # the demo service's name: its route is /health
_PACKAGES = {"monit": "monit", "supervisord": "supervisor"}


def _say(message: str) -> None:
    print(f"  recovery: {message}", file=sys.stderr, flush=True)


def ensure_peers() -> dict[str, str]:
    """{program: why it cannot be run} for monit and supervisord; one try at installing
    Debian's packages when missing (root only). Their init scripts are not run (RUNLEVEL=1:
    the packages' system daemons stay down; the benchmark runs its own)."""
    for program, package in _PACKAGES.items():
        ensure_command(program, package)
    return {
        p: f"{p} not installed (apt-get install -y {_PACKAGES[p]} needs root and Debian)"
        for p in _PACKAGES
        if shutil.which(p) is None
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers_200(port: int, timeout: float = 0.25) -> bool:
    """One raw HTTP/1.0 GET /health: whether the status line says 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            head = sock.recv(16)
    except OSError:
        return False
    return head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))


class Peer:
    """One supervisor (a child process) and the target it supervises."""

    label = ""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / self.label.lower()
        self.dir.mkdir(parents=True)
        self.port = _free_port()
        self.control = self.dir / "control"
        self.config = self.dir / "service.toml"
        self.config.write_text(f'name = "{NAME}"\nslow_seconds = 1.0\n')
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target_argv(self) -> list[str]:
        return [
            sys.executable, "-m", "hbsm.demo.service", "--name", NAME,
            "--port", str(self.port), "--config", str(self.config), "--control", str(self.control),
        ]  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT)}

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, within: float = 30.0) -> None:
        """Start the supervisor; return once its target answers 200."""
        out = (self.dir / "supervisor.out").open("ab")
        self.proc = subprocess.Popen(
            self.command(), cwd=self.dir, env=self.env, stdout=out, stderr=out,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + within
        while not answers_200(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.dir / "supervisor.out").read_text(errors="replace")[-400:]
                raise RuntimeError(f"{self.label}: its target never answered 200: {tail}")
            time.sleep(0.05)

    def target_pid(self) -> int:
        """The pid of the target process now (the one serving its port)."""
        needle = f"--port\0{self.port}\0".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"hbsm.demo.service" in cmdline and needle in cmdline:
                found.append(int(entry.name))
        if len(found) != 1:
            raise RuntimeError(f"{self.label}: {len(found)} target processes on {self.port}")
        return found[0]

    def fail(self, fault: str) -> None:
        """Inject a fault into the target: crash (SIGKILL), hang (SIGSTOP), error (500s)."""
        if fault == "error":
            set_mode(self.control, NAME, "error")
        else:
            sig = signal.SIGKILL if fault == "crash" else signal.SIGSTOP
            os.kill(self.target_pid(), sig)

    def mend(self) -> None:
        """Undo a fault its supervisor did not (supervisord and a hang or 500s)."""
        set_mode(self.control, NAME, "ok")
        with contextlib.suppress(RuntimeError, ProcessLookupError):
            os.kill(self.target_pid(), signal.SIGCONT)

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._stop_target()

    def _stop_target(self) -> None:
        # Whatever of the target is left (Monit leaves it running when it stops).
        try:
            pid = self.target_pid()
        except RuntimeError:
            return
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return


class Hbsm(Peer):
    label = "hbsm"

    def command(self) -> list[str]:
        argv = ", ".join(f'"{a}"' for a in self.target_argv)
        api_port = _free_port()
        path = self.dir / "hbsm.toml"
        path.write_text(
            f"""\
check_interval = {CHECK_INTERVAL}
max_retries = {FAILURES}
# As Monit and supervisord: no cooldown between restarts, no budget, no start grace.
restart_cooldown = 0.0
cooldown_max = 0.0
restart_budget = 1000
start_grace = 0.0
host = "127.0.0.1"
port = {api_port}

[log]
path = "{self.dir / "events" / "heartbeat.jsonl"}"
file = "{self.dir / "hbsm.log"}"

[[services]]
name = "target"
url = "http://127.0.0.1:{self.port}/health"
ladder = ["diagnose", "restart"]
probe = {{ timeout = {PROBE_TIMEOUT} }}
restart = {{ kind = "supervise", argv = [{argv}], grace = {GRACE}, stop_on_exit = true }}
"""
        )
        return [sys.executable, "-m", "hbsm", "run", "--config", str(path)]


class Monit(Peer):
    label = "Monit"

    def command(self) -> list[str]:
        pidfile = self.dir / "target.pid"
        env = f"PYTHONPATH={ROOT}"
        argv = " ".join(self.target_argv)
        start, stop = self.dir / "start.sh", self.dir / "stop.sh"
        # Monit runs a program with an empty environment and waits for it: the target goes to
        # the background, its pid to the pidfile Monit watches.
        start.write_text(
            f"#!/bin/sh\n{env} nohup {argv} >> {self.dir / 'target.out'} 2>&1 &\n"
            f"echo $! > {pidfile}\n"
        )
        # As hbsm stops its own: SIGTERM and SIGCONT, SIGKILL after the grace.
        ticks = int(GRACE * 100)
        stop.write_text(
            f"#!/bin/sh\npid=$(cat {pidfile}) || exit 0\n"
            'kill -TERM "$pid" 2>/dev/null; kill -CONT "$pid" 2>/dev/null\n'
            f'i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt {ticks} ]; do '
            "sleep 0.01; i=$((i+1)); done\n"
            'kill -KILL "$pid" 2>/dev/null; exit 0\n'
        )
        rc = self.dir / "monitrc"
        rc.write_text(
            f"""\
set daemon {CHECK_INTERVAL:g}
set log {self.dir / "monit.log"}
set pidfile {self.dir / "monit.pid"}
set idfile {self.dir / "monit.id"}
set statefile {self.dir / "monit.state"}

check process target with pidfile {pidfile}
  start program = "/bin/sh {start}" with timeout 10 seconds
  stop program = "/bin/sh {stop}" with timeout 10 seconds
  if failed host 127.0.0.1 port {self.port} protocol http request "/health"
     with timeout {PROBE_TIMEOUT:g} seconds for {FAILURES} cycles then restart
"""
        )
        rc.chmod(0o600)  # Monit refuses a control file others can read
        return ["monit", "-I", "-c", str(rc)]


class Supervisord(Peer):
    label = "supervisord"

    def command(self) -> list[str]:
        conf = self.dir / "supervisord.conf"
        conf.write_text(
            f"""\
[supervisord]
nodaemon = true
logfile = {self.dir / "supervisord.log"}
pidfile = {self.dir / "supervisord.pid"}
childlogdir = {self.dir}

[program:target]
command = {" ".join(self.target_argv)}
environment = PYTHONPATH="{ROOT}"
directory = {self.dir}
autorestart = true
startsecs = 1
stopsignal = TERM
stopwaitsecs = {GRACE:g}
redirect_stderr = true
stdout_logfile = {self.dir / "target.out"}
"""
        )
        return ["supervisord", "-n", "-c", str(conf)]

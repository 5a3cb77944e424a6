"""Helpers for the tests that run `hbsm run` as an operator does and kill it: the config file, the
process (SIGKILL, SIGSTOP, SIGTERM), and the log read back line by line as the disk holds it.

The monitor tests' helpers (supervised child services, cleanup, `hbsm replay --verify`) are
loaded by path from tests/monitor/support.py: the test folders are separate packages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from monitor import support as monitor_support

from hbsm.events import Event, OpaqueEvent, decode

__all__ = [
    "PY",
    "DiskLines",
    "HbsmProcess",
    "Processes",
    "disk_lines",
    "monitor_support",
    "write_config",
]

PY = sys.executable


# --- the config ------------------------------------------------------------------------------


def _toml(value: Any) -> str:
    # JSON's strings, numbers, booleans and arrays are TOML too; tables become inline tables.
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def write_config(
    path: Path, services: list[dict[str, Any]], log: dict[str, Any] | None = None, **top: Any
) -> Path:
    """An hbsm.toml: the API on a free loopback port, the top-level settings, [log], services."""
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": monitor_support.free_port(),
        **top,
    }
    lines = [f"{key} = {_toml(value)}" for key, value in settings.items()]
    lines += ["", "[log]"]
    lines += [f"{key} = {_toml(value)}" for key, value in {"level": "INFO", **(log or {})}.items()]
    for svc in services:
        lines += ["", "[[services]]"]
        lines += [f"{key} = {_toml(value)}" for key, value in svc.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- `hbsm run` as a process -------------------------------------------------------------------


class HbsmProcess:
    """One `hbsm run --config FILE [--log PATH]`; its stdout/stderr go to files in `workdir`."""

    def __init__(
        self,
        config: Path,
        log: Path | None,
        workdir: Path,
        number: int,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.stdout = workdir / f"hbsm-{number}.out"
        self.stderr = workdir / f"hbsm-{number}.err"
        argv = [PY, "-m", "hbsm", "run", "--config", str(config)]
        if log is not None:
            argv += ["--log", str(log)]
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=workdir,
                env={**os.environ, **(env or {})},
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def err(self) -> str:
        return self.stderr.read_text()

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> int:
        """SIGKILL (a stopped process dies too) and reap it; its exit status."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(30)

    def until(self, condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
        """Wait for `condition`, failing at once (with hbsm's stderr) if hbsm has exited."""

        def check() -> object:
            if self.proc.poll() is not None:
                raise AssertionError(f"hbsm exited ({self.proc.returncode}): {self.err()}")
            return condition()

        monitor_support.wait_for_sync(check, what, timeout)


class Processes:
    """Every `hbsm run` a test starts; `close` SIGKILLs those still running (a stopped one
    too), whatever the test's outcome."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.runs: list[HbsmProcess] = []

    def start(
        self, config: Path, log: Path | None, env: Mapping[str, str] | None = None
    ) -> HbsmProcess:
        run = HbsmProcess(config, log, self.workdir, len(self.runs) + 1, env)
        self.runs.append(run)
        return run

    def close(self) -> None:
        for run in self.runs:
            run.kill()


# --- the log as the disk holds it --------------------------------------------------------------


class DiskLines(NamedTuple):
    """The active log file's bytes split into complete lines (by seq) and a torn tail."""

    lines: dict[int, bytes]
    events: list[Event | OpaqueEvent]
    tail: bytes  # after the last newline: a line the writer had not finished
    size: int


def disk_lines(path: Path) -> DiskLines:
    raw = path.read_bytes() if path.exists() else b""
    end = raw.rfind(b"\n") + 1
    lines: dict[int, bytes] = {}
    events: list[Event | OpaqueEvent] = []
    for line in _split(raw[:end]):
        event = decode(line)
        assert event.seq not in lines, f"seq {event.seq} twice in {path}"
        lines[event.seq] = line
        events.append(event)
    return DiskLines(lines, events, raw[end:], len(raw))


def _split(data: bytes) -> Iterator[bytes]:
    for line in data.split(b"\n"):
        if line.strip():
            yield line

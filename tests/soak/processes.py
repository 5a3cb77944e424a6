"""The soak's processes besides the dashboard (tests/bench/bench_dashboard.py's Dashboard):
the flaky targets, `hbsm run` itself, and the API load. Each in a process of its own, so the
monitor's CPU, memory and stderr are its own, as an operator's would be."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from tests.bench.procstat import cpu_seconds, memory

__all__ = ["ApiLoad", "Monitor", "Targets", "http_status", "stop", "wait_until"]

ROOT = Path(__file__).resolve().parents[2]


def stop(process: subprocess.Popen[Any], timeout: float) -> int:
    """Wait for a process told to stop; kill it if it does not within timeout."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def _close_and_read_last(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """Close a helper's stdin (its signal to finish) and read the JSON line it then prints."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.close()
    out = process.stdout.read()
    stop(process, timeout)
    lines = out.strip().splitlines()
    return dict(json.loads(lines[-1])) if lines else {}


class Targets:
    """tests/soak/target.py in its own process."""

    def __init__(self, services: int, fail_rate: float, redraw: float, seed: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.soak.target",
             str(services), str(fail_rate), str(redraw), str(seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip():
            raise RuntimeError("the target server did not start")
        self.port = int(line)

    def start_breaking(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("start\n")
        self.process.stdin.flush()

    def finish(self) -> dict[str, Any]:
        return _close_and_read_last(self.process, 10)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)


class Monitor:
    """`hbsm run --config FILE`, its stdout and stderr in files of the work directory."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.stderr_path = workdir / "hbsm-run.stderr"
        # The soak's config is the whole truth: no HEARTBEAT_* from the caller's environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEAT_")}
        with (workdir / "hbsm-run.stdout").open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hbsm", "run", "--config", str(config)],
                stdout=out, stderr=err, env=env, cwd=ROOT,
            )  # fmt: skip
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def memory(self) -> tuple[int, int]:
        return memory(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def terminate(self, timeout: float = 60) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        return stop(self.process, timeout)

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")


class ApiLoad:
    """tests/soak/api_load.py in its own process; its window lines collected by a thread."""

    def __init__(self, port: int, rate: float, services: int, period: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.soak.api_load",
             str(port), str(rate), str(services), str(period)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        self.windows: list[dict[str, Any]] = []
        self.final: dict[str, Any] = {}
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.daemon = True
        self._reader.start()

    def _read(self, stdout: TextIO) -> None:
        for line in stdout:
            got = json.loads(line)
            if got.get("final"):
                self.final = got
            else:
                self.windows.append(got)

    def latest(self) -> dict[str, Any]:
        return self.windows[-1] if self.windows else {}

    def finish(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.close()
        stop(self.process, 30)
        self._reader.join(10)
        return self.final

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)


def http_status(url: str, timeout: float = 5.0) -> int | None:
    """The status of a GET, or None if there was no answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll condition() until true; RuntimeError naming `what` after timeout, or at once if
    alive() says the process it waits on has died."""
    deadline = time.monotonic() + timeout
    while not condition():
        if alive is not None and not alive():
            raise RuntimeError(f"{what}: the process exited")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)

"""examples/flask_app run in a process of its own, as its README says, for the end-to-end tests:
on a free port, its log in the test's folder, fast thresholds (probes every 0.2 s, a repair
after 2 failures, a 2 s restart cooldown)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from support.net import free_port

from hbsm.events import MonitorStarted
from hbsm.log import read_history

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask_app"


class ExampleRun:
    """`command(port)`: how to start it (`python app/main.py`, or gunicorn on that port)."""

    def __init__(self, workdir: Path, command: Callable[[int], list[str]]) -> None:
        self.port = free_port()
        self.log = workdir / "events" / "heartbeat.jsonl"
        env = {
            **os.environ,
            "HEARTBEAT_PORT": str(self.port),
            "HEARTBEAT_EVENT_LOG": str(self.log),
            "HEARTBEAT_CHECK_INTERVAL": "0.2",
            "HEARTBEAT_MAX_RETRIES": "2",
            "HEARTBEAT_RESTART_COOLDOWN": "2",
        }
        self.err = workdir / "app.err"
        self.process = subprocess.Popen(
            command(self.port),
            cwd=EXAMPLE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.err.open("wb"),
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base + path, timeout=10)

    def post(self, path: str) -> httpx.Response:
        return httpx.post(self.base + path, timeout=10)

    def history(self) -> list[Any]:
        return list(read_history(self.log)) if self.log.exists() else []

    def monitors(self) -> list[int]:
        """The pids that started monitoring, in order."""
        return [e.pid for e in self.history() if isinstance(e, MonitorStarted)]

    def services(self) -> dict[str, str] | None:
        """What `/health` says of the services (None: no answer)."""
        try:
            return dict(self.get("/health").json()["services"])
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL if it does not end."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

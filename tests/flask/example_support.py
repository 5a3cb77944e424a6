"""examples/flask_app run in a process of its own, as its README says, for the end-to-end tests:
a copy of it in the test's folder (its log, its config file to break), on a free port, with
fast thresholds (probes every 0.2 s, a repair after 2 failures, a 2 s restart cooldown) unless
asked for its own; and the README's curl commands with what it says they answer."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from support.net import free_port

from hbsm.events import MonitorStarted
from hbsm.log import read_history

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask_app"
FAST = {
    "HEARTBEAT_CHECK_INTERVAL": "0.2",
    "HEARTBEAT_MAX_RETRIES": "2",
    "HEARTBEAT_RESTART_COOLDOWN": "2",
}


class ExampleRun:
    """`command(port)`: how to start it (`python app/main.py`, or gunicorn on that port).
    `fast`: the test thresholds (FAST) over the example's own hbsm.toml."""

    def __init__(
        self, workdir: Path, command: Callable[[int], list[str]], *, fast: bool = True
    ) -> None:
        self.port = free_port()
        self.home = workdir / "flask_app"
        shutil.copytree(EXAMPLE, self.home, ignore=shutil.ignore_patterns("events", "__pycache__"))
        self.log = self.home / "events" / "heartbeat.jsonl"
        self.settings = self.home / "app" / "config.json"
        env = {**os.environ, "HEARTBEAT_PORT": str(self.port), **(FAST if fast else {})}
        self.err = workdir / "app.err"
        self.process = subprocess.Popen(
            command(self.port),
            cwd=self.home,
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


def documented_curls() -> list[tuple[str, str, str]]:
    """The README's curl commands: (method, path, what it says the answer is, with "…" for
    what varies), in its order."""
    lines = (EXAMPLE / "README.md").read_text(encoding="utf-8").splitlines()
    curls = []
    for line, answer in itertools.pairwise(lines):
        if line.startswith("$ curl "):
            words = line.split()
            method = words[words.index("-X") + 1] if "-X" in words else "GET"
            path = "/" + words[-1].split("/", 3)[3]
            curls.append((method, path, answer))
    return curls


def answers_as_documented(run: ExampleRun) -> list[str]:
    """Each README curl, sent to `run`: what differs from what the README says (none: [])."""
    wrong = []
    for method, path, documented in documented_curls():
        body = httpx.request(method, run.base + path, timeout=10).text
        # The README's port is 5000; "…" stands for anything.
        pattern = ".*".join(re.escape(part) for part in documented.split("…"))
        if not re.fullmatch(pattern.replace("5000", str(run.port)), body):
            wrong.append(f"{method} {path}: {body}")
    return wrong


def verified(log: Path) -> bool:
    """Whether `hbsm replay --verify` re-decides every decision of `log` the same (its output
    on stderr when not)."""
    run = subprocess.run(
        [sys.executable, "-m", "hbsm", "replay", "--verify", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if run.returncode != 0:
        print(run.stdout, run.stderr, file=sys.stderr)
    return run.returncode == 0

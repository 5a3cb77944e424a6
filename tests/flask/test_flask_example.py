"""examples/flask_app, run as its README says (`python app/main.py`, werkzeug's development
server, hbsm embedded), in a process of its own: the original feature's routes answer, and a
broken login page is repaired in grades by restarting the app itself (the process re-executed,
the port handed over), the cooldown holding across the restarts; `hbsm replay --verify`
agrees with the log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.net import free_port
from support.waiting import wait_for_sync

from hbsm.events import MonitorStarted, MonitorStopped, RepairStarted, RestartStarted
from hbsm.log import read_history

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask_app"


class ExampleApp:
    def __init__(self, workdir: Path) -> None:
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
            [sys.executable, "app/main.py"],
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

    def history(self) -> list:
        return list(read_history(self.log)) if self.log.exists() else []

    def services(self) -> dict[str, str]:
        try:
            return dict(self.get("/health").json()["services"])
        except (httpx.HTTPError, ValueError, KeyError):
            return {}


@pytest.fixture
def example(tmp_path: Path) -> Iterator[ExampleApp]:
    app = ExampleApp(tmp_path)
    try:
        yield app
    finally:
        if app.process.poll() is None:
            app.process.kill()
            app.process.wait(10)


def of(history: list, kind: type, service: str) -> list:
    return [e for e in history if isinstance(e, kind) and e.service == service]


def test_the_example_serves_the_original_routes_and_restarts_itself_when_login_breaks(example):
    wait_for_sync(
        lambda: example.services() == {"main_service": "healthy", "login_page": "healthy"},
        "the app's own /health and /login watched and healthy",
        30,
    )
    # The original feature's curl commands, as the example's README gives them.
    assert example.get("/health").status_code == 200
    assert set(example.get("/health/detailed").json()["services"]) == {"main_service", "login_page"}
    assert example.get("/health/service/main_service").json()["state"] == "healthy"
    assert example.get("/admin/heartbeat/status").json()["running"] is True
    assert example.post("/admin/heartbeat/stop").json()["message"] == "heartbeat stopped"
    assert example.post("/admin/heartbeat/start").json()["message"] == "heartbeat started"

    pid = example.process.pid
    for restarts in (1, 2):

        def mended(restarts: int = restarts) -> bool:
            restarted = len(of(example.history(), RestartStarted, "login_page")) == restarts
            return restarted and example.services().get("login_page") == "healthy"

        assert example.post("/demo/break/login").status_code == 200
        assert example.get("/login").status_code == 500
        wait_for_sync(mended, f"the app restarted ({restarts}) and its login page healthy", 60)
        assert example.get("/login").status_code == 200  # mended by the restart
    assert example.process.poll() is None and example.process.pid == pid  # re-executed

    history = example.history()
    # Graded: diagnose, then check the configuration, then restart.
    steps = [e.step for e in of(history, RepairStarted, "login_page")]
    assert steps[:2] == ["diagnose", "check_config"]
    first, second = of(history, RestartStarted, "login_page")
    # The cooldown holds across the re-execution: the second restart waited it out (doubled,
    # as the app had no stable period in between).
    assert second.ts - first.ts >= first.cooldown_s == 2.0
    assert second.cooldown_s == 4.0
    starts = [e for e in history if isinstance(e, MonitorStarted)]
    assert len(starts) == 3 and {e.pid for e in starts} == {pid}
    stops = [e.reason for e in history if isinstance(e, MonitorStopped)]
    assert stops == ["restarting the process for login_page (re-executing it)"] * 2

    verified = subprocess.run(
        [sys.executable, "-m", "hbsm", "replay", "--verify", str(example.log)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr

    example.process.send_signal(signal.SIGTERM)
    assert example.process.wait(30) == -signal.SIGTERM
    last = example.history()[-1]
    assert isinstance(last, MonitorStopped) and last.reason == "SIGTERM"
    assert "Traceback" not in example.err.read_text()

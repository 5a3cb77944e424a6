"""`hbsm run` serves the API: the original feature's curl commands against a real process, the
refusal to listen on a non-loopback address without a token (exit 2), a taken port (exit 4),
and SIGTERM stopping API and monitor cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from support.net import free_port
from support.waiting import wait_for_sync

from hbsm.api.bodies import AdminResult, DetailedHealth, Health, HeartbeatStatus, ServiceHealth
from hbsm.events import Admin, MonitorStopped
from hbsm.log import read_history


class Run:
    def __init__(self, tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
        self.log = tmp_path / "events" / "heartbeat.jsonl"
        self.err_path = tmp_path / f"hbsm-{len(list(tmp_path.glob('hbsm-*.err')))}.err"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEAT_")}
        clean.update({"HEARTBEAT_CHECK_INTERVAL": "0.3", **env})
        with self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hbsm", "run", "--log", str(self.log), *args],
                cwd=tmp_path,  # no hbsm.toml there: the built-in services
                env=clean,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def err(self) -> str:
        return self.err_path.read_text()

    def wait_serving(self, base: str) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"hbsm exited ({self.proc.returncode}): {self.err()}")
            try:
                return httpx.get(base + "/health", timeout=1).status_code in (200, 503)
            except httpx.TransportError:
                return False

        wait_for_sync(up, "hbsm run serves /health")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


StartRun = Callable[..., Run]


@pytest.fixture
def hbsm_run(tmp_path: Path) -> Iterator[StartRun]:
    runs: list[Run] = []

    def start(*args: str, **env: str) -> Run:
        run = Run(tmp_path, list(args), env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()


def one_line_error(run: Run, code: int) -> str:
    assert run.proc.wait(20) == code, run.err()
    err = run.err().strip()
    assert len(err.splitlines()) == 1 and err.startswith("hbsm run: "), err
    assert "Traceback" not in err
    return err


def test_the_original_curl_commands(hbsm_run: StartRun) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = hbsm_run("--port", str(port))
    run.wait_serving(base)

    def main_service_healthy() -> bool:
        r = httpx.get(base + "/health/service/main_service")
        return r.status_code == 200 and r.json()["state"] == "healthy"

    wait_for_sync(main_service_healthy, "main_service (the API's own /health) healthy")

    # curl http://localhost:5000/health
    r = httpx.get(base + "/health")
    health = msgspec.json.decode(r.content, type=Health)
    assert r.status_code == 200 and health.services["main_service"] == "healthy"
    # Standalone there is no /login page to watch (HEARTBEAT_LOGIN_URL would name one).
    assert list(health.services) == ["main_service"]
    # curl http://localhost:5000/health/detailed
    r = httpx.get(base + "/health/detailed")
    detailed = msgspec.json.decode(r.content, type=DetailedHealth)
    assert detailed.services["main_service"].target == f"{base}/health"
    # curl http://localhost:5000/health/service/main_service
    r = httpx.get(base + "/health/service/main_service")
    assert msgspec.json.decode(r.content, type=ServiceHealth).critical
    # curl http://localhost:5000/admin/heartbeat/status
    r = httpx.get(base + "/admin/heartbeat/status")
    status = msgspec.json.decode(r.content, type=HeartbeatStatus)
    assert status.running and status.config["port"] == port and status.services == 1
    # curl -X POST http://localhost:5000/admin/heartbeat/stop (and start)
    r = httpx.post(base + "/admin/heartbeat/stop")
    stopped = msgspec.json.decode(r.content, type=AdminResult)
    assert r.status_code == 200 and stopped.changed and not stopped.running
    r = httpx.post(base + "/admin/heartbeat/start")
    started = msgspec.json.decode(r.content, type=AdminResult)
    assert r.status_code == 200 and started.changed and started.running
    # hbsm check http://localhost:5000 exercises all of it (its stop and start are recorded too).
    check = subprocess.run(
        [sys.executable, "-m", "hbsm", "check", base], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "FAIL" not in check.stdout

    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(20) == 0, run.err()
    assert "Traceback" not in run.err()
    history = list(read_history(run.log))
    admin = [(e.action, e.allowed, e.who) for e in history if isinstance(e, Admin)]
    assert admin[:2] == [("stop", True, "loopback"), ("start", True, "loopback")]
    assert admin[2:] == [("stop", True, "loopback"), ("start", True, "loopback")]  # the check
    assert isinstance(history[-1], MonitorStopped) and history[-1].reason == "SIGTERM"
    with pytest.raises(httpx.TransportError):
        httpx.get(base + "/health", timeout=1)


def test_non_loopback_without_token_refuses_to_start(hbsm_run: StartRun) -> None:
    err = one_line_error(hbsm_run("--host", "0.0.0.0", "--port", str(free_port())), 2)
    assert "0.0.0.0" in err and "HEARTBEAT_ADMIN_TOKEN" in err and "--insecure" in err
    err = one_line_error(hbsm_run(HEARTBEAT_HOST="::", HEARTBEAT_PORT=str(free_port())), 2)
    assert "not loopback" in err


def test_non_loopback_with_a_token_or_insecure_starts(hbsm_run: StartRun) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = hbsm_run("--host", "0.0.0.0", "--port", str(port), HEARTBEAT_ADMIN_TOKEN="tok")
    run.wait_serving(base)
    assert httpx.post(base + "/admin/heartbeat/stop").status_code == 401
    r = httpx.post(base + "/admin/heartbeat/stop", headers={"Authorization": "Bearer tok"})
    assert r.status_code == 200
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(20) == 0, run.err()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = hbsm_run("--host", "0.0.0.0", "--port", str(port), "--insecure")
    run.wait_serving(base)
    # No token: loopback clients only, still.
    assert httpx.post(base + "/admin/heartbeat/stop").status_code == 200
    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(20) == 0, run.err()


def test_a_taken_port_exits_4(hbsm_run: StartRun) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        err = one_line_error(hbsm_run("--port", str(port)), 4)
    assert f"127.0.0.1:{port}" in err and "in use" in err


def test_bad_port_is_a_usage_error(hbsm_run: StartRun) -> None:
    run = hbsm_run("--port", "70000")
    assert run.proc.wait(20) == 2
    assert "port" in run.err()

"""`hbsm check URL` against real running instances: a Flask app with the blueprint and its
embedded monitor on a real port, `hbsm run`'s standalone API, a host app without hbsm, and a
closed port. Run as a subprocess through hbsm's command line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import heartbeat_support as flask_support
import pytest
from check_support import PY, hbsm_check
from probes.servers import closed_port
from support.configs import service
from support.net import free_port
from support.waiting import wait_for_sync

from hbsm.flask import init_heartbeat


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stdout.splitlines()


def verdicts(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """'METHOD path' -> PASS/FAIL/SKIP, from the check lines."""
    out = {}
    for line in lines(result)[:-1]:
        verdict, rest = line.split("  ", 1)
        request = rest.split("  ", 1)[0]
        out[request] = verdict.strip()
    return out


def flask_instance(stop_later, tmp_path: Path, target=None, **overrides: Any):
    """A host app whose embedded monitor watches the app's own /health and /login (as the
    original feature did), plus a target service when given; served on a real port."""
    app = flask_support.flask_app()
    served = stop_later(flask_support.ServedApp(app))
    services = [
        service("main_service", f"{served.base}/health", critical=True),
        service("login_page", f"{served.base}/login"),
    ]
    if target is not None:
        services.append(service("api", target.svc_url("api"), critical=True))
    config = flask_support.flask_config(
        tmp_path / "events" / "heartbeat.jsonl", services, **overrides
    )
    handle = stop_later(init_heartbeat(app, config))
    served.serve()
    client = app.test_client()

    def probed() -> bool:
        states = client.get("/health").get_json()["services"]
        return all(state != "unknown" for state in states.values())

    wait_for_sync(probed, "every service probed")
    return served, handle


def test_every_check_passes_against_a_flask_app(stop_later, tmp_path):
    served, handle = flask_instance(stop_later, tmp_path)
    result = hbsm_check(served.base)
    assert result.returncode == 0, result.stdout + result.stderr
    out = lines(result)
    assert out[0] == "PASS  GET /health  200 healthy (2 services)"
    assert all(line.startswith("PASS  ") for line in out[:-1]), result.stdout
    assert out[-1] == f"OK    10 passed, 0 failed, 0 skipped: {served.base}"
    requests = list(verdicts(result))
    assert (
        requests
        == [
            "GET /health",
            "GET /health (Accept: application/health+json)",
            "GET /health/detailed",
            "GET /health/service/main_service",
            requests[4],  # a random name that does not exist
            "GET /admin/heartbeat/status",
            "POST /admin/heartbeat/stop",
            "POST /admin/heartbeat/start",
            f"GET {served.base}/login",  # the login_page service's target
            "POST /health",
        ][: len(requests)]
    )
    assert requests[4].startswith("GET /health/service/no-such-service-")
    assert "404 JSON error: no service named" in out[4]
    assert "stop  200 heartbeat stopped (changed); status says running false" in out[6]
    assert "405 JSON error: POST is not allowed on '/health'" in out[-2]
    # Monitoring is left running, as it was found.
    assert handle.monitor is not None and handle.monitor.heartbeat_running


def test_admin_checks_fail_without_the_token(stop_later, tmp_path):
    served, _ = flask_instance(stop_later, tmp_path, admin_token="t0ken")
    result = hbsm_check(served.base)
    assert result.returncode == 1
    found = verdicts(result)
    for request in ("GET /admin/heartbeat/status", "POST /admin/heartbeat/stop",
                    "POST /admin/heartbeat/start"):  # fmt: skip
        assert found[request] == "FAIL", result.stdout
    assert "FAIL  POST /admin/heartbeat/stop  401 admin routes need a token: pass --token" in (
        lines(result)
    )
    assert found["GET /health"] == found["GET /health/detailed"] == "PASS"
    # The login page's URL is internal: hidden without the token, so that check is skipped.
    assert found["GET <login page>"] == "SKIP"
    assert lines(result)[-1].startswith("FAIL  6 passed, 3 failed, 1 skipped")

    wrong = hbsm_check(served.base, "--token", "guess")
    assert wrong.returncode == 1
    assert "403 the token was refused: wrong admin token" in wrong.stdout

    right = hbsm_check(served.base, "--token", "t0ken", "--json")
    assert right.returncode == 0, right.stdout
    doc = json.loads(right.stdout)
    assert doc["ok"] is True and doc["failed"] == 0 and doc["passed"] == 10
    assert {c["verdict"] for c in doc["checks"]} == {"pass"}


def test_a_sick_instance_still_answers_its_routes(stop_later, tmp_path, target):
    """A critical service down: /health is 503 with a valid body, which passes; a login page
    that is not there fails, naming what it got."""
    target.modes["api"] = "/status/500"
    served, handle = flask_instance(stop_later, tmp_path, target, max_retries=50)
    wait_for_sync(
        lambda: handle.read(lambda p: p.services["api"].fsm.state) == "degraded", "api degraded"
    )
    result = hbsm_check(served.base, "--service", "api", "--login", "/no-login-here")
    assert result.returncode == 1
    out = lines(result)
    assert out[0] == "PASS  GET /health  503 unhealthy (3 services)"
    assert "PASS  GET /health/service/api  200 api degraded" in result.stdout
    assert f"FAIL  GET {served.base}/no-login-here  404 expected 200" in out


def test_stopped_monitoring_is_reported_and_left_stopped(stop_later, tmp_path):
    served, handle = flask_instance(stop_later, tmp_path)
    assert handle.app.test_client().post("/admin/heartbeat/stop").status_code == 200
    result = hbsm_check(served.base)
    assert result.returncode == 1
    out = lines(result)
    status = next(line for line in out if "/admin/heartbeat/status" in line)
    assert status == "FAIL  GET /admin/heartbeat/status  200 monitoring is stopped (running false)"
    # Started, then stopped again: as it was found.
    admin = [line.split("  ")[1] for line in out if "POST /admin" in line]
    assert admin == ["POST /admin/heartbeat/start", "POST /admin/heartbeat/stop"]
    assert handle.monitor is not None and not handle.monitor.heartbeat_running


def test_against_the_standalone_api_of_hbsm_run(stop_later, tmp_path, target):
    port = free_port()
    config = tmp_path / "hbsm.toml"
    config.write_text(
        f"""
check_interval = 0.2
port = {port}
[log]
path = "{tmp_path / "events" / "heartbeat.jsonl"}"
[[services]]
name = "api"
url = "{target.svc_url("api")}"
"""
    )
    run = subprocess.Popen(
        [PY, "-m", "hbsm", "run", "--config", str(config), "--duration", "60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "run.err").open("wb"),
    )
    stop_later(_Process(run))
    base = f"http://127.0.0.1:{port}"
    wait_for_sync(lambda: support_get(base + "/health"), "hbsm run answers", timeout=30)
    result = hbsm_check(f"127.0.0.1:{port}")
    assert result.returncode == 0, result.stdout + (tmp_path / "run.err").read_text()
    assert "SKIP  GET <login page>  no login page configured" in result.stdout
    assert lines(result)[-1] == f"OK    9 passed, 0 failed, 1 skipped: {base}"


def test_nothing_listening_is_exit_3_in_one_line():
    with closed_port() as port:
        result = hbsm_check(f"http://127.0.0.1:{port}", "--timeout", "2")
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"hbsm check: cannot reach http://127.0.0.1:{port}: ")
    assert "refused" in result.stderr.lower()


def test_not_an_hbsm_instance(stop_later):
    served = stop_later(flask_support.ServedApp(flask_support.flask_app("plain")))
    served.serve()
    result = hbsm_check(served.base)
    assert result.returncode == 1
    assert lines(result)[0] == "FAIL  GET /health  404 expected 200 or 503"
    assert not [line for line in lines(result) if line.startswith("PASS")], result.stdout


@pytest.mark.parametrize(
    "args",
    [["ftp://example.com"], ["http://"], ["http://127.0.0.1:1", "--timeout", "-1"], []],
)
def test_bad_usage_is_exit_2(args):
    result = hbsm_check(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""


def support_get(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code in (200, 503)
    except httpx.TransportError:
        return False


class _Process:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

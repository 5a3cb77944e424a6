"""The blueprint in follow mode: `follow_log` projects the log another monitor writes — a real
`hbsm run` process, or a Monitor in a thread — and refuses admin actions (409)."""

from __future__ import annotations

import subprocess
import sys

import msgspec
from heartbeat_support import flask_config
from support.configs import service
from support.net import free_port
from support.waiting import wait_for_sync

from hbsm.api import bodies
from hbsm.flask.embedded import MonitorThread

STATUS = "/admin/heartbeat/status"


def read_only(log_path):
    """The 409's words: the standalone app's, naming the log this app only reads."""
    return f"this instance only reads the log of {log_path}: admin actions need the monitor"


def decode(response, kind):
    assert response.content_type == "application/json", response.data
    return msgspec.json.decode(response.data, type=kind)


def test_follows_a_running_hbsm_run(following, target, tmp_path, log_path, stop_later):
    config = tmp_path / "hbsm.toml"
    config.write_text(
        f"""
check_interval = 0.1
max_retries = 50
ladder = ["diagnose"]
port = {free_port()}  # where `hbsm run` may serve its own API: this test reads the log only

[log]
path = "{log_path}"
max_bytes = 6000  # rotates every few dozen events: the follower must keep up across segments

[[services]]
name = "api"
url = "{target.svc_url("api")}"
critical = true

[[services]]
name = "web"
url = "{target.svc_url("web")}"
"""
    )
    writer = subprocess.Popen(
        [sys.executable, "-m", "hbsm", "run", "--config", str(config), "--duration", "60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "run.err").open("wb"),
        cwd=tmp_path,
    )
    stop_later(_Process(writer))
    wait_for_sync(log_path.exists, "hbsm run writes its log")

    app, handle = following(log_path)
    assert handle.mode == "follow"
    client = app.test_client()

    def health() -> bodies.Health:
        return decode(client.get("/health"), bodies.Health)

    wait_for_sync(lambda: health().services == {"api": "healthy", "web": "healthy"}, "both healthy")
    target.modes["api"] = "/status/503"
    wait_for_sync(lambda: client.get("/health").status_code == 503, "the follower sees api down")
    assert health().services["api"] == "degraded"
    wait_for_sync(lambda: list(log_path.parent.glob("heartbeat.*.jsonl*")), "a rotation")
    target.modes["api"] = "/ok"
    wait_for_sync(lambda: health().status == "healthy", "and back up, after rotations")

    status = decode(client.get(STATUS), bodies.HeartbeatStatus)
    assert status.running and status.pid == writer.pid
    assert status.log.path == str(log_path) and status.log.segment >= 1
    detailed = decode(client.get("/health/detailed"), bodies.DetailedHealth)
    assert detailed.monitoring.pid == writer.pid
    assert detailed.services["api"].restarts == 0 and detailed.services["api"].target

    # Read-only: no admin action, a JSON 409 saying where to go.
    for action in ("stop", "start"):
        answer = client.post(f"/admin/heartbeat/{action}")
        assert answer.status_code == 409
        assert decode(answer, bodies.ErrorBody).error.startswith(read_only(log_path))
    assert health().monitoring is True

    writer.terminate()
    assert writer.wait(20) == 0, (tmp_path / "run.err").read_text()
    wait_for_sync(lambda: health().monitoring is False, "the follower sees monitor.stopped")


def test_follow_mode_auth_and_errors(following, target, log_path, stop_later):
    writer = stop_later(
        MonitorThread(flask_config(log_path, [service("api", target.svc_url("a"))]))
    )
    writer.start()
    app, _ = following(log_path, admin_token="tok")
    client = app.test_client()
    wait_for_sync(
        lambda: decode(client.get("/health"), bodies.Health).services == {"api": "healthy"},
        "api healthy",
    )

    # Auth comes first: the 409 only for a client that may use admin routes at all.
    assert client.post("/admin/heartbeat/stop").status_code == 401
    assert client.post("/admin/heartbeat/stop", headers=_bearer("no")).status_code == 403
    answer = client.post("/admin/heartbeat/stop", headers=_bearer("tok"))
    assert answer.status_code == 409 and decode(answer, bodies.ErrorBody).error.startswith(
        read_only(log_path)
    )
    assert client.get(STATUS).status_code == 401
    assert decode(client.get(STATUS, headers=_bearer("tok")), bodies.HeartbeatStatus).running

    hidden = decode(client.get("/health/detailed"), bodies.DetailedHealth)
    assert hidden.services["api"].target is None
    shown = decode(client.get("/health/detailed", headers=_bearer("tok")), bodies.DetailedHealth)
    assert shown.services["api"].target == target.svc_url("a")

    assert client.get("/health/service/zzz").status_code == 404
    assert decode(client.post("/health"), bodies.ErrorBody).status == 405

    # The writer is not touched by any of it.
    assert writer.monitor is not None and writer.monitor.heartbeat_running


def test_follow_token_from_the_environment(following, target, log_path, stop_later, monkeypatch):
    writer = stop_later(
        MonitorThread(flask_config(log_path, [service("api", target.svc_url("a"))]))
    )
    writer.start()
    monkeypatch.setenv("HEARTBEAT_ADMIN_TOKEN", "from-env")
    app, _ = following(log_path)
    client = app.test_client()
    assert client.get(STATUS).status_code == 401
    assert client.get(STATUS, headers=_bearer("from-env")).status_code == 200


def test_follow_a_log_that_does_not_exist_yet(following, target, log_path, stop_later):
    app, handle = following(log_path)
    client = app.test_client()
    empty = decode(client.get("/health"), bodies.Health)
    assert (empty.status, empty.monitoring, empty.services) == ("healthy", False, {})
    writer = stop_later(
        MonitorThread(flask_config(log_path, [service("api", target.svc_url("a"))]))
    )
    writer.start()
    wait_for_sync(lambda: decode(client.get("/health"), bodies.Health).monitoring, "sees the start")
    handle.stop()
    assert not handle.running


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class _Process:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

"""What the embedded monitor runs with (`init_heartbeat`'s config argument), and its clean
stop at interpreter exit."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time

import msgspec
import pytest
from flask import Blueprint, Flask
from heartbeat_support import events, flask_app, flask_config
from support.configs import service
from support.net import free_port
from support.waiting import wait_for_sync

from hbsm.config import ConfigError, load_config
from hbsm.events import Admin, MonitorStarted, MonitorStopped
from hbsm.flask import init_heartbeat
from hbsm.flask.embedded import resolve_config


def urls(config) -> dict[str, str]:
    return {s.name: s.url for s in config.services}


def test_defaults_monitor_the_apps_own_health_and_login_page(monkeypatch):
    monkeypatch.setenv("HEARTBEAT_PORT", "5123")
    app = flask_app()
    assert urls(resolve_config(app, None)) == {
        "main_service": "http://127.0.0.1:5123/health",
        "login_page": "http://127.0.0.1:5123/login",
    }
    # A login page elsewhere, found by its endpoint's name.
    other = Flask("other")
    auth = Blueprint("auth", __name__)
    auth.add_url_rule("/sign-in", "login", lambda: "sign in")
    other.register_blueprint(auth, url_prefix="/auth")
    assert urls(resolve_config(other, None))["login_page"] == "http://127.0.0.1:5123/auth/sign-in"
    # No login page in the app: the configured one (or the default), as load_config has it.
    monkeypatch.setenv("HEARTBEAT_LOGIN_URL", "https://sso.example/login")
    assert urls(resolve_config(Flask("bare"), None))["login_page"] == "https://sso.example/login"
    # ... which the operator's setting beats even when the app has a login page.
    assert urls(resolve_config(app, None))["login_page"] == "https://sso.example/login"
    # Served under a prefix, the app's own /health is there.
    prefixed = resolve_config(app, None, url_prefix="/ops/")
    assert urls(prefixed)["main_service"] == "http://127.0.0.1:5123/ops/health"


def test_a_file_a_loaded_config_or_a_config(tmp_path, log_path):
    toml = tmp_path / "hbsm.toml"
    toml.write_text('check_interval = 7\n[[services]]\nname = "db"\nurl = "127.0.0.1:5432"\n'
                    '[services.probe]\nkind = "tcp"\n')  # fmt: skip
    app = flask_app()
    from_file = resolve_config(app, str(toml), log_path=log_path)
    assert urls(from_file) == {"db": "127.0.0.1:5432"}  # the app's pages are not added
    assert from_file.check_interval == 7 and from_file.log.path == str(log_path)
    loaded = load_config(toml)
    assert resolve_config(app, loaded) is loaded.config
    config = flask_config(log_path, [service("x", "http://127.0.0.1:1/")])
    assert resolve_config(app, config) is config


def test_no_config_at_all_watches_the_app_itself(embedded, served, monkeypatch, tmp_path):
    """`init_heartbeat(app)`: the original feature — this app's /health and /login."""
    app = flask_app()
    server = served(app)
    monkeypatch.setenv("HEARTBEAT_PORT", str(server.port))
    monkeypatch.setenv("HEARTBEAT_CHECK_INTERVAL", "0.1")
    _, handle = embedded(app=app)
    server.serve()
    client = app.test_client()
    wait_for_sync(
        lambda: (
            client.get("/health").get_json()["services"]
            == {"main_service": "healthy", "login_page": "healthy"}
        ),
        "the app's own pages healthy",
    )
    assert (tmp_path / "events" / "heartbeat.jsonl").exists()  # the default log, under cwd
    assert handle.config is not None and handle.config.log.path == "events/heartbeat.jsonl"


def test_a_failed_lazy_start_leaves_the_host_app_serving(embedded, tmp_path, target):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log's folder should be")
    config = flask_config(blocker / "heartbeat.jsonl", [service("api", target.svc_url("api"))])
    app, handle = embedded(config, start=False)
    client = app.test_client()
    assert client.get("/").data == b"the host app"
    answer = client.get("/health")
    assert answer.status_code == 503
    assert "failed to start" in answer.get_json()["error"]
    assert client.get("/").status_code == 200  # no retry on every request
    assert not handle.running


def test_a_second_process_of_the_app_stands_by_and_takes_over(embedded, log_path, target):
    # Two processes of one app (gunicorn workers, say): one monitors; the other serves the log
    # it writes, and monitors from where it left off once it ends.
    config = flask_config(log_path, [service("api", target.svc_url("api"))])
    _, first = embedded(config)
    app, second = embedded(config)
    client = app.test_client()
    assert first.running and not second.running
    wait_for_sync(
        lambda: client.get("/health").get_json()["services"] == {"api": "healthy"},
        "the standby serves what the monitor writes",
    )
    # An admin action reaching the standby is carried out by the monitor, its answer relayed:
    # the same bytes as the monitor's own, and recorded once, by the monitor.
    monitor_client = first.app.test_client()
    for action, done in (("stop", "heartbeat stopped"), ("start", "heartbeat started")):
        assert client.post(f"/admin/heartbeat/{action}").get_json()["message"] == done
        # Read at once, here: the action is on disk, and the standby reads up to it.
        assert client.get("/health").get_json()["monitoring"] is (action == "start")
        direct = monitor_client.post(f"/admin/heartbeat/{action}")  # idempotent: "already"
        relayed = client.post(f"/admin/heartbeat/{action}")
        assert relayed.status_code == 200 and relayed.data == direct.data
    assert first.monitor is not None and first.monitor.heartbeat_running
    paused = client.post("/admin/service/api/pause")
    assert paused.get_json()["state"] == "paused"
    assert client.post("/admin/service/nope/pause").status_code == 404
    refused = client.post("/admin/heartbeat/stop", headers={"Origin": "http://elsewhere"})
    assert refused.status_code == 403
    recorded = [("stop", True)] * 3 + [("start", True)] * 3 + [("pause", True), ("stop", False)]
    # Each recorded once, by the monitor, and on disk by the time it was answered.
    assert [(e.action, e.allowed) for e in events(log_path) if isinstance(e, Admin)] == recorded
    # Trying the lock (every check interval, 0.1 s here) never interrupts what it serves.
    until = time.monotonic() + 1.0
    while time.monotonic() < until:
        assert client.get("/health").status_code == 200
    first.stop()
    wait_for_sync(lambda: second.running, "the standby took over")
    history = events(log_path)
    starts = [e for e in history if isinstance(e, MonitorStarted)]
    assert len(starts) == 2  # the second resumed the log the first wrote
    assert client.post("/admin/heartbeat/stop").status_code == 200  # it acts now


@pytest.mark.parametrize("how", ["atexit", "handle.stop()", "SIGTERM"])
def test_the_monitor_stops_cleanly_when_the_process_ends(tmp_path, log_path, how):
    script = textwrap.dedent(
        f"""
        import sys, time
        from flask import Flask
        from hbsm.config import Config, LogConfig, ServiceConfig
        from hbsm.flask import init_heartbeat

        app = Flask("host")
        config = Config(
            check_interval=0.1,
            log=LogConfig(path={str(log_path)!r}),
            services=[ServiceConfig(name="api", url="http://127.0.0.1:{free_port()}/")],
        )
        handle = init_heartbeat(app, config)
        app.test_client().post("/admin/heartbeat/stop")
        if {how!r} == "handle.stop()":
            handle.stop()
        if {how!r} == "SIGTERM":  # as a process manager stops the app (no atexit then)
            import os, signal
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # not reached: the default ends the process
        print("exiting", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    # Ended by the signal as the default would (-15), once the stop is recorded.
    assert done.returncode == (-15 if how == "SIGTERM" else 0), done.stderr
    history = events(log_path)
    assert isinstance(history[0], MonitorStarted)
    assert isinstance(history[-1], MonitorStopped), history[-1]
    assert history[-1].reason == ("SIGTERM" if how == "SIGTERM" else "the Flask app stopped")
    assert [e.action for e in history if isinstance(e, Admin)] == ["stop"]
    assert msgspec.json.decode(log_path.read_bytes().splitlines()[-1])["type"] == "monitor.stopped"


def test_none_reads_no_file_it_was_not_given(tmp_path, monkeypatch):
    # A hbsm.toml in the working directory (another tool's, say) is not the app's config:
    # None is the defaults and the environment; a file is read when named, there or by
    # $HEARTBEAT_CONFIG.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hbsm.toml").write_text('[[services]]\nname = "stray"\nurl = "http://x/"\n')
    assert "stray" not in urls(resolve_config(flask_app(), None))
    monkeypatch.setenv("HEARTBEAT_CONFIG", str(tmp_path / "hbsm.toml"))
    assert "stray" in urls(resolve_config(flask_app(), None))


def test_a_named_file_that_is_missing_is_one_config_error(tmp_path):
    missing = tmp_path / "nope" / "hbsm.toml"
    with pytest.raises(ConfigError) as caught:
        init_heartbeat(flask_app(), missing)
    assert str(caught.value) == f"{missing}: no such file"


def test_an_app_with_its_own_health_keeps_it_and_is_probed_as_a_load_balancer_would(
    embedded, served, monkeypatch, caplog
):
    # The app's /health is the app's: hbsm says in one line that its own is hidden there,
    # and main_service probes the app's, where a 503 is a failure.
    app = Flask("host")
    verdict = {"status": 200}

    @app.get("/health")
    def health():
        return {"app": "mine"}, verdict["status"]

    server = served(app)
    monkeypatch.setenv("HEARTBEAT_PORT", str(server.port))
    monkeypatch.setenv("HEARTBEAT_CHECK_INTERVAL", "0.1")
    with caplog.at_level(logging.WARNING, logger="hbsm.flask"):
        _, handle = embedded(app=app, url_prefix="/heartbeat")
        assert not caplog.records  # under a prefix: nothing hidden
        other = Flask("other")
        other.add_url_rule("/health", "app_health", health)
        embedded(app=other, start=False)  # the warning comes at set-up
    (warning,) = caplog.records
    assert warning.getMessage().startswith(
        "hbsm: this app already serves GET /health (the app's endpoint 'app_health'), so hbsm's "
        "route there is hidden"
    )
    server.serve()
    client = app.test_client()
    assert client.get("/health").get_json() == {"app": "mine"}  # the app's, untouched

    def main_service() -> str:
        return client.get("/heartbeat/health").get_json()["services"]["main_service"]

    assert handle.config.services[0].url == f"http://127.0.0.1:{server.port}/health"
    wait_for_sync(lambda: main_service() == "healthy", "the app's /health probed healthy")
    verdict["status"] = 503  # what a load balancer takes the app out of rotation for
    wait_for_sync(lambda: main_service() != "healthy", "a 503 counted as a failure")


def test_disabled_monitoring_opens_nothing_and_the_routes_say_so(embedded, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEARTBEAT_ENABLED", "false")
    before = {t.name for t in threading.enumerate()}
    app, handle = embedded(app=flask_app())
    assert not handle.running
    assert not (tmp_path / "events").exists()  # no log opened, so no lock taken either
    assert {t.name for t in threading.enumerate()} == before  # no thread

    client = app.test_client()
    health = client.get("/health")  # the app is up: 200, monitoring nothing
    assert health.status_code == 200
    assert health.get_json()["monitoring"] is False and health.get_json()["services"] == {}
    refused = client.post("/admin/heartbeat/start")
    assert refused.status_code == 503
    assert "monitoring is disabled" in refused.get_json()["error"]
    status = client.get("/admin/heartbeat/status").get_json()
    assert status["running"] is False
    # A second app in the same folder is no obstacle: nothing holds the log.
    _, second = embedded(app=flask_app("second"))
    assert not second.running
    assert not (tmp_path / "events").exists() and {t.name for t in threading.enumerate()} == before


def test_embedded_the_app_is_repaired_in_grades_up_to_restarting_itself(monkeypatch):
    # The original feature's ladder for the app it is part of; standalone, `hbsm run` cannot
    # restart itself, and a login page elsewhere (an SSO) is not mended by restarting this app.
    embedded_defaults = resolve_config(flask_app(), None).services
    assert [(s.name, s.ladder, s.restart.kind) for s in embedded_defaults] == [
        ("main_service", ["diagnose", "check_config", "restart"], "self"),
        ("login_page", ["diagnose", "check_config", "restart"], "self"),
    ]
    standalone = load_config(None, {}, discover=False).config.services
    assert [(s.name, s.ladder, s.restart.kind) for s in standalone] == [
        ("main_service", ["diagnose"], "none")
    ]
    monkeypatch.setenv("HEARTBEAT_LOGIN_URL", "https://sso.example/login")
    sso = resolve_config(flask_app(), None).services[1]
    assert (sso.name, sso.ladder, sso.restart.kind) == ("login_page", ["diagnose"], "none")


def test_a_monitor_read_from_a_file_reloads_it_through_the_apps_own_route(
    embedded, tmp_path, log_path, target
):
    toml = tmp_path / "hbsm.toml"
    head = 'admin_token = "t0k3n"\ncheck_interval = 0.1\n'

    def write(*names: str) -> None:
        rows = "".join(f'[[services]]\nname = "{n}"\nurl = "{target.svc_url(n)}"\n' for n in names)
        toml.write_text(head + rows)

    write("api")
    app, handle = embedded(str(toml), log_path=log_path)
    client = app.test_client()
    wait_for_sync(lambda: client.get("/health").get_json()["services"] == {"api": "healthy"},
                  "api healthy")  # fmt: skip

    write("api", "web")
    assert client.post("/admin/config/reload").status_code == 401
    answer = client.post("/admin/config/reload", headers={"Authorization": "Bearer t0k3n"})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["added"] == ["web"] and answer.get_json()["version"] == 2
    wait_for_sync(
        lambda: (
            client.get("/health").get_json()["services"] == {"api": "healthy", "web": "healthy"}
        ),
        "web probed, healthy",
    )
    toml.write_text(head + "max_retries = 0\n")
    refused = client.post("/admin/config/reload", headers={"Authorization": "Bearer t0k3n"})
    assert refused.status_code == 422 and "max_retries" in refused.get_json()["error"]
    assert handle.monitor is not None and set(handle.monitor.services) == {"api", "web"}

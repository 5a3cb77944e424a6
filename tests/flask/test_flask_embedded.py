"""The blueprint in embedded mode: `init_heartbeat` runs a real Monitor (file log, prober,
repair runner, notifier) in a thread of a real Flask app, probing local HTTP targets."""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec
import pytest
from heartbeat_support import events, flask_config
from support.configs import service
from support.waiting import wait_for_sync

from hbsm.api import bodies
from hbsm.api.routes import ROUTES
from hbsm.events import Admin, LogOutage, MonitorStopped

STATUS = "/admin/heartbeat/status"
START = "/admin/heartbeat/start"
STOP = "/admin/heartbeat/stop"


def two_services(target, log_path: Path, **overrides):
    return flask_config(
        log_path,
        [
            service("api", target.svc_url("api"), critical=True, description="the API"),
            service("login_page", target.svc_url("login")),
        ],
        **overrides,
    )


def decode(response, kind):
    assert response.content_type == "application/json", response.data
    return msgspec.json.decode(response.data, type=kind)


def wait_probed(client, *names: str) -> None:
    def probed():
        body = decode(client.get("/health"), bodies.Health)
        return all(body.services.get(n, "unknown") != "unknown" for n in names)

    wait_for_sync(probed, f"{names} probed")


def test_every_route_answers_its_body(embedded, target, log_path):
    app, _ = embedded(two_services(target, log_path))
    client = app.test_client()
    wait_probed(client, "api", "login_page")

    health = client.get("/health")
    assert health.status_code == 200
    assert health.headers["Cache-Control"] == "no-store"
    body = decode(health, bodies.Health)
    assert body.status == "healthy"
    assert body.monitoring is True
    assert body.services == {"api": "healthy", "login_page": "healthy"}

    detailed = decode(client.get("/health/detailed"), bodies.DetailedHealth)
    assert detailed.monitoring.running and detailed.monitoring.uptime_s is not None
    api = detailed.services["api"]
    assert (api.state, api.critical, api.description) == ("healthy", True, "the API")
    assert api.target == target.svc_url("api")  # a loopback client, no token set: shown
    assert api.last_probe is not None and api.last_probe.ok
    assert api.threshold == 2 and api.next_action == "probe"

    one = client.get("/health/service/login_page")
    assert one.status_code == 200
    # The same view, read a moment later: only its age has moved on.
    alone = decode(one, bodies.ServiceHealth)
    in_detailed = detailed.services["login_page"]
    assert alone.age_s is not None and in_detailed.age_s is not None
    assert alone.age_s >= in_detailed.age_s
    assert msgspec.structs.replace(alone, age_s=0.0) == msgspec.structs.replace(
        in_detailed, age_s=0.0
    )

    status = decode(client.get(STATUS), bodies.HeartbeatStatus)
    assert status.running and status.services == 2
    assert status.by_state == {"healthy": 2}
    assert status.log.path == str(log_path)
    assert status.log.last_seq >= 4 and status.events_by_type["probe"] >= 2
    assert status.config["services"][0]["name"] == "api"


def test_a_critical_service_down_is_503_and_health_json(embedded, target, log_path):
    app, _ = embedded(two_services(target, log_path, max_retries=50))
    client = app.test_client()
    wait_probed(client, "api", "login_page")
    target.modes["api"] = "/status/500"
    wait_for_sync(lambda: client.get("/health").status_code == 503, "/health says 503")

    body = decode(client.get("/health"), bodies.Health)
    assert body.status == "unhealthy" and body.services["api"] == "degraded"
    detailed = client.get("/health/detailed")
    assert detailed.status_code == 503
    api = decode(detailed, bodies.DetailedHealth).services["api"]
    assert api.failures >= 1 and api.last_failure is not None and api.last_failure.status == 500

    # Hold the projection still (no more probes) to compare two answers.
    assert client.post(STOP).status_code == 200
    wanted = {"Accept": "application/health+json"}
    as_json = client.get("/health", headers=wanted)
    assert as_json.status_code == 503
    assert as_json.content_type == "application/health+json"
    doc = msgspec.json.decode(as_json.data, type=bodies.HealthJson)
    assert doc.status == "fail"
    assert doc.checks["api:responseTime"][0].status == "fail"
    assert doc.checks["login_page:responseTime"][0].status == "pass"
    assert client.get("/health/detailed", headers=wanted).data == as_json.data

    # One service: its own status.
    login = client.get("/health/service/login_page", headers=wanted)
    assert login.status_code == 200
    assert list(msgspec.json.decode(login.data, type=bodies.HealthJson).checks) == [
        "login_page:responseTime"
    ]
    assert client.get("/health/service/api", headers=wanted).status_code == 503
    missing = client.get("/health/service/nope", headers=wanted)
    assert missing.status_code == 404 and missing.content_type == "application/json"


def test_stop_and_start_are_idempotent_and_recorded(embedded, target, log_path):
    app, handle = embedded(two_services(target, log_path))
    client = app.test_client()

    stop = client.post(STOP)
    assert stop.status_code == 200
    result = decode(stop, bodies.AdminResult)
    assert (result.action, result.ok, result.changed, result.running) == ("stop", True, True, False)
    again = decode(client.post(STOP), bodies.AdminResult)
    assert (again.changed, again.running, again.message) == (
        False,
        False,
        "heartbeat already stopped",
    )
    assert decode(client.get(STATUS), bodies.HeartbeatStatus).running is False
    assert decode(client.get("/health"), bodies.Health).monitoring is False

    # Stopped means stopped: no probe is recorded meanwhile.
    seq = decode(client.get(STATUS), bodies.HeartbeatStatus).log.last_seq
    threading.Event().wait(0.4)
    assert decode(client.get(STATUS), bodies.HeartbeatStatus).log.last_seq == seq

    start = decode(client.post(START), bodies.AdminResult)
    assert (start.changed, start.running) == (True, True)
    assert decode(client.post(START), bodies.AdminResult).changed is False
    assert decode(client.get(STATUS), bodies.HeartbeatStatus).running is True

    handle.stop()
    admin = [e for e in events(log_path) if isinstance(e, Admin)]
    assert [(e.action, e.allowed, e.detail) for e in admin] == [
        ("stop", True, ""),
        ("stop", True, "already stopped"),
        ("start", True, ""),
        ("start", True, "already running"),
    ]
    assert {e.who for e in admin} == {"loopback"}
    assert {e.source for e in admin} == {"127.0.0.1"}


def test_admin_token(embedded, target, log_path):
    app, handle = embedded(two_services(target, log_path, admin_token="s3cret"))
    client = app.test_client()
    wait_probed(client, "api")
    right = {"Authorization": "Bearer s3cret"}
    wrong = {"Authorization": "Bearer guess"}

    missing = client.get(STATUS)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in decode(missing, bodies.ErrorBody).error
    assert client.get(STATUS, headers=wrong).status_code == 403
    assert client.get(STATUS, headers={"Authorization": "Basic s3cret"}).status_code == 401
    assert client.get(STATUS, headers=right).status_code == 200
    # The token is required from loopback clients too, and never shown.
    status = decode(client.get(STATUS, headers=right), bodies.HeartbeatStatus)
    assert status.config["admin_token"] == "***"

    # Internal URLs: to admin-authorized clients only.
    hidden = decode(client.get("/health/detailed"), bodies.DetailedHealth)
    assert all(s.target is None for s in hidden.services.values())
    assert decode(client.get("/health/service/api"), bodies.ServiceHealth).target is None
    shown = decode(client.get("/health/detailed", headers=right), bodies.DetailedHealth)
    assert shown.services["api"].target == target.svc_url("api")
    assert (
        decode(client.get("/health/detailed", headers=wrong), bodies.DetailedHealth)
        .services["api"]
        .target
        is None
    )

    assert client.post(STOP).status_code == 401
    assert client.post(STOP, headers=wrong).status_code == 403
    assert decode(client.get(STATUS, headers=right), bodies.HeartbeatStatus).running is True
    assert decode(client.post(STOP, headers=right), bodies.AdminResult).running is False

    handle.stop()
    admin = [(e.action, e.allowed, e.who) for e in events(log_path) if isinstance(e, Admin)]
    assert admin == [
        ("stop", False, "anonymous"),
        ("stop", False, "token"),
        ("stop", True, "token"),
    ]


def test_without_token_only_loopback_clients(embedded, target, log_path):
    app, handle = embedded(two_services(target, log_path))
    client = app.test_client()
    wait_probed(client, "api")
    remote = {"REMOTE_ADDR": "10.1.2.3", "REMOTE_PORT": "50123"}

    denied = client.get(STATUS, environ_base=remote)
    assert denied.status_code == 403
    assert "loopback" in decode(denied, bodies.ErrorBody).error
    assert client.post(STOP, environ_base=remote).status_code == 403
    assert client.post(START, environ_base=remote).status_code == 403
    detailed = decode(client.get("/health/detailed", environ_base=remote), bodies.DetailedHealth)
    assert all(s.target is None for s in detailed.services.values())
    # The health routes are for everyone.
    assert client.get("/health", environ_base=remote).status_code == 200

    # A request relayed by a proxy on this host is not a loopback client.
    proxied = client.get(STATUS, headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 403
    for loopback in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"):
        assert client.get(STATUS, environ_base={"REMOTE_ADDR": loopback}).status_code == 200
    # A web page open in the operator's browser is on loopback too: the browser checks refuse
    # a cross-site request and a foreign Host (DNS rebinding), as the standalone app does.
    local = {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50124"}
    cross = client.post(STOP, environ_base=local, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    foreign = client.post(STOP, environ_base=local, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    rebound = client.get(STATUS, environ_base=local, headers={"Host": "evil.example"})
    assert rebound.status_code == 403

    handle.stop()
    admin = [e for e in events(log_path) if isinstance(e, Admin)]
    assert [(e.action, e.allowed, e.who, e.source) for e in admin] == [
        ("stop", False, "anonymous", "10.1.2.3:50123"),
        ("start", False, "anonymous", "10.1.2.3:50123"),
        ("stop", False, "loopback", "127.0.0.1:50124"),
        ("stop", False, "loopback", "127.0.0.1:50124"),
    ]


def test_errors_are_json_and_the_host_app_keeps_its_own(embedded, target, log_path):
    app, _ = embedded(two_services(target, log_path))
    client = app.test_client()

    for path in ("/health/service/nope", "/health/nope", "/health/service/a/b", "/admin/heartbeat",
                 "/admin/heartbeat/restart"):  # fmt: skip
        answer = client.get(path)
        assert answer.status_code == 404, path
        error = decode(answer, bodies.ErrorBody)
        assert error.status == 404 and error.error, path
    assert "nope" in decode(client.get("/health/service/nope"), bodies.ErrorBody).error

    for method, path in [("POST", "/health"), ("DELETE", "/health/detailed"),
                         ("OPTIONS", "/health"), ("GET", STOP), ("PUT", STATUS)]:  # fmt: skip
        answer = client.open(path, method=method)
        assert answer.status_code == 405, (method, path)
        assert decode(answer, bodies.ErrorBody).status == 405
        assert "GET" in answer.headers["Allow"] or "POST" in answer.headers["Allow"]

    # The host's own pages and errors are left alone.
    assert client.get("/").data == b"the host app"
    assert client.get("/nothing-here").content_type.startswith("text/html")
    assert client.post("/login").content_type.startswith("text/html")


def test_url_prefix(embedded, target, log_path):
    app, _ = embedded(two_services(target, log_path), url_prefix="/ops")
    client = app.test_client()
    assert decode(client.get("/ops/health"), bodies.Health).services.keys() == {"api", "login_page"}
    assert client.get("/ops/admin/heartbeat/status").status_code == 200
    assert client.get("/health").content_type.startswith("text/html")  # not ours any more
    answer = client.get("/ops/whatever")
    assert answer.status_code == 404 and answer.content_type == "application/json"
    rules = sorted(r.rule for r in app.url_map.iter_rules() if r.endpoint.startswith("hbsm"))
    # Every route of the standalone API, and only under the prefix.
    assert rules == sorted("/ops" + route.flask_rule for route in ROUTES)
    assert len(rules) == 12
    # The status page under the prefix; its URLs are relative, so they stay under it too.
    page = client.get("/ops/")
    assert page.status_code == 200 and page.content_type == "text/html; charset=utf-8"
    assert b'fetch("health/detailed"' in page.data


def test_the_url_rules_are_the_routes(embedded, target, log_path):
    app, _ = embedded(two_services(target, log_path))
    rules = {
        (r.rule, frozenset(r.methods or ()) - {"HEAD"})
        for r in app.url_map.iter_rules()
        if r.endpoint.startswith("hbsm_heartbeat.")
    }
    assert rules == {(route.flask_rule, frozenset({route.method})) for route in ROUTES}


def test_stop_ends_the_thread_and_the_routes_keep_the_last_state(embedded, target, log_path):
    app, handle = embedded(two_services(target, log_path))
    client = app.test_client()
    wait_probed(client, "api", "login_page")
    assert handle.running and handle.mode == "embedded"

    handle.stop()
    handle.stop()  # idempotent
    assert not handle.running
    assert not [t for t in threading.enumerate() if t.name == "hbsm-monitor"]
    history = events(log_path)
    assert isinstance(history[-1], MonitorStopped)
    assert history[-1].reason == "the Flask app stopped"

    body = decode(client.get("/health"), bodies.Health)
    assert body.monitoring is False and body.services["api"] == "healthy"
    assert decode(client.get(STATUS), bodies.HeartbeatStatus).running is False
    gone = client.post(START)
    assert gone.status_code == 503
    assert "shut down" in decode(gone, bodies.ErrorBody).error
    with pytest.raises(RuntimeError):
        handle.start()


def test_lazy_start_on_the_first_request(embedded, target, log_path):
    app, handle = embedded(two_services(target, log_path), start=False)
    assert not handle.running and not log_path.exists()
    client = app.test_client()
    assert client.get("/").status_code == 200  # any request of the app starts it
    assert handle.running
    wait_probed(client, "api")


def test_concurrent_requests_while_probing(embedded, target, log_path):
    """Request threads read bodies while the monitor's loop folds probes every 20 ms."""
    app, _ = embedded(two_services(target, log_path, check_interval=0.02))
    client = app.test_client()
    wait_probed(client, "api", "login_page")
    problems: list[str] = []
    done = threading.Event()
    served = [0]

    def hammer() -> None:
        own = app.test_client()
        while not done.is_set():
            for path in ("/health", "/health/detailed", "/health/service/api", STATUS):
                answer = own.get(path)
                if answer.status_code != 200:
                    problems.append(f"{path}: {answer.status_code} {answer.data!r}")
                msgspec.json.decode(answer.data)
                served[0] += 1

    def probes() -> int:
        return decode(client.get(STATUS), bodies.HeartbeatStatus).events_by_type["probe"]

    first = probes()
    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        wait_for_sync(lambda: probes() >= first + 40 or problems, "40 more probes meanwhile")
    finally:
        done.set()
        for t in threads:
            t.join(30)
    assert not problems, problems[:3]
    assert served[0] > 100


def test_an_unwritable_log_is_503_on_health_and_refuses_admin(embedded, target, log_path):
    # The blueprint relays the monitor's outage as the standalone app does (a real full disk:
    # tests/reliability/test_disk_full.py); here the store's writes fail (ENOSPC).
    app, handle = embedded(two_services(target, log_path))
    client = app.test_client()
    wait_probed(client, "api", "login_page")
    monitor = handle.monitor
    assert monitor is not None

    def disk_full() -> None:
        raise OSError(28, "No space left on device")

    monitor.store.flush = disk_full  # type: ignore[method-assign]
    wait_for_sync(lambda: client.get("/health").status_code == 503, "/health 503")
    body = decode(client.get("/health"), bodies.Health)
    assert body.status == "unhealthy" and not body.event_log.writable
    assert "No space left on device" in body.event_log.error
    detailed = decode(client.get("/health/detailed"), bodies.DetailedHealth)
    assert detailed.event_log.writable is False
    assert decode(client.get(STATUS), bodies.HeartbeatStatus).log.writable is False
    refused = client.post(STOP)
    assert refused.status_code == 503 and b"cannot be written" in refused.data
    assert decode(client.get(STATUS), bodies.HeartbeatStatus).running is True

    del monitor.store.flush  # writable again: the class's own flush
    wait_for_sync(lambda: client.get("/health").status_code == 200, "/health 200 again")
    assert decode(client.get("/health"), bodies.Health).event_log.writable
    handle.stop()
    assert any(isinstance(e, LogOutage) for e in events(log_path))

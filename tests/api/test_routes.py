"""Every route over real uvicorn and real HTTP: status codes and body shapes (decoded strictly
into the very Structs the app encodes with), 503 when a critical service goes down,
application/health+json, and JSON errors for 404/405/413."""

from __future__ import annotations

import sys

import httpx
import msgspec
import pytest
from probes.servers import SwitchableTarget
from support.configs import service
from support.waiting import wait_for

from hbsm.api.bodies import (
    AdminResult,
    DetailedHealth,
    ErrorBody,
    Health,
    HealthJson,
    HeartbeatStatus,
    ServiceHealth,
)

from .conftest import Live, StartApi

HEALTH_JSON = "application/health+json"


def body(response: httpx.Response, kind: type[msgspec.Struct]) -> msgspec.Struct:
    """The body, decoded strictly: a missing or mistyped field fails here."""
    return msgspec.json.decode(response.content, type=kind)


def error_of(response: httpx.Response, status: int) -> ErrorBody:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    err = body(response, ErrorBody)
    assert isinstance(err, ErrorBody)
    assert err.status == status and err.error
    return err


async def test_health_routes_answer_their_bodies(live: Live) -> None:
    r = await live.client.get("/health")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    health = body(r, Health)
    assert isinstance(health, Health)
    assert health.status == "healthy" and health.monitoring
    assert health.services == {"web": "healthy", "aux": "healthy"}

    r = await live.client.get("/health/detailed")
    assert r.status_code == 200
    detailed = body(r, DetailedHealth)
    assert isinstance(detailed, DetailedHealth)
    assert set(detailed.services) == {"web", "aux"}
    web = detailed.services["web"]
    assert web.critical and web.description == "the site" and web.state == "healthy"
    assert web.last_probe is not None and web.last_probe.ok and web.latency_ms is not None
    assert web.threshold == 2 and web.next_action == "probe"
    # Loopback, no token set: admin-authorized, so the internal URL is shown.
    assert web.target is not None and web.target.endswith("/svc/web")
    assert detailed.monitoring.running and detailed.monitoring.pid

    r = await live.client.get("/health/service/aux")
    assert r.status_code == 200
    aux = body(r, ServiceHealth)
    assert isinstance(aux, ServiceHealth)
    assert aux.name == "aux" and not aux.critical and aux.state == "healthy"


async def test_status_shows_running_config_counts_and_log(live: Live) -> None:
    r = await live.client.get("/admin/heartbeat/status")
    assert r.status_code == 200
    status = body(r, HeartbeatStatus)
    assert isinstance(status, HeartbeatStatus)
    assert status.running and status.services == 2
    assert status.by_state == {"healthy": 2}
    assert status.events_by_type["probe"] >= 2
    assert status.log.path == str(live.store.path) and status.log.last_seq > 0
    assert status.config["check_interval"] == 0.2
    assert [s["name"] for s in status.config["services"]] == ["web", "aux"]


async def test_a_critical_service_down_makes_health_503_and_back(
    live: Live, target: SwitchableTarget
) -> None:
    target.modes["aux"] = "/status/500"  # not critical: degraded, still 200
    await live.wait_state("aux", "degraded")
    r = await live.client.get("/health")
    assert r.status_code == 200 and body(r, Health).status == "degraded"  # type: ignore[attr-defined]

    target.modes["web"] = "/status/500"

    async def unhealthy() -> bool:
        return (await live.client.get("/health")).status_code == 503

    await wait_for(unhealthy, "/health answers 503")
    r = await live.client.get("/health")
    health = body(r, Health)
    assert isinstance(health, Health)
    assert health.status == "unhealthy" and health.services["web"] != "healthy"
    r = await live.client.get("/health/detailed")
    assert r.status_code == 503
    detailed = body(r, DetailedHealth)
    assert isinstance(detailed, DetailedHealth)
    web = detailed.services["web"]
    # Its failure, whatever the repair has come to meanwhile (a run over counts afresh: the
    # failures may be 0 again on a loaded machine by the time this is read).
    assert web.state != "healthy" and web.last_failure is not None
    assert web.last_failure.error == "http_5xx" and web.last_failure.status == 500

    r = await live.client.get("/health", headers={"Accept": HEALTH_JSON})
    assert r.status_code == 503 and r.headers["content-type"] == HEALTH_JSON
    hj = body(r, HealthJson)
    assert isinstance(hj, HealthJson) and hj.status == "fail"
    assert hj.checks["web:responseTime"][0].status == "fail"
    r = await live.client.get("/health/service/web", headers={"Accept": HEALTH_JSON})
    assert r.status_code == 503 and body(r, HealthJson).status == "fail"  # type: ignore[attr-defined]

    target.modes["web"] = target.modes["aux"] = "/ok"
    await wait_for(lambda: live.state("web") == "healthy", "web healthy again")
    await live.wait_state("aux", "healthy")
    assert (await live.client.get("/health")).status_code == 200


async def test_health_json_when_asked(live: Live) -> None:
    for path in ("/health", "/health/detailed"):
        r = await live.client.get(path, headers={"Accept": f"text/html, {HEALTH_JSON};q=0.9"})
        assert r.status_code == 200 and r.headers["content-type"] == HEALTH_JSON
        hj = body(r, HealthJson)
        assert isinstance(hj, HealthJson)
        assert hj.status == "pass" and set(hj.checks) == {"web:responseTime", "aux:responseTime"}
        check = hj.checks["web:responseTime"][0]
        assert check.componentId == "web" and check.status == "pass"
        assert check.observedUnit == "ms" and check.observedValue is not None
    r = await live.client.get("/health/service/aux", headers={"Accept": HEALTH_JSON})
    assert r.status_code == 200
    one = body(r, HealthJson)
    assert isinstance(one, HealthJson) and list(one.checks) == ["aux:responseTime"]
    # q=0 means "not this one".
    r = await live.client.get("/health", headers={"Accept": f"{HEALTH_JSON};q=0"})
    assert r.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "path",
    [
        "/health/service/nope",
        "/health/service/..%2F..%2Fetc%2Fpasswd",
        "/health/service/%2e%2e",
        "/health/service/a%20b",
        "/health/service/" + "x" * 300,
        "/health/",
        "/nope",
        "/admin/service/web/explode",
        "/admin/service/nope/pause",
        "/admin/service/..%2Fweb/pause",
    ],
)
async def test_unknown_names_and_routes_are_404_json(live: Live, path: str) -> None:
    method = "POST" if path.startswith("/admin") else "GET"
    r = await live.client.request(method, path)
    error_of(r, 404)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/health", "GET"),
        ("DELETE", "/health/service/web", "GET"),
        ("GET", "/admin/heartbeat/stop", "POST"),
        ("PUT", "/admin/service/web/pause", "POST"),
        ("POST", "/metrics", "GET"),
    ],
)
async def test_wrong_method_is_405_json_with_allow(
    live: Live, method: str, path: str, allow: str
) -> None:
    r = await live.client.request(method, path)
    err = error_of(r, 405)
    assert allow in r.headers["allow"] and method in err.error


async def test_big_bodies_are_413_json(live: Live) -> None:
    big = b"x" * (64 * 1024 + 1)
    r = await live.client.post("/admin/heartbeat/stop", content=big)
    error_of(r, 413)

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b"y" * 8192

    r = await live.client.post("/admin/heartbeat/stop", content=chunks())
    error_of(r, 413)
    assert live.monitor.heartbeat_running  # never reached the route
    # A small body is read and ignored.
    r = await live.client.post("/admin/service/web/probe-now", content=b'{"why": "test"}')
    assert r.status_code == 200


async def test_start_stop_are_idempotent_and_recorded(live: Live) -> None:
    results = []
    for action in ("stop", "stop", "start", "start"):
        r = await live.client.post(f"/admin/heartbeat/{action}")
        assert r.status_code == 200, r.text
        result = body(r, AdminResult)
        assert isinstance(result, AdminResult)
        results.append((result.action, result.changed, result.running))
    assert results == [
        ("stop", True, False),
        ("stop", False, False),
        ("start", True, True),
        ("start", False, True),
    ]
    admin = live.admin_events()
    assert [(e.action, e.allowed, e.who) for e in admin] == [
        ("stop", True, "loopback"),
        ("stop", True, "loopback"),
        ("start", True, "loopback"),
        ("start", True, "loopback"),
    ]
    assert all(e.source.startswith("127.0.0.1:") for e in admin)
    assert [e.detail for e in admin] == ["", "already stopped", "", "already running"]


async def test_while_the_heartbeat_is_stopped_every_service_says_its_view_is_stale(
    live: Live,
) -> None:
    running = body(await live.client.get("/health/service/web"), ServiceHealth)
    assert isinstance(running, ServiceHealth)
    assert running.monitoring and running.next_action == "probe"
    assert running.age_s is not None and running.age_s >= 0
    interval = live.monitor.policies["web"].check_interval
    assert (await live.client.post("/admin/heartbeat/stop")).status_code == 200

    async def stale_long_enough() -> bool:
        # The age grows with the clock: the stop is no event of the service's own.
        one = body(await live.client.get("/health/service/web"), ServiceHealth)
        return isinstance(one, ServiceHealth) and (one.age_s or 0) > 2 * interval

    await wait_for(stale_long_enough, "an age over two check intervals")
    detailed = body(await live.client.get("/health/detailed"), DetailedHealth)
    assert isinstance(detailed, DetailedHealth) and not detailed.monitoring.running
    for name in ("web", "aux"):
        one = body(await live.client.get(f"/health/service/{name}"), ServiceHealth)
        assert isinstance(one, ServiceHealth)
        for shown in (one, detailed.services[name]):
            assert shown.state == "healthy"  # as last seen...
            assert not shown.monitoring  # ...and said to be so
            assert shown.next_action == "none: monitoring stopped"
            assert shown.next_action_at is None
            assert shown.age_s is not None and shown.age_s > 2 * interval
    assert (await live.client.post("/admin/heartbeat/start")).status_code == 200
    again = body(await live.client.get("/health/service/web"), ServiceHealth)
    assert isinstance(again, ServiceHealth) and again.monitoring


async def test_per_service_actions(live: Live) -> None:
    async def act(action: str, name: str = "web") -> AdminResult:
        r = await live.client.post(f"/admin/service/{name}/{action}")
        assert r.status_code == 200, r.text
        result = body(r, AdminResult)
        assert isinstance(result, AdminResult) and result.service == name
        return result

    paused = await act("pause")
    assert paused.ok and paused.changed and paused.state == "paused"
    again = await act("pause")
    assert again.ok and not again.changed and again.state == "paused"
    r = await live.client.get("/health")
    assert r.status_code == 200  # a paused critical service has no verdict
    resumed = await act("resume")
    assert resumed.changed and resumed.state == "healthy"
    assert not (await act("resume")).changed

    probed = await act("probe-now")
    assert probed.ok and not probed.changed

    repair = await act("repair-now", "aux")
    assert repair.ok and repair.changed and repair.state == "repairing"
    await live.wait_state("aux", "healthy")  # diagnose, then the verification probe passes

    reset = await act("reset")
    assert reset.ok and reset.changed and reset.state == "unknown"
    await live.wait_state("web", "healthy")

    recorded = [(e.action, e.service, e.allowed) for e in live.admin_events()]
    assert recorded == [
        ("pause", "web", True),
        ("pause", "web", True),
        ("resume", "web", True),
        ("resume", "web", True),
        ("probe_now", "web", True),
        ("repair_now", "aux", True),
        ("reset", "web", True),
    ]


async def test_reset_brings_a_failed_service_back(
    start_api: StartApi, target: SwitchableTarget
) -> None:
    # Its restart command fails: after two failed probes it is restarted, fails, gives up.
    failing = service(
        "flaky",
        target.svc_url("flaky"),
        ladder=["diagnose", "restart"],
        restart={
            "kind": "command",
            "argv": [sys.executable, "-c", "raise SystemExit(1)"],
            "timeout": 5,
        },
    )
    target.modes["flaky"] = "/status/500"
    live = await start_api(services=[failing])
    await live.wait_state("flaky", "failed")

    r = await live.client.get("/health/service/flaky")
    assert body(r, ServiceHealth).next_action == "awaiting reset"  # type: ignore[attr-defined]
    r = await live.client.post("/admin/service/flaky/repair-now")
    refused = body(r, AdminResult)
    assert isinstance(refused, AdminResult)
    assert r.status_code == 200 and not refused.ok and not refused.changed
    assert "reset it first" in refused.message

    target.modes["flaky"] = "/ok"
    r = await live.client.post("/admin/service/flaky/reset")
    reset = body(r, AdminResult)
    assert isinstance(reset, AdminResult) and reset.changed and reset.state == "unknown"
    await live.wait_state("flaky", "healthy")


async def test_read_only_instance_refuses_admin_actions(live: Live, tmp_path) -> None:
    """An app over a LogSource (another process's log) reads, but cannot act."""
    from hbsm.api import LogSource, create_app

    live.store.flush()
    with LogSource(live.store.path) as source:
        app = create_app(source)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            r = await client.get("/health")
            assert r.status_code == 200 and set(body(r, Health).services) == {"web", "aux"}  # type: ignore[attr-defined]
            before = len(live.admin_events())
            for path in ("/admin/heartbeat/stop", "/admin/service/web/pause"):
                err = error_of(await client.post(path), 409)
                assert "only reads the log" in err.error
            assert len(live.admin_events()) == before
            r = await client.get("/admin/heartbeat/status")
            assert r.status_code == 200
            assert body(r, HeartbeatStatus).log.path == str(live.store.path)  # type: ignore[attr-defined]

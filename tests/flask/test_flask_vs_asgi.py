"""The Flask blueprint and the standalone ASGI app (hbsm.api.create_app), each on a real port,
serving the same projection at the same `now`, answer every route with the same bytes.

Two setups: one live Monitor served by both (the embedded monitor of a Flask app, and the ASGI
app on uvicorn in that monitor's own loop, as `hbsm run` serves it), and one finished log
projected by both (`follow_log` and `hbsm.api.LogSource`). The only answers allowed to differ
are the messages of an unknown route (the standalone app points at its /openapi.json, which
the blueprint does not serve) and of an admin action on a read-only source; their status and
shape must still agree.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import msgspec
from heartbeat_support import AsgiServed, flask_app, flask_config
from support.configs import service
from support.waiting import wait_for_sync

from hbsm.api import LogSource, MonitorSource, bodies, create_app
from hbsm.flask.embedded import MonitorThread

# One instant for both servers' bodies (timestamps, uptimes, restarts in window).
NOW = time.time() + 3600.0
TOKEN = "compare-token"
HEALTH_JSON = {"Accept": "application/health+json"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer wrong"}


class FixedNowMonitorSource(MonitorSource):
    def now(self) -> float:
        return NOW


# (method, path, headers): every route, with and without rights, in both media types.
READS = [
    ("GET", "/health", {}),
    ("GET", "/health", HEALTH_JSON),
    ("GET", "/health/detailed", {}),
    ("GET", "/health/detailed", AUTH),
    ("GET", "/health/detailed", WRONG),
    ("GET", "/health/detailed", HEALTH_JSON),
    ("GET", "/health/service/api", {}),
    ("GET", "/health/service/api", AUTH),
    ("GET", "/health/service/web", AUTH),
    ("GET", "/health/service/api", HEALTH_JSON),
    ("GET", "/health/service/web", HEALTH_JSON),
    ("GET", "/health/service/nope", {}),
    ("GET", "/health/service/nope", HEALTH_JSON),
    ("GET", "/health", {"Accept": "application/json, application/health+json"}),
    ("GET", "/health", {"Accept": "application/health+json;q=0, application/json"}),
    ("GET", "/health/detailed", {"Accept": "text/html, */*;q=0.1"}),
    ("GET", "/admin/heartbeat/status", {}),
    ("GET", "/admin/heartbeat/status", WRONG),
    ("GET", "/admin/heartbeat/status", AUTH),
    ("POST", "/admin/heartbeat/stop", {}),
    ("POST", "/admin/heartbeat/start", WRONG),
]
# Same status and ErrorBody shape; the message may differ.
SHAPE_ONLY = [("GET", "/health/nope", {}), ("GET", "/admin/heartbeat/restart", AUTH)]
# 405: the same words, but Starlette lists the allowed methods in set order (it varies from one
# process to the next), so the Allow lists are compared as sets.
WRONG_METHODS = [
    ("POST", "/health", {}),
    ("DELETE", "/health/detailed", {}),
    ("GET", "/admin/heartbeat/stop", AUTH),
    ("POST", "/admin/heartbeat/status", AUTH),
    ("OPTIONS", "/health/service/api", {}),
]


def answer(base: str, method: str, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    response = httpx.request(method, base + path, headers=headers, timeout=10)
    return response.status_code, response.headers.get("content-type", ""), response.content


def assert_same(flask_base: str, asgi_base: str, method: str, path: str, headers) -> None:
    mine = answer(flask_base, method, path, headers)
    theirs = answer(asgi_base, method, path, headers)
    assert mine == theirs, f"{method} {path} {headers}"


def assert_same_shape(flask_base: str, asgi_base: str, method: str, path: str, headers) -> None:
    mine = answer(flask_base, method, path, headers)
    theirs = answer(asgi_base, method, path, headers)
    assert mine[:2] == theirs[:2], f"{method} {path}"
    for _, _, body in (mine, theirs):
        assert msgspec.json.decode(body, type=bodies.ErrorBody).status == mine[0]


def assert_same_405(flask_base: str, asgi_base: str, method: str, path: str, headers) -> None:
    def normalized(base: str) -> tuple[int, str, str, frozenset[str]]:
        response = httpx.request(method, base + path, headers=headers, timeout=10)
        error = msgspec.json.decode(response.content, type=bodies.ErrorBody)
        words, _, allowed = error.error.partition("; allowed: ")
        assert set(allowed.split(", ")) == set(response.headers["Allow"].split(", "))
        return (
            response.status_code,
            response.headers["content-type"],
            words,
            frozenset(response.headers["Allow"].split(", ")),
        )

    assert normalized(flask_base) == normalized(asgi_base), f"{method} {path}"


def two_services(target, log_path: Path):
    return flask_config(
        log_path,
        [
            service("api", target.svc_url("api"), critical=True, description="the API"),
            service("web", target.svc_url("web")),
        ],
        admin_token=TOKEN,
        max_retries=1,
    )


def test_one_live_monitor_served_by_both(embedded, target, log_path, served, stop_later):
    target.modes["web"] = "/status/502"  # something to show: failures, a repair, a diagnosis
    app = flask_app()
    flask_side = served(app)
    _, handle = embedded(two_services(target, log_path), app=app, clock=lambda: NOW)
    flask_side.serve()
    assert handle.monitor is not None and handle.loop is not None
    asgi_app = create_app(FixedNowMonitorSource(handle.monitor))
    asgi_side = stop_later(AsgiServed(asgi_app, loop=handle.loop))  # in the monitor's loop
    flask_base, asgi_base = flask_side.base, asgi_side.base

    def web_repaired_once() -> bool:
        doc = msgspec.json.decode(answer(flask_base, "GET", "/health/service/web", {})[2])
        return doc["repairs"] >= 1 and doc["state"] == "degraded"

    wait_for_sync(web_repaired_once, "web degraded after a repair attempt")

    # Admin actions, alternately on each server: the second of each pair is a no-op on the
    # other server, so both answer "already ...".
    def admin(base: str, action: str) -> bytes:
        status, _, body = answer(base, "POST", f"/admin/heartbeat/{action}", AUTH)
        assert status == 200, body
        return body

    first = msgspec.json.decode(admin(flask_base, "stop"), type=bodies.AdminResult)
    assert first.changed and not first.running
    assert admin(asgi_base, "stop") == admin(flask_base, "stop")
    assert admin(asgi_base, "start") != admin(flask_base, "start")  # started, then "already"
    assert admin(asgi_base, "start") == admin(flask_base, "start")
    first = msgspec.json.decode(admin(asgi_base, "stop"), type=bodies.AdminResult)
    assert first.changed
    assert admin(flask_base, "stop") == admin(asgi_base, "stop")

    # Probing stopped: the projection holds still while every route is compared.
    for method, path, headers in READS:
        assert_same(flask_base, asgi_base, method, path, headers)
    for method, path, headers in WRONG_METHODS:
        assert_same_405(flask_base, asgi_base, method, path, headers)
    for method, path, headers in SHAPE_ONLY:
        assert_same_shape(flask_base, asgi_base, method, path, headers)
    detailed = msgspec.json.decode(
        answer(flask_base, "GET", "/health/detailed", AUTH)[2], type=bodies.DetailedHealth
    )
    assert detailed.monitoring.running is False  # as the last admin action left it
    assert detailed.services["web"].last_failure is not None
    assert detailed.services["api"].target == target.svc_url("api")


def test_one_log_projected_by_both(following, target, log_path, served, stop_later):
    target.modes["api"] = "/status/500"
    writer = MonitorThread(two_services(target, log_path))
    writer.start()
    wait_for_sync(
        lambda: writer.monitor is not None and writer.monitor.states["api"].state != "unknown",
        "api probed",
    )
    time.sleep(0.3)
    writer.stop()
    app = flask_app("follower")
    flask_side = served(app)
    following(log_path, app=app, admin_token=TOKEN, clock=lambda: NOW)
    flask_side.serve()
    source = stop_later(_Closing(LogSource(log_path, admin_token=TOKEN, clock=lambda: NOW)))
    source.inner.start()
    asgi_side = stop_later(AsgiServed(create_app(source.inner)))

    for method, path, headers in READS:
        assert_same(flask_side.base, asgi_side.base, method, path, headers)
    for method, path, headers in WRONG_METHODS:
        assert_same_405(flask_side.base, asgi_side.base, method, path, headers)
    for method, path, headers in [
        *SHAPE_ONLY,
        ("POST", "/admin/heartbeat/stop", AUTH),  # 409: read-only, in either's words
        ("POST", "/admin/heartbeat/start", AUTH),
    ]:
        assert_same_shape(flask_side.base, asgi_side.base, method, path, headers)
    health = answer(flask_side.base, "GET", "/health", {})
    assert health[0] == 503 and b'"api":"' in health[2]


class _Closing:
    def __init__(self, inner: LogSource) -> None:
        self.inner = inner

    def stop(self) -> None:
        self.inner.close()

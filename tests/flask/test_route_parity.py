"""Route parity: the Flask blueprint and the standalone ASGI app (hbsm.api.create_app), each on
a real port, serving the same projection at the same `now`, answer every route of the route
table (hbsm.api.routes) with the same status, headers and bytes: with and without rights, in
both media types, a wrong method, an unknown path under theirs, and `/events` streamed.

Two setups: one live Monitor served by both (the embedded monitor of a Flask app, and the ASGI
app on uvicorn in that monitor's own loop, as `hbsm run` serves it), and one finished log
projected by both (`follow_log` and `hbsm.api.LogSource`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
from heartbeat_support import AsgiServed, flask_app, flask_config
from support.configs import service
from support.waiting import wait_for_sync

from hbsm.api import LogSource, MonitorSource, bodies, create_app
from hbsm.api.routes import ROUTES, Route
from hbsm.flask.embedded import MonitorThread
from hbsm.vocabulary import URL_SERVICE_ACTIONS

# One instant for both servers' bodies (timestamps, uptimes, restarts in window).
NOW = time.time() + 3600.0
TOKEN = "compare-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer wrong"}
HEALTH_JSON = {"Accept": "application/health+json"}
# What an answer is compared on: everything but what the server adds of its own (Date, Server,
# Content-Length, Transfer-Encoding, Connection).
HEADERS = ("content-type", "cache-control", "x-content-type-options", "allow",
           "www-authenticate", "x-accel-buffering", "content-security-policy",
           "x-frame-options", "referrer-policy")  # fmt: skip

Asked = tuple[str, str, dict[str, str]]  # method, path, headers


def fill(route: Route, name: str = "api", action: str = "pause") -> str:
    return route.path.replace("{name}", name).replace("{action}", action)


def reads(route: Route) -> Iterator[Asked]:
    """Every request of `route` that changes nothing (a refused admin action is recorded, the
    same way by both: it changes what later reads see, not this answer)."""
    if route.name == "events":
        return  # a stream: compared by `assert_same_stream`
    names = ["api", "web", "nope"] if "{name}" in route.path else ["api"]
    actions = [*URL_SERVICE_ACTIONS, "dance"] if "{action}" in route.path else ["pause"]
    rights = [{}, WRONG] if route.method == "POST" else [{}, AUTH, WRONG]
    for name in names:
        for action in actions:
            path = fill(route, name, action)
            for headers in rights:
                yield route.method, path, headers
                if "accept" in route.parameters:
                    yield route.method, path, {**headers, **HEALTH_JSON}
                    yield route.method, path, {**headers, "Accept": "text/html, */*;q=0.1"}
    if route.method == "GET":
        yield "HEAD", fill(route), AUTH
    for wrong in ("PUT", "OPTIONS", "POST" if route.method == "GET" else "GET"):
        yield wrong, fill(route), AUTH  # 405 with Allow
    if route.name == "serviceAction":
        yield "POST", fill(route, "nope"), AUTH  # 404 before any action
        yield "POST", fill(route, "api", "dance"), AUTH


UNKNOWN: list[Asked] = [
    ("GET", "/health/nope", {}),
    ("GET", "/admin/heartbeat/restart", AUTH),
    ("POST", "/admin/service/api", AUTH),
    ("GET", "/metrics/more", {}),
]


def answer(base: str, method: str, path: str, headers: dict[str, str]) -> tuple[object, ...]:
    response = httpx.request(method, base + path, headers=headers, timeout=10)
    shown = tuple(response.headers.get(h) for h in HEADERS)
    return response.status_code, shown, response.content


def assert_same(flask_base: str, asgi_base: str, asked: Asked) -> None:
    mine, theirs = answer(flask_base, *asked), answer(asgi_base, *asked)
    assert mine == theirs, asked


def stream_until(base: str, last_seq: int) -> tuple[int, tuple[str | None, ...], bytes]:
    """`/events?since=0` read until the message of event `last_seq` has come."""
    end = f"id: {last_seq}\n".encode()
    got = b""
    with httpx.stream("GET", base + "/events?since=0", headers=AUTH, timeout=10) as response:
        shown = tuple(response.headers.get(h) for h in HEADERS)
        for chunk in response.iter_bytes():
            got += chunk
            at = got.find(end)
            if at >= 0 and got.find(b"\n\n", at) >= 0:
                return response.status_code, shown, got[: got.find(b"\n\n", at) + 2]
    raise AssertionError(f"the stream ended before event {last_seq}: {got[-300:]!r}")


def assert_every_route_the_same(flask_base: str, asgi_base: str) -> None:
    for route in ROUTES:
        for asked in reads(route):
            assert_same(flask_base, asgi_base, asked)
    for asked in UNKNOWN:
        assert_same(flask_base, asgi_base, asked)
    status = msgspec.json.decode(
        answer(flask_base, "GET", "/admin/heartbeat/status", AUTH)[2], type=bodies.HeartbeatStatus
    )
    last = status.log.last_seq
    assert last > 0
    flask_stream, asgi_stream = stream_until(flask_base, last), stream_until(asgi_base, last)
    assert flask_stream == asgi_stream
    assert flask_stream[0] == 200 and flask_stream[2].count(b"\nevent: ") == last


def wait_until_still(base: str, quiet: float = 0.5) -> None:
    """Until the log has not grown for `quiet` s (a probe still in flight has landed)."""

    def last_seq() -> int:
        doc = msgspec.json.decode(answer(base, "GET", "/admin/heartbeat/status", AUTH)[2])
        return int(doc["log"]["last_seq"])

    seen = [last_seq(), time.monotonic()]

    def still() -> bool:
        now = last_seq()
        if now != seen[0]:
            seen[:] = [now, time.monotonic()]
        return time.monotonic() - seen[1] >= quiet

    wait_for_sync(still, "the log holds still")


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


def test_the_route_table_covers_every_kind_of_request() -> None:
    # Every route is asked something, the stream included, so that the tests below walk them all.
    asked = {route.name: list(reads(route)) for route in ROUTES}
    assert all(asked[name] for name in asked if name != "events")
    assert len(ROUTES) == 12


def test_one_live_monitor_served_by_both(embedded, target, log_path, served, stop_later):
    target.modes["web"] = "/status/502"  # something to show: failures, a repair, a diagnosis
    app = flask_app(index=False)  # hbsm's status page at /
    flask_side = served(app)
    _, handle = embedded(two_services(target, log_path), app=app, clock=lambda: NOW)
    flask_side.serve()
    assert handle.monitor is not None and handle.loop is not None
    asgi_app = create_app(MonitorSource(handle.monitor, clock=lambda: NOW))
    asgi_side = stop_later(AsgiServed(asgi_app, loop=handle.loop))  # in the monitor's loop
    flask_base, asgi_base = flask_side.base, asgi_side.base

    def web_repaired_once() -> bool:
        doc = msgspec.json.decode(answer(flask_base, "GET", "/health/service/web", {})[2])
        return doc["repairs"] >= 1 and doc["state"] == "degraded"

    wait_for_sync(web_repaired_once, "web degraded after a repair attempt")

    # Admin actions: done on one server, then on the other and on the first again, which both
    # find it done already and say so in the same words.
    def act(base: str, path: str) -> bytes:
        status, _, body = answer(base, "POST", path, AUTH)
        assert status == 200, body
        return body

    for first, second, path in [
        (flask_base, asgi_base, "/admin/heartbeat/stop"),
        (asgi_base, flask_base, "/admin/heartbeat/start"),
        (flask_base, asgi_base, "/admin/service/api/pause"),
        (asgi_base, flask_base, "/admin/service/api/resume"),
        (flask_base, asgi_base, "/admin/heartbeat/stop"),
    ]:
        assert msgspec.json.decode(act(first, path), type=bodies.AdminResult).changed, path
        assert act(second, path) == act(first, path), path
    wait_until_still(flask_base)
    # A reload, from either: this monitor's configuration was given in code, in the same words.
    reload = ("POST", "/admin/config/reload", AUTH)
    assert_same(flask_base, asgi_base, reload)
    status, _, body = answer(flask_base, *reload)
    assert status == 409 and b"given in code" in body, body

    # Probing stopped: the projection holds still while every route is compared.
    assert_every_route_the_same(flask_base, asgi_base)
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
    app = flask_app("follower", index=False)
    flask_side = served(app)
    following(log_path, app=app, admin_token=TOKEN, clock=lambda: NOW)
    flask_side.serve()
    source = stop_later(_Closing(LogSource(log_path, admin_token=TOKEN, clock=lambda: NOW)))
    source.inner.start()
    asgi_side = stop_later(AsgiServed(create_app(source.inner)))

    assert_every_route_the_same(flask_side.base, asgi_side.base)
    for path in ("/admin/heartbeat/stop", "/admin/service/api/pause", "/admin/config/reload"):
        # 409: read-only
        assert_same(flask_side.base, asgi_side.base, ("POST", path, AUTH))
        assert answer(flask_side.base, "POST", path, AUTH)[0] == 409
    health = answer(flask_side.base, "GET", "/health", {})
    assert health[0] == 503 and b'"api":"' in health[2]


class _Closing:
    def __init__(self, inner: LogSource) -> None:
        self.inner = inner

    def stop(self) -> None:
        self.inner.close()

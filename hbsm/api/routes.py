"""The route table: every route of the API, said once.

The request handler (hbsm.api.handler) dispatches on it, the Flask blueprint registers its rules
from it, `/openapi.json` describes it (hbsm.api.openapi), and the route-parity test walks it. A
route is its method, its path (`{name}` matches one path segment), its operation id (which is
also the handler's endpoint), and what the OpenAPI document says of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec

from hbsm.api import bodies
from hbsm.api.answer import JSON

__all__ = ["ROUTES", "Reply", "Route", "allowed_methods", "match"]


@dataclass(frozen=True, slots=True)
class Reply:
    """One documented answer: its body is a Struct of hbsm.api.bodies, or text of `media`."""

    description: str
    body: type[msgspec.Struct] | None = None
    media: str = JSON
    health: bool = False  # also answered as application/health+json


@dataclass(frozen=True, slots=True)
class Route:
    method: str  # GET routes answer HEAD too
    path: str
    name: str  # the OpenAPI operationId and the handler's endpoint
    summary: str
    replies: Mapping[str, Reply]
    admin: bool = False  # the admin rule applies (hbsm.api.security)
    parameters: tuple[str, ...] = ()  # names in hbsm.api.openapi's parameter table
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        object.__setattr__(self, "pattern", re.compile(regex))

    @property
    def methods(self) -> tuple[str, ...]:
        return (self.method, "HEAD") if self.method == "GET" else (self.method,)

    @property
    def flask_rule(self) -> str:
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)


_ADMIN_RESULT = Reply("the action's outcome", bodies.AdminResult)
_READ_ONLY = Reply("this instance only reads a log: no monitor to act on", bodies.ErrorBody)
_NOT_JSON = Reply(
    "a request body that is not JSON (none is needed; any JSON is ignored)", bodies.ErrorBody
)
_ADMIN_ACTION = {"200": _ADMIN_RESULT, "400": _NOT_JSON, "409": _READ_ONLY}


def _health(body: type[msgspec.Struct]) -> dict[str, Reply]:
    return {
        "200": Reply("no critical service is unhealthy", body, health=True),
        "503": Reply("a critical service is not healthy", body, health=True),
    }


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/",
        "statusPage",
        "The status page: every service live, in a browser (HTML, script inline)",
        {"200": Reply("the page", media="text/html")},
    ),
    Route(
        "GET", "/health", "health", "Overall health", _health(bodies.Health), parameters=("accept",)
    ),
    Route(
        "GET",
        "/health/detailed",
        "healthDetailed",
        "Every service in detail (targets only for admin-authorized clients)",
        _health(bodies.DetailedHealth),
        parameters=("accept",),
    ),
    Route(
        "GET",
        "/health/service/{name}",
        "healthService",
        "One service (its target only for admin-authorized clients)",
        {
            "200": Reply("the service", bodies.ServiceHealth, health=True),
            "503": Reply("health+json only: the service fails", bodies.HealthJson, health=True),
            "404": Reply("no such service", bodies.ErrorBody),
        },
        parameters=("name", "accept"),
    ),
    Route(
        "GET",
        "/admin/heartbeat/status",
        "heartbeatStatus",
        "Monitor status: running, config in force, counts, log position",
        {"200": Reply("the status", bodies.HeartbeatStatus)},
        admin=True,
    ),
    Route(
        "POST",
        "/admin/heartbeat/start",
        "heartbeatStart",
        "Start monitoring (idempotent; recorded as an admin event)",
        _ADMIN_ACTION,
        admin=True,
    ),
    Route(
        "POST",
        "/admin/heartbeat/stop",
        "heartbeatStop",
        "Stop monitoring (idempotent; recorded as an admin event)",
        _ADMIN_ACTION,
        admin=True,
    ),
    Route(
        "POST",
        "/admin/service/{name}/{action}",
        "serviceAction",
        "A per-service action (recorded as an admin event)",
        {**_ADMIN_ACTION, "404": Reply("no such service or action", bodies.ErrorBody)},
        admin=True,
        parameters=("name", "action"),
    ),
    Route(
        "POST",
        "/admin/config/reload",
        "configReload",
        "Read the configuration file again and apply what changed (a config.reloaded event)",
        {
            "200": Reply(
                "what was added, removed, changed; what needs a restart", bodies.ConfigReload
            ),
            "400": _NOT_JSON,
            "409": Reply(
                "this monitor cannot reload (it only reads a log, its configuration "
                "was given in code, or it is one node of several)",
                bodies.ErrorBody,
            ),
            "422": Reply(
                "the file is refused (the message of `hbsm config --check`); the "
                "running configuration stays",
                bodies.ErrorBody,
            ),
            "503": Reply("the event log cannot be written: nothing reloaded", bodies.ErrorBody),
        },
        admin=True,
    ),
    Route(
        "GET",
        "/metrics",
        "metrics",
        "Prometheus metrics",
        {"200": Reply("the text exposition format 0.0.4", media="text/plain")},
    ),
    Route(
        "GET",
        "/events",
        "events",
        "The event log as server-sent events",
        {
            "200": Reply(
                "`id: <seq>`, `event: <type>`, `data: <event JSON>`", media="text/event-stream"
            ),
            "400": Reply("`since` or Last-Event-ID is not a sequence number", bodies.ErrorBody),
        },
        admin=True,
        parameters=("since", "last-event-id"),
    ),
    Route(
        "GET",
        "/openapi.json",
        "openapi",
        "This document",
        {"200": Reply("OpenAPI 3.1")},
    ),
)


# (method, path) of the routes without path parameters, for a lookup without a regex.
_STATIC = {(m, r.path): r for r in ROUTES if "{" not in r.path for m in r.methods}
_PARAMETRIZED = tuple(r for r in ROUTES if "{" in r.path)


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for `method` and `path`, and its path parameters; None: no route takes both
    (then `allowed_methods(path)` tells a wrong method from an unknown path)."""
    static = _STATIC.get((method, path))
    if static is not None:
        return static, {}
    for route in _PARAMETRIZED:
        if method in route.methods:
            found = route.pattern.fullmatch(path)
            if found is not None:
                return route, found.groupdict()
    return None


def allowed_methods(path: str) -> list[str]:
    """The methods some route takes at `path`, sorted; empty: no route has that path."""
    methods = {m for r in ROUTES if r.pattern.fullmatch(path) for m in r.methods}
    return sorted(methods)

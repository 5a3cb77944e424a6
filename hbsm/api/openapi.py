"""`GET /openapi.json`: the API described in OpenAPI 3.1.

The component schemas are msgspec's own (`msgspec.json.schema_components`) for the very Structs
that encode the bodies (hbsm.api.bodies), so the document cannot drift from what is served.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hbsm.api import bodies
from hbsm.api.answer import HEALTH_JSON, JSON
from hbsm.api.routes import ROUTES, Reply, Route
from hbsm.api.sse import MAX_SEQ
from hbsm.vocabulary import SERVICE_NAME, URL_SERVICE_ACTIONS

__all__ = ["BODY_TYPES", "NAME_PATTERN", "components", "document", "paths"]

BODY_TYPES: tuple[type[msgspec.Struct], ...] = (
    bodies.Health,
    bodies.DetailedHealth,
    bodies.ServiceHealth,
    bodies.HeartbeatStatus,
    bodies.AdminResult,
    bodies.ConfigReload,
    bodies.HealthJson,
    bodies.ErrorBody,
)
NAME_PATTERN = f"^{SERVICE_NAME.pattern}$"
_REF = "#/components/schemas/{name}"


def components() -> dict[str, Any]:
    _, schemas = msgspec.json.schema_components(BODY_TYPES, ref_template=_REF)
    return schemas


def _ref(cls: type[msgspec.Struct]) -> dict[str, str]:
    return {"$ref": _REF.format(name=cls.__name__)}


_DEFAULT = Reply(
    "an error (404 unknown route, 405 wrong method, 413 body too large, ...)", bodies.ErrorBody
)
_ADMIN_ERRORS = {
    "401": Reply("no bearer token, and one is required", bodies.ErrorBody),
    "403": Reply("wrong token, or no token set and the client is not loopback", bodies.ErrorBody),
}
_ADMIN_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {}]
# The parameters routes name (hbsm.api.routes.Route.parameters).
_PARAMETERS: dict[str, dict[str, Any]] = {
    "accept": {
        "name": "Accept",
        "in": "header",
        "required": False,
        "description": "application/health+json for the IETF health-check format",
        "schema": {"type": "string"},
    },
    "name": {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "a service name",
        "schema": {"type": "string", "pattern": NAME_PATTERN},
    },
    "action": {
        "name": "action",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": list(URL_SERVICE_ACTIONS)},
    },
    "since": {
        "name": "since",
        "in": "query",
        "required": False,
        "description": "events after this seq (default: new events only)",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
    },
    "last-event-id": {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": r"^[0-9]{1,19}$"},
    },
}


def _reply(reply: Reply) -> dict[str, Any]:
    if reply.body is None:
        kind = "object" if reply.media == JSON else "string"
        content = {reply.media: {"schema": {"type": kind}}}
    else:
        content = {reply.media: {"schema": _ref(reply.body)}}
        if reply.health:
            content[HEALTH_JSON] = {"schema": _ref(bodies.HealthJson)}
    return {"description": reply.description, "content": content}


def _operation(route: Route) -> dict[str, Any]:
    replies = {**route.replies, **(_ADMIN_ERRORS if route.admin else {}), "default": _DEFAULT}
    op: dict[str, Any] = {"summary": route.summary, "operationId": route.name}
    if route.parameters:
        op["parameters"] = [_PARAMETERS[name] for name in route.parameters]
    op["responses"] = {status: _reply(reply) for status, reply in replies.items()}
    if route.admin:
        op["security"] = _ADMIN_SECURITY
    return op


def paths() -> dict[str, Any]:
    """Every route of hbsm.api.routes, as OpenAPI's `paths`."""
    described: dict[str, Any] = {}
    for route in ROUTES:
        described.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return described


def document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hbsm",
            "version": version,
            "description": "Health and admin API of hbsm, the heartbeat state machine. Admin "
            "routes (and internal URLs) need `Authorization: Bearer <token>` when an admin "
            "token is set; without one they answer loopback clients only.",
        },
        "paths": paths(),
        "components": {
            "schemas": components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }

"""`GET /openapi.json`: the API described in OpenAPI 3.1.

The component schemas are msgspec's own (`msgspec.json.schema_components`) for the very Structs
that encode the bodies (hbsm.api.bodies), so the document cannot drift from what is served.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hbsm.api import bodies
from hbsm.vocabulary import SERVICE_NAME, URL_SERVICE_ACTIONS

__all__ = ["BODY_TYPES", "NAME_PATTERN", "components", "document"]

BODY_TYPES: tuple[type[msgspec.Struct], ...] = (
    bodies.Health,
    bodies.DetailedHealth,
    bodies.ServiceHealth,
    bodies.HeartbeatStatus,
    bodies.AdminResult,
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


def _json(cls: type[msgspec.Struct], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(cls)}}}


def _health(cls: type[msgspec.Struct], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": _ref(cls)},
            "application/health+json": {"schema": _ref(bodies.HealthJson)},
        },
    }


def _error(description: str) -> dict[str, Any]:
    return _json(bodies.ErrorBody, description)


_DEFAULT = _error("an error (404 unknown route, 405 wrong method, 413 body too large, ...)")
_ACCEPT = {
    "name": "Accept",
    "in": "header",
    "required": False,
    "description": "application/health+json for the IETF health-check format",
    "schema": {"type": "string"},
}
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "a service name",
    "schema": {"type": "string", "pattern": NAME_PATTERN},
}
_ADMIN_ERRORS = {
    "401": _error("no bearer token, and one is required"),
    "403": _error("wrong token, or no token set and the client is not loopback"),
}
_ADMIN_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {}]


def _op(
    summary: str, responses: dict[str, Any], *, admin: bool = False, **extra: Any
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, **extra, "responses": {**responses}}
    if admin:
        op["security"] = _ADMIN_SECURITY
        op["responses"].update(_ADMIN_ERRORS)
    op["responses"]["default"] = _DEFAULT
    return op


def _paths() -> dict[str, Any]:
    admin_result = _json(bodies.AdminResult, "the action's outcome")
    read_only = _error("this instance only reads a log: no monitor to act on")
    not_json = _error("a request body that is not JSON (none is needed; any JSON is ignored)")
    return {
        "/health": {
            "get": _op(
                "Overall health",
                {
                    "200": _health(bodies.Health, "no critical service is unhealthy"),
                    "503": _health(bodies.Health, "a critical service is not healthy"),
                },
                operationId="health",
                parameters=[_ACCEPT],
            )
        },
        "/health/detailed": {
            "get": _op(
                "Every service in detail (targets only for admin-authorized clients)",
                {
                    "200": _health(bodies.DetailedHealth, "no critical service is unhealthy"),
                    "503": _health(bodies.DetailedHealth, "a critical service is not healthy"),
                },
                operationId="healthDetailed",
                parameters=[_ACCEPT],
            )
        },
        "/health/service/{name}": {
            "get": _op(
                "One service (its target only for admin-authorized clients)",
                {
                    "200": _health(bodies.ServiceHealth, "the service"),
                    "503": _health(bodies.HealthJson, "health+json only: the service fails"),
                    "404": _error("no such service"),
                },
                operationId="healthService",
                parameters=[_NAME, _ACCEPT],
            )
        },
        "/admin/heartbeat/status": {
            "get": _op(
                "Monitor status: running, config in force, counts, log position",
                {"200": _json(bodies.HeartbeatStatus, "the status")},
                admin=True,
                operationId="heartbeatStatus",
            )
        },
        "/admin/heartbeat/start": {
            "post": _op(
                "Start monitoring (idempotent; recorded as an admin event)",
                {"200": admin_result, "400": not_json, "409": read_only},
                admin=True,
                operationId="heartbeatStart",
            )
        },
        "/admin/heartbeat/stop": {
            "post": _op(
                "Stop monitoring (idempotent; recorded as an admin event)",
                {"200": admin_result, "400": not_json, "409": read_only},
                admin=True,
                operationId="heartbeatStop",
            )
        },
        "/admin/service/{name}/{action}": {
            "post": _op(
                "A per-service action (recorded as an admin event)",
                {
                    "200": admin_result,
                    "400": not_json,
                    "404": _error("no such service or action"),
                    "409": read_only,
                },
                admin=True,
                operationId="serviceAction",
                parameters=[
                    _NAME,
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": list(URL_SERVICE_ACTIONS)},
                    },
                ],
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                {
                    "200": {
                        "description": "the text exposition format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                operationId="metrics",
            )
        },
        "/events": {
            "get": _op(
                "The event log as server-sent events",
                {
                    "200": {
                        "description": "`id: <seq>`, `event: <type>`, `data: <event JSON>`",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": _error("`since` or Last-Event-ID is not a sequence number"),
                },
                admin=True,
                operationId="events",
                parameters=[
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "description": "events after this seq (default: new events only)",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                    },
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": r"^[0-9]{1,19}$"},
                    },
                ],
            )
        },
        "/openapi.json": {
            "get": _op(
                "This document",
                {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
                operationId="openapi",
            )
        },
    }


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
        "paths": _paths(),
        "components": {
            "schemas": components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }

"""/openapi.json: structurally valid OpenAPI 3.1, one path per route with its methods, and
component schemas that are exactly msgspec's for the body Structs."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.routing import Route

from hbsm.api.openapi import BODY_TYPES

from .conftest import Live

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


async def test_openapi_document(live: Live) -> None:
    r = await live.client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    schemas = doc["components"]["schemas"]

    # The schemas are msgspec's own for the Structs that encode the bodies.
    _, expected = msgspec.json.schema_components(
        BODY_TYPES, ref_template="#/components/schemas/{name}"
    )
    assert schemas == expected
    for cls in BODY_TYPES:
        assert cls.__name__ in schemas

    # Every $ref resolves.
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref

    # One path per route, with exactly the route's methods (HEAD is implied by GET).
    routes = {
        route.path: {m.lower() for m in (route.methods or ())} - {"head"}
        for route in live.app.routes
        if isinstance(route, Route)
    }
    documented = {path: set(item) & METHODS for path, item in doc["paths"].items()}
    assert documented == routes

    operation_ids = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["responses"], (path, method)
            for code, response in op["responses"].items():
                assert code == "default" or code.isdigit()
                assert response["description"]
            operation_ids.append(op["operationId"])
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == set(part[1:-1] for part in path.split("/") if part.startswith("{"))
            for param in op.get("parameters", []):
                assert param["in"] in ("path", "query", "header") and "schema" in param
    assert len(operation_ids) == len(set(operation_ids))
    assert doc["paths"]["/admin/heartbeat/stop"]["post"]["security"] == [{"bearer": []}, {}]

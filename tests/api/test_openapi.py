"""/openapi.json, checked against what is outside hbsm's own code: the document validates
against the OpenAPI 3.1 schema (openapi-spec-validator), the server takes exactly the methods it
documents at each path (a wrong one is a 405 naming them), and the answers the server really
sends validate against the schemas it gives for them (a JSON Schema 2020-12 validator,
openapi-schema-validator's)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from .conftest import Live

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def concrete(template: str) -> str:
    """A documented path with its parameters filled in (a service the fixture monitors)."""
    return template.replace("{name}", "web").replace("{action}", "pause")


async def _document(live: Live) -> dict[str, Any]:
    r = await live.client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc: dict[str, Any] = r.json()
    return doc


async def test_the_document_is_valid_openapi_3_1(live: Live) -> None:
    doc = await _document(live)
    assert doc["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(doc).validate()  # raises, naming the first problem
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref


async def test_every_route_the_app_serves_is_documented_with_its_methods(live: Live) -> None:
    doc = await _document(live)
    documented = {path: set(item) & METHODS for path, item in doc["paths"].items()}
    assert "/health" in documented
    for path, methods in documented.items():
        # The server takes exactly the documented methods there (GET's HEAD besides): any
        # other is a 405 naming them.
        answer = await live.client.request("PUT", concrete(path))
        assert answer.status_code == 405, (path, answer.text)
        allowed = {m.strip().lower() for m in answer.headers["allow"].split(",")} - {"head"}
        assert allowed == methods, path
    assert (await live.client.get("/health/undocumented")).status_code == 404

    operation_ids = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["responses"], (path, method)
            for code in op["responses"]:
                assert code == "default" or code.isdigit()
            operation_ids.append(op["operationId"])
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == set(part[1:-1] for part in path.split("/") if part.startswith("{"))
    assert len(operation_ids) == len(set(operation_ids))
    assert doc["paths"]["/admin/heartbeat/stop"]["post"]["security"] == [{"bearer": []}, {}]


def _schema_for(doc: dict[str, Any], path: str, method: str, answer: httpx.Response) -> Any:
    responses = doc["paths"][path][method]["responses"]
    response = responses.get(str(answer.status_code), responses["default"])
    content_type = answer.headers["content-type"].split(";")[0]
    schema = response["content"][content_type]["schema"]
    # The document as the root, so the schema's $refs resolve into its components.
    return {**schema, "components": doc["components"]}


@pytest.mark.parametrize(
    ("method", "template", "url", "accept"),
    [
        ("get", "/health", "/health", "application/json"),
        ("get", "/health", "/health", "application/health+json"),
        ("get", "/health/detailed", "/health/detailed", "application/json"),
        ("get", "/health/detailed", "/health/detailed", "application/health+json"),
        ("get", "/health/service/{name}", "/health/service/web", "application/json"),
        ("get", "/health/service/{name}", "/health/service/nope", "application/json"),
        ("get", "/admin/heartbeat/status", "/admin/heartbeat/status", "application/json"),
        ("post", "/admin/service/{name}/{action}", "/admin/service/aux/pause", "application/json"),
        ("post", "/admin/service/{name}/{action}", "/admin/service/aux/dance", "application/json"),
    ],
)
async def test_what_the_server_answers_validates_against_the_document(
    live: Live, method: str, template: str, url: str, accept: str
) -> None:
    doc = await _document(live)
    answer = await live.client.request(method.upper(), url, headers={"accept": accept})
    schema = _schema_for(doc, template, method, answer)
    errors = list(OAS31Validator(schema).iter_errors(answer.json()))
    assert not errors, (answer.status_code, answer.text, [e.message for e in errors])

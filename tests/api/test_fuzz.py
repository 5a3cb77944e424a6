"""Random requests against the app (through httpx.ASGITransport, a live monitor behind it):
random paths (the routes of the OpenAPI document with their parameters drawn from its schemas,
the same templates with random fills, random junk), methods, headers,
query strings, bodies and client addresses. Never a 5xx except a health verdict (503 with a
health body), never an exception, and always a JSON body except /metrics, a stream's headers
or a HEAD."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from support.configs import service

from hbsm.api.bodies import ErrorBody, HealthJson
from hbsm.api.openapi import NAME_PATTERN, document
from hbsm.api.security import authorize
from hbsm.api.sse import parse_seq

from .conftest import Live, StartApi

# The routes come from the OpenAPI document itself: every path and method it lists, its path
# parameters filled from their schemas (an enum's every value; a name: a known service).
DOC = document("fuzz")


def _fills(template: str, operation: dict[str, Any]) -> list[str]:
    paths = [template]
    for param in operation.get("parameters", []):
        if param.get("in") != "path":
            continue
        values = param["schema"].get("enum", ["web", "aux"])
        paths = [p.replace("{" + param["name"] + "}", v) for p in paths for v in values]
    return paths


PAIRS = [
    (path, method.upper())
    for template, operations in DOC["paths"].items()
    for method, operation in operations.items()
    for path in _fills(template, operation)
]
KNOWN = sorted({path for path, _ in PAIRS})
TOKEN = "t0ken"
TEMPLATES = ["/health/service/{}", "/admin/service/{}/pause", "/admin/service/web/{}", "/{}"]
# Names the document's pattern allows, most of them unknown services.
names = st.from_regex(NAME_PATTERN, fullmatch=True)

segment = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=0, max_size=24
)
paths = st.one_of(
    st.sampled_from(KNOWN),
    st.sampled_from(KNOWN),
    st.sampled_from(KNOWN),
    st.builds(lambda t, s: t.format(s), st.sampled_from(TEMPLATES), segment),
    st.builds(lambda t, s: t.format(s), st.sampled_from(TEMPLATES[:2]), names),
    st.builds(lambda k, s: f"{k}/{s}", st.sampled_from(KNOWN), segment),
    st.lists(segment, max_size=5).map(lambda parts: "/" + "/".join(parts)),
)
methods = st.one_of(
    st.sampled_from(["GET", "POST"]),
    st.sampled_from(["HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"]),
)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)
headers = st.fixed_dictionaries(
    {},
    optional={
        "authorization": st.one_of(
            st.sampled_from([f"Bearer {TOKEN}", "Bearer wrong", "Bearer ", TOKEN]), header_text
        ),
        "accept": st.one_of(
            st.sampled_from(["application/health+json", "application/health+json;q=0", "*/*"]),
            header_text,
        ),
        "last-event-id": st.one_of(st.sampled_from(["5", "-1", "999999999999"]), header_text),
        "content-type": header_text,
        "x-forwarded-for": header_text,
        "origin": st.one_of(
            st.sampled_from(["http://localhost", "null", "http://evil"]), header_text
        ),
        "sec-fetch-site": st.sampled_from(["same-origin", "cross-site", "none", "same-site"]),
        "x-junk": header_text,
    },
)
# Known routes with their own method, often: else the examples would be mostly 404s and 405s.
targets = st.one_of(st.sampled_from(PAIRS), st.sampled_from(PAIRS), st.tuples(paths, methods))
queries = st.dictionaries(
    st.sampled_from(["since", "name", "x", ""]),
    st.one_of(segment, st.integers(-5, 10**20).map(str)),
    max_size=3,
)
bodies = st.one_of(st.just(b""), st.binary(max_size=300), st.just(b"{}"), st.just(b"[1, 2"))
clients = st.sampled_from([("127.0.0.1", 40000), ("10.1.2.3", 1234), ("::1", 40001)])


def endless(
    path: str, method: str, query: dict[str, str], hdrs: dict[str, str], client: tuple[str, int]
) -> bool:
    """An authorized GET /events with good parameters: a stream that does not end."""
    if path != "/events" or method != "GET":
        return False
    decision = authorize(
        TOKEN,
        hdrs.get("authorization"),
        client[0],
        host="localhost",
        origin=hdrs.get("origin"),
        fetch_site=hdrs.get("sec-fetch-site"),
    )
    if not decision.allowed:
        return False
    try:
        parse_seq(query.get("since"))
        parse_seq(hdrs.get("last-event-id"))
    except ValueError:
        return False
    return True


async def test_random_requests_never_fail(start_api: StartApi, target) -> None:
    live: Live = await start_api(
        token=TOKEN,
        services=[service("web", target.svc_url("web")), service("aux", target.svc_url("aux"))],
    )
    transports = {
        c: httpx.AsyncClient(
            transport=httpx.ASGITransport(app=live.app, client=c),
            base_url="http://localhost",
            timeout=5,
        )
        for c in [("127.0.0.1", 40000), ("10.1.2.3", 1234), ("::1", 40001)]
    }
    seen: dict[int, int] = {}
    loop = asyncio.get_running_loop()

    @settings(
        max_examples=600,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(where=targets, hdrs=headers, query=queries, body=bodies, client=clients)
    def one(
        where: tuple[str, str],
        hdrs: dict[str, str],
        query: dict[str, str],
        body: bytes,
        client: tuple[str, int],
    ) -> None:
        path, method = where
        try:
            url = httpx.URL("http://localhost").copy_with(path=path, params=query)
        except (httpx.InvalidURL, ValueError):
            assume(False)
            return
        assume(not endless(url.path, method, query, hdrs, client))
        raw = {k: v.encode("latin-1") for k, v in hdrs.items()}  # as a server would get them
        # Hypothesis drives from a thread; each request runs in the monitor's loop, as the
        # app expects (MonitorSource is read on the loop's thread only).
        check = request_once(url, method, raw, body, client)
        asyncio.run_coroutine_threadsafe(check, loop).result(30)

    async def request_once(
        url: httpx.URL, method: str, hdrs: dict[str, bytes], body: bytes, client: tuple[str, int]
    ) -> None:
        request = transports[client].build_request(method, url, headers=hdrs, content=body)
        response = await transports[client].send(request)
        status = response.status_code
        seen[status] = seen.get(status, 0) + 1
        kind = response.headers.get("content-type", "")
        if status >= 500:
            # The only 5xx: a health verdict, with its health body.
            assert status == 503, (method, url, status, response.text)
            assert url.path.startswith("/health"), (method, url, response.text)
            if kind == "application/health+json":
                assert msgspec.json.decode(response.content, type=HealthJson).status == "fail"
            else:
                assert msgspec.json.decode(response.content)["status"] == "unhealthy"
        if method == "HEAD":
            return
        if url.path == "/metrics" and status == 200:
            assert kind.startswith("text/plain")
            return
        if url.path == "/" and status == 200:  # the status page
            assert kind == "text/html; charset=utf-8" and b"<!doctype html>" in response.content
            return
        assert kind in ("application/json", "application/health+json"), (method, url, kind)
        decoded = msgspec.json.decode(response.content)
        if status >= 400:
            err = msgspec.json.decode(response.content, type=ErrorBody)
            assert err.status == status and err.error
        else:
            assert isinstance(decoded, dict)

    await asyncio.to_thread(one)
    for client in transports.values():
        await client.aclose()
    # The examples reached the routes, not only the 404 handler.
    assert seen.get(200, 0) > 20 and seen.get(404, 0) > 20 and seen.get(405, 0) > 0
    assert seen.get(401, 0) > 0 and seen.get(403, 0) > 0

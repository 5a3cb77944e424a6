"""The lean HTTP path's own behaviour: which probes take it, kept-alive connections, bodies that
end in the ways HTTP allows. (Every failure class and check runs on it in test_http.py.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import pytest
from support.configs import probed

from hbsm.probes import Prober
from hbsm.probes._lean import lean_request

from .servers import HttpTarget


@pytest.fixture
async def lean() -> AsyncIterator[Prober]:
    async with Prober(transport="lean") as prober:
        yield prober


@pytest.mark.parametrize(
    ("method", "url", "headers"),
    [
        ("POST", "http://127.0.0.1/health", {}),
        ("GET", "http://user:secret@127.0.0.1/health", {}),
        ("GET", "http://127.0.0.1/a path", {}),
        ("GET", "http://127.0.0.1/health", {"x-trace": "a\r\nx-evil: 1"}),
        ("GET", "http://127.0.0.1/héalth", {}),
        ("GET", "not a url", {}),
    ],
    ids=["post", "credentials", "space", "header-split", "non-ascii", "no-url"],
)
def test_what_needs_httpx(method: str, url: str, headers: dict[str, str]) -> None:
    assert lean_request(method, url, headers) is None


def test_https_takes_the_lean_path_with_its_own_port_and_trust() -> None:
    request = lean_request("GET", "https://127.0.0.1/health", {}, "/etc/ca.pem")
    assert request is not None
    assert (request.host, request.port, request.tls, request.ca_file) == (
        "127.0.0.1", 443, True, "/etc/ca.pem",
    )  # fmt: skip
    plain = lean_request("GET", "http://127.0.0.1/health", {}, "/etc/ca.pem")
    assert plain is not None and (plain.port, plain.tls, plain.ca_file) == (80, False, None)


def test_the_request_is_built_once_with_the_probes_headers() -> None:
    request = lean_request("GET", "http://127.0.0.1:8080/health?deep=1", {"User-Agent": "mine"})
    assert request is not None
    assert (request.host, request.port, request.head) == ("127.0.0.1", 8080, False)
    lines = request.data.decode().split("\r\n")
    assert lines[0] == "GET /health?deep=1 HTTP/1.1"
    assert "host: 127.0.0.1:8080" in lines
    assert "user-agent: mine" in lines and "user-agent: hbsm-probe" not in lines
    assert "accept-encoding: identity" in lines
    assert request.data.endswith(b"\r\n\r\n")


async def test_one_connection_serves_probe_after_probe(lean: Prober) -> None:
    target = HttpTarget().start()
    try:
        results = [await lean.probe(probed(target.url("/ok"))) for _ in range(5)]
        heads = [await lean.probe(probed(target.url("/ok"), method="HEAD")) for _ in range(3)]
    finally:
        target.stop()
    assert all(r.ok and r.status == 200 for r in results + heads), results + heads
    assert (target.requests, target.connections) == (8, 1)


async def test_a_connection_closed_as_it_is_reused_is_tried_once_more(lean: Prober) -> None:
    target = HttpTarget().start()
    try:
        first = await lean.probe(probed(target.url("/stale")))
        # The server meets the next request on that connection by closing it unanswered.
        second = await lean.probe(probed(target.url("/ok")))
    finally:
        target.stop()
    assert first.ok and second.ok, (first, second)
    assert target.connections == 2


async def test_a_fresh_connection_closed_unanswered_is_not_retried(
    lean: Prober, target: HttpTarget
) -> None:
    before = target.requests
    result = await lean.probe(probed(target.url("/close")))
    assert (result.ok, result.error) == (False, "protocol")
    assert target.requests == before + 1


@pytest.mark.parametrize("path", ["/until-close", "/chunked"])
async def test_bodies_that_end_as_http_allows(lean: Prober, target: HttpTarget, path: str) -> None:
    found = await lean.probe(probed(target.url(path), body_contains="systems go"))
    assert (found.ok, found.status) == (True, 200), found
    missing = await lean.probe(probed(target.url(path), body_contains="degraded"))
    assert (missing.ok, missing.error) == (False, "body_mismatch")


async def test_an_interim_answer_is_passed_over(lean: Prober, target: HttpTarget) -> None:
    result = await lean.probe(probed(target.url("/interim"), body_contains="ok"))
    assert (result.ok, result.status) == (True, 200), result


async def test_an_answer_cut_short_is_not_reused(lean: Prober, target: HttpTarget) -> None:
    cut = await lean.probe(probed(target.url("/hang"), timeout=0.2))
    assert cut.error == "timeout"
    # Had the hung connection gone back to the pool, this probe would wait behind it.
    after = await lean.probe(probed(target.url("/ok"), timeout=2))
    assert after.ok, after


def test_plain_http_probes_never_load_httpx() -> None:
    """A monitor whose probes are all plain GETs does not pay for httpx and aiohttp."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        sys.path.insert(0, "tests")
        from probes.servers import HttpTarget
        from support.configs import probed
        from hbsm.probes import Prober

        async def main():
            target = HttpTarget().start()
            try:
                async with Prober() as prober:
                    plain = await prober.probe(probed(target.url("/ok")))
                    loaded = sorted(m for m in ("httpx", "aiohttp") if m in sys.modules)
                    post = await prober.probe(probed(target.url("/ok"), method="POST"))
            finally:
                target.stop()
            print(plain.ok, loaded, post.ok, "httpx" in sys.modules)

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "[]", "True", "True"]

"""Fault 3 of docs/reliability.md: hostile HTTP targets. A target that hangs after accepting,
answers one byte at a time, answers with 10 MB (or a gzip bomb), closes mid-answer or answers with
something that is not HTTP: each probe ends by its timeout (plus a generous slack: a deadline for a
hang, not a speed test), fails with the class an operator expects, and holds a bounded amount of
memory; over https too (a handshake that never ends, a broken answer after a good handshake).
Real servers on 127.0.0.1, the real `Prober`, both of its HTTP transports."""

from __future__ import annotations

import asyncio
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from probes.servers import HttpTarget
from support.configs import probed
from support.tls import TestCA
from support.waiting import wait_for

from hbsm.config.model import ServiceConfig
from hbsm.events import Probe
from hbsm.probes import BODY_LIMIT, TRANSPORTS, Prober
from hbsm.state import ERROR_CLASSES

from .hostile_servers import BOMB_TEXT, HostileTarget

TIMEOUT = 0.5
# A probe must be over by its timeout plus this: only a hang misses it, however loaded the box.
SLACK = 5.0
# What one probe may allocate while reading a hostile answer (the body read stops at 64 KiB).
MEMORY_BOUND = 4 * 2**20
TEN_MB = 10 * 2**20


@pytest.fixture(scope="module")
def plain() -> Iterator[Any]:
    """tests/probes/servers.py's HttpTarget: /hang, /close-mid, /invalid, /huge/<n>."""
    server = HttpTarget().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileTarget]:
    server = HostileTarget().start()
    yield server
    server.stop()


@pytest.fixture(params=TRANSPORTS)
async def prober(request: pytest.FixtureRequest) -> AsyncIterator[Prober]:
    async with Prober(transport=request.param) as p:
        yield p


async def timed_probe(prober: Prober, svc: ServiceConfig) -> tuple[Probe, float]:
    started = time.monotonic()
    result = await asyncio.wait_for(prober.probe(svc), svc.probe.timeout + SLACK)
    return result, time.monotonic() - started


def assert_failed(result: Probe, error: str) -> None:
    assert error in ERROR_CLASSES
    assert (result.ok, result.error) == (False, error), result
    assert result.latency_ms is None  # no answer was ever complete
    assert result.detail and len(result.detail) <= 200


# --- each hostile answer: over by the deadline, the right class -------------------------------


async def test_a_target_that_accepts_and_never_answers_times_out(
    prober: Prober, plain: Any
) -> None:
    result, elapsed = await timed_probe(prober, probed(plain.url("/hang"), timeout=TIMEOUT))
    assert_failed(result, "timeout")
    assert TIMEOUT - 0.05 <= elapsed < TIMEOUT + SLACK


async def test_an_answer_trickled_byte_by_byte_times_out_as_a_whole(
    prober: Prober, hostile: HostileTarget
) -> None:
    # One byte every 100 ms: no single read waits long enough to trip a per-read timeout, and
    # the whole answer (4 KiB of body) would take 7 minutes. The probe's timeout is for all of it.
    path = f"/trickle/100?transport={prober.transport}"
    result, elapsed = await timed_probe(prober, probed(hostile.url(path), timeout=TIMEOUT))
    assert_failed(result, "timeout")
    assert TIMEOUT - 0.05 <= elapsed < TIMEOUT + SLACK
    # The probe hung up, rather than leaving the connection open to trickle on.
    await wait_for(lambda: path in hostile.finished, "the trickling connection closed")
    assert hostile.sent[path] < 100


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/close-mid", "protocol"),  # headers promising 1000 bytes, 10 bytes, then closed
        ("/invalid", "protocol"),  # "THIS IS NOT HTTP"
    ],
    ids=["closed-mid-answer", "invalid-http"],
)
async def test_a_broken_answer_fails_at_once_as_a_protocol_failure(
    prober: Prober, plain: Any, path: str, expected: str
) -> None:
    result, elapsed = await timed_probe(prober, probed(plain.url(path), timeout=TIMEOUT))
    assert_failed(result, expected)
    assert elapsed < TIMEOUT + SLACK
    assert path in result.detail  # the detail names what was probed


@pytest.mark.parametrize("path", ["/endless-header", "/many-headers"])
async def test_endless_headers_are_refused_not_buffered(
    prober: Prober, hostile: HostileTarget, path: str
) -> None:
    # A header line that never ends, or header lines forever: the HTTP parser's own limits
    # refuse them (invalid HTTP: `protocol`) long before the timeout, and memory stays bounded.
    url = hostile.url(f"{path}?transport={prober.transport}")
    tracemalloc.start()
    try:
        result, elapsed = await timed_probe(prober, probed(url, timeout=TIMEOUT))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_failed(result, "protocol")
    assert elapsed < TIMEOUT + SLACK
    assert peak < MEMORY_BOUND


# --- big answers: a bounded prefix is read ----------------------------------------------------


async def test_a_10_mb_body_is_not_read_whole(prober: Prober, plain: Any) -> None:
    size = TEN_MB + TRANSPORTS.index(prober.transport)  # tells the requests apart
    tracemalloc.start()
    try:
        result, elapsed = await timed_probe(
            prober, probed(plain.url(f"/huge/{size}"), timeout=TIMEOUT, body_contains="x")
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 10 MB is an answer, not a fault: the check sees the first 64 KiB and passes.
    assert result.ok, result
    assert elapsed < TIMEOUT + SLACK
    assert peak < MEMORY_BOUND
    await wait_for(lambda: size in dict(plain.huge_sent), "the server noticed the hang-up")
    # The server stopped once the probe hung up: a few kernel buffers, not the 10 MB.
    assert dict(plain.huge_sent)[size] < 2 * 2**20


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
async def test_a_compression_bomb_is_inflated_only_as_far_as_the_bounded_read(
    prober: Prober, hostile: HostileTarget, encoding: str
) -> None:
    # 128 MiB of zeros in ~130 KB of gzip, sent although the probe asked for identity. httpx
    # inflated each chunk whole: one probe of a 200 MiB bomb held 45 to 140 MB (fixed in
    # hbsm/probes/_http.py: _Inflate). The check still sees the decoded text at the start.
    path = f"/bomb/{encoding}/128?transport={prober.transport}"
    svc = probed(hostile.url(path), timeout=30, body_contains=BOMB_TEXT.decode().strip())
    tracemalloc.start()
    try:
        result, _ = await timed_probe(prober, svc)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.ok, result
    # Beside the 64 KiB read, the server thread's 130 KB bomb is traced too.
    assert peak < MEMORY_BOUND
    missing = await prober.probe(probed(hostile.url(path), timeout=30, body_contains="down"))
    assert (missing.ok, missing.error) == (False, "body_mismatch")
    assert f"first {BODY_LIMIT // 1024} KiB" in missing.detail


@pytest.mark.parametrize("encoding", ["br", "gzip, gzip"])
async def test_an_encoding_hbsm_does_not_decode_fails_a_body_check_saying_so(
    prober: Prober, hostile: HostileTarget, encoding: str
) -> None:
    # Only a single gzip or deflate is inflated (bounded); a body in any other encoding is
    # not checked as if it were text.
    url = hostile.url(f"/encoded/{encoding}")
    checked = await prober.probe(probed(url, timeout=10, body_contains="status: up"))
    assert (checked.ok, checked.error) == (False, "body_mismatch")
    assert f"Content-Encoding {encoding!r}, which hbsm does not decode" in checked.detail
    assert (await prober.probe(probed(url, timeout=10))).ok  # no body check: a 200 is up


# --- many at once -----------------------------------------------------------------------------


async def test_fifty_trickling_targets_at_once_all_time_out_by_their_deadline(
    prober: Prober, hostile: HostileTarget
) -> None:
    paths = [f"/trickle/100?transport={prober.transport}&n={i}" for i in range(50)]
    started = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*(prober.probe(probed(hostile.url(p), timeout=TIMEOUT)) for p in paths)),
        TIMEOUT + SLACK,
    )
    assert time.monotonic() - started < TIMEOUT + SLACK
    for result in results:
        assert_failed(result, "timeout")
    # On a loaded machine a probe can time out before the server has read its request, so the
    # server never learns its path: wait for no connection of these (or of no path yet) open.
    wanted = set(paths)
    await wait_for(
        lambda: not any(p in wanted or p == "" for p in list(hostile.open.values())),
        "all 50 connections closed",
    )
    assert wanted & hostile.finished  # the probes did reach the server and were answered


# --- https: a TLS handshake that never ends, an answer cut short after it ---------------------


async def test_a_tls_handshake_that_never_ends_times_out(prober: Prober) -> None:
    # Listening, never accepting: the kernel completes the TCP handshake, nobody answers the
    # TLS ClientHello. The probe's one deadline covers the handshake too.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        url = f"https://127.0.0.1:{port}/health"
        result, elapsed = await timed_probe(prober, probed(url, timeout=TIMEOUT))
    assert_failed(result, "timeout")
    assert TIMEOUT - 0.05 <= elapsed < TIMEOUT + SLACK


async def test_over_tls_a_broken_answer_is_still_a_protocol_failure(
    prober: Prober, tmp_path: Path
) -> None:
    ca = TestCA(tmp_path)
    target = HttpTarget(tls=ca.issue(days=30).server_context()).start()
    try:
        for path in ("/close-mid", "/invalid"):
            svc = probed(target.url(path), timeout=TIMEOUT, ca_file=str(ca.pem))
            result, _ = await timed_probe(prober, svc)
            assert_failed(result, "protocol")
    finally:
        target.stop()

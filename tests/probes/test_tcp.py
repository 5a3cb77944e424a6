"""TCP probes: up when a connection opens; latency is the connect time."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from support.configs import probed
from support.waiting import wait_for

from hbsm.probes import Prober, parse_target

from .servers import HttpTarget, closed_port


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    # The HTTP transport plays no part in a TCP probe: one is enough.
    async with Prober(clock=lambda: 1_700_000_000.0) as p:
        yield p


@pytest.mark.parametrize("form", ["127.0.0.1:{port}", "tcp://127.0.0.1:{port}"])
async def test_connects(prober: Prober, target: HttpTarget, form: str) -> None:
    before = target.connections
    result = await prober.probe(probed(form.format(port=target.port), kind="tcp"))
    assert (result.ok, result.error) == (True, None)
    assert result.latency_ms is not None and result.latency_ms >= 0
    await wait_for(lambda: target.connections != before, "the connection seen by the target")
    assert target.connections == before + 1  # it really connected
    assert result.ts == 1_700_000_000.0


async def test_refused(prober: Prober) -> None:
    with closed_port() as port:
        result = await prober.probe(probed(f"127.0.0.1:{port}", kind="tcp"))
    assert (result.ok, result.error, result.latency_ms) == (False, "refused", None)
    assert result.detail == f"tcp 127.0.0.1:{port}: connection refused"


async def test_dns(prober: Prober) -> None:
    result = await prober.probe(probed("no-such-host.invalid:80", kind="tcp", timeout=3))
    assert (result.ok, result.error) == (False, "dns")


async def test_timeout_when_nothing_accepts(prober: Prober) -> None:
    # A listener whose backlog is full and never accepts: further SYNs are dropped.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        result = await prober.probe(probed(f"127.0.0.1:{port}", kind="tcp", timeout=0.5))
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert (result.ok, result.error, result.latency_ms) == (False, "timeout", None)


async def test_a_target_without_port_is_a_fact(prober: Prober) -> None:
    result = await prober.probe(probed("just-a-host", kind="tcp"))
    assert (result.ok, result.error) == (False, "other")
    assert "port" in result.detail


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("db.internal:5432", ("db.internal", 5432)),
        ("tcp://127.0.0.1:6379", ("127.0.0.1", 6379)),
        ("[::1]:8080", ("::1", 8080)),
    ],
)
def test_parse_target(text: str, expected: tuple[str, int]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["host", "http://host:80", "host:99999", ":80"])
def test_parse_target_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_target(text)

"""HTTP probes: each failure class, the checks, bounded reads, latency, on every transport
(the lean path included: a failure class it got wrong would show here as well)."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import quote

import pytest
from support.configs import probed
from support.waiting import wait_for

from hbsm.events import Probe
from hbsm.probes import BODY_LIMIT, TRANSPORTS, Prober
from hbsm.state import ERROR_CLASSES

from .servers import GarbageTarget, HttpTarget, closed_port

HEALTH = {"status": "up", "checks": {"db": "ok", "queue": 3}, "nodes": [{"name": "a"}]}


def body_url(target: HttpTarget, text: str | bytes, content_type: str = "application/json") -> str:
    return target.url(f"/body?text={quote(text)}&type={quote(content_type)}")


def assert_failed(result: Probe, error: str) -> None:
    assert error in ERROR_CLASSES
    assert (result.ok, result.error) == (False, error), result
    assert result.detail and len(result.detail) <= 200


async def test_ok_is_a_fact_with_the_clock_ts(prober: Prober, target: HttpTarget) -> None:
    result = await prober.probe(probed(target.url("/ok"), name="web"))
    assert isinstance(result, Probe)
    assert (result.service, result.ok, result.status, result.error) == ("web", True, 200, None)
    assert result.latency_ms is not None and result.latency_ms >= 0
    assert (result.ts, result.seq) == (1_700_000_000.0, 0)


async def test_5xx(prober: Prober, target: HttpTarget) -> None:
    url = target.url("/status/503")
    result = await prober.probe(probed(url))
    assert_failed(result, "http_5xx")
    assert result.status == 503
    assert result.detail == f"GET {url}: HTTP 503"
    assert result.latency_ms is not None  # it answered


async def test_4xx(prober: Prober, target: HttpTarget) -> None:
    result = await prober.probe(probed(target.url("/status/404")))
    assert_failed(result, "http_4xx")
    assert result.status == 404


async def test_expected_status_list(prober: Prober, target: HttpTarget) -> None:
    expected_404 = await prober.probe(probed(target.url("/status/404"), expect_status=[404]))
    assert (expected_404.ok, expected_404.status) == (True, 404)
    wants_204 = await prober.probe(probed(target.url("/ok"), expect_status=[204]))
    assert_failed(wants_204, "other")
    assert wants_204.status == 200
    assert "expected 204" in wants_204.detail


async def test_redirect_is_an_answer_not_followed(prober: Prober, target: HttpTarget) -> None:
    before = target.requests
    result = await prober.probe(probed(target.url("/redirect")))
    assert (result.ok, result.status) == (True, 302)
    assert target.requests == before + 1
    strict = await prober.probe(probed(target.url("/redirect"), expect_status=[200]))
    assert_failed(strict, "other")
    assert strict.status == 302


async def test_refused(prober: Prober) -> None:
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}/health"
        result = await prober.probe(probed(url))
    assert_failed(result, "refused")
    assert result.detail == f"GET {url}: connection refused"
    assert (result.latency_ms, result.status) == (None, None)


async def test_dns(prober: Prober) -> None:
    # .invalid never resolves (RFC 6761).
    result = await prober.probe(probed("http://no-such-host.invalid/health", timeout=3))
    assert_failed(result, "dns")


async def test_tls(prober: Prober, garbage: GarbageTarget) -> None:
    result = await prober.probe(probed(f"https://127.0.0.1:{garbage.port}/"))
    assert_failed(result, "tls")


async def test_timeout_when_the_target_hangs(prober: Prober, target: HttpTarget) -> None:
    started = time.perf_counter()
    result = await prober.probe(probed(target.url("/hang"), timeout=0.3))
    assert time.perf_counter() - started >= 0.3
    assert_failed(result, "timeout")
    assert result.latency_ms is None


@pytest.mark.parametrize(
    ("path", "status"),
    [("/close", None), ("/close-mid", 200), ("/invalid", None)],
    ids=["closed-before-answer", "closed-mid-body", "invalid-http"],
)
async def test_broken_answers_are_protocol_failures(
    prober: Prober, target: HttpTarget, path: str, status: int | None
) -> None:
    result = await prober.probe(probed(target.url(path), timeout=3))
    assert_failed(result, "protocol")
    assert result.status == status
    assert result.latency_ms is None


async def test_latency_is_the_targets_delay(prober: Prober, target: HttpTarget) -> None:
    result = await prober.probe(probed(target.url("/slow/100")))
    assert result.ok
    assert result.latency_ms is not None and result.latency_ms >= 100


async def test_slow_success_is_a_failure(prober: Prober, target: HttpTarget) -> None:
    result = await prober.probe(probed(target.url("/slow/100"), slow_ms=50))
    assert_failed(result, "slow")
    assert result.status == 200
    assert result.latency_ms is not None and result.latency_ms >= 100
    assert "slow_ms 50" in result.detail
    fast_enough = await prober.probe(probed(target.url("/ok"), slow_ms=60_000))
    assert fast_enough.ok


async def test_invalid_utf8_in_a_json_string_is_a_body_mismatch(
    prober: Prober, target: HttpTarget
) -> None:
    # msgspec raises UnicodeDecodeError, not DecodeError, for it: once a probe crash ("other").
    url = body_url(target, b'{"status": "up\xff"}')
    result = await prober.probe(probed(url, json_field="status", json_equals="up"))
    assert_failed(result, "body_mismatch")
    assert "not JSON" in result.detail


async def test_body_contains(prober: Prober, target: HttpTarget) -> None:
    url = body_url(target, "all systems go", "text/plain")
    assert (await prober.probe(probed(url, body_contains="systems go"))).ok
    missing = await prober.probe(probed(url, body_contains="degraded"))
    assert_failed(missing, "body_mismatch")
    assert missing.status == 200
    assert "'degraded'" in missing.detail


@pytest.mark.parametrize(
    ("field", "equals", "ok"),
    [
        ("status", "up", True),
        ("checks.db", "ok", True),
        ("checks.queue", 3, True),
        ("nodes.0.name", "a", True),
        ("checks.db", None, True),  # no json_equals: the field only has to exist
        ("status", "down", False),
        ("checks.cache", None, False),
        ("nodes.5.name", "a", False),
    ],
)
async def test_json_field(
    prober: Prober, target: HttpTarget, field: str, equals: object, ok: bool
) -> None:
    url = body_url(target, json.dumps(HEALTH))
    result = await prober.probe(probed(url, json_field=field, json_equals=equals))
    if ok:
        assert result.ok, result
    else:
        assert_failed(result, "body_mismatch")


async def test_json_check_on_a_body_that_is_not_json(prober: Prober, target: HttpTarget) -> None:
    result = await prober.probe(probed(body_url(target, "<html>"), json_field="status"))
    assert_failed(result, "body_mismatch")
    assert "not JSON" in result.detail


async def test_a_huge_body_is_not_read_whole(prober: Prober, target: HttpTarget) -> None:
    size = 10 * 2**20 + TRANSPORTS.index(prober.transport)  # tells the requests apart
    result = await prober.probe(probed(target.url(f"/huge/{size}"), timeout=10))
    assert result.ok, result
    sent = await wait_for(
        lambda: dict(target.huge_sent).get(size), "the server noticed the hang-up"
    )
    # The server stopped once the probe hung up: a few kernel buffers, not the 10 MB.
    assert BODY_LIMIT <= sent < 2 * 2**20


async def test_body_checks_see_only_the_bounded_prefix(prober: Prober, target: HttpTarget) -> None:
    result = await prober.probe(probed(target.url("/huge/1000000"), body_contains="y"))
    assert_failed(result, "body_mismatch")
    assert "first 64 KiB" in result.detail


async def test_detail_stays_short(prober: Prober) -> None:
    with closed_port() as port:
        result = await prober.probe(probed(f"http://127.0.0.1:{port}/" + "a" * 500))
    assert_failed(result, "refused")
    assert result.detail.endswith("connection refused")


async def test_invalid_url_is_a_fact_not_an_exception(prober: Prober) -> None:
    assert_failed(await prober.probe(probed("not a url")), "other")


async def test_own_queueing_is_not_counted(target: HttpTarget) -> None:
    async with Prober(concurrency=1) as prober:
        blocker = asyncio.create_task(prober.probe(probed(target.url("/slow/1000"))))
        await asyncio.sleep(0.05)  # the blocker holds the only slot
        started = time.perf_counter()
        queued = await prober.probe(probed(target.url("/ok")))
        waited = time.perf_counter() - started
        blocked = await blocker
    assert blocked.ok and queued.ok
    assert waited >= 0.9  # it did wait behind the blocker for the slot ...
    # ... and did not count it: its latency is its own request's, far less than the wait (a
    # comparison of the two, not a bound on either: both grow on a loaded machine).
    assert queued.latency_ms is not None and queued.latency_ms < (waited - 0.5) * 1000


async def test_concurrency_is_bounded_over_all_kinds_of_probe(target: HttpTarget) -> None:
    async with Prober(concurrency=2) as prober:
        sleeper = probed("", kind="command", argv=["sleep", "0.3"])
        probes = [prober.probe(probed(target.url("/slow/300")))]
        probes += [prober.probe(sleeper) for _ in range(3)]
        started = time.perf_counter()
        results = await asyncio.gather(*probes)
        elapsed = time.perf_counter() - started
    assert all(r.ok for r in results), results
    assert elapsed >= 0.6  # two waves of two, not one of four


async def test_every_transport_reports_the_same_facts(
    target: HttpTarget, garbage: GarbageTarget
) -> None:
    with closed_port() as port:
        cases = [
            probed(target.url("/ok")),
            probed(target.url("/status/500")),
            probed(target.url("/status/418")),
            probed(target.url("/redirect"), expect_status=[200]),
            probed(target.url("/slow/50"), slow_ms=10),
            probed(target.url("/hang"), timeout=0.2),
            probed(target.url("/close")),
            probed(target.url("/close-mid")),
            probed(target.url("/invalid")),
            probed(body_url(target, json.dumps(HEALTH)), json_field="status", json_equals="up"),
            probed(body_url(target, "{}"), json_field="status", json_equals="up"),
            probed(f"http://127.0.0.1:{port}/"),
            probed("http://no-such-host.invalid/", timeout=3),
            probed(f"https://127.0.0.1:{garbage.port}/"),
        ]
        facts = {}
        for transport in TRANSPORTS:
            async with Prober(transport=transport) as prober:  # type: ignore[arg-type]
                results = [await prober.probe(case) for case in cases]
            facts[transport] = [(r.ok, r.error, r.status, r.latency_ms is None) for r in results]
    assert facts["lean"] == facts["aiohttp"] == facts["httpx"]
    # Every class an HTTP probe can report is covered (command is the command probe's).
    covered = {error for _, error, _, _ in facts["lean"]} - {None}
    assert covered == set(ERROR_CLASSES) - {"command"}


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="transport"):
        Prober(transport="curl")  # type: ignore[arg-type]

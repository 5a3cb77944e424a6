"""/metrics parses as Prometheus text with every family; /events streams the log as SSE with
increasing ids, resumes from `since` or Last-Event-ID, sends keep-alive comments, and ends on
client disconnect and on server shutdown."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import msgspec
from probes.servers import SwitchableTarget
from prometheus_client.parser import text_string_to_metric_families
from support.waiting import wait_for

from hbsm.api.bodies import ErrorBody

from .conftest import Live, StartApi

FAMILIES = {
    "hbsm_monitor_running": "gauge",
    "hbsm_overloaded": "gauge",
    "hbsm_schedule_stretch": "gauge",
    "hbsm_log_last_seq": "gauge",
    "hbsm_events": "counter",
    "hbsm_services": "gauge",
    "hbsm_service_state": "gauge",
    "hbsm_service_failures": "gauge",
    "hbsm_service_restarts": "counter",
    "hbsm_service_repairs": "counter",
    "hbsm_service_probes_failed": "counter",
    "hbsm_probe_latency_seconds": "histogram",
    # Without samples here (no https service); tests/monitor/test_cert_watch.py reads them.
    "hbsm_cert_expiry_days": "gauge",
    "hbsm_cert_expiring": "gauge",
}


async def scrape(live: Live) -> dict[str, Any]:
    r = await live.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(family: Any, name: str, **labels: str) -> float:
    for sample in family.samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


async def test_metrics_has_every_family(live: Live, target: SwitchableTarget) -> None:
    families = await scrape(live)
    assert {name: f.type for name, f in families.items()} == FAMILIES
    assert value(families["hbsm_monitor_running"], "hbsm_monitor_running") == 1
    assert value(families["hbsm_overloaded"], "hbsm_overloaded") == 0
    assert value(families["hbsm_schedule_stretch"], "hbsm_schedule_stretch") == 1
    assert value(families["hbsm_services"], "hbsm_services") == 2
    state = families["hbsm_service_state"]
    assert value(state, "hbsm_service_state", service="web", state="healthy") == 1
    assert value(state, "hbsm_service_state", service="web", state="failed") == 0
    assert sum(s.value for s in state.samples if s.labels["service"] == "web") == 1
    assert value(families["hbsm_events"], "hbsm_events_total", type="probe") >= 2

    latency = families["hbsm_probe_latency_seconds"]
    first = value(latency, "hbsm_probe_latency_seconds_count", service="web")
    assert first >= 1
    buckets = [
        s for s in latency.samples if s.name.endswith("_bucket") and s.labels["service"] == "web"
    ]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf"
    assert counts[-1] == first

    # Counters only go up: later probes are added, none of the earlier ones dropped.
    target.modes["aux"] = "/status/500"
    await live.wait_state("aux", "degraded")
    await asyncio.sleep(0.5)
    later = await scrape(live)
    assert (
        value(
            later["hbsm_probe_latency_seconds"], "hbsm_probe_latency_seconds_count", service="web"
        )
        > first
    )
    assert (
        value(
            later["hbsm_service_probes_failed"], "hbsm_service_probes_failed_total", service="aux"
        )
        >= 1
    )
    assert value(later["hbsm_service_failures"], "hbsm_service_failures", service="aux") >= 1

    await live.client.post("/admin/heartbeat/stop")
    stopped = await scrape(live)
    assert value(stopped["hbsm_monitor_running"], "hbsm_monitor_running") == 0


# --- /events ------------------------------------------------------------------------------------


class Stream:
    """Reads SSE messages (dicts of their fields) and comments from a streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()
        self.comments: list[str] = []

    async def messages(self, count: int, timeout: float = 10.0) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        current: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if line == "":
                    if "data" in current:  # as EventSource: no data, nothing dispatched
                        out.append(current)
                        if len(out) >= count:
                            return out
                    current = {}
                    continue
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                name, _, text = line.partition(":")
                current[name] = text[1:] if text.startswith(" ") else text
        return out

    async def comment(self, timeout: float = 5.0) -> str:
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if line.startswith(":"):
                    return line
        raise AssertionError("stream ended")


async def test_events_stream_and_resume(start_api: StartApi) -> None:
    live = await start_api(sse_poll=0.05)
    async with live.client.stream("GET", "/events?since=0") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        stream = Stream(r)
        first = await stream.messages(12)
    ids = [int(m["id"]) for m in first]
    assert ids == list(range(1, 13))  # the whole log from its first event, in order
    assert first[0]["event"] == "monitor.started"
    for message in first:
        data = json.loads(message["data"])
        assert data["seq"] == int(message["id"]) and data["type"] == message["event"]
    assert {m["event"] for m in first} >= {"monitor.started", "service.registered", "probe"}

    last = ids[-1]
    async with live.client.stream("GET", f"/events?since={last}") as r:
        resumed = await Stream(r).messages(5)
    assert [int(m["id"]) for m in resumed] == list(range(last + 1, last + 6))

    # A reconnecting EventSource sends Last-Event-ID; it wins over the URL's since.
    async with live.client.stream(
        "GET", "/events?since=0", headers={"Last-Event-ID": str(last + 3)}
    ) as r:
        again = await Stream(r).messages(2)
    assert [int(m["id"]) for m in again] == [last + 4, last + 5]

    # Without since: only what comes next.
    now = live.monitor.projection.monitor.last_seq
    async with live.client.stream("GET", "/events") as r:
        fresh = await Stream(r).messages(3)
    assert all(int(m["id"]) > now for m in fresh)
    ids = [int(m["id"]) for m in fresh]
    assert ids == sorted(set(ids))


async def test_events_reject_bad_since(live: Live) -> None:
    for query in ("since=abc", "since=-1", "since=1.5", "since=99999999999999999999", "since="):
        r = await live.client.get(f"/events?{query}")
        assert r.status_code == 400, query
        assert msgspec.json.decode(r.content, type=ErrorBody).status == 400
    r = await live.client.get("/events", headers={"Last-Event-ID": "x"})
    assert r.status_code == 400


async def test_events_keep_alive_and_disconnect(start_api: StartApi) -> None:
    live = await start_api(sse_heartbeat=0.3, sse_poll=0.05)
    await live.client.post("/admin/heartbeat/stop")  # quiet: no more probes
    await asyncio.sleep(0.3)  # the last flushes
    tasks = live.api.server.server_state.tasks
    async with live.client.stream("GET", "/events") as r:
        stream = Stream(r)
        assert (await stream.comment()).startswith(": hbsm events after seq")
        started = time.monotonic()
        assert await stream.comment() == ": keep-alive"
        assert time.monotonic() - started >= 0.2
        assert len(tasks) == 1
    # The client went away: the server ends the stream (and its follower) by itself.
    await wait_for(lambda: not tasks, "the event stream's task ends")


async def test_server_shutdown_ends_open_streams(start_api: StartApi) -> None:
    live = await start_api(sse_poll=0.05)
    async with live.client.stream("GET", "/events") as r:
        stream = Stream(r)
        await stream.comment()
        started = time.monotonic()
        await live.server.stop()
        assert time.monotonic() - started < 3
        async with asyncio.timeout(3):
            async for _ in stream.lines:  # ends cleanly, no error
                pass

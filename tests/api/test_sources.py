"""LogSource (a log another process writes, followed from a plain thread), the body cache per
projection version (1,000 services: one encode per version, not per request), and redaction."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import msgspec
import pytest
from support.waiting import wait_for_sync

from hbsm.api import LogSource, create_app
from hbsm.api import source as api_source
from hbsm.api.bodies import DetailedHealth, Health
from hbsm.api.source import redact
from hbsm.api.views import Views
from hbsm.events import Event, MonitorStarted, OpaqueEvent, Probe, ServiceRegistered, Transition
from hbsm.log import FileEventLog, read_history, segment_paths
from hbsm.projection import Projection


def write(path: Path, events: list[Event]) -> FileEventLog:
    log = FileEventLog.open(path)
    log.append(events)
    log.flush()
    return log


def services(n: int, ts: float) -> list[Event]:
    out: list[Event] = [MonitorStarted(ts=ts, pid=1, version="9.9", config={"port": 1})]
    for i in range(n):
        name = f"svc{i:04d}"
        out.append(
            ServiceRegistered(
                ts=ts, service=name, target=f"http://10.0.0.{i % 250}/h", critical=i == 0
            )
        )
        out.append(Probe(ts=ts + 0.1, service=name, ok=True, latency_ms=1.5, status=200))
        out.append(
            Transition(ts=ts + 0.1, service=name, src="unknown", dst="healthy", trigger="probe_ok")
        )
    return out


def failing(name: str, n: int) -> list[Event]:
    """n failed probes, and the transition to degraded the FSM decided on the first."""
    out: list[Event] = []
    for i in range(n):
        out.append(Probe(service=name, ok=False, error="timeout"))
        if i == 0:
            out.append(
                Transition(
                    service=name, src="healthy", dst="degraded", trigger="probe_failed", failures=1
                )
            )
    return out


def asgi_get(app: object, path: str, client: tuple[str, int] = ("127.0.0.1", 1)) -> httpx.Response:
    """One request through the app on a loop of this thread's own."""

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=client)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            return await c.get(path)

    return asyncio.run(get())


def test_log_source_follows_a_log_from_a_plain_thread(tmp_path: Path) -> None:
    path = tmp_path / "events" / "heartbeat.jsonl"
    writer = write(path, services(3, time.time()))
    try:
        with LogSource(path, poll_interval=0.05) as source:
            assert set(source.projection.services) == {"svc0000", "svc0001", "svc0002"}
            assert source.running() and source.control is None
            writer.append(failing("svc0000", 3))
            writer.flush()
            wait_for_sync(
                lambda: source.projection.services["svc0000"].fsm.failures == 3,
                "the follower thread folds the new probes",
            )
            assert source.projection.services["svc0000"].fsm.state == "degraded"
            # Requests from other threads at the same time as the follower folds.
            app = create_app(source)
            errors: list[BaseException] = []

            def hammer() -> None:
                try:
                    for _ in range(50):
                        r = asgi_get(app, "/health/detailed")
                        assert r.status_code == 503  # svc0000 is critical
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=hammer) for _ in range(3)]
            for t in threads:
                t.start()
            for _ in range(50):
                writer.append([Probe(service="svc0001", ok=True, latency_ms=2.0)])
                writer.flush()
            for t in threads:
                t.join(30)
            assert not errors, errors
    finally:
        writer.close()


async def test_bodies_are_encoded_once_per_version(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    writer = write(path, services(1000, time.time()))
    try:
        source = LogSource(path)
        source.refresh()
        app = create_app(source, cache_max_age=3600)
        views: Views = app.state.hbsm.views
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            first = await client.get("/health/detailed")
            assert first.status_code == 200
            detailed = msgspec.json.decode(first.content, type=DetailedHealth)
            assert len(detailed.services) == 1000
            built = views.builds
            # The cache's speed is a figure of `just bench` (bench_api: /health/detailed from
            # the per-version cache); here, that it is used: the same bytes, no new encode.
            for _ in range(200):
                assert (await client.get("/health/detailed")).content == first.content
            assert views.builds == built  # no new encode: same projection version
            await client.get("/health")
            await client.get("/health")
            assert views.builds == built + 1
            # Targets shown or not: two bodies, each cached.
            remote = httpx.ASGITransport(app=app, client=("10.9.9.9", 1))
            async with httpx.AsyncClient(transport=remote, base_url="http://localhost") as other:
                hidden = await other.get("/health/detailed")
                await other.get("/health/detailed")
            assert hidden.content != first.content and views.builds == built + 2

            writer.append(failing("svc0005", 1))
            writer.flush()
            assert source.refresh() == 2
            after = await client.get("/health/detailed")
            assert views.builds == built + 3  # a new version: encoded again, once
            changed = msgspec.json.decode(after.content, type=DetailedHealth)
            assert changed.services["svc0005"].state == "degraded"
            health = msgspec.json.decode((await client.get("/health")).content, type=Health)
            assert health.status == "degraded"
    finally:
        writer.close()


def test_cached_bodies_expire_with_the_clock(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    writer = write(path, services(2, 1000.0))
    now = [2000.0]
    try:
        source = LogSource(path, clock=lambda: now[0])
        source.refresh()
        views = Views(source, max_age=1.0)
        a = views.health()
        assert views.health() is a
        now[0] += 1.5  # same version, but the timestamp would be stale
        b = views.health()
        assert b is not a and b"2000.0" not in b.body and views.builds == 2
    finally:
        writer.close()


def test_overloaded_bodies_are_rebuilt_once_a_second_aside(tmp_path: Path) -> None:
    """While the monitor is overloaded a new version comes with every probe: a body is then
    rebuilt once per max_age at most, in a thread aside, the one there is served meanwhile."""
    from hbsm.events import MonitorOverloaded

    path = tmp_path / "heartbeat.jsonl"
    writer = write(path, [*services(2, 1000.0), MonitorOverloaded(ts=1000.0, stretch=3.0)])
    now = [2000.0]
    try:
        source = LogSource(path, clock=lambda: now[0])
        source.refresh()
        views = Views(source, max_age=1.0)
        first = views.health()
        writer.append(failing("svc0001", 1))
        writer.flush()
        assert source.refresh() == 2
        assert views.health() is first and views.builds == 1  # a new version, same body
        now[0] += 1.5  # too old now: still served, while the next one is built aside
        assert views.health() is first
        wait_for_sync(lambda: views.builds == 2, "the body rebuilt aside")
        second = views.health()
        assert second is not first and b'"svc0001":"degraded"' in second.body
    finally:
        writer.close()


def test_redact_masks_secrets() -> None:
    config = {
        "admin_token": "abc",
        "host": "0.0.0.0",
        "notify": {
            "webhooks": [
                {
                    "url": "https://hooks.slack.com/services/T0/B0/XYZ",
                    "headers": {"Authorization": "Bearer q"},
                }
            ],
            "smtp": {"host": "mail", "password": "pw", "username": "me"},
        },
        "services": [{"name": "a", "probe": {"headers": {"X-Key": "k"}}, "url": "http://a/"}],
        "login_url": None,
    }
    shown = redact(config)
    assert shown["admin_token"] == "***" and shown["host"] == "0.0.0.0"
    hook = shown["notify"]["webhooks"][0]
    assert hook["url"] == "https://hooks.slack.com/***" and hook["headers"] == {
        "Authorization": "***"
    }
    assert shown["notify"]["smtp"] == {"host": "mail", "password": "***", "username": "me"}
    assert shown["services"][0]["probe"]["headers"] == {"X-Key": "***"}
    assert shown["services"][0]["url"] == "http://a/"
    assert shown["login_url"] is None
    assert config["admin_token"] == "abc"  # the original is untouched


class FoldWatcher(Projection):
    """The real Projection, noting which services it held when each batch was folded into it:
    what a request served between the previous fold and this one saw."""

    made: list[FoldWatcher] = []

    def __init__(self) -> None:
        super().__init__()
        self.before: list[set[str]] = []
        FoldWatcher.made.append(self)

    def apply_all(self, events: Iterable[Event | OpaqueEvent]) -> int:
        self.before.append(set(self.services))
        return super().apply_all(events)


def test_log_source_never_serves_no_services_while_it_catches_up_over_a_pruned_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression: fallen behind a segment retention pruned, LogSource started again from an
    # empty projection, so until it had folded the active segment's snapshot every request was
    # answered with no services at all.
    monkeypatch.setattr(api_source, "Projection", FoldWatcher)
    FoldWatcher.made = []
    path = tmp_path / "events" / "heartbeat.jsonl"
    written = Projection()
    writer = FileEventLog.open(
        path,
        max_bytes=2_000,
        keep_segments=1,
        snapshot=lambda segment: written.snapshot(segment, time.time()),
    )
    names = {"svc0000", "svc0001", "svc0002"}
    try:
        written.apply_all(writer.append(services(3, time.time())))
        writer.flush()
        source = LogSource(path)
        source.refresh()
        assert set(source.projection.services) == names
        served = source.projection
        for _ in range(8):  # rotations past the segment after the one the source has read
            written.apply_all(writer.append(failing("svc0001", 6)))
            writer.flush()
    finally:
        writer.close()  # and with it the pruning, done off the writer's thread, is over
    # Segment 1, the next the source needs, is pruned.
    assert "heartbeat.00000001.jsonl.gz" not in {p.name for p in segment_paths(path)}
    with caplog.at_level(logging.WARNING, logger="hbsm.api"):
        source.refresh()

    # Every fold after the first found the three services there: no request in between was
    # answered from an empty map (a projection made afresh, say).
    folds = [before for projection in FoldWatcher.made for before in projection.before]
    assert folds[0] == set() and all(before == names for before in folds[1:]), folds
    assert source.projection is served
    assert set(source.projection.services) == names
    expected = Projection()
    expected.apply_all(read_history(path))
    assert msgspec.to_builtins(source.projection.services) == msgspec.to_builtins(expected.services)
    assert source.projection.services["svc0001"].fsm.state == "degraded"
    assert any("were lost to this reader" in r.getMessage() for r in caplog.records)

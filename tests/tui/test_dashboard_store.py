"""The app follows a log kept in a JetStream stream of a real nats-server (--store mode): what a
writer appends shows, services that appear later included; a server that is not there, a
stream not made yet and a server that goes away are said in the app, and it follows on once
they are back.

Behaviour only: what shows, and that it shows (within a deadline only a hang misses)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from support.dashboard import row_state
from support.nats_server import NatsServer
from support.waiting import wait_for

from hbsm.cli import main
from hbsm.events import MonitorStarted, Probe, ServiceRegistered, Transition
from hbsm.log.jetstream import JetStreamLog
from tui.app import DashboardApp
from tui.sources import StreamTail

SIZE = (140, 40)
_streams = (f"DASH{n}" for n in itertools.count())


def _healthy(log: JetStreamLog, names: list[str]) -> None:
    log.append([ServiceRegistered(service=n) for n in names])
    log.append([Probe(service=n, ok=True, latency_ms=3.0) for n in names])
    log.append(
        [Transition(service=n, src="unknown", dst="healthy", trigger="probe_ok") for n in names]
    )
    log.flush()


def _errors(app: DashboardApp) -> list[str]:
    return [n.message for n in app._notifications if n.severity == "error"]


async def test_what_the_writer_appends_shows(module_nats_server: NatsServer) -> None:
    url, stream = module_nats_server.url, next(_streams)
    with JetStreamLog.open(url, stream=stream) as log:
        log.append([MonitorStarted(pid=1, version="test")])
        _healthy(log, ["web", "api"])
        app = DashboardApp(source=StreamTail(url, stream))
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await wait_for(
                lambda: row_state(app, "web") == "healthy", "web healthy", pause=pilot.pause
            )
            assert row_state(app, "api") == "healthy"
            log.append([Probe(service="web", ok=False, error="refused", detail="refused")])
            log.append(
                [Transition(service="web", src="healthy", dst="degraded", trigger="probe_failed")]
            )
            log.flush()
            await wait_for(
                lambda: row_state(app, "web") == "degraded", "web degraded", pause=pilot.pause
            )
            _healthy(log, ["late"])  # a service that appears after the dashboard started
            await wait_for(
                lambda: row_state(app, "late") == "healthy", "late row", pause=pilot.pause
            )
            assert row_state(app, "api") == "healthy"
            assert _errors(app) == []
            assert app.source is not None and app.source.label == f"stream {stream} at {url}"


async def test_no_server_is_said_in_the_app_not_a_traceback() -> None:
    app = DashboardApp(source=StreamTail("nats://127.0.0.1:1", "HBSM", retry=0.2))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        said = await wait_for(lambda: _errors(app), "the error shown", pause=pilot.pause)
        assert said[0].startswith("the JetStream stream HBSM at nats://127.0.0.1:1: cannot connect")
        assert "trying again" in said[0]
        assert app.is_running
    assert len(_errors(app)) == 1  # said once, not once per attempt


async def test_a_stream_made_after_the_dashboard_started_is_followed(
    module_nats_server: NatsServer,
) -> None:
    url, stream = module_nats_server.url, next(_streams)
    app = DashboardApp(source=StreamTail(url, stream, retry=0.2))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        said = await wait_for(lambda: _errors(app), "no stream yet", pause=pilot.pause)
        assert f"no stream {stream}" in said[0]
        with JetStreamLog.open(url, stream=stream) as log:  # the reader did not make it
            assert log.last_seq == 0
            _healthy(log, ["web"])
            await wait_for(
                lambda: row_state(app, "web") == "healthy", "web healthy", pause=pilot.pause
            )


async def test_a_server_gone_and_back_is_said_then_followed_on(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats").start()
    source = StreamTail(server.url, "BACK", retry=0.2)
    try:
        with JetStreamLog.open(server.url, stream="BACK") as log:
            _healthy(log, ["web"])
        app = DashboardApp(source=source)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await wait_for(
                lambda: row_state(app, "web") == "healthy", "web healthy", pause=pilot.pause
            )
            server.stop()
            said = await wait_for(lambda: _errors(app), "the loss shown", pause=pilot.pause)
            assert server.url in said[0] and "BACK" in said[0]
            server.start()  # the same port and files: the stream is still there
            with JetStreamLog.open(server.url, stream="BACK") as log:
                _healthy(log, ["late"])
            await wait_for(
                lambda: row_state(app, "late") == "healthy", "late row", pause=pilot.pause
            )
            assert app.is_running
        # Followed on after the last event delivered: nothing twice.
        assert source.events == 6
    finally:
        server.stop()


def test_stream_without_store_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", "--stream", "HBSM"]) == 2
    assert capsys.readouterr().err == "hbsm dashboard: --stream names a stream of --store\n"

"""The app follows a file log another thread appends to (--log mode)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from hbsm.events import MonitorStarted, Probe, ServiceRegistered, Transition
from hbsm.log import FileEventLog
from tui.app import DashboardApp
from tui.sources import LogTail
from tui.widgets.services import ServicesTable

SIZE = (140, 40)


def _state(app: DashboardApp, name: str) -> str | None:
    table = app.main.query_one(ServicesTable)
    if name not in table.rows:
        return None
    return str(table.get_row(name)[1]).strip()


async def _wait(pilot, condition, what: str, timeout: float = 3.0) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await pilot.pause(0.02)
    return time.monotonic() - start


def _start(log: FileEventLog, names: list[str]) -> None:
    log.append([MonitorStarted(pid=1, version="test")])
    log.append([ServiceRegistered(service=n) for n in names])
    log.append([Probe(service=n, ok=True, latency_ms=3.0) for n in names])
    log.append(
        [Transition(service=n, src="unknown", dst="healthy", trigger="probe_ok") for n in names]
    )
    log.flush()


async def test_new_state_shows_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "events" / "heartbeat.jsonl"
    log = FileEventLog.open(path)
    _start(log, ["web", "api"])
    app = DashboardApp(source=LogTail(path))
    appended = threading.Event()

    def degrade() -> None:
        log.append([Probe(service="web", ok=False, error="refused", detail="refused")])
        log.append(
            [Transition(service="web", src="healthy", dst="degraded", trigger="probe_failed")]
        )
        log.flush()
        appended.set()

    try:
        async with app.run_test(size=SIZE) as pilot:
            await _wait(pilot, lambda: _state(app, "web") == "healthy", "web healthy")
            assert _state(app, "api") == "healthy"
            threading.Thread(target=degrade).start()
            await _wait(pilot, appended.is_set, "appended")
            took = await _wait(pilot, lambda: _state(app, "web") == "degraded", "web degraded")
            assert took < 1.0
            assert _state(app, "api") == "healthy"
            # A service that appears later gets a row of its own.
            log.append([ServiceRegistered(service="late")])
            log.flush()
            await _wait(pilot, lambda: _state(app, "late") == "unknown", "late row")
    finally:
        log.close()


async def test_a_fast_growing_log_arrives_coalesced(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    log = FileEventLog.open(path)
    names = [f"svc{i:02d}" for i in range(20)]
    _start(log, names)
    source = LogTail(path)
    app = DashboardApp(source=source)
    stop = threading.Event()
    written = [0]

    def flood() -> None:
        # Thousands of probes a second, for about 1.5 s.
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            batch = [
                Probe(service=n, ok=True, latency_ms=float(i)) for i in range(10) for n in names
            ]
            log.append(batch)
            log.flush()
            written[0] += len(batch)
            time.sleep(0.005)
        stop.set()

    try:
        async with app.run_test(size=SIZE) as pilot:
            await _wait(pilot, lambda: _state(app, "svc00") == "healthy", "rows")
            started = time.monotonic()
            thread = threading.Thread(target=flood)
            thread.start()
            # The UI stays responsive while the log floods: a pause returns promptly.
            worst = 0.0
            while not stop.is_set():
                t0 = time.monotonic()
                await pilot.pause(0.05)
                worst = max(worst, time.monotonic() - t0)
            thread.join()
            total = written[0] + 3 * len(names) + 1
            await _wait(
                pilot,
                lambda: app.board.projection.monitor.events_total == total,
                "every event folded",
            )
            elapsed = time.monotonic() - started
            assert written[0] > 5000
            # At most ~5 batches a second (+ the catch-up at start), not one per append.
            assert source.batches <= 5 * elapsed + 4, (source.batches, elapsed)
            assert worst < 0.5, worst
            print(
                f"flood: {written[0]} events in {elapsed:.2f} s, {source.batches} batches, "
                f"worst UI pause {worst * 1000:.0f} ms"
            )
    finally:
        log.close()

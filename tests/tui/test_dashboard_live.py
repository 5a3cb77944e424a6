"""The app follows a file log another thread appends to (--log mode).

Behaviour only: what shows, and that it shows (within a deadline only a hang misses). How fast
it shows, and how responsive the app stays while the log floods, are figures of `just bench`
(tests/bench/bench_dashboard.py: lag, stalls, batches a second)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from support.dashboard import row_state
from support.waiting import wait_for

from hbsm.events import MonitorStarted, Probe, ServiceRegistered, Transition
from hbsm.log import FileEventLog
from tui.app import DashboardApp
from tui.sources import LogTail
from tui.widgets.services import ServicesTable

SIZE = (140, 40)


def _start(log: FileEventLog, names: list[str]) -> None:
    log.append([MonitorStarted(pid=1, version="test")])
    log.append([ServiceRegistered(service=n) for n in names])
    log.append([Probe(service=n, ok=True, latency_ms=3.0) for n in names])
    log.append(
        [Transition(service=n, src="unknown", dst="healthy", trigger="probe_ok") for n in names]
    )
    log.flush()


async def test_a_new_state_shows(tmp_path: Path) -> None:
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
            await wait_for(
                lambda: row_state(app, "web") == "healthy", "web healthy", pause=pilot.pause
            )
            assert row_state(app, "api") == "healthy"
            threading.Thread(target=degrade).start()
            await wait_for(appended.is_set, "appended", pause=pilot.pause)
            await wait_for(
                lambda: row_state(app, "web") == "degraded", "web degraded", pause=pilot.pause
            )
            assert row_state(app, "api") == "healthy"
            # A service that appears later gets a row of its own.
            log.append([ServiceRegistered(service="late")])
            log.flush()
            await wait_for(
                lambda: row_state(app, "late") == "unknown", "late row", pause=pilot.pause
            )
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
        # 300 appends of 20 probes, each flushed, 5 ms apart: thousands of probes a second for
        # 1.5 s or more (a count, not a duration: a loaded machine writes them all, later).
        for i in range(300):
            log.append([Probe(service=n, ok=True, latency_ms=float(i)) for n in names])
            log.flush()
            written[0] += len(names)
            time.sleep(0.005)
        stop.set()

    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(lambda: row_state(app, "svc00") == "healthy", "rows", pause=pilot.pause)
            started = time.monotonic()
            thread = threading.Thread(target=flood)
            thread.start()
            # The app goes on running its loop while the log floods (how promptly: `just bench`).
            while not stop.is_set():
                await pilot.pause(0.05)
            thread.join()
            total = written[0] + 3 * len(names) + 1
            await wait_for(
                lambda: app.board.projection.monitor.events_total == total,
                "every event folded",
                pause=pilot.pause,
            )
            elapsed = time.monotonic() - started
            assert written[0] == 6000
            # Coalesced: never two batches within one interval (+ the catch-up at start), not one
            # per append. The rule itself, not a speed: a slower machine only makes batches rarer.
            assert source.batches <= elapsed / source.interval + 4, (source.batches, elapsed)
    finally:
        log.close()


def _on_screen(app: DashboardApp) -> list[str]:
    """The services table's lines as drawn (header first): only the rows in view."""
    table = app.main.query_one(ServicesTable)
    return [table.render_line(y).text for y in range(table.size.height)]


def _degrade(log: FileEventLog, name: str) -> None:
    log.append([Probe(service=name, ok=False, error="refused", detail="refused")])
    log.append([Transition(service=name, src="healthy", dst="degraded", trigger="probe_failed")])
    log.flush()


async def test_a_row_that_changed_off_screen_is_current_in_view(tmp_path: Path) -> None:
    # Only the rows in view are written as the log grows: one that changed out of view shows
    # what the board says as soon as it scrolls in, and reads so before.
    path = tmp_path / "heartbeat.jsonl"
    log = FileEventLog.open(path)
    names = [f"svc{i:03d}" for i in range(200)]
    _start(log, names)
    app = DashboardApp(source=LogTail(path))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(lambda: row_state(app, "svc199") == "healthy", "rows", pause=pilot.pause)
            assert not any("svc199" in line for line in _on_screen(app))
            _degrade(log, "svc198")
            _degrade(log, "svc199")
            board = app.board.projection.services
            await wait_for(
                lambda: board["svc199"].fsm.state == "degraded", "folded", pause=pilot.pause
            )
            await pilot.pause(0.5)  # drawn meanwhile, out of view
            assert row_state(app, "svc198") == "degraded"  # read, out of view: as the board says
            await pilot.press("ctrl+end")  # the last row
            shown = await wait_for(
                lambda: [line for line in _on_screen(app) if "svc199" in line],
                "svc199 in view",
                pause=pilot.pause,
            )
            assert "degraded" in shown[0]  # the first time it is drawn, not a tick later
            assert not any("svc000" in line for line in _on_screen(app))
    finally:
        log.close()


async def test_a_row_off_screen_moves_into_view_when_its_sort_key_changes(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    log = FileEventLog.open(path)
    names = [f"svc{i:03d}" for i in range(200)]
    _start(log, names)
    app = DashboardApp(source=LogTail(path))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(lambda: row_state(app, "svc199") == "healthy", "rows", pause=pilot.pause)
            await pilot.press("s")  # by state, worst first
            await pilot.pause()
            assert not any("svc199" in line for line in _on_screen(app))
            _degrade(log, "svc199")
            await wait_for(
                lambda: "svc199" in _on_screen(app)[1] and "degraded" in _on_screen(app)[1],
                "svc199 degraded, first row",
                pause=pilot.pause,
            )
    finally:
        log.close()

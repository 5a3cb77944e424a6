"""bench_dashboard's dashboard process: the Textual app (headless, `App.run_test`) following a
file log with LogTail, exactly as `hbsm dashboard --log LOG` builds it (settle=True). Prints
"ready" once mounted, then every PERIOD seconds one JSON line {"t": CLOCK_MONOTONIC, "seq": the
newest seq the screen shows (the board's as of the last time the views were drawn), "batches":
batches delivered, "events": events in them, "pause": how long its pause of PERIOD took (longer:
the app's loop was busy folding or painting)}. Exits when its stdin closes.

With --naive, the baseline: the same app, widgets and source, but every row of the services
table is rewritten from the board (its cells recomputed, those that differ set) every time the
views are drawn, which is on every batch read: the straightforward way to keep a table current
(the bench's only, not a user's option). Clearing and re-adding the rows costs more still.

    python -m tests.bench.dashboard_app LOG [WIDTH HEIGHT] [--naive]
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path

from textual.widgets import DataTable

import tui.app
from tui.app import DashboardApp, EventsArrived
from tui.board import LiveBoard
from tui.sources import LogTail
from tui.widgets.services import ServicesTable

PERIOD = 0.1


class BenchApp(DashboardApp):
    """The dashboard, noting the seq of the board as of each drawing: what the screen shows."""

    # A relative CSS_PATH is read next to the module of the class: this one is elsewhere.
    CSS_PATH = Path(tui.app.__file__).with_name("app.tcss")
    shown_seq = 0

    def refresh_views(self, changed: set[str] | None) -> None:
        super().refresh_views(changed)
        self.shown_seq = self.board.projection.monitor.last_seq


class NaiveApp(BenchApp):
    """The baseline: every batch folded then drawn at once, every row of the table rewritten
    from the board (as if every service had changed)."""

    def refresh_views(self, changed: set[str] | None) -> None:
        super().refresh_views(None)
        tables = self.main.query(ServicesTable) if self.main.is_mounted else None
        if not tables:
            return
        table = tables.first()
        now = self.board.now()
        for name, view in self.board.projection.services.items():
            if name not in table.rows:
                continue  # filtered out
            for key, value in table.cells(view, now).items():
                # What the table holds, as DataTable keeps it (ServicesTable's get_cell would
                # bring the row up to date first).
                if DataTable.get_cell(table, name, key) != value:
                    table.update_cell(name, key, value)

    def on_events_arrived(self, message: EventsArrived) -> None:
        board = self.board
        assert isinstance(board, LiveBoard)
        try:
            changed = board.apply(message.batch)
        finally:
            if self.source is not None:
                self.source.ack()
        self.refresh_views(changed)


async def _main(log: str, size: tuple[int, int], naive: bool) -> None:
    closed = threading.Event()

    def watch() -> None:
        sys.stdin.read()
        closed.set()

    threading.Thread(target=watch, daemon=True).start()
    source = LogTail(log)
    app = (NaiveApp if naive else BenchApp)(source=source, settle=True)
    async with app.run_test(size=size) as pilot:
        print("ready", flush=True)
        while not closed.is_set():
            t0 = time.monotonic()
            await pilot.pause(PERIOD)
            pause = time.monotonic() - t0
            sample = {
                "t": time.monotonic(),
                "seq": app.shown_seq,
                "batches": source.batches,
                "events": source.events,
                "pause": pause,
            }
            print(json.dumps(sample), flush=True)


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--naive"]
    size = (int(args[1]), int(args[2])) if len(args) > 2 else (200, 50)
    asyncio.run(_main(args[0], size, "--naive" in sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

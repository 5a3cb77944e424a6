"""bench_dashboard's dashboard process: the Textual app (headless, `App.run_test`) following a
file log with LogTail, exactly as `hbsm dashboard --log LOG` builds it. Prints "ready" once
mounted, then every PERIOD seconds one JSON line {"t": CLOCK_MONOTONIC, "seq": the newest seq
its board has folded, "batches": batches delivered, "events": events in them, "pause": how long
its pause of PERIOD took (longer: the app's loop was busy folding or painting)}. Exits when its
stdin closes.

    python -m tests.bench.dashboard_app LOG [WIDTH HEIGHT]
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time

from tui.app import DashboardApp
from tui.sources import LogTail

PERIOD = 0.1


async def _main(log: str, size: tuple[int, int]) -> None:
    closed = threading.Event()

    def watch() -> None:
        sys.stdin.read()
        closed.set()

    threading.Thread(target=watch, daemon=True).start()
    source = LogTail(log)
    app = DashboardApp(source=source)
    async with app.run_test(size=size) as pilot:
        print("ready", flush=True)
        while not closed.is_set():
            t0 = time.monotonic()
            await pilot.pause(PERIOD)
            pause = time.monotonic() - t0
            seq = app.board.projection.monitor.last_seq
            sample = {
                "t": time.monotonic(),
                "seq": seq,
                "batches": source.batches,
                "events": source.events,
                "pause": pause,
            }
            print(json.dumps(sample), flush=True)


def main() -> int:
    size = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (200, 50)
    asyncio.run(_main(sys.argv[1], size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The soak's targets: every service is a path of one local HTTP server, a random few broken.

    python -m tests.soak.target SERVICES FAIL_RATE REDRAW SEED

`/svc/<name>` answers as the service `name` currently does (tests/probes/servers.py's
SwitchableTarget). The server prints its port, then waits for a line "start" on stdin: from then
on, every REDRAW seconds (the first draw at once) it breaks round(FAIL_RATE * SERVICES) services
drawn at random among the working ones, half answering 500 and half hanging (answering only
after HANG_MS, past the probe's timeout). A broken service stays broken until its repair hook is
called: `/fix/<name>` (any method; the `http` step of its ladder POSTs it) makes it answer 200
again. So every failure is one the monitor must notice and repair; a service it leaves broken
shows at the end in `still_broken` with how long it has been broken.

When stdin closes it prints one JSON line and exits: {"draws", "broken", "fixed", "fix_calls",
"requests", "still_broken": {name: seconds}}. `fix_calls - fixed` counts hooks called on a
service that was not broken (a repair after failures the target did not cause).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
import time
from typing import Any

from tests.probes.servers import SwitchableTarget

__all__ = ["HANG_MS", "FlakyTargets", "service_names"]

# Longer than the soak's probe timeout (tests/soak/config.py), so a hanging service times out.
HANG_MS = 2000
BROKEN_MODES = ("/status/500", f"/slow/{HANG_MS}")


def service_names(count: int) -> list[str]:
    return [f"svc-{i:04d}" for i in range(count)]


class _FixableConnection(SwitchableTarget.connection):
    """SwitchableTarget's connection, plus `/fix/<name>`: mends that service, answers 200."""

    target: FlakyTargets

    def _answer(self, target: str) -> None:
        parts = target.split("?")[0].strip("/").split("/")
        if len(parts) == 2 and parts[0] == "fix":
            self.target.fix(parts[1])
            target = "/ok"
        super()._answer(target)


class FlakyTargets(SwitchableTarget):
    connection = _FixableConnection

    def __init__(self, names: list[str], fail_rate: float, seed: int) -> None:
        super().__init__()
        self.names = names
        self.per_draw = round(fail_rate * len(names))
        self.rng = random.Random(seed)
        self.broken_at: dict[str, float] = {}  # broken service -> when (monotonic)
        self.draws = self.broken = self.fixed = self.fix_calls = 0

    def draw(self) -> None:
        working = [name for name in self.names if name not in self.broken_at]
        now = time.monotonic()
        for name in self.rng.sample(working, min(self.per_draw, len(working))):
            self.modes[name] = self.rng.choice(BROKEN_MODES)
            self.broken_at[name] = now
        self.draws += 1
        self.broken += min(self.per_draw, len(working))

    def fix(self, name: str) -> None:
        self.fix_calls += 1
        if self.broken_at.pop(name, None) is not None:
            self.fixed += 1
        self.modes.pop(name, None)

    def summary(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "draws": self.draws,
            "broken": self.broken,
            "fixed": self.fixed,
            "fix_calls": self.fix_calls,
            "requests": self.requests,
            "still_broken": {n: round(now - t, 1) for n, t in sorted(self.broken_at.items())},
        }


async def _serve(targets: FlakyTargets, redraw: float) -> None:
    await targets.serve()
    print(targets.port, flush=True)
    loop = asyncio.get_running_loop()
    started, closed = asyncio.Event(), asyncio.Event()

    def read_stdin() -> None:  # a thread: "start" begins the draws, end of input ends us
        for line in sys.stdin:
            if line.strip() == "start":
                loop.call_soon_threadsafe(started.set)
        loop.call_soon_threadsafe(closed.set)

    threading.Thread(target=read_stdin, daemon=True).start()

    async def draw_forever() -> None:
        await started.wait()
        while True:
            targets.draw()
            await asyncio.sleep(redraw)

    drawing = asyncio.create_task(draw_forever())
    await closed.wait()
    drawing.cancel()
    print(json.dumps(targets.summary()), flush=True)


def main(argv: list[str] | None = None) -> int:
    services, fail_rate, redraw, seed = (argv if argv is not None else sys.argv[1:])[:4]
    targets = FlakyTargets(service_names(int(services)), float(fail_rate), int(seed))
    asyncio.run(_serve(targets, float(redraw)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

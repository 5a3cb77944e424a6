"""A clock the test moves by hand, for code that takes a clock (and a sleep) as arguments."""

from __future__ import annotations

import asyncio

__all__ = ["ManualClock"]


class ManualClock:
    """Time that moves only when the test says so: call it for the time, `advance` to move it.

    `sleep` is for code that takes a sleep function: a sleeper wakes when `advance` reaches its
    time (in the loop's thread; let the loop run, e.g. `await asyncio.sleep(0)`, for it to go
    on). `calls` counts the readings.
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.calls = 0
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        self.calls += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for deadline, future in self.sleepers:
            if deadline <= self.now and not future.done():
                future.set_result(None)
        self.sleepers = [(d, f) for d, f in self.sleepers if not f.done()]

    async def sleep(self, delay: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.now + delay, future))
        await future

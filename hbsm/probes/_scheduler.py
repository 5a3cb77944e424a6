"""`Scheduler`: when each service is probed.

One timer loop over a heap of due times (not one sleeping task per service). Each service's
slots lie on a fixed grid, `first + k * interval`, so the schedule never drifts however late a
probe starts or however long it runs; the first slot is offset into the interval by a hash of
the name, so services added together are spread over the interval instead of probed at once.
Never two probes of one service at once: a slot that comes while the service's previous probe
still runs (a timeout longer than the interval: a hung target) is owed, and probed the moment
that probe ends, once however many slots it overran. A hung service is so probed back to back,
and its failures add up at the pace of its timeout rather than of the next slot after each.

When the probes ask for more than the loop can do (10,000 services every second on one core),
every service is slowed down alike rather than some starved: the grids lie on a clock of the
scheduler's own that runs `stretch` times slower than real time, and `Pace` (hbsm/probes/_pace.py)
sets that factor from how late the probes start. Not overloaded, the factor is 1 and that clock
is the real one: the grid is exactly `first + k * interval`. An overload that ends leaves every
grid shifted by the same amount, never drifting.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._pace import Pace, PaceChange

__all__ = ["Scheduler", "SchedulerStats", "first_offset"]

log = logging.getLogger("hbsm.probes")


def first_offset(name: str, interval: float) -> float:
    """Where in [0, interval) a service's slots fall: stable across restarts and machines.

    CRC-32 of the name, scrambled by Knuth's multiplicative hash: CRC is linear, so names that
    differ in a digit or two ("svc-0041", "svc-0042") bunch up without it (1,000 such names
    put 64 to 130 in each tenth of the interval; scrambled, 86 to 112).
    """
    mixed = (zlib.crc32(name.encode()) * 0x9E3779B1) & 0xFFFFFFFF
    return mixed / 2**32 * interval


@dataclass
class SchedulerStats:
    # Probes started, regular and out of turn.
    started: int = 0
    # Due slots that came while that service's previous probe was still running ...
    skipped_overlap: int = 0
    # ... and the probes started the moment such a probe ended (one for any number of slots it
    # overran), included in `started`.
    after_overrun: int = 0
    # Slots skipped because the loop fell behind by more than an interval (no catch-up burst).
    skipped_behind: int = 0
    # Out-of-turn probes started (probe_now), included in `started`.
    probed_now: int = 0
    # run_probe raised (logged; the schedule goes on).
    errors: int = 0
    # The worst lateness of a slot seen, seconds.
    late_max: float = 0.0
    # The factor every interval is stretched by now (1: not overloaded), and the overload
    # episodes so far.
    stretch: float = 1.0
    overloads: int = 0


@dataclass
class _Service:
    interval: float
    first: float
    generation: int
    slot: int = 0

    def due(self, slot: int) -> float:
        # From the slot number, not by adding intervals up: no rounding creeps in. On the
        # scheduler's own clock (Scheduler._virtual).
        return self.first + slot * self.interval


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Scheduler:
    """Calls `run_probe(name)` for each service on its grid, never twice at once for one name.

    Use it from one event loop: `add`, `remove`, `probe_now` and `stop` wake the loop directly.
    `on_pace` is told when an overload episode begins and ends; `pace` tunes how one is told
    (tests shorten its window).
    """

    def __init__(
        self,
        run_probe: Callable[[str], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        pace: Pace | None = None,
        on_pace: Callable[[PaceChange], None] | None = None,
        max_in_flight: int | None = None,
    ) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, not {max_in_flight!r}")
        self._run_probe = run_probe
        # At most this many regular probes at once (the prober's concurrency): a slot that
        # finds them all busy waits in the heap, and starts late. Capped there rather than only
        # by the prober's semaphore, the wait shows as lateness, so an overload that is a lack
        # of slots (a fast loop, slow targets) is paced like one that is a lack of CPU.
        self._max_in_flight = max_in_flight
        self._capped = False
        self._clock = clock
        self._sleep = sleep
        self.pace = pace if pace is not None else Pace()
        self._on_pace = on_pace
        # The scheduler's clock: virtual = v0 + (real - t0) / stretch. At 1 and never changed it
        # is the real clock itself (0 + (t - 0) / 1.0 == t exactly).
        self._t0 = self._v0 = 0.0
        # Probes/s the intervals ask for, unstretched.
        self._asked = 0.0
        self._services: dict[str, _Service] = {}
        # (due, generation, name); entries of removed or re-added services are dropped lazily.
        self._heap: list[tuple[float, int, str]] = []
        self._generations = itertools.count()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._out_of_turn: dict[str, None] = {}  # an ordered set
        # Services whose slot came while their probe ran: probed again the moment it ends.
        self._owed: dict[str, None] = {}
        self._stopping = False
        self._woken = False
        self._wakeup: asyncio.Future[None] | None = None
        self.stats = SchedulerStats()

    # --- control ------------------------------------------------------------------------------

    def add(self, name: str, interval: float) -> None:
        """Schedule `name` every `interval` seconds (re-adding reschedules it)."""
        if not (interval > 0 and math.isfinite(interval)):
            raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
        generation = next(self._generations)
        first = self._virtual(self._clock()) + first_offset(name, interval)
        service = _Service(interval, first, generation)
        old = self._services.get(name)
        self._asked += 1 / interval - (1 / old.interval if old is not None else 0.0)
        self._services[name] = service
        heapq.heappush(self._heap, (service.first, generation, name))
        self._compact()
        self._wake()

    def remove(self, name: str) -> None:
        """No more probes of `name`; one already running finishes on its own."""
        old = self._services.pop(name, None)
        if old is not None:
            self._asked = max(0.0, self._asked - 1 / old.interval) if self._services else 0.0
        self._out_of_turn.pop(name, None)
        self._owed.pop(name, None)
        self._compact()

    def probe_now(self, name: str) -> bool:
        """Probe `name` out of turn as soon as possible; False if it is not scheduled.

        The regular slots stay where they are. If a probe of `name` is running, one more runs
        right after it (requests made meanwhile coalesce into that one), so the answer is
        always from a request sent after the ask.
        """
        if name not in self._services:
            return False
        self._out_of_turn[name] = None
        self._wake()
        return True

    def stop(self) -> None:
        """Make `run` return (after the probes in flight have finished)."""
        self._stopping = True
        self._wake()

    def in_flight(self, name: str) -> bool:
        return name in self._running

    def next_due(self, name: str) -> float | None:
        """When the next regular probe of `name` is due (on `clock`), None if not scheduled."""
        service = self._services.get(name)
        return None if service is None else self._real(service.due(service.slot))

    def __contains__(self, name: object) -> bool:
        return name in self._services

    def __len__(self) -> int:
        return len(self._services)

    # --- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the schedule until `stop()`. Cancelling `run` cancels the probes in flight."""
        try:
            while not self._stopping:
                self._woken = False
                self._start_out_of_turn()
                now = self._clock()
                vnow = self._virtual(now)
                heap = self._heap
                cap = self._max_in_flight
                while heap and heap[0][0] <= vnow:
                    if cap is not None and len(self._running) >= cap:
                        self._capped = True  # a probe that ends wakes the loop
                        break
                    due, generation, name = heapq.heappop(heap)
                    service = self._services.get(name)
                    if service is not None and service.generation == generation:
                        self._slot_due(name, service, due, now, vnow)
                if self.pace.due(now):
                    self._judge_pace(now)
                if not (self._woken or self._stopping):
                    delay = self._real(heap[0][0]) - now if heap and not self._capped else None
                    if self.pace.overloaded:  # wake up to judge the windows: it may end
                        delay = self.pace.window if delay is None else min(delay, self.pace.window)
                    await self._wait(delay)
            if self._running:
                await asyncio.gather(*self._running.values(), return_exceptions=True)
        except asyncio.CancelledError:
            for task in self._running.values():
                task.cancel()
            raise
        finally:
            self._stopping = False
            # A stopped scheduler asks for nothing: started again, it paces afresh (its caller
            # says that an episode ended, if one was under way).
            now = self._clock()
            self._t0, self._v0 = now, self._virtual(now)
            self.pace.reset()
            self.stats.stretch = 1.0

    def _slot_due(self, name: str, service: _Service, due: float, now: float, vnow: float) -> None:
        late = now - self._real(due)
        # The next slot on the grid that is still ahead: slots the loop slept through are
        # skipped, not run in a burst.
        slot = max(service.slot + 1, math.floor((vnow - service.first) / service.interval) + 1)
        while service.due(slot) <= vnow:
            slot += 1
        behind = slot - service.slot - 1
        if behind:
            self.stats.skipped_behind += behind
            self.pace.missed(behind)
        service.slot = slot
        heapq.heappush(self._heap, (service.due(slot), service.generation, name))
        if name in self._running:
            # Not a sign of overload: one slow target (a timeout longer than its interval)
            # must not slow every other service down.
            self.stats.skipped_overlap += 1
            self._owed[name] = None
            return
        self.stats.late_max = max(self.stats.late_max, late)
        self._start(name, due)

    def _start_out_of_turn(self) -> None:
        for name in list(self._out_of_turn):
            if name not in self._services:
                del self._out_of_turn[name]
            elif name not in self._running:
                del self._out_of_turn[name]
                self._owed.pop(name, None)  # this probe pays what was owed too
                self.stats.probed_now += 1
                self._start(name, None)
        for name in list(self._owed) if self._owed else ():
            if name not in self._services:
                del self._owed[name]
            elif name not in self._running:
                del self._owed[name]
                self.stats.after_overrun += 1
                self._start(name, None)

    def _start(self, name: str, due: float | None) -> None:
        self.stats.started += 1
        self._running[name] = asyncio.create_task(self._probe(name, due), name=f"probe {name}")

    async def _probe(self, name: str, due: float | None) -> None:
        service = self._services.get(name)
        if due is not None and service is not None:
            # How late it really starts: behind the other tasks the loop had to run first.
            self.pace.started((self._virtual(self._clock()) - due) / service.interval)
        try:
            await self._run_probe(name)
        except Exception:
            self.stats.errors += 1
            log.exception("probe of %s raised", name)
        finally:
            del self._running[name]
            self.pace.finished()
            if self._capped:
                self._capped = False
                self._wake()
            elif name in self._out_of_turn or name in self._owed:
                self._wake()

    # --- the pace -----------------------------------------------------------------------------

    def _virtual(self, real: float) -> float:
        return self._v0 + (real - self._t0) / self.pace.stretch

    def _real(self, virtual: float) -> float:
        return self._t0 + (virtual - self._v0) * self.pace.stretch

    def _judge_pace(self, now: float) -> None:
        pace = self.pace
        # Rebased before a change: the scheduler's clock goes on from where it is, only slower
        # or faster, so every grid keeps its place on it.
        v0 = self._virtual(now)
        change = pace.tick(now, self._asked)
        if pace.stretch != self.stats.stretch:
            self._t0, self._v0 = now, v0
            self.stats.stretch = pace.stretch
        if change is None:
            return
        self.stats.overloads = pace.episodes
        if self._on_pace is not None:
            try:
                self._on_pace(change)
            except Exception:
                log.exception("telling of an overload failed")

    async def _wait(self, delay: float | None) -> None:
        loop = asyncio.get_running_loop()
        wakeup = self._wakeup = loop.create_future()
        waker: asyncio.TimerHandle | asyncio.Future[Any] | None = None
        if delay is not None and self._sleep is asyncio.sleep:
            # A timer that resolves the wake-up: this runs once per due slot (a thousand times a
            # second at 1,000 services), and a sleeping task plus asyncio.wait cost several times
            # what a timer does.
            waker = loop.call_later(max(delay, 0.0), _resolve, wakeup)
        elif delay is not None:  # a test's clock
            waker = asyncio.ensure_future(self._sleep(max(delay, 0.0)))
            waker.add_done_callback(lambda _: _resolve(wakeup))
        try:
            await wakeup
        finally:
            self._wakeup = None
            if waker is not None:
                waker.cancel()

    def _wake(self) -> None:
        self._woken = True
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _compact(self) -> None:
        if len(self._heap) <= 2 * len(self._services) + 64:
            return
        live = self._services
        self._heap = [e for e in self._heap if (s := live.get(e[2])) and s.generation == e[1]]
        heapq.heapify(self._heap)

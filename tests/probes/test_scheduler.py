"""The scheduler, mostly on a fake clock: spread, no drift, no overlap, probe-now, remove."""

from __future__ import annotations

import asyncio
import collections
import itertools
import zlib
from collections.abc import Awaitable, Callable

import pytest
from support.clock import ManualClock

from hbsm.probes import Pace, PaceChange, Scheduler, first_offset


class AutoClock:
    """Time that jumps to the end of whatever the scheduler sleeps, then `oversleep` later.

    Like a real timer, a sleep ends `delay` after it was asked for, not after it started
    running; time the probes spent meanwhile (by moving `now`) overlaps it.
    """

    def __init__(self, oversleep: float = 0.0) -> None:
        self.now = 1000.0
        self.oversleep = oversleep
        self.hooks: list[Callable[[], None]] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, delay: float) -> Awaitable[None]:
        return self._until(self.now + delay)

    async def _until(self, deadline: float) -> None:
        self.now = max(self.now, deadline) + self.oversleep
        for hook in self.hooks:
            hook()
        await asyncio.sleep(0)


async def advance(clock: ManualClock, seconds: float) -> None:
    """Move the clock, then let the woken sleepers (and what they start) run."""
    clock.advance(seconds)
    await settle()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def _never(name: str) -> None:
    raise AssertionError(name)


class Recorder:
    """A run_probe that records when each service was probed; `hold` makes probes wait."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.calls: dict[str, list[float]] = collections.defaultdict(list)
        self.release = asyncio.Event()
        self.hold: set[str] = set()
        self.active: collections.Counter[str] = collections.Counter()
        self.max_active = 0
        self.on_call: Callable[[str], None] = lambda name: None

    async def __call__(self, name: str) -> None:
        self.calls[name].append(self.clock())
        self.active[name] += 1
        self.max_active = max(self.max_active, self.active[name])
        self.on_call(name)
        try:
            if name in self.hold:
                await self.release.wait()
        finally:
            self.active[name] -= 1


def stop_when(scheduler: Scheduler, condition: Callable[[], bool]) -> Callable[[], None]:
    def hook() -> None:
        if condition():
            scheduler.stop()

    return hook


async def run_until(scheduler: Scheduler) -> None:
    """Run until a hook stops it; a hang fails the test instead of the suite."""
    await asyncio.wait_for(scheduler.run(), timeout=20)


def test_first_offset_is_a_stable_hash_within_the_interval() -> None:
    assert first_offset("web", 30) == (zlib.crc32(b"web") * 0x9E3779B1 & 0xFFFFFFFF) / 2**32 * 30
    assert 0 <= first_offset("web", 30) < 30
    assert first_offset("web", 30) != first_offset("db", 30)


async def test_services_are_spread_over_the_interval() -> None:
    clock = AutoClock()
    recorder = Recorder(clock)
    scheduler = Scheduler(recorder, clock=clock, sleep=clock.sleep)
    names = [f"svc-{i:04d}" for i in range(1000)]
    start = clock.now
    for name in names:
        scheduler.add(name, 30.0)
    clock.hooks.append(stop_when(scheduler, lambda: len(recorder.calls) == len(names)))
    await run_until(scheduler)
    offsets = [recorder.calls[name][0] - start for name in names]
    assert all(0 <= offset < 30 for offset in offsets)
    # Ten equal slices of the interval each get about a tenth of the services.
    per_slice = collections.Counter(int(offset // 3) for offset in offsets)
    assert sorted(per_slice) == list(range(10))
    assert all(80 <= count <= 120 for count in per_slice.values()), per_slice
    assert [recorder.calls[n][0] - start for n in names[:3]] == pytest.approx(
        [first_offset(n, 30.0) for n in names[:3]]
    )


async def test_no_drift_over_many_intervals() -> None:
    clock = AutoClock(oversleep=0.013)  # every wake-up 13 ms late: lateness, not drift
    recorder = Recorder(clock)

    def busy(name: str) -> None:  # every probe keeps the loop busy for 37 ms
        clock.now += 0.037

    recorder.on_call = busy
    scheduler = Scheduler(recorder, clock=clock, sleep=clock.sleep)
    interval = 0.1  # not exact in binary: adding it up would creep
    first = clock.now + first_offset("api", interval)
    scheduler.add("api", interval)
    clock.hooks.append(stop_when(scheduler, lambda: len(recorder.calls["api"]) >= 5000))
    await run_until(scheduler)
    calls = recorder.calls["api"][:5000]
    assert len(calls) == 5000
    # Each probe exactly as late as its wake-up; none later for the lateness before it.
    assert [round(c - (first + k * interval), 9) for k, c in enumerate(calls)] == [0.013] * 5000
    assert scheduler.stats.skipped_behind == scheduler.stats.skipped_overlap == 0
    assert scheduler.stats.late_max == pytest.approx(0.013)
    assert scheduler.next_due("api") == first + 5000 * interval


async def test_a_stall_skips_slots_instead_of_bursting() -> None:
    clock = AutoClock()
    recorder = Recorder(clock)
    stalled = []

    def stall_once(name: str) -> None:  # the fifth probe holds the loop for 1.05 s
        if len(recorder.calls["api"]) == 5 and not stalled:
            stalled.append(clock.now)
            clock.now += 1.05

    recorder.on_call = stall_once
    scheduler = Scheduler(recorder, clock=clock, sleep=clock.sleep)
    first = clock.now + first_offset("api", 0.1)
    scheduler.add("api", 0.1)
    clock.hooks.append(stop_when(scheduler, lambda: len(recorder.calls["api"]) >= 50))
    await run_until(scheduler)
    calls = recorder.calls["api"]
    gaps = [round(b - a, 9) for a, b in itertools.pairwise(calls)]
    assert min(gaps) >= 0.05  # no catch-up burst after the stall
    stats = scheduler.stats
    assert stats.skipped_behind == 9  # the slots the stall sat on, but the one it runs late
    assert stats.late_max >= 0.9
    # Every slot whose time had come by the last probe was either run or skipped.
    slots_due = round((calls[-1] - first) / 0.1) + 1
    assert stats.started + stats.skipped_behind == slots_due
    # One stall is not an overload: the grid goes on as it was.
    assert (stats.stretch, stats.overloads) == (1.0, 0)
    assert calls[-1] == pytest.approx(first + (slots_due - 1) * 0.1)


async def test_an_overloaded_loop_stretches_every_interval_alike() -> None:
    """Twenty services every 100 ms, each probe holding the loop 10 ms: twice what it can do.
    Every service is slowed down by the same factor (none starved), said once; when probes get
    cheap again the factor comes back to 1 and the grid is a grid again."""
    clock = AutoClock()
    recorder = Recorder(clock)
    cost = {"s": 0.010}

    def busy(name: str) -> None:
        clock.now += cost["s"]

    recorder.on_call = busy
    changes: list[PaceChange] = []
    scheduler = Scheduler(
        recorder, clock=clock, sleep=clock.sleep, pace=Pace(window=1.0), on_pace=changes.append
    )
    names = [f"svc-{i:02d}" for i in range(20)]
    for name in names:
        scheduler.add(name, 0.1)
    start = clock.now
    stretches: list[float] = []

    def phases() -> None:
        stretches.append(scheduler.stats.stretch)
        if clock.now - start > 60 and cost["s"]:
            cost["s"] = 0.0  # the load goes away
            for calls in recorder.calls.values():
                calls.clear()
        if clock.now - start > 150:
            scheduler.stop()

    clock.hooks.append(phases)
    await run_until(scheduler)
    # Overloaded once, for a while; then back at 1.
    assert [c.overloaded for c in changes] == [True, False]
    began, ended = changes
    assert began.asked == pytest.approx(200.0)
    assert 1.5 < began.stretch < 4  # ~200 asked / ~100 done, with some slack
    assert ended.stretch >= began.stretch
    assert max(stretches) > 1.5
    assert scheduler.stats.stretch == 1.0 and scheduler.stats.overloads == 1
    # Since the load went away, every service probed alike, on a grid of 100 ms again.
    counts = [len(recorder.calls[name]) for name in names]
    assert min(counts) / max(counts) > 0.95, counts
    tail = recorder.calls[names[0]][-20:]
    assert [round(b - a, 6) for a, b in itertools.pairwise(tail)] == [0.1] * 19


async def test_while_overloaded_no_service_starves() -> None:
    clock = AutoClock()
    recorder = Recorder(clock)
    recorder.on_call = lambda name: setattr(clock, "now", clock.now + 0.004)
    scheduler = Scheduler(recorder, clock=clock, sleep=clock.sleep, pace=Pace(window=1.0))
    names = [f"svc-{i:03d}" for i in range(200)]
    for name in names:
        scheduler.add(name, 0.25)  # 800 probes/s asked, 250/s possible
    start = clock.now
    stretches: list[float] = []
    clock.hooks.append(lambda: stretches.append(scheduler.stats.stretch))
    clock.hooks.append(stop_when(scheduler, lambda: clock.now - start > 60))
    await run_until(scheduler)
    assert scheduler.stats.overloads == 1  # one episode, however the factor moved in it
    assert min(stretches[len(stretches) // 2 :]) > 2.5
    assert scheduler.stats.stretch == 1.0  # stopped: nothing is asked any more
    counts = [len(recorder.calls[name]) for name in names]
    assert min(counts) / max(counts) > 0.8, (min(counts), max(counts))
    assert min(counts) > 0


async def test_slots_wait_for_a_free_place_and_a_lack_of_places_is_an_overload() -> None:
    """Fifty services every 100 ms, at most five probes at once, each answering after 50 ms:
    100 probes/s possible of 500 asked, with the loop idle (slow targets, not CPU). Never more
    than five at once; the wait shows as lateness, so every interval is stretched alike."""
    in_flight = {"now": 0, "most": 0}
    calls: collections.Counter[str] = collections.Counter()

    async def probe(name: str) -> None:
        calls[name] += 1
        in_flight["now"] += 1
        in_flight["most"] = max(in_flight["most"], in_flight["now"])
        try:
            await asyncio.sleep(0.05)
        finally:
            in_flight["now"] -= 1

    changes: list[PaceChange] = []
    scheduler = Scheduler(probe, pace=Pace(window=0.5), on_pace=changes.append, max_in_flight=5)
    names = [f"svc-{i:02d}" for i in range(50)]
    for name in names:
        scheduler.add(name, 0.1)
    runner = asyncio.create_task(scheduler.run())
    for _ in range(200):  # until overloaded, and a while in it
        await asyncio.sleep(0.05)
        if changes and sum(calls.values()) > 400:
            break
    scheduler.stop()
    await asyncio.wait_for(runner, 10)
    assert in_flight["most"] == 5
    assert changes and changes[0].overloaded, changes
    assert changes[0].stretch > 1.5  # at most doubled at once; it rises on while still late
    counts = [calls[name] for name in names]
    assert min(counts) > 0 and min(counts) / max(counts) > 0.5, counts


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        Scheduler(_never, max_in_flight=0)


async def test_a_running_probe_makes_its_slots_skip_and_count() -> None:
    clock = AutoClock()
    recorder = Recorder(clock)
    recorder.hold = {"slow"}
    scheduler = Scheduler(recorder, clock=clock, sleep=clock.sleep)
    scheduler.add("slow", 1.0)
    scheduler.add("fast", 1.0)
    start = clock.now

    def after_ten_intervals() -> None:
        if clock.now - start > 10.5:
            assert scheduler.in_flight("slow") and not scheduler.in_flight("fast")
            recorder.release.set()
            scheduler.stop()

    clock.hooks.append(after_ten_intervals)
    await run_until(scheduler)
    assert len(recorder.calls["slow"]) == 1
    assert len(recorder.calls["fast"]) >= 10
    assert recorder.max_active == 1
    assert scheduler.stats.skipped_overlap >= 9
    assert not scheduler.in_flight("slow")  # run() waited for it before returning


async def test_a_probe_that_overran_its_slots_is_followed_at_once_by_one_more() -> None:
    clock = ManualClock()
    recorder = Recorder(clock)
    recorder.hold = {"hung"}
    scheduler = Scheduler(recorder, clock=clock, sleep=clock.sleep)
    scheduler.add("hung", 1.0)
    runner = asyncio.create_task(scheduler.run())
    first = scheduler.next_due("hung")
    assert first is not None
    await advance(clock, first - clock.now)
    assert len(recorder.calls["hung"]) == 1
    for _ in range(7):  # three and a half intervals: three slots come while it hangs
        await advance(clock, 0.5)
    assert len(recorder.calls["hung"]) == 1 and scheduler.stats.skipped_overlap == 3
    recorder.hold.clear()
    recorder.release.set()  # it ends half-way between two slots ...
    await settle()
    # ... and one more probe starts that moment: not at the next slot, not one per slot missed.
    assert recorder.calls["hung"][1:] == [first + 3.5]
    assert scheduler.stats.after_overrun == 1
    await advance(clock, 0.5)
    await advance(clock, 1.0)
    # Then the grid again.
    assert recorder.calls["hung"][2:] == [first + 4.0, first + 5.0]
    assert recorder.max_active == 1
    scheduler.stop()
    await asyncio.wait_for(runner, 5)


async def test_probe_now_runs_at_once_without_moving_the_schedule() -> None:
    clock = ManualClock()
    recorder = Recorder(clock)
    scheduler = Scheduler(recorder, clock=clock, sleep=clock.sleep)
    start = clock.now
    scheduler.add("api", 100.0)
    runner = asyncio.create_task(scheduler.run())
    await settle()
    assert recorder.calls["api"] == []
    assert scheduler.probe_now("api") is True
    assert scheduler.probe_now("nope") is False
    await settle()
    assert recorder.calls["api"] == [start]  # no time passed
    await advance(clock, first_offset("api", 100.0))
    await advance(clock, 100.0)
    assert recorder.calls["api"] == [
        start,
        start + first_offset("api", 100.0),
        start + first_offset("api", 100.0) + 100.0,
    ]
    assert (scheduler.stats.started, scheduler.stats.probed_now) == (3, 1)
    scheduler.stop()
    await asyncio.wait_for(runner, 5)


async def test_probe_now_coalesces_with_a_running_probe() -> None:
    clock = ManualClock()
    recorder = Recorder(clock)
    recorder.hold = {"api"}
    scheduler = Scheduler(recorder, clock=clock, sleep=clock.sleep)
    scheduler.add("api", 100.0)
    runner = asyncio.create_task(scheduler.run())
    scheduler.probe_now("api")
    await settle()
    assert scheduler.in_flight("api")
    for _ in range(3):  # asked three times while it runs
        assert scheduler.probe_now("api")
    await settle()
    assert len(recorder.calls["api"]) == 1
    recorder.hold.clear()
    recorder.release.set()
    await settle()
    # One more probe, sent after the asks, for all three of them; never two at once.
    assert len(recorder.calls["api"]) == 2
    assert recorder.max_active == 1
    assert not scheduler.in_flight("api")
    scheduler.stop()
    await asyncio.wait_for(runner, 5)


async def test_remove_stops_a_service() -> None:
    clock = ManualClock()
    recorder = Recorder(clock)
    scheduler = Scheduler(recorder, clock=clock, sleep=clock.sleep)
    scheduler.add("gone", 1.0)
    scheduler.add("kept", 1.0)
    runner = asyncio.create_task(scheduler.run())
    for _ in range(3):
        await advance(clock, 1.0)
    assert len(recorder.calls["gone"]) == len(recorder.calls["kept"]) == 3
    scheduler.remove("gone")
    assert "gone" not in scheduler
    assert scheduler.probe_now("gone") is False
    for _ in range(3):
        await advance(clock, 1.0)
    assert len(recorder.calls["gone"]) == 3
    assert len(recorder.calls["kept"]) == 6
    scheduler.stop()
    await asyncio.wait_for(runner, 5)


async def test_a_failing_run_probe_does_not_stop_the_schedule() -> None:
    clock = AutoClock()
    calls: list[float] = []

    async def explode(name: str) -> None:
        calls.append(clock.now)
        raise RuntimeError("bug in the caller")

    scheduler = Scheduler(explode, clock=clock, sleep=clock.sleep)
    scheduler.add("api", 1.0)
    clock.hooks.append(stop_when(scheduler, lambda: len(calls) >= 5))
    await run_until(scheduler)
    assert len(calls) >= 5
    assert scheduler.stats.errors == len(calls)


async def test_one_timer_loop_not_a_task_per_service() -> None:
    clock = ManualClock()
    scheduler = Scheduler(Recorder(clock), clock=clock, sleep=clock.sleep)
    for i in range(500):
        scheduler.add(f"svc-{i}", 3600.0 + i)
    before = len(asyncio.all_tasks())
    runner = asyncio.create_task(scheduler.run())
    await settle()
    assert len(asyncio.all_tasks()) - before <= 3  # the loop and its sleep
    scheduler.stop()
    await asyncio.wait_for(runner, 5)


async def test_stop_before_run_returns_at_once() -> None:
    scheduler = Scheduler(Recorder(lambda: 0.0))
    scheduler.add("api", 1.0)
    scheduler.stop()
    await asyncio.wait_for(scheduler.run(), 5)


async def test_cancelling_run_cancels_probes_in_flight() -> None:
    clock = ManualClock()
    recorder = Recorder(clock)
    recorder.hold = {"api"}
    scheduler = Scheduler(recorder, clock=clock, sleep=clock.sleep)
    scheduler.add("api", 10.0)
    runner = asyncio.create_task(scheduler.run())
    scheduler.probe_now("api")
    await settle()
    assert scheduler.in_flight("api")
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    await settle()
    assert not scheduler.in_flight("api")


def test_interval_must_be_positive() -> None:
    scheduler = Scheduler(Recorder(lambda: 0.0))
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            scheduler.add("api", bad)


async def test_real_clock() -> None:
    """The defaults (time.monotonic, asyncio.sleep): probes come, stop ends the loop."""
    calls: list[str] = []
    scheduler = Scheduler(lambda name: _record(calls, name))
    scheduler.add("a", 0.05)
    scheduler.add("b", 0.05)
    runner = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.5)
    scheduler.stop()
    await asyncio.wait_for(runner, 5)
    assert calls.count("a") >= 3 and calls.count("b") >= 3
    assert scheduler.stats.started == len(calls)


async def _record(calls: list[str], name: str) -> None:
    calls.append(name)

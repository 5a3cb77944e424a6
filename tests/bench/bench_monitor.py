"""The monitor under load: a real Monitor probing 1,000 services every second.

A target in its own process (tests/probes/servers.py) answers /slow/50 after 50 ms. A second
process (this module with --child, so its CPU is measured alone) runs `open_monitor` on a Config
of 1,000 HTTP services pointing at it: check_interval 1 s, max_retries 3, fsync "batch" (the
default), the log in a temporary directory. After a warm-up it measures for SECONDS:

* the monitor process's CPU (user + sys, all threads, os.times) as % of one core, and probes/s;
* the log's own writing: the store instance's `append` and `flush` are wrapped (here, in the
  child, not in hbsm/) and their thread CPU time (time.thread_time) summed, as % of one core;
  wall time in flush (the fsync waits) is reported beside it;
* from the log: recorded latency - 50 ms per probe, p50 and p99;
* the schedule: Scheduler.stats (skipped_overlap, skipped_behind, late_max); per service the
  mean interval between consecutive probes, the slope of ts against probe index (least squares)
  as drift per hour, and overlaps seen in the log (a probe that started, ts - latency, before
  the previous probe of that service had finished).

Goals: the log's writing < 5% of one core; ≥ 5,000 probes/s on one core (measured here as
CPU per probe: 1 / (CPU s per probe)); p99 latency error ≤ 5 ms; no overlap, no drift.
This is a 30 s run: a ten-minute drift run does not fit `just bench`'s ten-minute budget.

Detection (the base case). 50 services break one by one during the run, 0.37 s apart: their
URL is the target's /breaks/<t>/50, which answers as /slow/50 until the wall clock reads t and
500 (after the same 50 ms) from then on, so each break time is known exactly. A failed probe of
a healthy service makes it `degraded` at once (hbsm/graph.py: `probe_failed` from healthy);
the max_retries-th failure in a row (3 here) decides the repair run (`repairing` and its first
`repair.started`). The child wraps the store's `append` and the repair runner's `run_step` to
note wall times; the log gives each break's first failed probe (its `ts`: when the answer was
known). Figures, over the broken services that were healthy before their break:
* break -> `degraded` recorded (appended to the log by the loop): p99 ≤ check_interval +
  probe timeout + 50 ms, the goal as set (a hang would take the timeout; a 500 takes 50 ms);
* break -> first failing answer: the wait for the service's next slot plus the target's delay;
* failing answer -> `degraded` recorded: the monitor's own part, p99 ≤ 50 ms;
* repair decision (its `repair.started` appended) -> the step's coroutine running: p99 ≤ 20 ms,
  the write-ahead flush (write + fsync) in between.
The broken services are left out of the latency, interval and drift figures (repairs bend their
schedule).

Load cases (`run` runs them all; HBSM_BENCH_MONITOR_CASES=base,10k,2k picks some, `--case`
runs one alone): 10,000 services every 10 s (1,000 probes/s) measured over 60 s, the window
the drift figure asks for (a service is probed 6 times in it), after 12 s of warm-up; 2,000
services every second (2,000 probes/s) over 30 s. Each: CPU % of a core, latency error p99,
drift. All three take about 3 minutes.

    python -m tests.bench.bench_monitor [--case base|10k|2k] [--seconds S] [--profile FILE]

After the monitor has started, the child calls gc.collect(); gc.freeze(), as `hbsm run` does.
HBSM_BENCH_GC_FREEZE=0 in the environment leaves that out, to see what the collector's pauses
cost the latency figures.

--profile additionally runs the child again under `py-spy record --format raw` for 10 s and
prints the top frames (self and inclusive).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import gc
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench import floor_client, monit_peer
from tests.bench.bench_probes import Target
from tests.bench.context import Context
from tests.bench.results import Record, Results

__all__ = ["Schedule", "main", "percentile", "run", "schedule_of", "slope"]

SERVICES = 1_000
INTERVAL = 1.0
DELAY_MS = 50
SECONDS = 30.0
WARMUP = 3.0
TIMEOUT = 5.0  # each probe's timeout
LOG_CPU_GOAL = 5.0  # % of one core
RATE_GOAL = 5_000  # probes/s on one core
P99_GOAL_MS = 5.0
FLOOR_RATIO_GOAL = 2.0  # CPU per probe against the floor client's per request
PROFILE_SECONDS = 10
# Detection: the monitor's own part of it (a failing answer to `degraded` recorded), and a
# repair decision to its step started, the write-ahead flush between them included.
DETECT_SLACK_MS = 50.0
REPAIR_START_GOAL_MS = 20.0
# Breaks: the first this long after the monitor was configured (start-up and warm-up done),
# then one every BREAK_EVERY (not a multiple of the interval: the breaks fall at every phase
# of a service's slot).
BREAK_LEAD = 4.0
BREAK_EVERY = 0.37


@dataclass(frozen=True)
class Case:
    """One run of the monitor: `services` HTTP services probed every `interval` s, measured for
    `seconds` after `warmup`; `breaks` of them break, one by one, during the run."""

    name: str
    services: int
    interval: float
    seconds: float
    warmup: float
    breaks: int = 0

    @property
    def label(self) -> str:
        return f"{self.services:,} services every {self.interval:g} s"


# The base case (its figures keep their names) measures detection too; the load cases: 1,000
# probes/s as 10,000 services every 10 s, over 60 s (the drift figure's window; a service is
# probed 6 times in it), and 2,000 probes/s as 2,000 services every second, over 30 s.
CASES: dict[str, Case] = {
    "base": Case("base", SERVICES, INTERVAL, SECONDS, WARMUP, breaks=50),
    "10k": Case("10k", 10_000, 10.0, 60.0, 12.0),
    "2k": Case("2k", 2_000, 1.0, 30.0, WARMUP),
}
ROOT = Path(__file__).resolve().parents[2]


# --- the child: runs the monitor, prints one JSON line of measurements ------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (1..99) of values; nan for none."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def slope(xs: list[float], ys: list[float]) -> float:
    """The least-squares slope of ys against xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


@dataclass
class Schedule:
    """How the probes of each service were spaced in a window of time (from the log)."""

    intervals: list[float]  # between consecutive probes of one service, every service
    slopes: list[float]  # per service with >= 3 probes: ts against probe index, s per probe
    overlaps: int  # probes that started before the previous one of their service had finished


def schedule_of(
    per_service: Iterable[Sequence[tuple[float, float]]], t0: float, t1: float, interval: float
) -> Schedule:
    """The Schedule of probes given per service as (ts, latency_ms) in order, where ts is when
    a probe finished: those with t0 - interval <= ts < t1 (one interval before the window, so
    its first interval is counted)."""
    intervals, slopes, overlaps = [], [], 0
    for probes in per_service:
        window = [(ts, lat) for ts, lat in probes if t0 - interval <= ts < t1]
        for (ts0, _), (ts1, lat1) in itertools.pairwise(window):
            intervals.append(ts1 - ts0)
            overlaps += ts1 - lat1 / 1000 < ts0
        if len(window) >= 3:
            slopes.append(slope([float(i) for i in range(len(window))], [t for t, _ in window]))
    return Schedule(intervals, slopes, overlaps)


def break_times(case: Case, now: float) -> dict[str, float]:
    """The services that break, by name, each with its wall time: spread over the services."""
    step = max(1, case.services // max(case.breaks, 1))
    return {
        f"svc-{i * step:04d}": now + BREAK_LEAD + case.warmup + i * BREAK_EVERY
        for i in range(case.breaks)
    }


async def _child(port: int, logdir: Path, case: Case) -> dict[str, Any]:
    from hbsm.config.model import Config, LogConfig, ProbeConfig, ServiceConfig
    from hbsm.events import Probe, RepairStarted, Transition
    from hbsm.log.reader import read_history
    from hbsm.monitor.build import open_monitor

    seconds, warmup = case.seconds, case.warmup
    url = f"http://127.0.0.1:{port}/slow/{DELAY_MS}"
    breaks = break_times(case, time.time())

    def url_of(name: str) -> str:
        at = breaks.get(name)
        return url if at is None else f"http://127.0.0.1:{port}/breaks/{at * 1000:.0f}/{DELAY_MS}"

    config = Config(
        check_interval=case.interval,
        max_retries=3,
        log=LogConfig(path=str(logdir / "heartbeat.jsonl"), fsync="batch"),
        services=[
            ServiceConfig(name=name, url=url_of(name), probe=ProbeConfig(timeout=TIMEOUT))
            for name in (f"svc-{i:04d}" for i in range(case.services))
        ],
    )
    store, monitor = open_monitor(config)

    # The log's writing, by thread CPU time (the monitor appends from its one loop thread).
    spent = {"append_cpu": 0.0, "flush_cpu": 0.0, "flush_wall": 0.0, "appends": 0, "flushes": 0}
    append, flush = store.append, store.flush
    # When (wall clock) the broken services' decisions were appended: `degraded`, and the
    # repair run's first step; and when that step began to run.
    degraded_at: dict[str, float] = {}
    decided_at: dict[str, tuple[float, float]] = {}  # (appended, the fact's ts)
    step_at: dict[str, float] = {}

    def timed_append(events: Any) -> Any:
        t = time.thread_time()
        try:
            return append(events)
        finally:
            spent["append_cpu"] += time.thread_time() - t
            spent["appends"] += 1
            if breaks and len(events) > 1:  # a fact and its decisions
                _decisions(events)

    def _decisions(events: Any) -> None:
        now = time.time()
        for e in events:
            name = getattr(e, "service", None)
            if name not in breaks or now < breaks[name]:
                continue
            if type(e) is Transition and e.dst == "degraded":
                degraded_at.setdefault(name, now)
            elif type(e) is RepairStarted and e.index == 0:
                decided_at.setdefault(name, (now, e.ts))

    run_step = monitor.repairs.run_step

    async def timed_run_step(service: Any, started: Any, **kwargs: Any) -> Any:
        if service.name in decided_at:
            step_at.setdefault(service.name, time.time())
        return await run_step(service, started, **kwargs)

    monitor.repairs.run_step = timed_run_step  # type: ignore[method-assign]

    def timed_flush() -> None:
        t, w = time.thread_time(), time.perf_counter()
        try:
            flush()
        finally:
            spent["flush_cpu"] += time.thread_time() - t
            spent["flush_wall"] += time.perf_counter() - w
            spent["flushes"] += 1

    store.append = timed_append  # type: ignore[method-assign]
    store.flush = timed_flush  # type: ignore[method-assign]

    # What delays a probe's coroutine after its answer arrived: the loop's lag (a task asking
    # for 10 ms sleeps, its overshoot recorded) and the garbage collector's pauses.
    lags: list[float] = []
    pauses: list[float] = []
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - gc_started[0])

    async def lag_probe() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t - 0.01)

    await monitor.start()
    if os.environ.get("HBSM_BENCH_GC_FREEZE", "1") != "0":  # as `hbsm run` does after start()
        gc.collect()
        gc.freeze()
    await asyncio.sleep(warmup)
    gc.callbacks.append(on_gc)
    lagger = asyncio.create_task(lag_probe())
    print("measuring", file=sys.stderr, flush=True)  # the parent may start py-spy now
    before, spent_before = os.times(), dict(spent)
    started_stats = monitor.scheduler.stats.started
    w0, t0 = time.perf_counter(), time.time()
    await asyncio.sleep(seconds)
    after, spent_after = os.times(), dict(spent)
    lagger.cancel()
    gc.callbacks.remove(on_gc)
    elapsed, t1 = time.perf_counter() - w0, time.time()
    stats = monitor.scheduler.stats
    scheduled = stats.started - started_stats
    sched = {k: getattr(stats, k) for k in ("skipped_overlap", "skipped_behind", "errors")}
    sched["late_max"] = stats.late_max
    await monitor.stop()
    store.close()

    cpu = (after.user + after.system) - (before.user + before.system)
    delta = {k: spent_after[k] - spent_before[k] for k in spent}
    per_service: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    errors, failed = [], 0
    first_failed: dict[str, float] = {}  # a broken service's first failed answer after its break
    healthy_before: set[str] = set()  # broken services seen healthy before their break
    for event in read_history(logdir / "heartbeat.jsonl"):
        if isinstance(event, Probe):
            name = event.service
            if name in breaks:
                if not event.ok and event.ts >= breaks[name]:
                    first_failed.setdefault(name, event.ts)
                continue  # their schedule bends to the repairs: not in the figures below
            per_service[name].append((event.ts, event.latency_ms or 0.0))
            if t0 <= event.ts < t1:
                if event.ok and event.latency_ms is not None:
                    errors.append(event.latency_ms - DELAY_MS)
                else:
                    failed += 1
        elif isinstance(event, Transition) and event.ts < breaks.get(event.service, 0.0):
            if event.dst == "healthy":
                healthy_before.add(event.service)
            else:
                healthy_before.discard(event.service)
    schedule = schedule_of(per_service.values(), t0, t1, case.interval)
    intervals = schedule.intervals
    return {
        "case": case.name,
        "seconds": elapsed,
        "cpu_s": cpu,
        "probes": len(errors) + failed,
        "failed": failed,
        "scheduled": scheduled,
        "log": delta,
        "p50": percentile(errors, 50),
        "p99": percentile(errors, 99),
        "max_err": max(errors, default=float("nan")),
        "interval_mean": statistics.fmean(intervals),
        "interval_p1": percentile(intervals, 1),
        "interval_p99": percentile(intervals, 99),
        "slope": statistics.fmean(schedule.slopes),
        "overlaps": schedule.overlaps,
        "sched": sched,
        "lag_p99_ms": percentile(lags, 99) * 1e3,
        "lag_max_ms": max(lags, default=float("nan")) * 1e3,
        "gc_pauses": len(pauses),
        "gc_max_ms": max(pauses, default=0.0) * 1e3,
        "gc_total_ms": sum(pauses) * 1e3,
        "breaks": {
            name: {
                "at": at,
                "healthy_before": name in healthy_before,
                "first_failed": first_failed.get(name),
                "degraded": degraded_at.get(name),
                "decided": decided_at.get(name, (None, None))[0],
                "decided_fact": decided_at.get(name, (None, None))[1],
                "step": step_at.get(name),
            }
            for name, at in breaks.items()
        },
    }


# --- the parent -------------------------------------------------------------------------------


def measure(case: Case = CASES["base"], profile: Path | None = None) -> dict[str, Any]:
    with Target() as target, tempfile.TemporaryDirectory(prefix="hbsm-bench-monitor-") as tmp:
        # The base case's floor first, against the same target, over as long a window.
        floor = None
        if case.name == "base":
            floor = floor_client.measure(
                target.port, case.services, case.interval, case.seconds, case.warmup
            )
        args = [str(target.port), tmp, json.dumps(dataclasses.asdict(case))]
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.bench_monitor", "--child", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert child.stdout is not None and child.stderr is not None
        for line in child.stderr:  # wait for the warm-up to end
            if line.strip() == "measuring":
                break
        spy = None
        if profile is not None:
            spy = subprocess.Popen(
                [
                    *_py_spy(),
                    "record",
                    # Not stopping the process to sample: stops land on syscall returns, which
                    # biases the profile towards select, send and clock calls.
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--rate",
                    "100",
                    "--duration",
                    str(PROFILE_SECONDS),
                    "--output",
                    str(profile),
                    "--pid",
                    str(child.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        out, err = child.communicate(timeout=case.seconds + case.warmup + 180)
        if spy is not None:
            spy.wait(30)
        if child.returncode != 0:
            raise RuntimeError(f"the monitor child failed:\n{err[-2000:]}")
        measured: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        measured["target_cpu"] = target.cpu_seconds()
        measured["floor"] = floor
    if case.name == "base":
        # Monit last, on a target of its own (it checks one service after another: a fast one).
        measured["monit"] = monit_peer.measure(case.services, min(case.seconds, 20.0))
    return measured


def _py_spy() -> list[str]:
    local = Path(sys.executable).parent / "py-spy"
    return [str(local)] if local.exists() else [shutil.which("py-spy") or "py-spy"]


def report(
    m: dict[str, Any], results: Results, case: Case = CASES["base"], profiled: bool = False
) -> None:
    """The figures of a run. The base case's keep their names; a load case's name their case."""
    if case.name != "base":
        report_load(m, results, case)
        return
    secs, log = m["seconds"], m["log"]
    rate = m["probes"] / secs
    cpu_pct = m["cpu_s"] / secs * 100
    log_cpu_pct = (log["append_cpu"] + log["flush_cpu"]) / secs * 100
    cpu_us = m["cpu_s"] / max(m["probes"], 1) * 1e6
    per_core = 1e6 / cpu_us
    drift_h = (m["slope"] - case.interval) / case.interval * 3600
    sched = m["sched"]
    caveat = "; under py-spy (CPU inflated)" if profiled else ""
    add = results.add
    add(
        Record(
            f"monitor probes/s, {case.label}",
            rate,
            "probes/s",
            baseline=case.services / case.interval,
            ratio=rate / (case.services / case.interval),
            bench="monitor",
            note=(
                f"{m['probes']:,} probes in {secs:.1f} s ({m['failed']} failed), "
                f"{m['scheduled']:,} started by the scheduler{caveat}"
            ),
        )
    )
    add(
        Record(
            "monitor process CPU, % of one core",
            cpu_pct,
            "%",
            bench="monitor",
            note=f"user + sys over {secs:.1f} s, all threads",
        )
    )
    add(
        Record(
            "monitor log writing (append + flush) CPU, % of one core",
            log_cpu_pct,
            "%",
            baseline=cpu_pct,
            ratio=log_cpu_pct / cpu_pct,
            goal=f"< {LOG_CPU_GOAL:g}%",
            met=log_cpu_pct < LOG_CPU_GOAL,
            bench="monitor",
            note=(
                f"thread CPU: append {log['append_cpu'] * 1e3:.0f} ms over {log['appends']:,} "
                f"calls, flush {log['flush_cpu'] * 1e3:.0f} ms over {log['flushes']:,} "
                f"(fsync per flush, wall {log['flush_wall'] * 1e3:.0f} ms); baseline: the "
                "whole process"
            ),
        )
    )
    add(
        Record(
            "monitor CPU per probe",
            cpu_us,
            "us",
            bench="monitor",
            note=f"process CPU / probes: a core would do ~{per_core:,.0f} probes/s",
        )
    )
    floor = m["floor"]
    floor_us = floor["cpu_s"] / max(floor["requests"], 1) * 1e6
    add(
        Record(
            "monitor CPU per probe / the floor (asyncio + httptools client)",
            cpu_us,
            "us",
            baseline=floor_us,
            ratio=cpu_us / floor_us,
            goal=f"<= {FLOOR_RATIO_GOAL:g}x",
            met=cpu_us / floor_us <= FLOOR_RATIO_GOAL,
            bench="monitor",
            note=(
                f"floor: tests/bench/floor_client.py, the same {SERVICES:,} GETs every "
                f"{INTERVAL:g} s against the same target, {floor['requests']:,} answered "
                f"({floor['failed']} not 200) in {floor['seconds']:.1f} s, CPU alone; the "
                "monitor's figure includes its schedule, events, log and state machines"
            ),
        )
    )
    monit = m.get("monit")
    if monit is None:
        add(
            Record(
                "Monit CPU per check",
                float("nan"),
                "us",
                bench="monitor",
                note="skipped: "
                "monit is not installed and could not be (apt-get install monit, as root)",
            )
        )
    else:
        monit_us = monit["cpu_s"] / max(monit["checks"], 1) * 1e6
        add(
            Record(
                "monitor CPU per probe / Monit's CPU per check",
                cpu_us,
                "us",
                baseline=monit_us,
                ratio=cpu_us / monit_us,
                bench="monitor",
                note=(
                    f"{monit['version']}, {SERVICES:,} HTTP checks with `set daemon 1`: it made "
                    f"{monit['checks'] / monit['seconds']:,.0f} checks/s (one after another; "
                    f"hbsm {rate:,.0f}/s), {monit['cpu_s']:.2f} s CPU over {monit['seconds']:.0f} s"
                ),
            )
        )
    add(
        Record(
            "monitor probes/s per core (1 / CPU per probe)",
            per_core,
            "probes/s",
            goal=f">= {RATE_GOAL:,}/s",
            met=per_core >= RATE_GOAL,
            bench="monitor",
        )
    )
    add(
        Record(
            f"monitor latency error p50, recorded - {DELAY_MS} ms",
            m["p50"],
            "ms",
            bench="monitor",
            note=f"max {m['max_err']:.1f} ms",
        )
    )
    add(
        Record(
            f"monitor latency error p99, recorded - {DELAY_MS} ms",
            m["p99"],
            "ms",
            baseline=m["floor"]["p99_err_ms"],
            ratio=m["p99"] / m["floor"]["p99_err_ms"],
            goal=f"<= {P99_GOAL_MS:g} ms",
            met=m["p99"] <= P99_GOAL_MS,
            bench="monitor",
            note=(
                "baseline: the floor client's p99 in the same run (the machine's own noise); "
                f"event loop lag (10 ms sleeps' overshoot) p99 {m['lag_p99_ms']:.1f} ms, max "
                f"{m['lag_max_ms']:.1f} ms; {m['gc_pauses']} GC pauses, max "
                f"{m['gc_max_ms']:.1f} ms, total {m['gc_total_ms']:.0f} ms"
            ),
        )
    )
    add(
        Record(
            "monitor mean interval between probes of a service",
            m["interval_mean"],
            "s",
            baseline=case.interval,
            ratio=m["interval_mean"] / case.interval,
            bench="monitor",
            note=f"p1 {m['interval_p1']:.3f} s, p99 {m['interval_p99']:.3f} s",
        )
    )
    add(
        Record(
            "monitor drift (slope of ts vs probe index), s per hour",
            drift_h,
            "s/h",
            goal="~0 (no drift)",
            met=abs(drift_h) < 3.6,  # under 0.1% of the interval
            bench="monitor",
            note=f"mean per-service slope {m['slope']:.5f} s per probe, {m['seconds']:.0f} s run",
        )
    )
    overlaps = m["overlaps"] + sched["skipped_overlap"]
    add(
        Record(
            "monitor overlapping probes of one service",
            float(overlaps),
            "probes",
            goal="0",
            met=m["overlaps"] == 0,
            bench="monitor",
            note=(
                f"in the log: {m['overlaps']}; Scheduler.stats: skipped_overlap "
                f"{sched['skipped_overlap']}, skipped_behind {sched['skipped_behind']}, "
                f"late_max {sched['late_max'] * 1e3:.1f} ms, errors {sched['errors']}"
            ),
        )
    )
    report_detection(m, results, case)


def report_detection(m: dict[str, Any], results: Results, case: Case) -> None:
    """Detection and repair start, from the services broken during the run (see the module's
    docstring for the definitions)."""
    breaks = m["breaks"]
    if not breaks:
        return
    usable = {n: b for n, b in breaks.items() if b["healthy_before"] and b["degraded"]}
    left = len(breaks) - len(usable)
    why = f"; {left} of {len(breaks)} left out (not healthy before their break, or not degraded)"
    sample = f"{len(usable)} services broken one by one{why if left else ''}"
    detect = [(b["degraded"] - b["at"]) * 1e3 for b in usable.values()]
    answer = [b["first_failed"] - b["at"] for b in usable.values() if b["first_failed"]]
    own = [(b["degraded"] - b["first_failed"]) * 1e3 for b in usable.values() if b["first_failed"]]
    starts = [
        (b["step"] - b["decided"]) * 1e3
        for b in usable.values()
        if b["decided"] is not None and b["step"] is not None
    ]
    goal_ms = (case.interval + TIMEOUT) * 1e3 + DETECT_SLACK_MS
    add = results.add
    if detect:
        p99 = percentile(detect, 99)
        add(
            Record(
                "monitor detection p99, break -> `degraded` recorded",
                p99,
                "ms",
                goal=f"<= {goal_ms:,.0f} ms",
                met=p99 <= goal_ms,
                bench="monitor",
                note=(
                    f"p50 {percentile(detect, 50):,.0f} ms, max {max(detect):,.0f} ms; goal: "
                    f"check_interval {case.interval:g} s + probe timeout {TIMEOUT:g} s + "
                    f"{DETECT_SLACK_MS:g} ms; {sample}"
                ),
            )
        )
    if answer:
        add(
            Record(
                "monitor detection p99, break -> first failing answer",
                percentile(answer, 99) * 1e3,
                "ms",
                bench="monitor",
                note=(
                    f"p50 {percentile(answer, 50) * 1e3:,.0f} ms: the wait for the next slot "
                    f"(up to {case.interval:g} s) and the target's {DELAY_MS} ms"
                ),
            )
        )
    if own:
        p99 = percentile(own, 99)
        add(
            Record(
                "monitor detection p99, failing answer -> `degraded` recorded",
                p99,
                "ms",
                goal=f"<= {DETECT_SLACK_MS:g} ms",
                met=p99 <= DETECT_SLACK_MS,
                bench="monitor",
                note=f"p50 {percentile(own, 50):.2f} ms: the monitor's own part of detection",
            )
        )
    if starts:
        p99 = percentile(starts, 99)
        add(
            Record(
                "monitor repair decision -> step started p99",
                p99,
                "ms",
                goal=f"<= {REPAIR_START_GOAL_MS:g} ms",
                met=p99 <= REPAIR_START_GOAL_MS,
                bench="monitor",
                note=(
                    f"p50 {percentile(starts, 50):.2f} ms, max {max(starts):.2f} ms, "
                    f"{len(starts)} runs: `repair.started` appended -> its flush (fsync) -> "
                    "the step's coroutine running"
                ),
            )
        )
    else:
        add(Record("monitor repair decision -> step started p99", None, bench="monitor",
                   note="no repair step started in the run"))  # fmt: skip


def report_load(m: dict[str, Any], results: Results, case: Case) -> None:
    """A load case's figures, each named by its case."""
    secs = m["seconds"]
    rate = m["probes"] / secs
    cpu_pct = m["cpu_s"] / secs * 100
    log = m["log"]
    log_cpu_pct = (log["append_cpu"] + log["flush_cpu"]) / secs * 100
    cpu_us = m["cpu_s"] / max(m["probes"], 1) * 1e6
    drift_h = (m["slope"] - case.interval) / case.interval * 3600
    sched = m["sched"]
    want = case.services / case.interval
    add = results.add
    tag = f"monitor [{case.label}]"
    add(
        Record(
            f"{tag} probes/s",
            rate,
            "probes/s",
            baseline=want,
            ratio=rate / want,
            bench="monitor",
            note=f"{m['probes']:,} probes in {secs:.1f} s ({m['failed']} failed)",
        )
    )
    add(
        Record(
            f"{tag} process CPU, % of one core",
            cpu_pct,
            "%",
            bench="monitor",
            note=(
                f"{cpu_us:.0f} us per probe (~{1e6 / cpu_us:,.0f} probes/s a core); log "
                f"writing {log_cpu_pct:.1f}%; target process {m['target_cpu'] / secs:.0%}"
            ),
        )
    )
    add(
        Record(
            f"{tag} latency error p99",
            m["p99"],
            "ms",
            goal=f"<= {P99_GOAL_MS:g} ms",
            met=m["p99"] <= P99_GOAL_MS,
            bench="monitor",
            note=(
                f"p50 {m['p50']:.1f} ms, max {m['max_err']:.1f} ms; loop lag p99 "
                f"{m['lag_p99_ms']:.1f} ms; {m['gc_pauses']} GC pauses, max {m['gc_max_ms']:.1f} ms"
            ),
        )
    )
    add(
        Record(
            f"{tag} drift, s per hour",
            drift_h,
            "s/h",
            goal="~0 (no drift)",
            met=abs(drift_h) < 3.6,
            bench="monitor",
            note=(
                f"over {secs:.0f} s; mean interval {m['interval_mean']:.4f} s (p1 "
                f"{m['interval_p1']:.3f}, p99 {m['interval_p99']:.3f}); overlaps in the log "
                f"{m['overlaps']}; skipped_overlap {sched['skipped_overlap']}, skipped_behind "
                f"{sched['skipped_behind']}, late_max {sched['late_max'] * 1e3:.0f} ms"
            ),
        )
    )


def summarize_profile(path: Path, top: int = 12) -> str:
    """Top frames of a py-spy raw (collapsed) profile, by self and by inclusive samples."""
    own: collections.Counter[str] = collections.Counter()
    package: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " " + _short(f) for f in stack.split(";")]
        own[frames[-1]] += n
        package[frames[-1].rsplit("(", 1)[1].split("/")[0].rstrip(")")] += n
        for frame in set(frames):
            incl[frame] += n
    lines = [f"{total} samples; self, by package:"]
    lines += [f"  {n / total:6.1%}  {p}" for p, n in package.most_common(top)]
    lines.append("self, by function:")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines.append("inclusive:")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in incl.most_common(top * 3)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    where = frame.split(" (", 1)[1].rstrip(")") if " (" in frame else ""
    for marker in ("site-packages/", "lib/python3"):
        if marker in where:
            return "(" + where.split(marker, 1)[1].split(":")[0] + ")"
    return "(" + where.replace(str(ROOT) + "/", "").split(":")[0] + ")"


def chosen_cases() -> list[Case]:
    """The cases to run: HBSM_BENCH_MONITOR_CASES (comma-separated names), else all."""
    names = os.environ.get("HBSM_BENCH_MONITOR_CASES", "")
    picked = [n.strip() for n in names.split(",") if n.strip()] or list(CASES)
    unknown = [n for n in picked if n not in CASES]
    if unknown:
        raise SystemExit(
            f"HBSM_BENCH_MONITOR_CASES: no case {', '.join(unknown)} (cases: {', '.join(CASES)})"
        )
    return [CASES[n] for n in picked]


def run(ctx: Context) -> None:
    for case in chosen_cases():
        print(f"  case {case.name}: {case.label}, {case.seconds:g} s", file=sys.stderr, flush=True)
        report(measure(case), ctx.results, case)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_monitor")
    parser.add_argument("--case", choices=sorted(CASES), default="base", help="which run")
    parser.add_argument("--seconds", type=float, help="measured, after warm-up")
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of the child, 10 s")
    parser.add_argument("--child", nargs=3, metavar=("PORT", "LOGDIR", "CASE"))
    args = parser.parse_args(argv)
    if args.child:
        port, logdir, case_json = args.child
        case = Case(**json.loads(case_json))
        measured = asyncio.run(_child(int(port), Path(logdir), case))
        print(json.dumps(measured))
        return 0
    case = CASES[args.case]
    if args.seconds is not None:
        case = dataclasses.replace(case, seconds=args.seconds)
    results = Results()
    m = measure(case, profile=args.profile)
    report(m, results, case, profiled=args.profile is not None)
    results.print()
    if args.profile is not None:
        print("\nprofile:\n" + summarize_profile(args.profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

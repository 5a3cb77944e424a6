"""The soak's figures and checks: Records (tests/bench/results.py) whose `goal`/`met` are the
checks; the run fails if any is not met. Thresholds are tolerances of behaviour, not of speed,
except where a figure says otherwise: on a machine this small, latencies are reported, not
judged (a busy neighbour would fail them)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.bench.bench_monitor import percentile, schedule_of, slope
from tests.bench.results import Record, Results
from tests.soak.tally import LogTally, ServiceProbes

__all__ = ["Sample", "SoakRun", "figures"]

# All services: probes done / expected over the window. A repair holds its service's probes
# (its own verification probes decide), about one lost probe per repair: ~0.2% here.
PROBES_DONE_MIN = 0.98
# Services never failing: probes each within this many of window / interval.
PER_SERVICE_SLACK = 2
# As tests/bench/bench_monitor.py: the mean slope of ts against probe index within 0.1% of the
# interval (3.6 s an hour).
DRIFT_LIMIT_S_PER_H = 3.6
# Resident memory may grow this much from the end of the warm-up to the end of the run: the
# histories (LATENCY_HISTORY probes a service) are full by then, and nothing else should grow.
RSS_GROWTH_LIMIT = 0.10
API_RATE_MIN = 0.95  # requests answered / asked
DASHBOARD_LAG_LIMIT_S = 5.0  # it keeps up: never this far behind the log
DASHBOARD_CATCH_UP_S = 30.0  # and has read everything this soon after the monitor stopped
# An injected failure still unrepaired after this long (max_retries probes, a two-step ladder
# with a verification probe after each step, and room to spare) was missed.
REPAIR_DEADLINE_S = 30.0
ERROR_MARKERS = (" ERROR ", " CRITICAL ", "Traceback (most recent call last)")


@dataclass
class Sample:
    elapsed: float  # seconds since the measured run started
    rss: int
    hwm: int
    cpu_pct: float  # hbsm run, % of one core since the previous sample
    log_bytes: int
    events: int
    probes_per_s: float
    api: dict[str, Any]
    dashboard_lag_max: float | None
    dashboard_seq: int
    states: dict[str, int]


@dataclass
class SoakRun:
    """Everything the figures are made of."""

    services: list[str]
    interval: float
    seconds: float  # the measured run
    warmup: float
    window: tuple[float, float]  # wall-clock start and end of the measured run
    api_rate: float
    fail_rate: float
    tally: LogTally
    samples: list[Sample]
    api: dict[str, Any]
    dashboard_lags: list[float]
    dashboard_caught_up_s: float | None
    dashboard_alive: bool
    dashboard_stderr: str
    dashboard_cpu_pct: float
    monitor_exit: int | None
    monitor_stderr: str
    monitor_cpu_pct: float
    targets: dict[str, Any]
    verify_exit: int
    verify_seconds: float
    verify_output: str
    log_bytes: int
    segments: int
    helpers_cpu_pct: dict[str, float] = field(default_factory=dict)


def _lines(text: str, markers: tuple[str, ...]) -> list[str]:
    return [line for line in text.splitlines() if any(m in line for m in markers)]


def _fmt_counts(counts: dict[str, int] | Counter[str]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def figures(run: SoakRun) -> Results:
    results = Results()
    _schedule(run, results)
    _memory(run, results)
    _api(run, results)
    _dashboard(run, results)
    _faults(run, results)
    _log(run, results)
    return results


def _schedule(run: SoakRun, results: Results) -> None:
    add, tally = results.add, run.tally
    w0, w1 = run.window
    span = w1 - w0
    n = len(run.services)
    expected = n * span / run.interval
    per_second: Counter[int] = Counter()
    done = 0
    for probes in tally.probes.values():
        for ts in probes.ts:
            if w0 <= ts < w1:
                done += 1
                per_second[int(ts)] += 1
    ratio = done / expected if expected else 0.0
    add(
        Record(
            f"probes done, {n:,} services every {run.interval:g} s over {span:.0f} s",
            done,
            "probes",
            baseline=expected,
            ratio=ratio,
            goal=f">= {PROBES_DONE_MIN:.0%} of expected",
            met=ratio >= PROBES_DONE_MIN,
            bench="schedule",
            note=f"{tally.probes_failed:,} of {tally.probes_total:,} probes in the log failed",
        )
    )
    whole = [per_second[s] for s in range(int(w0) + 1, int(w1))]  # whole seconds only
    add(
        Record(
            "probes per second (by probe ts), median",
            statistics.median(whole) if whole else None,
            "probes/s",
            baseline=n / run.interval,
            bench="schedule",
            note=(
                f"min {min(whole, default=0):,}, p1 {percentile([float(x) for x in whole], 1):.0f},"
                f" max {max(whole, default=0):,} over {len(whole)} whole seconds"
            ),
        )
    )
    # The schedule proper, on the services that never failed: a repair holds a service's
    # probes (its verification probes decide), which is by design, not drift.
    steady = [p for p in tally.probes.values() if p.failed == 0]
    counts = [sum(w0 <= ts < w1 for ts in p.ts) for p in steady]
    per = span / run.interval
    lo, hi = min(counts, default=0), max(counts, default=0)
    add(
        Record(
            "probes per never-failing service, fewest .. most",
            lo,
            "probes",
            baseline=per,
            ratio=lo / per if per else None,
            goal=f"all within +-{PER_SERVICE_SLACK} of window / interval",
            met=bool(counts) and per - PER_SERVICE_SLACK <= lo and hi <= per + PER_SERVICE_SLACK,
            bench="schedule",
            note=f"{len(steady):,} services never failed; most {hi}, expected {per:.1f}",
        )
    )
    schedule = schedule_of((list(p.pairs()) for p in steady), w0, w1, run.interval)
    mean = statistics.fmean(schedule.intervals) if schedule.intervals else float("nan")
    add(
        Record(
            "mean interval between probes of a never-failing service",
            mean,
            "s",
            baseline=run.interval,
            ratio=mean / run.interval,
            bench="schedule",
            note=(
                f"p1 {percentile(schedule.intervals, 1):.3f} s, "
                f"p99 {percentile(schedule.intervals, 99):.3f} s"
            ),
        )
    )
    mean_slope = statistics.fmean(schedule.slopes) if schedule.slopes else float("nan")
    drift = (mean_slope - run.interval) / run.interval * 3600
    add(
        Record(
            "drift (mean slope of ts vs probe index), s per hour",
            drift,
            "s/h",
            goal=f"|drift| < {DRIFT_LIMIT_S_PER_H:g} s/h",
            met=abs(drift) < DRIFT_LIMIT_S_PER_H,
            bench="schedule",
            note=(
                f"mean per-service slope {mean_slope:.5f} s per probe, "
                f"{len(schedule.slopes):,} services"
            ),
        )
    )
    late = _lateness(steady, w0, w1, run.interval)
    add(
        Record(
            "probe start lateness (estimated), p99",
            percentile(late, 99) * 1e3 if late else None,
            "ms",
            bench="schedule",
            note=(
                f"p50 {percentile(late, 50) * 1e3:.1f} ms, max {max(late, default=0) * 1e3:.0f}"
                " ms: each start (ts - latency) against its service's grid, placed by its "
                "earliest start"
            ),
        )
    )
    add(
        Record(
            "overlapping probes of one service",
            schedule.overlaps,
            "probes",
            goal="0",
            met=schedule.overlaps == 0,
            bench="schedule",
        )
    )


def _lateness(
    services: Iterable[ServiceProbes], w0: float, w1: float, interval: float
) -> list[float]:
    """How late each probe started, estimated: a service's slots lie on a grid (first + k *
    interval, hbsm.probes' Scheduler) whose phase the log does not record, so the grid is
    placed by the service's least late start, and each start is measured against its slot."""
    late: list[float] = []
    for probes in services:
        starts = [ts - lat / 1000 for ts, lat in probes.pairs() if w0 <= ts < w1]
        if not starts:
            continue
        offsets = [s - round((s - starts[0]) / interval) * interval for s in starts]
        best = min(offsets)
        late += [o - best for o in offsets]
    return late


def _memory(run: SoakRun, results: Results) -> None:
    add = results.add
    after = [s for s in run.samples if s.elapsed >= run.warmup]
    if not after:
        add(Record("hbsm run RSS growth after warm-up", None, "%", goal="measured", met=False,
                   bench="memory", note="no sample after the warm-up"))  # fmt: skip
        return
    warm, end = after[0], run.samples[-1]
    minute = next((s for s in run.samples if s.elapsed >= 60), None)
    one_minute = "" if minute is None else f", at 1 min {minute.rss / 2**20:.1f} MB"
    growth = (end.rss - warm.rss) / warm.rss
    trend = ""
    if len(after) >= 3:
        per_minute = slope([s.elapsed / 60 for s in after], [s.rss / 1024 for s in after])
        trend = f"; trend after warm-up {per_minute:+.0f} KB/min"
    add(
        Record(
            f"hbsm run RSS growth, {warm.elapsed:.0f} s -> {end.elapsed:.0f} s",
            growth * 100,
            "%",
            goal=f"<= {RSS_GROWTH_LIMIT:.0%}",
            met=growth <= RSS_GROWTH_LIMIT,
            bench="memory",
            note=(
                f"RSS {warm.rss / 2**20:.1f} MB -> {end.rss / 2**20:.1f} MB, peak (VmHWM) "
                f"{end.hwm / 2**20:.1f} MB; at {run.samples[0].elapsed:.0f} s "
                f"{run.samples[0].rss / 2**20:.1f} MB{one_minute}{trend}"
            ),
        )
    )
    add(
        Record(
            "hbsm run CPU, % of one core",
            run.monitor_cpu_pct,
            "%",
            bench="memory",
            note="mean over the measured run; others: "
            + ", ".join(f"{k} {v:.0f}%" for k, v in run.helpers_cpu_pct.items()),
        )
    )


def _api(run: SoakRun, results: Results) -> None:
    add, api = results.add, run.api
    if not api:
        add(Record("API load", None, goal="finished", met=False, bench="api",
                   note="the load generator printed no totals"))  # fmt: skip
        return
    asked = api["rate"] * api["seconds"]
    routes = "; ".join(
        f"{route} {r['requests']:,} p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms"
        for route, r in api["routes"].items()
    )
    add(
        Record(
            f"API requests answered, {api['rate']:g}/s asked",
            api["requests"] - api["errors"],
            "requests",
            baseline=asked,
            ratio=(api["requests"] - api["errors"]) / asked if asked else None,
            goal=f">= {API_RATE_MIN:.0%} of asked",
            met=asked > 0 and (api["requests"] - api["errors"]) / asked >= API_RATE_MIN,
            bench="api",
            note=f"{api['late']:,} sent late (> 0.1 s after due); {routes}",
        )
    )
    add(Record("API latency p50 (from when due)", api["p50_ms"], "ms", bench="api"))
    add(
        Record(
            "API latency p99 (from when due)",
            api["p99_ms"],
            "ms",
            bench="api",
            note=f"max {api['max_ms']} ms",
        )
    )
    add(
        Record(
            "API errors (not 200, broken connection, no answer in 10 s)",
            api["errors"],
            "requests",
            goal="0",
            met=api["errors"] == 0,
            bench="api",
            note=(_fmt_counts(api["errors_by_kind"]) + "; " + " | ".join(api["error_samples"][:5]))
            if api["errors"]
            else "",
        )
    )


def _dashboard(run: SoakRun, results: Results) -> None:
    add, lags = results.add, run.dashboard_lags
    worst = max(lags, default=float("nan"))
    add(
        Record(
            "dashboard lag behind the log, max",
            worst if lags else None,
            "s",
            goal=f"< {DASHBOARD_LAG_LIMIT_S:g} s",
            met=bool(lags) and worst < DASHBOARD_LAG_LIMIT_S,
            bench="dashboard",
            note=(
                f"p50 {percentile(lags, 50):.2f} s, p99 {percentile(lags, 99):.2f} s over "
                f"{len(lags):,} samples (every 0.1 s); CPU {run.dashboard_cpu_pct:.0f}% of a core"
            ),
        )
    )
    caught = run.dashboard_caught_up_s
    errors = _lines(run.dashboard_stderr, ERROR_MARKERS)
    add(
        Record(
            "dashboard read the whole log after the monitor stopped",
            caught,
            "s",
            goal=f"within {DASHBOARD_CATCH_UP_S:g} s, alive, no traceback",
            met=caught is not None and run.dashboard_alive and not errors,
            bench="dashboard",
            note=(
                ("" if run.dashboard_alive else "the dashboard exited; ")
                + (f"{len(errors)} error lines, first: {errors[0][:200]}" if errors else "")
            ),
        )
    )


def _faults(run: SoakRun, results: Results) -> None:
    add, tally, targets = results.add, run.tally, run.targets
    states = tally.states(run.services)
    add(
        Record(
            "services failed (gave up) at the end",
            states.get("failed", 0),
            "services",
            goal="0",
            met=states.get("failed", 0) == 0,
            bench="faults",
            note=_fmt_counts(states),
        )
    )
    still = targets.get("still_broken", {})
    late = {n: age for n, age in still.items() if age > REPAIR_DEADLINE_S}
    named = ", ".join(f"{n} {age} s" for n, age in list(late.items())[:5])
    add(
        Record(
            "injected failures left unrepaired",
            len(late),
            "services",
            goal=f"none broken > {REPAIR_DEADLINE_S:g} s at the end",
            met=bool(targets) and not late,
            bench="faults",
            note=(
                f"{targets.get('broken', 0):,} broken in {targets.get('draws', 0)} draws, "
                f"{targets.get('fixed', 0):,} mended by the repair hook, "
                f"{targets.get('fix_calls', 0) - targets.get('fixed', 0):,} hook calls on a "
                f"service that was not broken; still broken at the end: "
                f"{len(still)}" + (f" ({named})" if late else "")
            ),
        )
    )
    seconds = tally.incident_seconds
    repairs = ", ".join(
        f"{step} {ok_count:,} ok / {tally.repairs_finished[step, False]:,} not"
        for step in sorted(tally.repairs_started)
        for ok_count in [tally.repairs_finished[step, True]]
    )
    add(
        Record(
            "time to recover (first failed probe -> healthy), p50",
            statistics.median(seconds) if seconds else None,
            "s",
            bench="faults",
            note=(
                f"{len(seconds):,} incidents; p99 {percentile(seconds, 99):.1f} s, max "
                f"{max(seconds, default=float('nan')):.1f} s; repair steps: {repairs}"
            ),
        )
    )


def _log(run: SoakRun, results: Results) -> None:
    add, tally = results.add, run.tally
    errors = _lines(run.monitor_stderr, ERROR_MARKERS)
    warnings = _lines(run.monitor_stderr, (" WARNING ",))
    add(
        Record(
            "error lines in hbsm run's stderr (ERROR, CRITICAL, Traceback)",
            len(errors),
            "lines",
            goal="0",
            met=not errors,
            bench="log",
            note=(
                f"{len(warnings)} WARNING lines"
                + (f", first: {warnings[0][:160]}" if warnings else "")
                + (f"; first error: {errors[0][:200]}" if errors else "")
            ),
        )
    )
    add(
        Record(
            "hbsm run exit status after SIGTERM",
            run.monitor_exit,
            goal="0, monitor.stopped recorded",
            met=run.monitor_exit == 0 and tally.stopped,
            bench="log",
        )
    )
    add(
        Record(
            "event log",
            tally.events,
            "events",
            bench="log",
            note=(
                f"{run.log_bytes / 2**20:.1f} MB on disk in {run.segments} segments; "
                + _fmt_counts(tally.by_type)
            ),
        )
    )
    add(
        Record(
            "hbsm replay --verify of the whole log",
            run.verify_exit,
            "exit",
            goal="0 (every decision re-decided the same)",
            met=run.verify_exit == 0,
            bench="log",
            note=f"{run.verify_seconds:.1f} s; {run.verify_output.strip()[-300:]}",
        )
    )

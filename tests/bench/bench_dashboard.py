"""Dashboard (docs/performance.md): the Textual app following a log that grows by 2,000 events/s.

This process is the writer: a FileEventLog of 1,000 services (monitor.started and their
registrations first), then probes round-robin over them, ~4% failing, appended in batches of
RATE/20 every 50 ms with one flush each, for SECONDS. The dashboard runs in a process of its own
(tests.bench.dashboard_app: DashboardApp over LogTail, headless under `App.run_test`, 200x50 —
Textual still lays out and renders every frame, the output is dropped) and reports every 0.1 s
the newest seq its screen shows (the board's as of its last drawing).

ROUNDS rounds of two runs, one after the other, each with a log of its own written the same way:
the baseline, the same app with every row of the services table rewritten every time it draws,
which is on every batch it reads (`dashboard_app --naive`); then the dashboard as it is.

Lag at a sample (t, seen): 0 if the screen shows everything written by t, else t minus the time
the oldest event it does not show was written. Figures: the p50 and max lag over the runs, and
the dashboard process's CPU (user + sys from /proc, all its threads) over a run as a share of
one core, averaged over the rounds, against the baseline's. On a machine busy elsewhere the
baseline, which wants most of a core, gets less than it wants (its lag, in the note, says so):
the ratio is then higher than on a quiet machine. Also: its CPU while the log does not grow (its
1 s clock tick and idle polling), the app's responsiveness while the log grows (its worst stall:
how much longer than asked a 0.1 s pause of its loop took) and the batches LogTail hands it
(coalesced: at most 5). Goals: max lag < 1 s; CPU <= 0.5x the baseline's; worst stall < 0.5 s.
(These were asserted in tests/tui once, where a loaded machine failed them.)

    python -m tests.bench.bench_dashboard [--seconds S] [--rate N]
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from hbsm.events import MonitorStarted, Probe, ServiceRegistered
from hbsm.log import FileEventLog
from tests.bench.context import Context
from tests.bench.dashboard_app import PERIOD
from tests.bench.procstat import cpu_seconds
from tests.bench.results import Record, Results

__all__ = ["main", "run"]

SERVICES = 1_000
RATE = 2_000
SECONDS = 10.0
IDLE_SECONDS = 4.0
SETTLE = 1.5
TICK = 0.05
LAG_GOAL = 1.0
CPU_GOAL = 0.5  # of the baseline's
ROUNDS = 2
STALL_GOAL = 0.5
BATCHES_GOAL = 5.0
ROOT = Path(__file__).resolve().parents[2]


def _say(message: str) -> None:
    print(f"  dashboard: {message}", file=sys.stderr, flush=True)


@dataclass
class Dashboard:
    log: Path
    samples: list[tuple[float, int]] = field(default_factory=list)
    # Per sample: (t, how long the app's pause of PERIOD took, batches delivered so far).
    loop: list[tuple[float, float, int]] = field(default_factory=list)
    # Where the dashboard's stderr goes (its tracebacks, if any); None: discarded.
    stderr: Path | None = None
    naive: bool = False  # the baseline: every row rewritten on every drawing

    def __enter__(self) -> Dashboard:
        errors = self.stderr.open("wb") if self.stderr is not None else subprocess.DEVNULL
        naive = ["--naive"] if self.naive else []
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.bench.dashboard_app", str(self.log), *naive],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                cwd=ROOT,
            )
        finally:
            if not isinstance(errors, int):
                errors.close()  # the child has its own copy
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the dashboard did not start")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            sample = json.loads(line)
            self.samples.append((sample["t"], sample["seq"]))
            self.loop.append((sample["t"], sample["pause"], sample["batches"]))

    def seen(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def wait_for(self, seq: int, timeout: float) -> float | None:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.seen() >= seq:
                return time.monotonic() - start
            time.sleep(0.02)
        return None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Outcome:
    lags: list[float]
    cpu_share: float
    idle_cpu_share: float
    written: int
    seconds: float
    catch_up_s: float | None
    final_seen: int
    final_written: int
    worst_stall: float  # the longest pause of the app's loop beyond the PERIOD it asked for
    batches_per_s: float


def _lags(writes: list[tuple[float, int]], samples: list[tuple[float, int]]) -> list[float]:
    """Per sample: 0 when caught up, else how long ago the oldest unfolded event was written."""
    times = [t for t, _ in writes]
    seqs = [s for _, s in writes]  # last seq of each write, ascending
    lags = []
    for t, seen in samples:
        written_by_t = bisect.bisect_right(times, t)
        if written_by_t == 0 or seen >= seqs[written_by_t - 1]:
            lags.append(0.0)
            continue
        first_unseen = bisect.bisect_right(seqs, seen)  # the write holding seq seen + 1
        lags.append(t - times[first_unseen])
    return lags


def measure(
    workdir: Path, seconds: float = SECONDS, rate: int = RATE, naive: bool = False, name: str = ""
) -> Outcome:
    name = name or ("dashboard-naive" if naive else "dashboard")  # a log of its own
    path = workdir / name / "heartbeat.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f"svc-{i:04d}" for i in range(SERVICES)]
    rng = random.Random(3)
    store = FileEventLog.open(path, fsync="batch")
    try:
        store.append([MonitorStarted(ts=time.time(), pid=os.getpid(), version="bench")])
        store.append(
            [ServiceRegistered(ts=time.time(), service=n, target="http://x/") for n in names]
        )
        store.flush()
        with Dashboard(path, naive=naive) as dashboard:
            if dashboard.wait_for(store.last_seq, 30) is None:
                raise RuntimeError("the dashboard did not fold the registrations")
            # Its heap settles a second after the first drawing (DashboardApp's settle): a
            # one-off collection, not a cost of following.
            time.sleep(SETTLE)
            # Idle: the same time with a log that does not grow (not for the baseline).
            idle = float("nan")
            if not naive:
                cpu = dashboard.cpu_seconds()
                time.sleep(IDLE_SECONDS)
                idle = (dashboard.cpu_seconds() - cpu) / IDLE_SECONDS
            per_tick = max(1, round(rate * TICK))
            writes: list[tuple[float, int]] = []
            first_sample = len(dashboard.samples)
            first_loop = len(dashboard.loop)
            cpu, start = dashboard.cpu_seconds(), time.monotonic()
            i = 0
            tick = start
            while (now := time.monotonic()) - start < seconds:
                batch = []
                ts = time.time()
                for _ in range(per_tick):
                    name = names[i % SERVICES]
                    i += 1
                    if rng.random() < 0.04:
                        batch.append(
                            Probe(
                                ts=ts,
                                service=name,
                                ok=False,
                                error="timeout",
                                detail="no response within 5.0 s",
                            )
                        )
                    else:
                        latency = round(rng.lognormvariate(3.0, 0.4), 1)
                        batch.append(
                            Probe(ts=ts, service=name, ok=True, latency_ms=latency, status=200)
                        )
                store.append(batch)
                store.flush()
                writes.append((time.monotonic(), store.last_seq))
                tick += TICK
                time.sleep(max(0.0, tick - time.monotonic()))
            elapsed = now - start
            cpu_share = (dashboard.cpu_seconds() - cpu) / elapsed
            catch_up = dashboard.wait_for(store.last_seq, 10)
            samples = dashboard.samples[first_sample:]
            loop = [x for x in dashboard.loop[first_loop:] if x[0] <= start + elapsed]
            final_seen = dashboard.seen()
    finally:
        store.close()
    in_run = [(t, s) for t, s in samples if t <= start + elapsed]
    stall = max((pause - PERIOD for _, pause, _ in loop), default=float("nan"))
    batches = (loop[-1][2] - loop[0][2]) / (loop[-1][0] - loop[0][0]) if len(loop) > 1 else 0.0
    return Outcome(
        _lags(writes, in_run), cpu_share, idle, i, elapsed, catch_up, final_seen, store.last_seq,
        max(0.0, stall), batches,
    )  # fmt: skip


def report(got: Outcome, naive: Outcome, ratios: list[float], rate: int, results: Results) -> None:
    lags = got.lags or [float("nan")]
    worst = max(lags)
    achieved = got.written / got.seconds
    behind = ""
    if got.catch_up_s is None:
        left = got.final_written - got.final_seen
        behind = f"; still {left:,} events behind 10 s after the writer stopped"
    caught = (
        f"caught up {got.catch_up_s:.2f} s after the writer stopped"
        if got.catch_up_s is not None
        else "never caught up"
    )
    results.add(
        Record(
            f"dashboard lag, log growing {rate:,} events/s over {SERVICES:,} services, max",
            worst,
            "s",
            goal=f"< {LAG_GOAL:g} s",
            met=worst < LAG_GOAL,
            bench="dashboard",
            note=(
                f"{got.written:,} probes written in {got.seconds:.1f} s ({achieved:,.0f}/s), "
                f"{len(got.lags)} samples every 0.1 s of the seq on screen; {caught}{behind}"
            ),
        )
    )
    results.add(
        Record(
            "dashboard lag, p50",
            statistics.median(lags),
            "s",
            bench="dashboard",
        )
    )
    ratio = got.cpu_share / naive.cpu_share if naive.cpu_share else None
    naive_lags = naive.lags or [float("nan")]
    results.add(
        Record(
            f"dashboard CPU, following {rate:,} events/s",
            got.cpu_share * 100,
            "% core",
            baseline=naive.cpu_share * 100,
            ratio=ratio,
            goal=f"<= {CPU_GOAL:g}x",
            met=ratio is not None and ratio <= CPU_GOAL,
            bench="dashboard",
            note=(
                "user + sys of the dashboard process (all threads) / wall time; baseline: the "
                "same app, source and log rate with every row rewritten on every batch "
                f"(its lag max {max(naive_lags):.2f} s, p50 {statistics.median(naive_lags):.2f} "
                f"s; {naive.written:,} probes in {naive.seconds:.1f} s); {ROUNDS} rounds of "
                f"each, alternating, their ratios {', '.join(f'{r:.2f}' for r in ratios)}"
            ),
        )
    )
    results.add(
        Record(
            "dashboard CPU, log not growing",
            got.idle_cpu_share * 100,
            "% core",
            bench="dashboard",
            note=f"the same app over a log that does not grow, {IDLE_SECONDS:g} s",
        )
    )
    results.add(
        Record(
            f"dashboard stall, log growing {rate:,} events/s, worst",
            got.worst_stall,
            "s",
            goal=f"< {STALL_GOAL:g} s",
            met=got.worst_stall < STALL_GOAL,
            bench="dashboard",
            note=f"how much longer than asked a {PERIOD:g} s pause of the app's loop took",
        )
    )
    results.add(
        Record(
            "dashboard batches from LogTail",
            got.batches_per_s,
            "/s",
            goal=f"<= {BATCHES_GOAL:g}/s",
            met=got.batches_per_s <= BATCHES_GOAL,
            bench="dashboard",
            note="each batch is one fold; the views are drawn at most as often",
        )
    )


def _merge(runs: list[Outcome]) -> Outcome:
    """Rounds of equal length as one: shares averaged, the worst of the worsts."""
    catch_ups = [r.catch_up_s for r in runs]
    return Outcome(
        lags=[lag for r in runs for lag in r.lags],
        cpu_share=statistics.fmean(r.cpu_share for r in runs),
        idle_cpu_share=statistics.fmean(r.idle_cpu_share for r in runs),
        written=sum(r.written for r in runs),
        seconds=sum(r.seconds for r in runs),
        catch_up_s=None if None in catch_ups else max(c for c in catch_ups if c is not None),
        final_seen=runs[-1].final_seen,
        final_written=runs[-1].final_written,
        worst_stall=max(r.worst_stall for r in runs),
        batches_per_s=statistics.fmean(r.batches_per_s for r in runs),
    )


def _rounds(workdir: Path, seconds: float, rate: int) -> tuple[Outcome, Outcome, list[float]]:
    """ROUNDS of (baseline, dashboard), one after the other: a burst of load from elsewhere on
    the machine falls on both alike more often than on one of them."""
    real, naive, ratios = [], [], []
    for n in range(ROUNDS):
        _say(f"round {n + 1}/{ROUNDS}: the baseline (every row rewritten on every batch) ...")
        naive.append(measure(workdir, seconds, rate, naive=True, name=f"naive-{n}"))
        _say(f"round {n + 1}/{ROUNDS}: the dashboard ...")
        real.append(measure(workdir, seconds, rate, name=f"dashboard-{n}"))
        ratios.append(real[-1].cpu_share / naive[-1].cpu_share)
    return _merge(real), _merge(naive), ratios


def run(ctx: Context) -> None:
    report(*_rounds(ctx.workdir, SECONDS, RATE), RATE, ctx.results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_dashboard")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--rate", type=int, default=RATE, help="events/s appended")
    args = parser.parse_args(argv)
    results = Results()
    with tempfile.TemporaryDirectory(prefix="hbsm-bench-dashboard-") as tmp:
        report(*_rounds(Path(tmp), args.seconds, args.rate), args.rate, results)
    results.print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

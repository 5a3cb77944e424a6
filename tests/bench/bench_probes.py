"""Probing (docs/performance.md): probes/s, CPU per probe and latency error, for each HTTP
transport.

A target in its own process (tests/probes/servers.py): a fast route (/ok) and one that answers after
a known 50 ms (/slow/50). For each transport (httpx's default, httpx over httpx-aiohttp, the lean
path): (a) probes/s against the fast route with 50 probes in flight, and CPU (this process, user +
sys) per probe; (b) the error of the recorded latency against the delayed route, recorded latency
minus 50 ms, p50 and p99, with 50 in flight. (c) With 200 probes asked for at once and a
concurrency of 50, the wait for our own semaphore must not show in the recorded latency. Each
measurement runs for a few seconds. Baseline: the httpx default transport, in the same run.
Goals: ≥ 2,000 probes/s on one core; p99 latency error ≤ 25 ms (22 ms measured with httpx over
aiohttp when the transport was chosen).

    python -m tests.bench.bench_probes [--seconds S]      (alone; or via tests.bench.run)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hbsm.config.model import ProbeConfig, ServiceConfig
from hbsm.probes import Prober, Transport
from tests.bench.context import Context
from tests.bench.procstat import cpu_seconds
from tests.bench.results import Record, Results

__all__ = ["main", "run"]

IN_FLIGHT = 50
DELAY_MS = 50
SECONDS = 3.0
RATE_GOAL = 2_000
P99_GOAL_MS = 25.0
TRANSPORTS: tuple[Transport, ...] = ("httpx", "aiohttp", "lean")
# What a probe takes by default (a plain GET): the goals are its. httpx over aiohttp, the path of
# the other probes (https credentials, other methods), is reported beside it for comparison.
DEFAULT: Transport = "lean"
# The transports measured against httpx's default, and their names in the table.
MEASURED: tuple[tuple[Transport, str], ...] = (("aiohttp", "httpx-aiohttp"), ("lean", "lean path"))
_SERVER = Path(__file__).resolve().parents[1] / "probes" / "servers.py"


class Target:
    """The HTTP target, in a process of its own so it does not share our CPU or event loop."""

    def __enter__(self) -> Target:
        self.process = subprocess.Popen(
            [sys.executable, str(_SERVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the server exits when its stdin closes
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def service(self, path: str) -> ServiceConfig:
        return ServiceConfig(
            name="bench", url=f"http://127.0.0.1:{self.port}{path}", probe=ProbeConfig(timeout=10)
        )


@dataclass
class Run:
    probes: int
    failed: int
    seconds: float
    cpu_s: float
    target_cpu_s: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.probes / self.seconds

    @property
    def cpu_us_per_probe(self) -> float:
        return self.cpu_s / max(self.probes, 1) * 1e6


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(
    target: Target, transport: Transport, path: str, seconds: float, in_flight: int, limit: int
) -> Run:
    service = target.service(path)
    latencies: list[float] = []
    failed = 0

    async with Prober(concurrency=limit, transport=transport) as prober:
        # Warm up: connections open, lazy imports done, before anything is counted.
        await asyncio.gather(*(prober.probe(service) for _ in range(limit)))

        async def worker(deadline: float) -> None:
            nonlocal failed
            while time.perf_counter() < deadline:
                result = await prober.probe(service)
                if result.ok and result.latency_ms is not None:
                    latencies.append(result.latency_ms)
                else:
                    failed += 1

        cpu, target_cpu = _cpu(), target.cpu_seconds()
        start = time.perf_counter()
        await asyncio.gather(*(worker(start + seconds) for _ in range(in_flight)))
        elapsed = time.perf_counter() - start
        cpu, target_cpu = _cpu() - cpu, target.cpu_seconds() - target_cpu
    return Run(len(latencies) + failed, failed, elapsed, cpu, target_cpu, latencies)


def _percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def measure_all(seconds: float = SECONDS) -> dict[str, dict[str, Run]]:
    runs: dict[str, dict[str, Run]] = {}
    with Target() as target:
        for transport in TRANSPORTS:
            print(f"  probes: {transport} ...", file=sys.stderr, flush=True)
            runs[transport] = {
                "fast": asyncio.run(
                    _measure(target, transport, "/ok", seconds, IN_FLIGHT, IN_FLIGHT)
                ),
                "delay": asyncio.run(
                    _measure(target, transport, f"/slow/{DELAY_MS}", seconds, IN_FLIGHT, IN_FLIGHT)
                ),
                # 4x more asked for than allowed in flight: the semaphore queues, latency not.
                "queued": asyncio.run(
                    _measure(
                        target, transport, f"/slow/{DELAY_MS}", seconds, 4 * IN_FLIGHT, IN_FLIGHT
                    )
                ),
            }
    return runs


def _errors(run: Run) -> tuple[float, float]:
    errors = [latency - DELAY_MS for latency in run.latencies_ms]
    return _percentile(errors, 50), _percentile(errors, 99)


def report(runs: dict[str, dict[str, Run]], results: Results) -> None:
    base = runs["httpx"]

    def note(run: Run) -> str:
        failed = f", {run.failed} failed" if run.failed else ""
        return (
            f"{run.probes:,} probes in {run.seconds:.1f} s{failed}; target process CPU "
            f"{run.target_cpu_s / run.seconds:.0%} of a core"
        )

    def cpu_note(run: Run) -> str:
        return (
            f"user + sys of this process over {run.probes:,} probes: "
            f"a core would do ~{1e6 / run.cpu_us_per_probe:,.0f} probes/s"
        )

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    add = results.add
    add(
        Record(
            f"probes/s, httpx default transport, {IN_FLIGHT} in flight",
            base["fast"].rate,
            "probes/s",
            bench="probes",
            note=f"{note(base['fast'])}; machine load average {load} on {os.cpu_count()} CPUs",
        )
    )
    for transport, name in MEASURED:
        fast = runs[transport]["fast"]
        add(
            Record(
                f"probes/s, {name}, {IN_FLIGHT} in flight",
                fast.rate,
                "probes/s",
                baseline=base["fast"].rate,
                ratio=fast.rate / base["fast"].rate,
                goal=f">= {RATE_GOAL:,}/s" if transport == DEFAULT else "",
                met=fast.rate >= RATE_GOAL if transport == DEFAULT else None,
                bench="probes",
                note=note(fast),
            )
        )
    base_cpu = base["fast"].cpu_us_per_probe
    add(
        Record(
            "CPU per probe, httpx default",
            base_cpu,
            "us",
            bench="probes",
            note=cpu_note(base["fast"]),
        )
    )
    for transport, name in MEASURED:
        fast = runs[transport]["fast"]
        add(
            Record(
                f"CPU per probe, {name}",
                fast.cpu_us_per_probe,
                "us",
                baseline=base_cpu,
                ratio=fast.cpu_us_per_probe / base_cpu,
                bench="probes",
                note=cpu_note(fast),
            )
        )
    for scenario, label in (("delay", f"{IN_FLIGHT} in flight"), ("queued", "200 asked, 50 run")):
        base_p50, base_p99 = _errors(base[scenario])
        add(
            Record(
                f"latency error p50, recorded - {DELAY_MS} ms, httpx default, {label}",
                base_p50,
                "ms",
                bench="probes",
                note=note(base[scenario]),
            )
        )
        add(
            Record(
                f"latency error p99, recorded - {DELAY_MS} ms, httpx default, {label}",
                base_p99,
                "ms",
                bench="probes",
            )
        )
        for transport, name in MEASURED:
            p50, p99 = _errors(runs[transport][scenario])
            add(
                Record(
                    f"latency error p50, recorded - {DELAY_MS} ms, {name}, {label}",
                    p50,
                    "ms",
                    baseline=base_p50,
                    bench="probes",
                    note=note(runs[transport][scenario]),
                )
            )
            add(
                Record(
                    f"latency error p99, recorded - {DELAY_MS} ms, {name}, {label}",
                    p99,
                    "ms",
                    baseline=base_p99,
                    ratio=p99 / base_p99 if base_p99 else None,
                    goal=f"<= {P99_GOAL_MS:g} ms" if transport == DEFAULT else "",
                    met=p99 <= P99_GOAL_MS if transport == DEFAULT else None,
                    bench="probes",
                )
            )


def run(ctx: Context) -> None:
    report(measure_all(), ctx.results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_probes")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="per measurement")
    args = parser.parse_args(argv)
    results = Results()
    report(measure_all(args.seconds), results)
    results.print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The soak's API load: a constant rate of GETs on `hbsm run`'s API, in a process of its own.

    python -m tests.soak.api_load PORT RATE SERVICES PERIOD

RATE requests per second in total, paced (open loop: request i is due at start + i / RATE,
whatever the answers before it did), cycling through MIX: /health, /health/detailed,
/health/service/<a random service>, and /metrics once every METRICS_EVERY requests.
CONNECTIONS keep-alive connections take the due requests in turn (tests/bench/loadgen.py's
`get`). A request's latency runs from when it was due, not from when it was sent, so a server
that stalls shows as latency rather than as fewer requests. Every answer must be 200 (no
service is critical): anything else, a broken connection or no answer within TIMEOUT is an
error, kept with its route and what happened.

Every PERIOD seconds it prints one JSON line for that window: {"requests", "errors", "late",
"p50_ms", "p99_ms", "max_ms"} ("late": sent more than LATE_S after it was due, all connections
being busy). When stdin closes: a last line with "final": true, the same figures over the whole
run, per route ("routes": {route: {"requests", "p50_ms", "p99_ms", "max_ms"}}), and the first
errors ("error_samples").
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from typing import Any

from tests.bench.loadgen import get, request_for
from tests.soak.target import service_names

__all__ = ["METRICS_EVERY", "MIX", "main"]

HOST = "127.0.0.1"
# Routes in the order they are asked, 10 a cycle: /health/service most (what a client polls),
# /health/detailed least (with 1,000 services its body is rebuilt for each request: the
# projection changes with every probe; ~20 ms of the monitor's CPU each here).
MIX = (
    "/health",
    "/health/service/",
    "/health/service/",
    "/health/detailed",
    "/health/service/",
    "/health",
    "/health/service/",
    "/health/service/",
    "/health",
    "/health/service/",
)
# /metrics instead, once every this many requests: 1/s at 50 requests/s, many times a
# Prometheus scrape's rate (a scrape of 1,000 services costs the monitor ~50 ms of CPU).
METRICS_EVERY = 50
CONNECTIONS = 8
TIMEOUT = 10.0
LATE_S = 0.1
ERROR_SAMPLES = 20


def _summary(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 2)

    return {"p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": round(ordered[-1] * 1e3, 2)}


class Load:
    def __init__(self, port: int, rate: float, names: list[str]) -> None:
        self.port, self.rate, self.names = port, rate, names
        self.rng = random.Random(8)
        self.due: asyncio.Queue[tuple[float, str, bytes]] = asyncio.Queue()
        self.by_route: dict[str, list[float]] = defaultdict(list)
        self.window: list[float] = []
        self.window_errors = self.window_late = 0
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.late = 0

    async def pace(self) -> None:
        start = time.perf_counter()
        i = 0
        while True:
            due = start + i / self.rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            route = "/metrics" if i % METRICS_EVERY == 0 else MIX[i % len(MIX)]
            path = route + self.rng.choice(self.names) if route.endswith("/") else route
            self.due.put_nowait((due, route, request_for(HOST, self.port, path)))
            i += 1

    async def connection(self) -> None:
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while True:
            due, route, request = await self.due.get()
            if time.perf_counter() - due > LATE_S:
                self.late += 1
                self.window_late += 1
            try:
                if streams is None:
                    streams = await asyncio.wait_for(
                        asyncio.open_connection(HOST, self.port), TIMEOUT
                    )
                status = await asyncio.wait_for(get(*streams, request), TIMEOUT)
                problem = "" if status == 200 else f"status {status}"
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                if streams is not None:
                    streams[1].close()
                streams = None
            latency = time.perf_counter() - due
            if problem:
                self.errors[f"{route} {problem.split(':')[0]}"] += 1
                self.window_errors += 1
                if len(self.error_samples) < ERROR_SAMPLES:
                    self.error_samples.append(f"{time.time():.3f} {route}: {problem}")
            else:
                self.by_route[route].append(latency)
                self.window.append(latency)

    def take_window(self) -> dict[str, Any]:
        window, self.window = self.window, []
        errors, late = self.window_errors, self.window_late
        self.window_errors = self.window_late = 0
        return {"t": time.time(), "requests": len(window) + errors, "errors": errors,
                "late": late, **_summary(window)}  # fmt: skip

    def final(self, seconds: float) -> dict[str, Any]:
        every = [lat for lats in self.by_route.values() for lat in lats]
        errors = sum(self.errors.values())
        return {
            "final": True,
            "seconds": round(seconds, 1),
            "rate": self.rate,
            "requests": len(every) + errors,
            "errors": errors,
            "errors_by_kind": dict(self.errors),
            "error_samples": self.error_samples,
            "late": self.late,
            **_summary(every),
            "routes": {
                route.rstrip("/") + ("/<name>" if route.endswith("/") else ""): {
                    "requests": len(lats),
                    **_summary(lats),
                }
                for route, lats in sorted(self.by_route.items())
            },
        }


async def _main(port: int, rate: float, services: int, period: float) -> dict[str, Any]:
    load = Load(port, rate, service_names(services))
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(closed.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    start = time.perf_counter()
    tasks = [asyncio.create_task(load.pace())]
    tasks += [asyncio.create_task(load.connection()) for _ in range(CONNECTIONS)]
    while not closed.is_set():
        try:
            await asyncio.wait_for(closed.wait(), period)
        except TimeoutError:
            print(json.dumps(load.take_window()), flush=True)
    for task in tasks:
        task.cancel()
    return load.final(time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    port, rate, services, period = (argv if argv is not None else sys.argv[1:])[:4]
    final = asyncio.run(_main(int(port), float(rate), int(services), float(period)))
    print(json.dumps(final), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

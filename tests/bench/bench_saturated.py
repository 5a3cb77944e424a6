"""When the work exceeds what the monitor can do: `hbsm run` asked for 10,000 probes a second.

`hbsm run` is started as a subprocess with a generated hbsm.toml of N HTTP services (default
10,000), each probing one local target (a process of its own) that answers after 50 ms, every
second: 500 probes in flight needed, 200 places (`concurrency`). (With fast targets a core does
~10,000 probes/s here with the lean probe path, so they no longer overload it; running out of
places is paced as running out of CPU is.) Once the log holds its `monitor.overloaded`, for
SECONDS:

* from the log: how many times each service was probed in the window (min / max: 1 when every
  service is slowed down alike, 0 when one starves), and the probes/s done;
* the stretch factor (GET /admin/heartbeat/status, as recorded when the episode began, and the
  probes asked / done);
* resident memory (VmRSS) at the start and at the end of the window: flat when nothing queues
  without bound;
* the API under it: a client in this process sends ~50 requests/s (half /health, half
  /health/detailed, one keep-alive connection each, paced) and times each answer; goal p99
  < 100 ms.

    python -m tests.bench.bench_saturated [--services N] [--seconds S]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from tests.bench.bench_memory import write_config
from tests.bench.bench_monitor import percentile
from tests.bench.bench_probes import Target
from tests.bench.context import Context
from tests.bench.procstat import memory
from tests.bench.results import Record, Results

__all__ = ["main", "run"]

SERVICES = 10_000
INTERVAL = 1.0
SECONDS = 30.0
WARMUP = 5.0
RATE = 50.0  # API requests/s, both routes together
P99_GOAL_MS = 100.0
OVERLOAD_TIMEOUT = 45.0
ROOT = Path(__file__).resolve().parents[2]


def _say(message: str) -> None:
    print(f"  saturated: {message}", file=sys.stderr, flush=True)


class Client(threading.Thread):
    """GETs `path` every 2/RATE s over one keep-alive connection; each answer's time."""

    def __init__(self, port: int, path: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.path, self.stop = port, path, stop
        self.times: list[float] = []
        self.errors = 0

    def run(self) -> None:
        every = 2 / RATE
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        due = time.perf_counter()
        while not self.stop.is_set():
            due += every
            start = time.perf_counter()
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
                if response.status not in (200, 503):
                    self.errors += 1
                self.times.append(time.perf_counter() - start)
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            time.sleep(max(0.0, due - time.perf_counter()))
        conn.close()


def _get(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        return msgspec.json.decode(conn.getresponse().read())
    finally:
        conn.close()


def measure(services: int = SERVICES, seconds: float = SECONDS) -> dict[str, Any]:
    with Target() as target, tempfile.TemporaryDirectory(prefix="hbsm-bench-saturated-") as tmp:
        directory = Path(tmp)
        # Targets that answer after 50 ms: 10,000 a second need 500 probes in flight, and a
        # monitor has `concurrency` (200) places. With the lean probe path a core does ~10,000
        # fast probes a second here, so fast targets no longer overload it; slow ones still do,
        # with the loop idle enough to see what the API does under the pacing.
        config = write_config(
            directory, services, target.port, auto_start=True, interval=INTERVAL, path="/slow/50"
        )
        port = int(next(line for line in config.read_text().splitlines() if line.startswith(
            "port = ")).split("=")[1])  # fmt: skip
        log = directory / "heartbeat.jsonl"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEAT_")}
        stderr_path = directory / "stderr.txt"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "hbsm", "run", "--config", str(config)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            try:
                return _measure(process, port, log, stderr_path, services, seconds)
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _measure(
    process: subprocess.Popen[bytes],
    port: int,
    log: Path,
    stderr_path: Path,
    services: int,
    seconds: float,
) -> dict[str, Any]:
    started = time.perf_counter()
    _say(f"{services:,} services every {INTERVAL:g} s; waiting for monitor.overloaded")
    while b'"monitor.overloaded"' not in (log.read_bytes() if log.exists() else b""):
        if process.poll() is not None:
            raise RuntimeError(f"hbsm run exited: {stderr_path.read_text()[-500:]}")
        if time.perf_counter() - started > OVERLOAD_TIMEOUT:
            raise RuntimeError(f"no monitor.overloaded within {OVERLOAD_TIMEOUT:.0f} s")
        time.sleep(0.2)
    detected = time.perf_counter() - started
    _say(f"overloaded after {detected:.1f} s; measuring {seconds:g} s")
    stop = threading.Event()
    clients = [Client(port, "/health", stop), Client(port, "/health/detailed", stop)]
    for client in clients:
        client.start()
    # The first bodies built (a /health/detailed of 10,000 services is ~5 MB) and the stretch
    # settled before the window opens: what is measured is the steady state.
    time.sleep(WARMUP)
    for client in clients:
        client.times.clear()
    rss_start, _ = memory(process.pid)
    t0 = time.time()
    rss_mid = 0
    series = []  # every 5 s
    for second in range(int(seconds)):
        time.sleep(1)
        if second == int(seconds) // 2:
            rss_mid, _ = memory(process.pid)
        if second % 5 == 4:
            series.append(memory(process.pid)[0])
    stop.set()
    for client in clients:
        client.join(30)
    t1 = time.time()
    rss_end, hwm = memory(process.pid)
    status = _get(port, "/admin/heartbeat/status")
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    per_service: collections.Counter[str] = collections.Counter()
    overloaded: list[dict[str, Any]] = []
    for line in log.read_bytes().splitlines():
        if b'"type":"probe"' in line:
            event = msgspec.json.decode(line)
            if t0 <= event["ts"] < t1:
                per_service[event["service"]] += 1
        elif b'"monitor.overloaded"' in line:
            overloaded.append(msgspec.json.decode(line))
    counts = [per_service.get(f"svc-{i:05d}", 0) for i in range(services)]
    warnings = stderr_path.read_text().count("hbsm is overloaded")
    return {
        "services": services,
        "seconds": t1 - t0,
        "detected_s": detected,
        "probes": sum(counts),
        "min": min(counts),
        "max": max(counts),
        "stretch": status.get("stretch"),
        "overloaded_events": len(overloaded),
        "asked": overloaded[0]["asked"] if overloaded else None,
        "done": overloaded[0]["done"] if overloaded else None,
        "warnings": warnings,
        "rss_start": rss_start,
        "rss_mid": rss_mid,
        "rss_end": rss_end,
        "hwm": hwm,
        "rss_series": series,
        "health_ms": [t * 1e3 for t in clients[0].times],
        "detailed_ms": [t * 1e3 for t in clients[1].times],
        "errors": sum(c.errors for c in clients),
    }


def report(m: dict[str, Any], results: Results) -> None:
    add = results.add
    secs = m["seconds"]
    asked = m["services"] / INTERVAL
    rate = m["probes"] / secs
    add(
        Record(
            f"saturated: probes/s done, {m['services']:,} services every {INTERVAL:g} s",
            rate,
            "probes/s",
            baseline=asked,
            ratio=rate / asked,
            bench="saturated",
            note=(
                f"monitor.overloaded {m['overloaded_events']}x, {m['detected_s']:.1f} s after "
                f"start; it said asked {m['asked']}/s, done {m['done']}/s; "
                f"{m['warnings']} warning(s) on stderr"
            ),
        )
    )
    add(
        Record(
            "saturated: stretch factor (as recorded)",
            float(m["stretch"] or 0.0),
            "x",
            baseline=asked / rate,
            ratio=(m["stretch"] or 0.0) / (asked / rate),
            bench="saturated",
            note="baseline: probes asked / probes done in the window",
        )
    )
    ratio = m["min"] / m["max"] if m["max"] else 0.0
    add(
        Record(
            "saturated: probes per service, min / max",
            ratio,
            "",
            goal="~1 (none starved)",
            met=ratio >= 0.75,
            bench="saturated",
            note=f"min {m['min']}, max {m['max']} probes of a service in {secs:.0f} s",
        )
    )
    growth = m["rss_end"] / m["rss_start"]
    add(
        Record(
            "saturated: RSS end / start of the window",
            growth,
            "",
            goal="flat (< 1.1)",
            met=growth < 1.1,
            bench="saturated",
            note=(
                f"{m['rss_start'] / 2**20:.0f} MiB -> {m['rss_mid'] / 2**20:.0f} (mid) -> "
                f"{m['rss_end'] / 2**20:.0f} MiB; peak {m['hwm'] / 2**20:.0f} MiB; every 5 s: "
                + " ".join(f"{r / 2**20:.0f}" for r in m["rss_series"])
            ),
        )
    )
    both = m["health_ms"] + m["detailed_ms"]
    p99 = percentile(both, 99)
    add(
        Record(
            "saturated: API p99, /health + /health/detailed at ~50 req/s",
            p99,
            "ms",
            baseline=P99_GOAL_MS,
            ratio=p99 / P99_GOAL_MS,
            goal=f"< {P99_GOAL_MS:g} ms",
            met=p99 < P99_GOAL_MS,
            bench="saturated",
            note=(
                f"{len(both)} requests ({len(both) / secs:.0f}/s), {m['errors']} errors; "
                f"/health p50 {percentile(m['health_ms'], 50):.1f} p99 "
                f"{percentile(m['health_ms'], 99):.1f} ms; /health/detailed p50 "
                f"{percentile(m['detailed_ms'], 50):.1f} p99 "
                f"{percentile(m['detailed_ms'], 99):.1f} ms, max {max(both, default=0):.0f} ms"
            ),
        )
    )


def run(ctx: Context) -> None:
    report(measure(), ctx.results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_saturated")
    parser.add_argument("--services", type=int, default=SERVICES)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    args = parser.parse_args(argv)
    results = Results()
    report(measure(args.services, args.seconds), results)
    results.print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

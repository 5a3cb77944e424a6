"""The floor for an HTTP probe in Python: the least CPU a GET can cost on asyncio.

A minimal client, nothing but what a request needs: one asyncio Protocol per kept-alive
connection, a prebuilt request written once, the answer parsed by httptools (the C parser
uvicorn uses), the next request timed with `loop.call_at` on the connection's own grid. It does
the monitor bench's work in the same shape (N services, one GET each every interval, against the
same target) and nothing else: no schedule heap, no events, no log, no state machine. The
monitor's CPU per probe is compared with this one's CPU per request, measured in the same run.

    python -m tests.bench.floor_client PORT SERVICES INTERVAL SECONDS WARMUP

prints one JSON line: {"cpu_s": ..., "requests": ..., "seconds": ..., "failed": ...,
"p99_err_ms": ...} (the p99 of latency - the target's 50 ms: what the machine's noise alone adds).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httptools

__all__ = ["main", "measure"]

ROOT = Path(__file__).resolve().parents[2]


def measure(port: int, services: int, interval: float, seconds: float, warmup: float) -> Any:
    """Run the floor client in a process of its own (its CPU alone) and return its figures."""
    args = [str(port), str(services), str(interval), str(seconds), str(warmup)]
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.floor_client", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=seconds + warmup + 120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the floor client failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class _Client(asyncio.Protocol):
    def __init__(self, request: bytes, tally: dict[str, int], latencies: list[float]) -> None:
        self.request = request
        self.tally = tally
        self.latencies = latencies
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.sent = time.perf_counter()
            self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_headers_complete(self) -> None:
        self.latencies.append(time.perf_counter() - self.sent)

    def on_message_complete(self) -> None:
        ok = self.parser.get_status_code() == 200
        self.tally["requests" if ok else "failed"] += 1


async def _run(port: int, services: int, interval: float, seconds: float, warmup: float) -> Any:
    loop = asyncio.get_running_loop()
    request = (
        f"GET /slow/50 HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nuser-agent: floor\r\n\r\n"
    ).encode()
    tally = {"requests": 0, "failed": 0}
    latencies: list[float] = []
    clients = []
    for _ in range(services):
        _, client = await loop.create_connection(
            lambda: _Client(request, tally, latencies), "127.0.0.1", port
        )
        clients.append(client)
    start = loop.time() + 0.1

    def tick(client: _Client, due: float) -> None:
        client.send()
        loop.call_at(due + interval, tick, client, due + interval)

    for i, client in enumerate(clients):
        due = start + i * interval / services  # spread over the interval, as the monitor does
        loop.call_at(due, tick, client, due)
    await asyncio.sleep(warmup)
    latencies.clear()
    before, counted, failed = os.times(), tally["requests"], tally["failed"]
    w0 = time.perf_counter()
    await asyncio.sleep(seconds)
    after = os.times()
    return {
        "cpu_s": (after.user + after.system) - (before.user + before.system),
        "requests": tally["requests"] - counted,
        "failed": tally["failed"] - failed,
        "seconds": time.perf_counter() - w0,
        # Headers in - request written, less the target's 50 ms: the machine's own noise.
        "p99_err_ms": statistics.quantiles(latencies, n=100)[98] * 1e3 - 50.0,
    }


def main(argv: list[str] | None = None) -> int:
    port, services, interval, seconds, warmup = (argv or sys.argv[1:])[:5]
    measured = asyncio.run(
        _run(int(port), int(services), float(interval), float(seconds), float(warmup))
    )
    print(json.dumps(measured))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

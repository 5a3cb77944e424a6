"""Append and read rates of the file log (docs/performance.md). Not a test: run it by hand,

    .venv/bin/python tests/log/bench_log.py [DIR]

and compare the ratios, not the absolute numbers, between runs or machines.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from hbsm.events import Probe, decode_lines
from hbsm.log import FileEventLog, read_history

EVENTS = 1_000_000


def probes(n: int) -> list[Probe]:
    return [
        Probe(service=f"svc-{i % 1000:04d}", ok=i % 7 != 0, latency_ms=12.5, status=200)
        for i in range(n)
    ]


def bench_append(
    path: Path, batch: list[Probe], fsync: str, max_bytes: int = 2**40
) -> tuple[float, int]:
    log = FileEventLog.open(path, fsync=fsync, max_bytes=max_bytes)  # type: ignore[arg-type]
    start = time.perf_counter()
    for _ in range(EVENTS // len(batch)):
        log.append(batch)
        log.flush()
    elapsed = time.perf_counter() - start
    fsyncs = log.fsyncs
    log.close()
    return EVENTS / elapsed, fsyncs


def bench_read(path: Path) -> tuple[float, float]:
    start = time.perf_counter()
    count = sum(1 for _ in read_history(path))
    ours = count / (time.perf_counter() - start)
    # The baseline: msgspec decoding the same file into the same typed events, in one call.
    data = path.read_bytes()
    start = time.perf_counter()
    count = len(decode_lines(data))
    return ours, count / (time.perf_counter() - start)


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="hbsm-bench-"))
    try:
        for policy, size in (("batch", 1000), ("batch", 100), ("never", 1000)):
            path = root / f"{policy}-{size}.jsonl"
            rate, fsyncs = bench_append(path, probes(size), policy)
            per_event = path.stat().st_size / EVENTS
            print(
                f"append fsync={policy:<6} {size:>5} events/flush: {rate:>12,.0f} events/s "
                f"({fsyncs} fsyncs, {per_event:.0f} B/event)"
            )
        rotating = root / "rotating" / "heartbeat.jsonl"
        rate, _ = bench_append(rotating, probes(1000), "batch", max_bytes=16 * 2**20)
        print(f"append, 16 MB segments (rotation + gzip): {rate:>12,.0f} events/s")
        ours, raw = bench_read(root / "batch-1000.jsonl")
        print(f"read_history:                       {ours:>12,.0f} events/s")
        print(f"decode_lines, whole file in memory: {raw:>12,.0f} events/s")
        print(f"ratio: {ours / raw:.0%}")
        start = time.perf_counter()
        count = sum(1 for _ in read_history(rotating))
        rate = count / (time.perf_counter() - start)
        print(f"read_history across gzip segments:  {rate:>12,.0f} events/s")
    finally:
        if len(sys.argv) <= 1:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()

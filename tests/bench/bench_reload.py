"""Reloading the configuration of a running monitor of 10,000 services (docs/performance.md).

In-process, on a monitor started from an hbsm.toml of SERVICES services (probing on, every hour,
a closed port): the file is rewritten with 1% of its services removed, 1% added and 1% with a
threshold changed, and `Monitor.reload` (what SIGHUP and `POST /admin/config/reload` call) times
the whole of it: reading and checking the file, the diff, recording `config.reloaded` with the
registrations, and applying it to the scheduler and the states. A second reload of the same file
again (nothing changed) is the cost of a SIGHUP that changes nothing.

Baseline: `load_config` of the same file alone, what `hbsm config --check` pays: the reload can
cost no less. Goal: the reload takes at most twice that (diff and apply at most as much as
reading the file), median of `repeat` runs.

    python -m tests.bench.bench_reload [--services N]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.context import Context
from tests.bench.results import Record, Results

__all__ = ["main", "run"]

SERVICES = 10_000
CHANGED = 0.01  # of the services: removed, added, and changed, each
GOAL = 2.0


def _say(message: str) -> None:
    print(f"  reload: {message}", file=sys.stderr, flush=True)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, port: int, url: str, names: list[str], slow: set[str]) -> None:
    lines = [
        'host = "127.0.0.1"',
        f"port = {port}",
        "check_interval = 3600",
        "",
        "[log]",
        f'path = "{path.parent / "heartbeat.jsonl"}"',
        'level = "WARNING"',
        "",
    ]
    for name in names:
        lines += ["[[services]]", f'name = "{name}"', f'url = "{url}"']
        if name in slow:
            lines.append("max_retries = 5")
        lines.append("")
    path.write_text("\n".join(lines))


async def _measure(directory: Path, services: int, repeat: int) -> dict[str, list[float]]:
    from hbsm.config import load_config
    from hbsm.monitor.build import open_monitor

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "hbsm.toml"
    names = [f"svc-{i:05d}" for i in range(services)]
    step = max(1, int(services * CHANGED))
    port = _closed_port()
    url = f"http://127.0.0.1:{_closed_port()}/ok"  # nothing listens: a probe fails at once
    write_config(path, port, url, names, set())
    store, monitor = open_monitor(load_config(path, env={}).config)
    monitor.reloader.loader = lambda: load_config(path, env={})
    await monitor.start()
    got: dict[str, list[float]] = {"load": [], "reload": [], "unchanged": []}
    try:
        for run in range(repeat):
            # Each run: 1% removed (the last run's changed ones), 1% new, 1% max_retries changed.
            current = list(monitor.services)
            kept = current[step:]
            added = [f"new-{run}-{i:05d}" for i in range(step)]
            slow = set(kept[:step])
            write_config(path, port, url, kept + added, slow)
            t0 = time.perf_counter()
            load_config(path, env={})
            got["load"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = await monitor.reload(source="bench")
            got["reload"].append(time.perf_counter() - t0)
            assert result.ok and result.event is not None, result.message
            t0 = time.perf_counter()
            await monitor.reload(source="bench")
            got["unchanged"].append(time.perf_counter() - t0)
            _say(
                f"run {run + 1}: load {got['load'][-1]:.2f} s, reload {got['reload'][-1]:.2f} s "
                f"({len(result.event.added)} added, {len(result.event.removed)} removed, "
                f"{len(result.event.changed)} changed), unchanged {got['unchanged'][-1]:.2f} s"
            )
    finally:
        await monitor.stop("bench")
        store.close()
    return got


def report(got: dict[str, list[float]], services: int, results: Results) -> None:
    load = statistics.median(got["load"])
    reload = statistics.median(got["reload"])
    same = statistics.median(got["unchanged"])
    n = f"{services:,} services"
    results.add(
        Record(
            f"config reload, {n} (1% added, removed, changed)",
            reload,
            "s",
            baseline=load,
            ratio=reload / load,
            goal=f"<= {GOAL:g}x load_config",
            met=reload / load <= GOAL,
            note="baseline: load_config of the same file (hbsm config --check); median of "
            f"{len(got['reload'])} runs",
            bench="reload",
        )
    )
    results.add(
        Record(
            f"config reload, {n}, nothing changed",
            same,
            "s",
            baseline=load,
            ratio=same / load,
            goal=f"<= {GOAL:g}x load_config",
            met=same / load <= GOAL,
            bench="reload",
        )
    )


def run(ctx: Context) -> None:
    got = asyncio.run(_measure(ctx.workdir / "reload", SERVICES, max(3, ctx.repeat)))
    report(got, SERVICES, ctx.results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_reload")
    parser.add_argument("--services", type=int, default=SERVICES)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    results = Results()
    with tempfile.TemporaryDirectory(prefix="hbsm-bench-reload-") as tmp:
        got = asyncio.run(_measure(Path(tmp), args.services, args.repeat))
        report(got, args.services, results)
    results.print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

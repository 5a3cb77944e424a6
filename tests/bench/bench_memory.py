"""Memory and start-up (docs/performance.md): `hbsm run` monitoring 10,000 services.

`hbsm run` is started as a subprocess with a generated hbsm.toml of N services, each an HTTP
probe of one local target (tests/probes/servers.py, a process of its own) every 60 s (the probes
spread over the interval: ~170 probes/s), its log in the bench's scratch directory. Measured:

  * start-up: from Popen until the log holds all N `service.registered` events (the monitor
    appends them in one batch at start, after loading the config and building the machine);
  * resident memory (/proc/PID/status VmRSS) a few seconds after start-up, while probing, minus
    the same for `hbsm run` with 1 service (the baseline: interpreter, imports, API), divided by
    N - 1: bytes per monitored service. The one service is probed every second, so that it has
    probed by then: what the first probe loads (the HTTP client) is not a service's cost;
  * the idle process: `hbsm run` with one service (a TCP probe, which needs no HTTP client, and
    an HTTP probe), its API serving, against a bare `python -c "import asyncio, msgspec"` (the
    floor of any asyncio program decoding with msgspec), both started here in the same run and
    read a few seconds after start-up: what start-up imports beyond the hot path shows here.

When start-up misses its goal, the same config is started in this process under cProfile
(load_config, open_monitor, Monitor.start with auto_start off) and the top functions by
cumulative time go to the figure's note. Goals: ≤ 10 KB per service; start-up < 2 s; the idle
one-service process ≤ 1.5x the bare interpreter's RSS.

    python -m tests.bench.bench_memory [--services N] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.bench.bench_probes import Target
from tests.bench.context import Context
from tests.bench.procstat import memory
from tests.bench.results import Record, Results

__all__ = ["main", "run"]

SERVICES = 10_000
INTERVAL = 60.0
ONE_INTERVAL = 1.0  # the one-service runs: probed by the time RSS is read
SETTLE = 4.0  # seconds of probing after start-up before RSS is read
STARTUP_TIMEOUT = 60.0
PER_SERVICE_GOAL = 10 * 1024
STARTUP_GOAL = 2.0
IDLE_GOAL = 1.5  # idle one-service RSS / bare interpreter's
# The floor: an interpreter that imported what any asyncio + msgspec program imports, then waits.
BARE = "import asyncio, msgspec, signal; signal.pause()"
ROOT = Path(__file__).resolve().parents[2]
REGISTERED = b'"service.registered"'


def _say(message: str) -> None:
    print(f"  memory: {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    directory: Path,
    services: int,
    target_port: int,
    *,
    auto_start: bool,
    kind: str = "http",
    interval: float = INTERVAL,
    path: str = "/ok",
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f"auto_start = {'true' if auto_start else 'false'}",
        'host = "127.0.0.1"',
        f"port = {_free_port()}",
        f"check_interval = {interval}",
        "concurrency = 200",
        "",
        "[log]",
        f'path = "{directory / "heartbeat.jsonl"}"',
        'level = "WARNING"',
        "",
    ]
    url = f"http://127.0.0.1:{target_port}{path}"
    probe: list[str] = []
    if kind == "tcp":
        url, probe = f"127.0.0.1:{target_port}", ['probe = { kind = "tcp" }']
    for i in range(services):
        lines += ["[[services]]", f'name = "svc-{i:05d}"', f'url = "{url}"', *probe, ""]
    path = directory / "hbsm.toml"
    path.write_text("\n".join(lines))
    return path


@dataclass
class Started:
    services: int
    startup_s: float | None
    rss: int
    hwm: int
    probes: int
    error: str = ""


def start_and_measure(
    directory: Path,
    services: int,
    target_port: int,
    kind: str = "http",
    interval: float = INTERVAL,
) -> Started:
    config = write_config(
        directory, services, target_port, auto_start=True, kind=kind, interval=interval
    )
    log = directory / "heartbeat.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEAT_")}
    stderr = (directory / "stderr.txt").open("wb")
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "hbsm", "run", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    startup: float | None = None
    error = ""
    try:
        while time.perf_counter() - start < STARTUP_TIMEOUT:
            if process.poll() is not None:
                error = (
                    f"hbsm run exited {process.returncode}: "
                    + ((directory / "stderr.txt").read_text()[-300:])
                )
                break
            if log.exists() and log.read_bytes().count(REGISTERED) >= services:
                startup = time.perf_counter() - start
                break
            time.sleep(0.01)
        else:
            error = f"not started within {STARTUP_TIMEOUT:.0f} s"
        rss = hwm = 0
        if startup is not None:
            time.sleep(SETTLE)
            rss, hwm = memory(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stderr.close()
    probes = log.read_bytes().count(b'"type":"probe"') if log.exists() else 0
    return Started(services, startup, rss, hwm, probes, error)


def bare_rss() -> int:
    """VmRSS of a bare `python -c "import asyncio, msgspec"` (then waiting), read as long after
    its start as hbsm run's is after its start-up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEAT_")}
    process = subprocess.Popen([sys.executable, "-c", BARE], cwd=ROOT, env=env)
    try:
        time.sleep(SETTLE + 0.5)
        if process.poll() is not None:
            return 0
        return memory(process.pid)[0]
    finally:
        process.kill()
        process.wait()


def profile_startup(directory: Path, services: int, target_port: int, top: int = 14) -> str:
    """Where start-up goes, in-process: the phases (load_config, open_monitor, Monitor.start)
    timed plainly, then the top functions (cumulative) under cProfile."""
    from hbsm.config import load_config
    from hbsm.monitor.build import open_monitor

    config_path = write_config(directory, services, target_port, auto_start=False)
    phases: dict[str, float] = {}

    async def start(profiler: cProfile.Profile | None, run: int) -> None:
        log = directory / f"heartbeat-{run}.jsonl"
        if profiler is not None:
            profiler.enable()
        t0 = time.perf_counter()
        loaded = load_config(config_path, env={"HEARTBEAT_EVENT_LOG": str(log)})
        t1 = time.perf_counter()
        store, monitor = open_monitor(loaded.config)
        t2 = time.perf_counter()
        await monitor.start()
        t3 = time.perf_counter()
        if profiler is not None:
            profiler.disable()
        else:
            phases.update(load_config=t1 - t0, open_monitor=t2 - t1, start=t3 - t2)
        await monitor.stop("bench")
        store.close()

    asyncio.run(start(None, 0))
    profiler = cProfile.Profile()
    asyncio.run(start(profiler, 1))
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    timed = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases.items())
    return f"in-process phases: {timed}; under cProfile:\n" + "\n".join(lines[-top - 1 :])


def measure_all(workdir: Path, services: int = SERVICES, profile: bool = False) -> dict:
    with Target() as target:
        _say("bare interpreter, idle hbsm run with 1 TCP service ...")
        bare = bare_rss()
        idle_tcp = start_and_measure(
            workdir / "idle-tcp", 1, target.port, kind="tcp", interval=ONE_INTERVAL
        )
        _say("1 service (baseline) ...")
        one = start_and_measure(workdir / "one", 1, target.port, interval=ONE_INTERVAL)
        _say(f"{services:,} services ...")
        many = start_and_measure(workdir / "many", services, target.port)
        profiled = ""
        if profile or (many.startup_s is not None and many.startup_s >= STARTUP_GOAL):
            _say("profiling start-up in-process ...")
            profiled = profile_startup(workdir / "profile", services, target.port)
    return {"bare": bare, "idle_tcp": idle_tcp, "one": one, "many": many, "profile": profiled}


def report_idle(got: dict, results: Results) -> None:
    bare: int = got["bare"]
    for kind, started in (("TCP", got["idle_tcp"]), ("HTTP", got["one"])):
        figure = f"idle hbsm run, one {kind} service, RSS"
        if not bare or not started.rss:
            why = started.error or "the bare interpreter did not stay up"
            results.add(Record(figure, None, "MiB", bench="memory", note=why))
            continue
        ratio = started.rss / bare
        results.add(
            Record(
                figure,
                started.rss / 2**20,
                "MiB",
                baseline=bare / 2**20,
                ratio=ratio,
                goal=f"<= {IDLE_GOAL:g}x",
                met=ratio <= IDLE_GOAL,
                bench="memory",
                note=(
                    f"VmRSS {SETTLE:g} s after start-up ({started.probes} probes, one each "
                    f"{ONE_INTERVAL:g} s), the API serving; baseline: bare "
                    f"python -c 'import asyncio, msgspec' RSS, same interpreter, same run "
                    f"({kind}: "
                    + (
                        "no HTTP client needed)"
                        if kind == "TCP"
                        else "probed with the probes' HTTP client)"
                    )
                ),
            )
        )


def report(got: dict, results: Results) -> None:
    report_idle(got, results)
    one: Started = got["one"]
    many: Started = got["many"]
    n = many.services
    if many.startup_s is None or one.startup_s is None:
        why = many.error or one.error
        results.add(
            Record(f"hbsm run start-up, {n:,} services", None, "s", bench="memory", note=why)
        )
        return
    results.add(
        Record(
            f"hbsm run start-up, {n:,} services (until all registered in the log)",
            many.startup_s,
            "s",
            baseline=one.startup_s,
            ratio=many.startup_s / one.startup_s,
            goal=f"< {STARTUP_GOAL:g} s",
            met=many.startup_s < STARTUP_GOAL,
            bench="memory",
            note=(
                f"baseline: 1 service ({one.startup_s:.2f} s: interpreter, imports, config); "
                f"{n:,} services cost {many.startup_s - one.startup_s:.2f} s more"
                + (f"\n{got['profile']}" if got["profile"] else "")
            ),
        )
    )
    per = (many.rss - one.rss) / (n - 1)
    results.add(
        Record(
            f"hbsm run RSS, {n:,} services",
            many.rss / 2**20,
            "MiB",
            baseline=one.rss / 2**20,
            ratio=many.rss / one.rss,
            bench="memory",
            note=(
                f"VmRSS {SETTLE:g} s after start-up while probing (peak VmHWM "
                f"{many.hwm / 2**20:.1f} MiB vs {one.hwm / 2**20:.1f} MiB); {many.probes:,} "
                f"probes logged by then, one local target, every service each {INTERVAL:g} s"
            ),
        )
    )
    results.add(
        Record(
            "resident memory per monitored service",
            per,
            "bytes",
            goal=f"<= {PER_SERVICE_GOAL:,} bytes",
            met=per <= PER_SERVICE_GOAL,
            bench="memory",
            note=(
                f"(RSS with {n:,} services - RSS with 1) / {n - 1:,}; the 1 service probed "
                f"every {ONE_INTERVAL:g} s, {one.probes} times by then"
            ),
        )
    )


def run(ctx: Context) -> None:
    report(measure_all(ctx.workdir / "memory"), ctx.results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_memory")
    parser.add_argument("--services", type=int, default=SERVICES)
    parser.add_argument("--profile", action="store_true", help="profile start-up in any case")
    args = parser.parse_args(argv)
    results = Results()
    with tempfile.TemporaryDirectory(prefix="hbsm-bench-memory-") as tmp:
        report(measure_all(Path(tmp), args.services, args.profile), results)
    results.print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

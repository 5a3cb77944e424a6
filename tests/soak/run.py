"""`just soak` (not in CI): `hbsm run` watching 1,000 flaky services for ten minutes, its API
under constant load and the dashboard following the log. Prints the figures; exits 1 if a
check fails.

    python -m tests.soak.run [--minutes 10] [--services 1000] [--fail-rate 0.05] [--fuzz] ...

What runs, each in a process of its own (so the monitor's CPU, memory and stderr are its own):

* the targets (tests/soak/target.py): one local HTTP server answering for every service; every
  --redraw seconds a random --fail-rate of the services break (HTTP 500, or a hang past the
  probe timeout) until their repair hook mends them;
* `hbsm run --config hbsm.toml` (tests/soak/config.py): every service probed each second,
  ladder `diagnose` then `http` (the hook): the FSM goes through degraded and repairing, and no
  process is ever restarted;
* the API load (tests/soak/api_load.py): --api-rate requests/s over /health, /health/detailed,
  /health/service/<name> and /metrics, latency from when each request was due;
* the dashboard (tests/bench/dashboard_app.py: the Textual app, headless, following the log as
  `hbsm dashboard --log` does), reporting every 0.1 s the newest seq its screen shows.

This process follows the log (tests/soak/tally.py) and every --sample seconds prints one line of
progress on stderr: hbsm run's RSS and CPU, the log's size and events, probes/s, the API's
latency and errors, the dashboard's lag, the services by state. At the end it stops the load,
SIGTERMs `hbsm run`, waits for the dashboard to read everything, runs `hbsm replay --verify` on
the log, prints a table of figures and checks (tests/soak/figures.py) on stdout and writes them,
with every sample, to --out (soak-results.json). The work directory (log, config, stderr) is
removed unless a check failed or --keep is given.

Run on a quiet machine: the schedule and latency figures measure the neighbours too.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import msgspec

from hbsm.log import segment_paths
from tests.bench.bench_dashboard import Dashboard
from tests.bench.procstat import cpu_seconds
from tests.bench.results import machine_info, machine_line
from tests.soak.config import INTERVAL, MAX_BYTES, write_config
from tests.soak.figures import Sample, SoakRun, figures
from tests.soak.processes import ROOT, ApiLoad, Monitor, Targets, http_status, wait_until
from tests.soak.tally import LogTally
from tests.soak.target import service_names
from tests.support.net import free_port

__all__ = ["main"]

STARTUP_TIMEOUT = 120.0
# The memory reference is taken this long into the run, or a third of the way if later (but at
# most half-way): by then every service's latency history (LATENCY_HISTORY = 60 probes) is full
# and the log has rotated a few times. Each of the first rotations raises hbsm run's RSS by a
# step and then it stays flat: the allocator's high-water mark once a 1,000-service snapshot has
# been built and decoded again by the /metrics follower, not live objects (tracemalloc shows no
# growth). Measured with 1,000 services and 8 MiB segments: +14, +0, +5 MB at the first three
# rotations, then flat over the next three; the high-water steps come sooner on a busy machine.
WARMUP = 70.0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _log_bytes(log: Path) -> tuple[int, int]:
    """(bytes on disk, segments) of the log: its closed segments and the active file."""
    files = [*segment_paths(log), log]
    return sum(p.stat().st_size for p in files if p.exists()), len(files)


class DashboardLag:
    """The dashboard's lag at each of its samples, as tests/bench/bench_dashboard.py defines it:
    0 when it shows everything written by then, else how long ago the oldest event it does not
    show was written. Samples are judged once the tally has read past their time."""

    def __init__(self, dashboard: Dashboard, tally: LogTally) -> None:
        self.dashboard, self.tally = dashboard, tally
        self.offset = time.time() - time.monotonic()  # the samples' clock is CLOCK_MONOTONIC
        self.judged = len(dashboard.samples)  # samples before the measured run: not counted
        self.lags: list[float] = []

    def update(self, read_until: float) -> list[float]:
        """Judge the samples taken before `read_until` (wall clock); their lags."""
        samples, new = self.dashboard.samples, []
        while self.judged < len(samples):
            t, seen = samples[self.judged]
            wall = t + self.offset
            if wall > read_until:
                break
            written = self.tally.written_by(seen + 1)
            new.append(wall - written if written is not None and written <= wall else 0.0)
            self.judged += 1
        self.lags += new
        return new


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _progress(s: Sample, minutes: float) -> str:
    api = s.api
    api_text = (
        f"api {api.get('requests', 0)} req p50 {_ms(api.get('p50_ms'))} "
        f"p99 {_ms(api.get('p99_ms'))} ms err {api.get('errors', 0)}"
        if api
        else "api -"
    )
    lag = "-" if s.dashboard_lag_max is None else f"{s.dashboard_lag_max:.2f} s"
    states = " ".join(f"{k} {v}" for k, v in sorted(s.states.items(), key=lambda kv: -kv[1]))
    return (
        f"soak {s.elapsed:4.0f}/{minutes * 60:.0f} s | probes {s.probes_per_s:,.0f}/s | "
        f"rss {s.rss / 2**20:.1f} MB | cpu {s.cpu_pct:.0f}% | log {s.log_bytes / 2**20:.1f} MB "
        f"{s.events:,} ev | {api_text} | dash lag {lag} | {states}"
    )


def _helpers_cpu(targets: Targets, api: ApiLoad, dashboard: Dashboard) -> dict[str, float]:
    """CPU seconds so far of every process but hbsm run: what else the machine was doing."""
    return {
        "targets": targets.cpu_seconds(),
        "api load": api.cpu_seconds(),
        "dashboard": dashboard.cpu_seconds(),
        "soak": cpu_seconds(os.getpid()),
    }


def _verify(log: Path) -> tuple[int, float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hbsm", "replay", "--verify", str(log)],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
    )  # fmt: skip
    return done.returncode, time.perf_counter() - started, done.stdout + done.stderr


def soak(args: argparse.Namespace, workdir: Path) -> tuple[SoakRun, dict[str, Any]]:
    names = service_names(args.services)
    log = workdir / "heartbeat.jsonl"
    seconds = args.minutes * 60
    warmup = args.warmup if args.warmup is not None else min(max(WARMUP, seconds / 3), seconds / 2)
    _say(f"soak: {args.services:,} services, {args.minutes:g} min, fail rate {args.fail_rate:g}, "
         f"seed {args.seed}, API {args.api_rate:g} req/s; work directory {workdir}")  # fmt: skip
    targets = Targets(args.services, args.fail_rate, args.redraw, args.seed)
    api_port = free_port()
    config = write_config(
        workdir, names, targets.port, api_port, log, max_bytes=int(args.segment_mb * 2**20)
    )
    tally = LogTally(log)
    monitor = Monitor(config, workdir)
    api = None
    dashboard: Dashboard | None = None
    try:

        def all_registered() -> bool:
            tally.poll()
            return tally.by_type["service.registered"] >= len(names)

        wait_until(all_registered, STARTUP_TIMEOUT, "hbsm run registering the services",
                   monitor.alive)  # fmt: skip
        base = f"http://127.0.0.1:{api_port}"
        wait_until(lambda: http_status(base + "/health") == 200, STARTUP_TIMEOUT,
                   "hbsm run's API answering", monitor.alive)  # fmt: skip
        _say(f"soak: hbsm run (pid {monitor.pid}) up, API on {base}; starting the dashboard")
        targets.start_breaking()
        dashboard = Dashboard(log, stderr=workdir / "dashboard.stderr").__enter__()
        tally.poll()
        if dashboard.wait_for(tally.last_seq, STARTUP_TIMEOUT) is None:
            raise RuntimeError("the dashboard did not catch up with the log")
        lag = DashboardLag(dashboard, tally)
        api = ApiLoad(api_port, args.api_rate, args.services, args.sample)

        samples: list[Sample] = []
        start_wall, start = time.time(), time.monotonic()
        cpu0 = last_cpu = monitor.cpu_seconds()
        helpers = _helpers_cpu(targets, api, dashboard)
        last_t, last_probes = start, tally.probes_total
        next_sample = start + args.sample
        while (now := time.monotonic()) < start + seconds:
            time.sleep(max(0.0, min(next_sample, start + seconds) - now))
            if not monitor.alive():
                raise RuntimeError(f"hbsm run exited ({monitor.process.returncode}) mid-run")
            now = time.monotonic()
            read_until = time.time()  # before the poll: it reads everything written by then
            tally.poll()
            new_lags = lag.update(read_until)
            cpu = monitor.cpu_seconds()
            rss, hwm = monitor.memory()
            sample = Sample(
                elapsed=now - start,
                rss=rss,
                hwm=hwm,
                cpu_pct=(cpu - last_cpu) / (now - last_t) * 100,
                log_bytes=_log_bytes(log)[0],
                events=tally.events,
                probes_per_s=(tally.probes_total - last_probes) / (now - last_t),
                api=api.latest(),
                dashboard_lag_max=max(new_lags) if new_lags else None,
                dashboard_seq=dashboard.seen(),
                states=dict(tally.states(names)),
            )
            samples.append(sample)
            _say(_progress(sample, args.minutes))
            last_t, last_cpu, last_probes = now, cpu, tally.probes_total
            next_sample += args.sample
        end_wall, elapsed = time.time(), time.monotonic() - start
        monitor_cpu = (monitor.cpu_seconds() - cpu0) / elapsed * 100
        helpers_now = _helpers_cpu(targets, api, dashboard)
        helpers_pct = {k: (helpers_now[k] - helpers[k]) / elapsed * 100 for k in helpers}

        _say("soak: stopping the API load and hbsm run")
        api_final = api.finish()
        api = None
        monitor_exit = monitor.terminate()
        read_until = time.time()
        tally.poll()
        lag.update(read_until)
        caught_up = dashboard.wait_for(tally.last_seq, 30)
        dashboard_alive = dashboard.process.poll() is None
        dashboard.__exit__(None, None, None)
        dashboard = None
        targets_final = targets.finish()
        _say("soak: hbsm replay --verify ...")
        verify_exit, verify_seconds, verify_output = _verify(log)
        log_bytes, segments = _log_bytes(log)
        run = SoakRun(
            services=names,
            interval=INTERVAL,
            seconds=elapsed,
            warmup=warmup,
            window=(start_wall, end_wall),
            api_rate=args.api_rate,
            fail_rate=args.fail_rate,
            tally=tally,
            samples=samples,
            api=api_final,
            dashboard_lags=lag.lags,
            dashboard_caught_up_s=caught_up,
            dashboard_alive=dashboard_alive,
            dashboard_stderr=(workdir / "dashboard.stderr").read_text(errors="replace"),
            dashboard_cpu_pct=helpers_pct["dashboard"],
            monitor_exit=monitor_exit,
            monitor_stderr=monitor.stderr_text(),
            monitor_cpu_pct=monitor_cpu,
            targets=targets_final,
            verify_exit=verify_exit,
            verify_seconds=verify_seconds,
            verify_output=verify_output,
            log_bytes=log_bytes,
            segments=segments,
            helpers_cpu_pct={k: v for k, v in helpers_pct.items() if k != "dashboard"},
        )
        extra = {"targets": targets_final, "api": api_final}
        return run, extra
    finally:
        if api is not None:
            api.finish()
        if dashboard is not None:
            dashboard.__exit__(None, None, None)
        monitor.terminate()
        if targets.process.poll() is None:
            targets.finish()
        tally.close()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="the measured run")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--fail-rate", type=float, default=0.05,
                        help="share of the services broken at each draw")  # fmt: skip
    parser.add_argument("--redraw", type=float, default=30.0, help="seconds between draws")
    parser.add_argument("--api-rate", type=float, default=50.0, help="API requests/s in all")
    parser.add_argument("--warmup", type=float, metavar="SECONDS",
                        help="when the memory reference is taken (default: 70 s or a third of "
                        "the run, whichever is later, at most half of it)")  # fmt: skip
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--segment-mb", type=float, default=MAX_BYTES / 2**20,
                        help="the log rotates past this size (MiB)")  # fmt: skip
    parser.add_argument("--seed", type=int, help="for the draws (default: random, printed)")
    parser.add_argument("--out", type=Path, default=Path("soak-results.json"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--fuzz",
        action="store_true",
        help="then run the fuzz tests in their soak profile (HBSM_FUZZ=soak pytest "
        "tests/reliability/test_fuzz.py); `just soak` runs them itself after this",
    )
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(2**31)
    return args


def _write(path: Path, params: dict[str, Any], run: SoakRun, records: list[Any],
           extra: dict[str, Any]) -> None:  # fmt: skip
    body = {
        "machine": machine_info(),
        "params": params,
        "results": [asdict(r) for r in records],
        "samples": [asdict(s) for s in run.samples],
        **extra,
    }
    path.write_bytes(msgspec.json.format(msgspec.json.encode(body), indent=2) + b"\n")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    workdir = Path(tempfile.mkdtemp(prefix="hbsm-soak-"))
    load_before = os.getloadavg()
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    ok = False
    try:
        run, extra = soak(args, workdir)
        params["load_average_before"] = [round(x, 2) for x in load_before]
        params["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        params["seconds"] = round(run.seconds, 1)
        _say("soak: figures")
        results = figures(run)
        results.print()
        _write(args.out, params, run, results.records, extra)
        failed = [r.figure for r in results.records if r.met is False]
        ok = not failed
        print(
            f"\nload average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} on "
            f"{os.cpu_count()} CPUs; written to {args.out}"
        )
        # The machine beside the verdict: on a slower one a failure reads as capacity.
        print(machine_line())
        print("soak: all checks met" if ok else f"soak: FAILED: {'; '.join(failed)}")
    finally:
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            _say(f"soak: work directory kept: {workdir}")
    if args.fuzz:
        _say("soak: the fuzz tests in their soak profile ...")
        fuzz = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "tests/reliability/test_fuzz.py"],
            env={**os.environ, "HBSM_FUZZ": "soak"}, cwd=ROOT, check=False,
        )  # fmt: skip
        ok = ok and fuzz.returncode == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""`just bench`: every benchmark in one run, a table on stdout, bench-results.json beside.

    python -m tests.bench.run [--events N] [--services N] [--out FILE] [--only NAME ...]

Figures are ratios against a baseline measured in the same run, so they mean the same on a faster or
slower machine (docs/performance.md). Benchmarks report; they never assert. Progress goes to stderr.
Add a benchmark: a module here with `run(ctx)` adding Records, listed in BENCHES."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python tests/bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import (
    bench_api,
    bench_append,
    bench_cluster,
    bench_dashboard,
    bench_https,
    bench_jetstream,
    bench_memory,
    bench_monitor,
    bench_page,
    bench_probes,
    bench_recovery,
    bench_reload,
    bench_replay,
    bench_saturated,
)
from tests.bench.context import Context
from tests.bench.results import Record, Results, machine_line

__all__ = ["BENCHES", "main"]

BENCHES: dict[str, Callable[[Context], None]] = {
    "replay": bench_replay.run,
    "cli": bench_replay.run_cli,
    "append": bench_append.run,
    "jetstream": bench_jetstream.run,
    "probes": bench_probes.run,
    "https": bench_https.run,
    "api": bench_api.run,
    "memory": bench_memory.run,
    "dashboard": bench_dashboard.run,
    "page": bench_page.run,
    "monitor": bench_monitor.run,
    "saturated": bench_saturated.run,
    "cluster": bench_cluster.run,
    "recovery": bench_recovery.run,
    "reload": bench_reload.run,
}
# Benchmarks that read the generated log: it is made (or taken from the cache) first.
USES_LOG = {"replay", "cli", "append", "jetstream"}


def _describe_log(ctx: Context) -> None:
    log = ctx.log
    made = f"generated in {log.seconds:.1f} s" if log.seconds else f"cached, {log.path}"
    ctx.results.add(
        Record(
            "benchmark log",
            log.events,
            "events",
            note=(
                f"{log.services:,} services, {log.failed_probes / log.probes:.1%} of "
                f"{log.probes:,} probes failing; {made}"
            ),
        )
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the log")
    parser.add_argument("--services", type=int, default=1_000, help="services in the log")
    parser.add_argument(
        "--out", type=Path, default=Path("bench-results.json"), help="where to write the JSON"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best taken)")
    parser.add_argument(
        "--wall",
        action="store_true",
        help="time decode and replay by the wall clock, not process CPU time",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHES),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHES)}",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    chosen = [name for name in BENCHES if not args.only or name in args.only]
    results = Results(
        params={
            "events": args.events,
            "services": args.services,
            "benches": chosen,
            "repeat": args.repeat,
            "clock": "wall" if args.wall else "cpu",
        }
    )
    workdir = Path(tempfile.mkdtemp(prefix="hbsm-bench-"))
    ctx = Context(
        events=args.events,
        services=args.services,
        workdir=workdir,
        results=results,
        repeat=args.repeat,
    )
    if args.wall:
        ctx.clock, ctx.clock_name = time.perf_counter, "wall time"
    started = time.perf_counter()
    failed: list[str] = []
    try:
        if USES_LOG.intersection(chosen):
            _describe_log(ctx)
        for name in chosen:
            print(f"[{name}]", file=sys.stderr, flush=True)
            try:
                BENCHES[name](ctx)
            except Exception as exc:  # one benchmark's failure must not lose the others' figures
                traceback.print_exc()
                failed.append(name)
                results.add(
                    Record(
                        f"{name}: the benchmark failed",
                        None,
                        goal="runs",
                        met=False,
                        bench=name,
                        note=f"{type(exc).__name__}: {exc}",
                    )
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    results.params["seconds"] = round(elapsed, 1)
    results.print()
    results.write_json(args.out)
    print(f"\n{machine_line()}\nwritten to {args.out} ({elapsed:.0f} s)")
    if failed:
        print(f"failed: {', '.join(failed)} (their tracebacks are above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

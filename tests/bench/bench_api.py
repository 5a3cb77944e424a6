"""API (docs/performance.md): requests/s of `/health` and `/health/detailed` over 1,000 services.

A log of 1,000 services (tests.bench.logfile's generator) is folded by a LogSource; the servers
run in processes of their own (tests.bench.api_server), the load generator in another one: wrk
(`wrk -t1 -cN -dS --latency`; the bench tries `apt-get install -y wrk` once when it is missing
and it may), else tests.bench.loadgen (raw asyncio keep-alive connections: a floor on the
server's rate, the generator is the bottleneck). Servers:

  * Flask dev server (werkzeug, threaded) serving the same bytes, encoded once: the baseline;
  * hbsm's Flask blueprint on that server (what `follow_log` serves): at least half the
    baseline's rate;
  * hbsm's Starlette app (create_app) on uvicorn with pure-Python parts (h11, asyncio);
  * the same app with uvicorn's httptools parser on asyncio's loop: what `hbsm run` gets when
    httptools is installed (uvicorn's "auto" picks it; the loop is the monitor's own asyncio
    loop, never uvloop);
  * the same app on uvicorn's fastest settings (httptools, uvloop). httptools and uvloop are
    pip-installed by the bench when missing; "n/a" and why if that fails.

Also, in this process: the time to build /health/detailed for 1,000 services and to answer it
from the per-version cache (hbsm.api.views). Goals: /health ≥ 10,000 requests/s on one worker;
/health/detailed ≥ 1,000 requests/s. The machine has few cores: server and generator share them.

    python -m tests.bench.bench_api [--seconds S] [--connections N]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hbsm.api import LogSource
from hbsm.api.views import Views
from tests.bench.context import Context
from tests.bench.debian import ensure_command
from tests.bench.logfile import generate
from tests.bench.procstat import cpu_seconds
from tests.bench.results import Record, Results

__all__ = ["main", "run"]

SERVICES = 1_000
EVENTS = 30_000
SECONDS = 5.0
CONNECTIONS = 50
HEALTH_GOAL = 10_000
DETAILED_GOAL = 1_000
# The blueprint's own work (routing, the admin rule, the hand-over to the loop that answers) may
# cost at most half of what a bare Flask app serving the same bytes does.
BLUEPRINT_GOAL = 0.5
ROUTES = ("/health", "/health/detailed")
ROOT = Path(__file__).resolve().parents[2]
# What `hbsm run` serves with (uvicorn picks httptools, a dependency, by itself): the goals are
# its; the other uvicorn modes are there for comparison.
SERVED = "uvicorn-httptools"
MODES = {
    "flask": "Flask dev server (werkzeug, threaded)",
    "blueprint": "hbsm blueprint, Flask dev server (werkzeug, threaded)",
    "uvicorn": "hbsm app, uvicorn h11 + asyncio",
    "uvicorn-httptools": "hbsm app, uvicorn httptools + asyncio",
    "uvicorn-fast": "hbsm app, uvicorn httptools + uvloop",
}


def _say(message: str) -> None:
    print(f"  api: {message}", file=sys.stderr, flush=True)


def ensure_wrk() -> str | None:
    """wrk's path; one try at installing Debian's package (root only, short timeout)."""
    return ensure_command("wrk")


def ensure_fast() -> str | None:
    """None when httptools and uvloop can be imported (installing them if missing), else why."""
    missing = [m for m in ("httptools", "uvloop") if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    _say(f"pip install {' '.join(missing)}")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", *missing],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"pip install {' '.join(missing)} failed: {exc}"
    if done.returncode != 0:
        return f"pip install {' '.join(missing)} failed: {done.stderr.strip()[-200:]}"
    importlib.invalidate_caches()
    return None


class Server:
    def __init__(self, mode: str, log: Path) -> None:
        self.mode, self.log = mode, log

    def __enter__(self) -> Server:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.api_server", self.mode, str(self.log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip():
            raise RuntimeError(f"{self.mode} server did not start")
        self.port = int(line)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)


@dataclass
class Load:
    rate: float
    p99_ms: float | None
    requests: int
    errors: int
    server_cpu: float  # share of one core
    tool: str
    connections: int


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk(
    wrk: str, url: str, seconds: float, connections: int
) -> tuple[float, float | None, int, int]:
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    n_errors = int(errors.group(1)) if errors else 0
    if socket_errors:
        n_errors += sum(int(g) for g in socket_errors.groups())
    return (
        rate,
        float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else None,
        int(total.group(1)) if total else 0,
        n_errors,
    )


def _loadgen(
    port: int, path: str, seconds: float, connections: int
) -> tuple[float, float, int, int]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.loadgen", "127.0.0.1", str(port), path,
         str(connections), str(seconds)],
        capture_output=True, text=True, timeout=seconds + 30, check=False, cwd=ROOT,
    ).stdout  # fmt: skip
    got = json.loads(out.strip().splitlines()[-1])
    return got["requests"] / got["seconds"], got["p99_ms"], got["requests"], got["errors"]


def measure(server: Server, path: str, wrk: str | None, seconds: float, connections: int) -> Load:
    url = f"http://127.0.0.1:{server.port}{path}"
    # Warm up: imports, first body built, connections' threads started.
    if wrk:
        _wrk(wrk, url, 1, connections)
    else:
        _loadgen(server.port, path, 1, connections)
    cpu, start = server.cpu_seconds(), time.perf_counter()
    if wrk:
        rate, p99, requests, errors = _wrk(wrk, url, seconds, connections)
    else:
        rate, p99, requests, errors = _loadgen(server.port, path, seconds, connections)
    share = (server.cpu_seconds() - cpu) / (time.perf_counter() - start)
    return Load(rate, p99, requests, errors, share, "wrk" if wrk else "loadgen", connections)


def build_times(log: Path) -> tuple[float, float, int]:
    """(ms to build /health/detailed, µs to answer it from the cache, its size in bytes)."""
    source = LogSource(log)
    source.refresh()
    views = Views(source, max_age=float("inf"))
    builds = []
    for _ in range(5):
        views._cache.clear()
        start = time.perf_counter()
        answer = views.detailed(show_targets=False)
        builds.append(time.perf_counter() - start)
    n = 100_000
    start = time.perf_counter()
    for _ in range(n):
        views.detailed(show_targets=False)
    cached = (time.perf_counter() - start) / n
    return min(builds) * 1e3, cached * 1e6, len(answer.body)


def measure_all(
    workdir: Path, seconds: float = SECONDS, connections: int = CONNECTIONS
) -> tuple[dict[str, dict[str, Load] | str], tuple[float, float, int]]:
    log = workdir / "api-bench.jsonl"
    _say(f"generating a log of {SERVICES:,} services")
    generate(log, EVENTS, SERVICES)
    wrk = ensure_wrk()
    fast_missing = ensure_fast()
    runs: dict[str, dict[str, Load] | str] = {}
    for mode in MODES:
        if mode.startswith("uvicorn-") and fast_missing:
            runs[mode] = fast_missing
            continue
        _say(f"{mode} ...")
        try:
            with Server(mode, log) as server:
                runs[mode] = {
                    path: measure(server, path, wrk, seconds, connections) for path in ROUTES
                }
        except (
            RuntimeError,
            OSError,
            ValueError,
            AttributeError,
            subprocess.SubprocessError,
        ) as exc:
            runs[mode] = f"{type(exc).__name__}: {exc}"
    return runs, build_times(log)


def report(
    runs: dict[str, dict[str, Load] | str], builds: tuple[float, float, int], results: Results
) -> None:
    base = runs.get("flask")
    for path in ROUTES:
        goal = HEALTH_GOAL if path == "/health" else DETAILED_GOAL
        base_load = base.get(path) if isinstance(base, dict) else None
        for mode, label in MODES.items():
            got = runs.get(mode)
            figure = f"GET {path} ({SERVICES:,} services), {label}"
            if not isinstance(got, dict):
                results.add(Record(figure, None, "req/s", bench="api", note=str(got)))
                continue
            load = got[path]
            is_base = mode == "flask"
            ratio = None if is_base or base_load is None else load.rate / base_load.rate
            if mode == "blueprint":  # a Flask app: judged against the Flask floor
                goal_text = f">= {BLUEPRINT_GOAL} x plain Flask"
                met = None if ratio is None else ratio >= BLUEPRINT_GOAL
            elif mode == SERVED:
                goal_text, met = f">= {goal:,}/s", load.rate >= goal
            else:  # another way to serve the same app, for comparison: no goal of its own
                goal_text, met = "", None
            p99 = f"p99 {load.p99_ms:.1f} ms" if load.p99_ms is not None else "p99 n/a"
            errors = f", {load.errors:,} errors/non-2xx" if load.errors else ""
            results.add(
                Record(
                    figure,
                    load.rate,
                    "req/s",
                    baseline=None if is_base or base_load is None else base_load.rate,
                    ratio=ratio,
                    goal=goal_text,
                    met=met,
                    bench="api",
                    note=(
                        f"{load.tool}, {load.connections} connections: {load.requests:,} requests, "
                        f"{p99}{errors}; server CPU {load.server_cpu:.0%} of a core"
                    ),
                )
            )
    build_ms, cached_us, size = builds
    results.add(
        Record(
            f"build /health/detailed body ({SERVICES:,} services)",
            build_ms,
            "ms",
            bench="api",
            note=f"{size:,} bytes; bodies.detailed_health + encode, under the source's lock",
        )
    )
    results.add(
        Record(
            "/health/detailed from the per-version cache",
            cached_us,
            "us",
            baseline=build_ms * 1e3,
            ratio=cached_us / (build_ms * 1e3),
            bench="api",
            note="Views.detailed when the projection version has not changed",
        )
    )


def run(ctx: Context) -> None:
    runs, builds = measure_all(ctx.workdir)
    report(runs, builds, ctx.results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_api")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="per measurement")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    args = parser.parse_args(argv)
    results = Results()
    with tempfile.TemporaryDirectory(prefix="hbsm-bench-api-") as tmp:
        runs, builds = measure_all(Path(tmp), args.seconds, args.connections)
    report(runs, builds, results)
    results.print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""HTTPS probing (docs/performance.md): the lean path against httpx over aiohttp, over TLS.

HTTPS GET and HEAD probes take the lean path (asyncio's own TLS, the peer's certificate read once
per connection, for the certificate watch); before, they went through httpx over aiohttp. A
target in its own process (tests/probes/servers.py with a certificate a test CA signed, made
here with `cryptography`), 50 probes in flight on kept-alive connections, for a few seconds
each: probes/s and CPU (this process, user + sys) per probe. Baseline: httpx over aiohttp, in
the same run. Goal: the lean path at least as fast, at no more CPU a probe.

    python -m tests.bench.bench_https [--seconds S]      (alone; or via tests.bench.run)
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

from hbsm.config.model import ProbeConfig, ServiceConfig
from hbsm.probes import Transport
from tests.bench.bench_probes import IN_FLIGHT, SECONDS, Run, _measure
from tests.bench.context import Context
from tests.bench.procstat import cpu_seconds
from tests.bench.results import Record, Results
from tests.support.tls import TestCA

__all__ = ["main", "run"]

_SERVER = Path(__file__).resolve().parents[1] / "probes" / "servers.py"


class TlsTarget:
    """tests/probes/servers.py over https, in a process of its own."""

    def __init__(self, folder: Path) -> None:
        self.ca = TestCA(folder)
        self.cert = self.ca.issue(days=30)

    def __enter__(self) -> TlsTarget:
        argv = [sys.executable, str(_SERVER), "--tls-cert", str(self.cert.cert),
                "--tls-key", str(self.cert.key)]  # fmt: skip
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
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
            name="bench",
            url=f"https://127.0.0.1:{self.port}{path}",
            probe=ProbeConfig(timeout=10, ca_file=str(self.ca.pem)),
        )


def measure(seconds: float = SECONDS) -> dict[Transport, Run]:
    runs: dict[Transport, Run] = {}
    with tempfile.TemporaryDirectory() as folder, TlsTarget(Path(folder)) as target:
        for transport in ("aiohttp", "lean"):
            print(f"  https: {transport} ...", file=sys.stderr, flush=True)
            runs[transport] = asyncio.run(
                _measure(target, transport, "/ok", seconds, IN_FLIGHT, IN_FLIGHT)  # type: ignore[arg-type]
            )
    return runs


def report(runs: dict[Transport, Run], results: Results) -> None:
    base, lean = runs["aiohttp"], runs["lean"]

    def note(run: Run) -> str:
        failed = f", {run.failed} failed" if run.failed else ""
        return f"{run.probes:,} probes in {run.seconds:.1f} s{failed}"

    add = results.add
    add(Record(f"https probes/s, httpx-aiohttp, {IN_FLIGHT} in flight", base.rate, "probes/s",
               bench="https", note=note(base)))  # fmt: skip
    add(
        Record(
            f"https probes/s, lean path, {IN_FLIGHT} in flight",
            lean.rate,
            "probes/s",
            baseline=base.rate,
            ratio=lean.rate / base.rate,
            goal=">= httpx-aiohttp",
            met=lean.rate >= base.rate,
            bench="https",
            note=note(lean),
        )
    )
    add(Record("https CPU per probe, httpx-aiohttp", base.cpu_us_per_probe, "us", bench="https"))
    add(
        Record(
            "https CPU per probe, lean path",
            lean.cpu_us_per_probe,
            "us",
            baseline=base.cpu_us_per_probe,
            ratio=lean.cpu_us_per_probe / base.cpu_us_per_probe,
            goal="<= httpx-aiohttp",
            met=lean.cpu_us_per_probe <= base.cpu_us_per_probe,
            bench="https",
            note="user + sys of this process; the certificate read once per connection",
        )
    )


def run(ctx: Context) -> None:
    report(measure(), ctx.results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_https")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="per measurement")
    args = parser.parse_args(argv)
    results = Results()
    report(measure(args.seconds), results)
    results.print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

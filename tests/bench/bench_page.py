"""Status page (docs/performance.md): the page in a headless Chromium, following a log that grows
by 2,000 events/s over 1,000 services.

This process is the writer: a FileEventLog of 1,000 services (monitor.started, their
registrations, one healthy probe each), then probes round-robin over them, ~4% failing,
appended in batches of RATE/20 every 50 ms with one flush each, for SECONDS. hbsm's API serves
the log in a process of its own (tests.bench.api_server `follow`: create_app over a LogSource
that folds the log as it grows, on uvicorn). The browser is Debian's Chromium driven by Selenium
(tests/support/browser.py); skipped, with a note, where there is none.

ROUNDS rounds of two runs, one after the other, each with a log of its own written the same
way, in a browser of its own:

* the baseline, the event stream alone: the same browser on the same origin, reading
  `/events` by the same fetch and putting each event's seq in a DOM attribute, nothing drawn:
  what following the stream costs a browser before any page does anything with it;
* the page: `/`, every service's row, its latency sparkline, a refetch of `/health/detailed`
  at most once a second.

Each puts the newest seq it has shown in `<body data-seq>`; Selenium reads it every 0.1 s.
Lag at a sample: 0 if the page shows everything written by then, else how long ago the oldest
event it does not show was written (as bench_dashboard). Figures: the page's max and p50 lag;
the browser's CPU (user + sys of every Chromium process, from /proc, over the run, as a share of
one core, averaged over the rounds) against the baseline's; the page's CPU while the log does
not grow. Goals: max lag
< 2 s (a fault shows on the page within two seconds); CPU <= 3x the stream alone's.

    python -m tests.bench.bench_page [--seconds S] [--rate N]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hbsm.events import MonitorStarted, Probe, ServiceRegistered, Transition
from hbsm.log import FileEventLog
from tests.bench.bench_dashboard import _lags
from tests.bench.context import Context
from tests.bench.procstat import cpu_seconds
from tests.bench.results import Record, Results
from tests.support.browser import chromium, missing

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

__all__ = ["main", "run"]

SERVICES = 1_000
RATE = 2_000
SECONDS = 10.0
IDLE_SECONDS = 4.0
SETTLE = 2.0
TICK = 0.05
SAMPLE = 0.1
LAG_GOAL = 2.0
CPU_GOAL = 3.0  # x the stream alone's
ROUNDS = 2
ROOT = Path(__file__).resolve().parents[2]

# The baseline, run in the page of /openapi.json (same origin, nothing else on it) through
# WebDriver (which no Content-Security-Policy stops): the event stream read as the page reads
# it, each event's seq put in <body data-seq>, nothing drawn.
STREAM_ONLY = """
(async () => {
  const body = document.body;
  body.dataset.seq = "0";
  const r = await fetch("/events", {headers: {Accept: "text/event-stream"}, cache: "no-store"});
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buf += decoder.decode(value, {stream: true});
    let end, seq = 0;
    while ((end = buf.indexOf("\\n\\n")) >= 0) {
      const msg = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const id = /^id: (\\d+)/m.exec(msg);
      const data = /^data: (.*)$/m.exec(msg);
      if (id && data) {
        JSON.parse(data[1]);
        seq = Number(id[1]);
      }
    }
    if (seq) body.dataset.seq = String(seq);
  }
})();
"""


def _say(message: str) -> None:
    print(f"  page: {message}", file=sys.stderr, flush=True)


def _browser_cpu(driver: WebDriver) -> float:
    """CPU seconds of every Chromium process (chromedriver's descendants; not chromedriver)."""
    root = driver.service.process.pid
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            total += cpu_seconds(pid)
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return total


@contextmanager
def _server(log: Path) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.api_server", "follow", str(log)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip():
            raise RuntimeError("the API server did not start")
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _seq(driver: WebDriver) -> int:
    got = driver.execute_script("return document.body && document.body.dataset.seq")
    return int(got) if got else 0


def _wait(what: str, check: object, timeout: float = 60.0) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if callable(check) and check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


@dataclass
class Outcome:
    lags: list[float]
    cpu_share: float
    idle_cpu_share: float
    written: int
    seconds: float
    catch_up_s: float | None


def measure(workdir: Path, *, page: bool, seconds: float = SECONDS, rate: int = RATE) -> Outcome:
    name = "page" if page else "stream"
    path = workdir / name / "heartbeat.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f"svc-{i:04d}" for i in range(SERVICES)]
    rng = random.Random(3)
    store = FileEventLog.open(path, fsync="batch")
    try:
        ts = time.time()
        store.append([MonitorStarted(ts=ts, pid=os.getpid(), version="bench")])
        store.append([ServiceRegistered(ts=ts, service=n, target="http://x/") for n in names])
        store.append([Probe(ts=ts, service=n, ok=True, latency_ms=20.0) for n in names])
        store.append(
            [
                Transition(ts=ts, service=n, src="unknown", dst="healthy", trigger="probe_ok")
                for n in names
            ]
        )
        store.flush()
        with _server(path) as base, chromium() as driver:
            if page:
                driver.get(base + "/")
                _wait(
                    "the page's rows and live stream",
                    lambda: driver.execute_script(
                        "return document.querySelectorAll('#services tbody tr').length === "
                        f"{SERVICES} && document.getElementById('live').textContent === 'live'"
                    ),
                )
            else:
                driver.get(base + "/openapi.json")
                driver.execute_script(STREAM_ONLY)
                _wait(
                    "the stream",
                    lambda: driver.execute_script("return document.body.dataset.seq === '0'"),
                )
            time.sleep(SETTLE)  # connected, first drawing done
            idle = float("nan")
            if page:
                cpu = _browser_cpu(driver)
                time.sleep(IDLE_SECONDS)
                idle = (_browser_cpu(driver) - cpu) / IDLE_SECONDS
            samples: list[tuple[float, int]] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    got = _seq(driver)
                    samples.append((time.monotonic(), got))
                    stop.wait(SAMPLE)

            sampler = threading.Thread(target=sample, daemon=True)
            per_tick = max(1, round(rate * TICK))
            writes: list[tuple[float, int]] = []
            cpu, start = _browser_cpu(driver), time.monotonic()
            sampler.start()
            i = 0
            tick = start
            while (now := time.monotonic()) - start < seconds:
                batch = []
                ts = time.time()
                for _ in range(per_tick):
                    service = names[i % SERVICES]
                    i += 1
                    if rng.random() < 0.04:
                        batch.append(Probe(ts=ts, service=service, ok=False, error="timeout",
                                           detail="no response within 5.0 s"))  # fmt: skip
                    else:
                        latency = round(rng.lognormvariate(3.0, 0.4), 1)
                        batch.append(
                            Probe(ts=ts, service=service, ok=True, latency_ms=latency, status=200)
                        )
                store.append(batch)
                store.flush()
                writes.append((time.monotonic(), store.last_seq))
                tick += TICK
                time.sleep(max(0.0, tick - time.monotonic()))
            elapsed = now - start
            cpu_share = (_browser_cpu(driver) - cpu) / elapsed
            last = store.last_seq
            caught = time.monotonic()
            while time.monotonic() - caught < 10 and (not samples or samples[-1][1] < last):
                time.sleep(0.05)
            catch_up = time.monotonic() - caught if samples and samples[-1][1] >= last else None
            stop.set()
            sampler.join(5)
    finally:
        store.close()
    in_run = [(t, s) for t, s in samples if t <= start + elapsed]
    return Outcome(_lags(writes, in_run), cpu_share, idle, i, elapsed, catch_up)


def report(got: Outcome, stream: Outcome, ratios: list[float], rate: int, results: Results) -> None:
    lags = got.lags or [float("nan")]
    worst = max(lags)
    caught = (
        f"caught up {got.catch_up_s:.2f} s after the writer stopped"
        if got.catch_up_s is not None
        else "never caught up within 10 s"
    )
    results.add(
        Record(
            f"status page lag, log growing {rate:,} events/s over {SERVICES:,} services, max",
            worst,
            "s",
            goal=f"< {LAG_GOAL:g} s",
            met=worst < LAG_GOAL,
            bench="page",
            note=(
                f"{got.written:,} probes written in {got.seconds:.1f} s, {len(got.lags)} "
                f"samples every {SAMPLE:g} s of the seq the page shows (<body data-seq>); {caught}"
            ),
        )
    )
    results.add(Record("status page lag, p50", statistics.median(lags), "s", bench="page"))
    ratio = got.cpu_share / stream.cpu_share if stream.cpu_share else None
    stream_lags = stream.lags or [float("nan")]
    results.add(
        Record(
            f"status page browser CPU, following {rate:,} events/s",
            got.cpu_share * 100,
            "% core",
            baseline=stream.cpu_share * 100,
            ratio=ratio,
            goal=f"<= {CPU_GOAL:g}x",
            met=ratio is not None and ratio <= CPU_GOAL,
            bench="page",
            note=(
                "user + sys of every Chromium process / wall time; baseline: the same browser "
                "reading the same event stream and drawing nothing (its lag max "
                f"{max(stream_lags):.2f} s, p50 {statistics.median(stream_lags):.2f} s); "
                f"{ROUNDS} rounds of each, alternating, their ratios "
                + ", ".join(f"{r:.2f}" for r in ratios)
            ),
        )
    )
    results.add(
        Record(
            "status page browser CPU, log not growing",
            got.idle_cpu_share * 100,
            "% core",
            bench="page",
            note=f"{SERVICES:,} services on the page, {IDLE_SECONDS:g} s of a log that holds still",
        )
    )


def _skipped(results: Results, why: str) -> None:
    results.add(Record("status page", None, bench="page", note=f"skipped: {why}"))


def _merge(runs: list[Outcome]) -> Outcome:
    """Rounds of equal length as one: shares averaged, lags pooled, the slowest catch-up."""
    catch_ups = [r.catch_up_s for r in runs]
    return Outcome(
        lags=[lag for r in runs for lag in r.lags],
        cpu_share=statistics.fmean(r.cpu_share for r in runs),
        idle_cpu_share=statistics.fmean(r.idle_cpu_share for r in runs),
        written=sum(r.written for r in runs),
        seconds=sum(r.seconds for r in runs),
        catch_up_s=None if None in catch_ups else max(c for c in catch_ups if c is not None),
    )


def _both(workdir: Path, seconds: float, rate: int) -> tuple[Outcome, Outcome, list[float]]:
    """ROUNDS of (baseline, page), alternating: load from elsewhere on the machine falls on
    both alike more often than on one of them."""
    pages, streams, ratios = [], [], []
    for n in range(ROUNDS):
        _say(f"round {n + 1}/{ROUNDS}: the baseline (the event stream alone, nothing drawn) ...")
        streams.append(measure(workdir / f"round-{n}", page=False, seconds=seconds, rate=rate))
        _say(f"round {n + 1}/{ROUNDS}: the status page ...")
        pages.append(measure(workdir / f"round-{n}", page=True, seconds=seconds, rate=rate))
        ratios.append(pages[-1].cpu_share / streams[-1].cpu_share)
    return _merge(pages), _merge(streams), ratios


def run(ctx: Context) -> None:
    why = missing()
    if why is not None:
        _skipped(ctx.results, why)
        return
    report(*_both(ctx.workdir, SECONDS, RATE), RATE, ctx.results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_page")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--rate", type=int, default=RATE, help="events/s appended")
    args = parser.parse_args(argv)
    results = Results()
    why = missing()
    if why is not None:
        _skipped(results, why)
    else:
        with tempfile.TemporaryDirectory(prefix="hbsm-bench-page-") as tmp:
            report(*_both(Path(tmp), args.seconds, args.rate), args.rate, results)
    results.print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Replay (docs/performance.md): projection replay against msgspec's own decode rate of the same
file.

(a) raw: msgspec's generic, untyped decode of the file, read in large blocks: the ceiling.
(b) typed: the same into the event union (`hbsm.events.decode_lines`): a stricter baseline.
(c) projection replay: `fold_history` (read_blocks + Projection.apply_all), the path
    `hbsm replay` and the monitor's resume take.
Goal: c ≥ 45% of a.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import msgspec

from hbsm.events import decode_lines
from hbsm.log.reader import READ_BLOCK
from hbsm.replay.fold import fold_history
from tests.bench.context import Context
from tests.bench.logfile import prefix_log
from tests.bench.results import Record, best_of, rate

__all__ = ["run", "run_cli"]

# Block sizes the decode baselines are measured at; the best is the baseline. The reader's own
# block size is always among them, so the replay's ratio to a decode of the same blocks shows too.
BLOCKS = tuple(sorted({64 * 2**10, 256 * 2**10, 2**20, READ_BLOCK}))
REPLAY_GOAL = 0.45
# Peak RSS replaying the whole log over replaying its first quarter: memory must stay flat.
RSS_GOAL = 1.25
PREFIX_EVENTS = 250_000
_STATS_LINE = re.compile(r"replayed (\d+) events in ([\d.]+) s \(([\d.,]+) events/s\)")


def _blocks(path: Path, size: int) -> Iterator[memoryview]:
    """The file in blocks of about `size` bytes, each cut at its last newline."""
    with open(path, "rb") as f:
        carry = b""
        while chunk := f.read(size):
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n") + 1
            yield memoryview(data)[:cut]
            carry = data[cut:]
        if carry:
            yield memoryview(carry)


def raw_decode(path: Path, size: int = READ_BLOCK) -> int:
    decoder = msgspec.json.Decoder()
    return sum(len(decoder.decode_lines(block)) for block in _blocks(path, size))


def typed_decode(path: Path, size: int = READ_BLOCK) -> int:
    n = 0
    for block in _blocks(path, size):
        n += len(decode_lines(block))  # type: ignore[arg-type]  # msgspec takes any buffer
    return n


def projection_replay(path: Path) -> int:
    return fold_history(path).monitor.events_total


def _kib(size: int) -> str:
    return f"{size // 2**20} MiB" if size >= 2**20 else f"{size // 2**10} KiB"


def run(ctx: Context) -> None:
    log = ctx.log
    path = log.path
    out = ctx.results
    n = log.events

    # Rounds interleave every measurement, so a burst of load from elsewhere on the machine
    # hits all of them alike rather than one figure; the best of the rounds is kept.
    runs: dict[tuple[str, int], Callable[[], int]] = {}
    for size in BLOCKS:
        runs["raw", size] = partial(raw_decode, path, size)
        runs["typed", size] = partial(typed_decode, path, size)
    runs["replay", READ_BLOCK] = partial(projection_replay, path)
    best = dict.fromkeys(runs, float("inf"))
    for round_ in range(ctx.repeat):
        print(f"  round {round_ + 1}/{ctx.repeat}", file=sys.stderr, flush=True)
        for key, fn in runs.items():
            seconds, got = best_of(1, fn, ctx.clock)
            best[key] = min(best[key], seconds)
            if got != n:
                print(f"  warning: {key} saw {got:,} events, not {n:,}", file=sys.stderr)
    rates = {key: rate(n, seconds) for key, seconds in best.items()}
    raw_size = max(BLOCKS, key=lambda size: rates["raw", size])
    typed_size = max(BLOCKS, key=lambda size: rates["typed", size])
    raw, typed = rates["raw", raw_size], rates["typed", typed_size]
    raw_reader = rates["raw", READ_BLOCK]
    replay = rates["replay", READ_BLOCK]
    ctx.shared["raw_rate"] = raw

    size_mb = path.stat().st_size / 2**20
    sweep = ", ".join(f"{_kib(s)} {rates['raw', s] / 1e6:.2f}M" for s in BLOCKS)
    out.add(
        Record(
            "raw decode (msgspec, untyped)",
            raw,
            "events/s",
            bench="replay",
            note=(
                f"{n:,} events, {size_mb:.0f} MiB, {ctx.clock_name}, best of {ctx.repeat}; "
                f"best block size {_kib(raw_size)} of: {sweep} events/s"
            ),
        )
    )
    out.add(
        Record(
            f"raw decode, {_kib(READ_BLOCK)} blocks (the reader's)",
            raw_reader,
            "events/s",
            baseline=raw,
            ratio=raw_reader / raw,
            bench="replay",
        )
    )
    out.add(
        Record(
            "typed decode (event union)",
            typed,
            "events/s",
            baseline=raw,
            ratio=typed / raw,
            bench="replay",
            note=f"hbsm.events.decode_lines, best block size {_kib(typed_size)}",
        )
    )
    ratio = replay / raw
    out.add(
        Record(
            "projection replay / raw decode",
            replay,
            "events/s",
            baseline=raw,
            ratio=ratio,
            goal=f">= {REPLAY_GOAL:.2f}",
            met=ratio >= REPLAY_GOAL,
            bench="replay",
            note=f"fold_history: read_blocks + Projection.apply_all, {_kib(READ_BLOCK)} reads",
        )
    )
    out.add(
        Record(
            f"projection replay / raw decode at {_kib(READ_BLOCK)}",
            replay,
            "events/s",
            baseline=raw_reader,
            ratio=replay / raw_reader,
            bench="replay",
            note="same block size on both sides",
        )
    )
    out.add(
        Record(
            "projection replay / typed decode",
            replay,
            "events/s",
            baseline=typed,
            ratio=replay / typed,
            bench="replay",
        )
    )


@dataclass
class _CliRun:
    code: int
    wall: float  # seconds, process start to exit
    cpu: float  # seconds of user + system time
    rss_mib: float  # peak resident set
    output: str


def _replay_cli(path: Path) -> _CliRun:
    """`hbsm replay --stats path` in a child process.

    os.wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the maximum over every
    child waited for so far, hiding a smaller peak behind an earlier larger one).
    """
    out_path = path.with_name(path.name + ".replay-out")
    with open(out_path, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "hbsm", "replay", "--stats", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = out_path.read_text(errors="replace")
    out_path.unlink()
    cpu = usage.ru_utime + usage.ru_stime
    return _CliRun(proc.returncode, wall, cpu, usage.ru_maxrss / 1024, text)  # KiB on Linux


def run_cli(ctx: Context) -> None:
    """`hbsm replay --stats` on the whole log and on its first quarter: time and peak memory."""
    log = ctx.log
    out = ctx.results
    prefix_n = min(PREFIX_EVENTS, log.events)
    files = {prefix_n: prefix_log(log, prefix_n), log.events: log.path}
    best: dict[int, _CliRun] = {}
    peak: dict[int, float] = {}
    reported: dict[int, float] = {}
    for round_ in range(ctx.repeat):
        print(f"  round {round_ + 1}/{ctx.repeat}", file=sys.stderr, flush=True)
        for n, path in files.items():
            got = _replay_cli(path)
            stats = _STATS_LINE.search(got.output)
            if got.code != 0 or stats is None:
                why = f"exit {got.code}" if got.code != 0 else "no stats line"
                last = (got.output.strip().splitlines() or [""])[-1][:120]
                note = f"not available ({why}): {last}"
                out.add(Record(f"hbsm replay --stats, {n:,} events", None, bench="cli", note=note))
                return
            if n not in best or got.wall < best[n].wall:
                best[n] = got
            peak[n] = max(peak.get(n, 0.0), got.rss_mib)
            reported[n] = max(reported.get(n, 0.0), float(stats.group(3).replace(",", "")))
    raw = ctx.shared.get("raw_rate")
    for n in files:
        out.add(
            Record(
                f"hbsm replay --stats wall, {n:,} events",
                best[n].wall,
                "s",
                bench="cli",
                note=f"process start to exit; CPU {best[n].cpu:.2f} s",
            )
        )
    full = log.events
    cpu_rate = rate(full, best[full].cpu)
    out.add(
        Record(
            f"hbsm replay --stats, {full:,} events per CPU second",
            cpu_rate,
            "events/s",
            baseline=raw,
            ratio=cpu_rate / raw if raw else None,
            bench="cli",
            note=(
                f"the whole process, start-up included; it reports {reported[full]:,.0f} "
                "events/s by its own clock; baseline: the raw decode rate above"
            ),
        )
    )
    ratio = peak[full] / peak[prefix_n]
    out.add(
        Record(
            f"peak RSS replaying {full:,} vs {prefix_n:,} events",
            peak[full],
            "MiB",
            baseline=peak[prefix_n],
            ratio=ratio,
            goal=f"<= {RSS_GOAL:.2f} (flat)",
            met=ratio <= RSS_GOAL,
            bench="cli",
        )
    )

"""Appending (docs/performance.md): group commit against an fsync per event, measured in the same
run.

Batched: `FileEventLog` (fsync="batch"), batches of 1,000 events, one flush (write + fsync) per
batch, over every event of the benchmark log. Baseline: fsync="always" with batches of one, so
every event is written and fsynced on its own, for a bounded count and time. Rotation is kept
out of the figure (max_bytes above the log's size): it is an occasional cost, not the append
path. Both are timed by the wall clock: waiting for the disk is the point.
Goal: batched ≥ 500,000 events/s.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from hbsm.events import Event, decode_lines
from hbsm.log import FileEventLog
from tests.bench.context import Context
from tests.bench.results import Record, rate

__all__ = ["run"]

BATCH = 1_000
UNBATCHED_EVENTS = 2_000
# On a busy disk an fsync can take tens of ms: bound the baseline's time, not just its count.
UNBATCHED_BUDGET_S = 3.0
APPEND_GOAL = 500_000
_NO_ROTATION = 2**40


def _events(path: Path, limit: int) -> list[Event]:
    events = decode_lines(path.read_bytes())
    return [e for e in events if isinstance(e, Event)][:limit]


def append_rate(
    directory: Path, events: Sequence[Event], batch: int, fsync: str, budget_s: float | None = None
) -> tuple[float, int]:
    """events/s appending `events` in batches of `batch`, each followed by a flush, and how
    many were appended: all of them, or as many as fit in `budget_s` seconds."""
    if directory.exists():
        shutil.rmtree(directory)
    log = FileEventLog.open(directory / "bench.jsonl", fsync=fsync, max_bytes=_NO_ROTATION)  # type: ignore[arg-type]
    done = 0
    try:
        start = time.perf_counter()
        deadline = start + budget_s if budget_s is not None else float("inf")
        for i in range(0, len(events), batch):
            chunk = events[i : i + batch]
            log.append(chunk)
            log.flush()
            done += len(chunk)
            if time.perf_counter() > deadline:
                break
        seconds = time.perf_counter() - start
    finally:
        log.close()
    shutil.rmtree(directory)
    return rate(done, seconds), done


def run(ctx: Context) -> None:
    log = ctx.log
    events = _events(log.path, log.events)
    batched = max(
        append_rate(ctx.workdir / "append-batched", events, BATCH, "batch")[0]
        for _ in range(ctx.repeat)
    )
    # The same without fsync: what the code costs, apart from the disk.
    unsynced = max(
        append_rate(ctx.workdir / "append-unsynced", events, BATCH, "never")[0]
        for _ in range(ctx.repeat)
    )
    few = events[:UNBATCHED_EVENTS]
    single, count = max(
        append_rate(ctx.workdir / "append-single", few, 1, "always", UNBATCHED_BUDGET_S)
        for _ in range(ctx.repeat)
    )
    out = ctx.results
    out.add(
        Record(
            "append, fsync per event (always, batch 1)",
            single,
            "events/s",
            bench="append",
            note=f"{count:,} events (at most {UNBATCHED_EVENTS:,} or {UNBATCHED_BUDGET_S:.0f} s)",
        )
    )
    out.add(
        Record(
            f"append, batched ({BATCH:,}/flush, fsync=batch)",
            batched,
            "events/s",
            baseline=single,
            ratio=batched / single,
            goal=f">= {APPEND_GOAL:,}/s",
            met=batched >= APPEND_GOAL,
            bench="append",
            note=f"{len(events):,} events, one fsync per batch",
        )
    )
    out.add(
        Record(
            f"append, batched ({BATCH:,}/flush, fsync=never)",
            unsynced,
            "events/s",
            bench="append",
            note="no fsync: the encoding and write cost alone",
        )
    )

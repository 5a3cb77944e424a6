"""Logs with the damage a real deployment can leave, made by the real writer in a test's own
directory (nothing committed): a rotated log with a middle segment deleted, and a history whose
clock stepped back mid-incident.

The histories are made the way the monitor makes them (tests/replay/replay_scenarios.Recorder:
facts through `hbsm.fsm.decide`, decisions after their fact), appended one fact and its
decisions per batch through `FileEventLog`, which stamps seq and rotates; each new segment opens
with the snapshot of a Projection folded from what was appended, as the monitor's does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from replay.replay_scenarios import INTERVAL, T0, Recorder

from hbsm.events import (
    Admin,
    Event,
    MonitorStarted,
    Probe,
    RepairFinished,
    RestartFinished,
    ServiceRegistered,
    Transition,
)
from hbsm.log import FileEventLog, read_history, segment_paths
from hbsm.projection import Projection

__all__ = [
    "DAY",
    "clock_step_history",
    "outage_history",
    "punch_hole",
    "recovery_seq",
    "write_log",
]

DAY = 86400.0
_FACTS = (MonitorStarted, ServiceRegistered, Probe, RepairFinished, RestartFinished, Admin)


def _batches(events: Sequence[Event]) -> list[list[Event]]:
    """One batch per fact: the fact and the decisions that follow it."""
    batches: list[list[Event]] = []
    for event in events:
        if isinstance(event, _FACTS) or not batches:
            batches.append([])
        batches[-1].append(event)
    return batches


def write_log(path: Path, events: Sequence[Event], *, max_bytes: int = 64 * 2**20) -> Path:
    """`events` in their order, through the real writer (rotating at `max_bytes`)."""
    projection = Projection()

    def snapshot(segment: int) -> object:
        return projection.snapshot(segment, projection.monitor.last_ts or 0.0)

    with FileEventLog.open(
        path, fsync="never", max_bytes=max_bytes, keep_segments=1000, snapshot=snapshot
    ) as log:
        for batch in _batches(events):
            projection.apply_all(log.append(batch))
            log.flush()
    return path


def outage_history() -> list[Event]:
    """`api` healthy, then down: three failures, a repair run, a restart, the cooldown, then
    healthy again; `web` healthy throughout. Probes every 30 s."""
    rec = Recorder()
    rec.start()
    rec.register("api")
    rec.register("web")
    t = rec.probes("api", "...", T0 + INTERVAL)
    rec.probes("web", ".", t - 1)
    t = rec.probes("api", "xxxxx", t)
    for _ in range(12):  # the cooldown, and on
        rec.probes("web", ".", t - 1)
        t = rec.probes("api", ".", t)
    return rec.events


def clock_step_history(step_after_failures: int = 3) -> list[Event]:
    """As outage_history, but the host's clock is stepped back by a day after `api`'s
    `step_after_failures`th failed probe (its repair run under way): every ts from there on
    is a day earlier, and the decisions after it are taken in the stepped time."""
    rec = Recorder()
    rec.start()
    rec.register("api")
    rec.register("web")
    t = rec.probes("api", "...", T0 + INTERVAL)
    t = rec.probes("api", "x" * step_after_failures, t)
    t -= DAY
    t = rec.probes("api", "x" * (5 - step_after_failures), t)
    for _ in range(12):
        rec.probes("web", ".", t - 1)
        t = rec.probes("api", ".", t)
    return rec.events


def punch_hole(path: Path, seq: int) -> tuple[Path, int, int]:
    """Delete the closed segment holding the event `seq` (not the first or the last one);
    returns it and the range of seqs it held."""
    segments = segment_paths(path)
    for number, segment in enumerate(segments):
        seqs = [event.seq for event in read_history(segment)]
        if seqs[0] <= seq <= seqs[-1]:
            assert 0 < number < len(segments) - 1, "want a segment in the middle"
            segment.unlink()
            return segment, seqs[0], seqs[-1]
    raise AssertionError(f"no closed segment holds seq {seq}")


def recovery_seq(path: Path, service: str) -> int:
    """The seq of the service's last transition to healthy."""
    return max(
        e.seq
        for e in read_history(path)
        if isinstance(e, Transition) and e.service == service and e.dst == "healthy"
    )

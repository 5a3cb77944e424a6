"""LogFold: the live log folded into a projection, a gap handed back as a value, and the
projection never emptied by one (the snapshot of the next segment kept restores the state)."""

from __future__ import annotations

from pathlib import Path

import msgspec
from support.clock import ManualClock

from hbsm.events import Event, MonitorStarted, Probe, ServiceRegistered, Snapshot, Transition
from hbsm.log import FileEventLog, read_history
from hbsm.log.fold import EventsMissing, LineSkipped, LogFold, SegmentPruned, describe_gap
from hbsm.projection import Projection

from .log_support import seqs

NAMES = ["api", "db", "web"]


def registered() -> list[Event]:
    out: list[Event] = [MonitorStarted(pid=1, version="9.9")]
    for name in NAMES:
        out.append(ServiceRegistered(service=name, target=f"http://{name}/h"))
        out.append(Probe(service=name, ok=True, latency_ms=1.0))
        out.append(Transition(service=name, src="unknown", dst="healthy", trigger="probe_ok"))
    return out


def failures(name: str, n: int) -> list[Event]:
    out: list[Event] = [
        Transition(service=name, src="healthy", dst="degraded", trigger="probe_failed")
    ]
    out += [Probe(service=name, ok=False, error="timeout") for _ in range(n)]
    return out


def views(projection: Projection) -> object:
    return msgspec.to_builtins(projection.services)


def test_a_fold_behind_a_pruned_segment_reports_it_and_keeps_every_service(
    tmp_path: Path,
) -> None:
    path = tmp_path / "heartbeat.jsonl"
    clock = ManualClock(1_000.0)
    written = Projection()  # the writer's own, whose snapshot opens each new segment
    log = FileEventLog.open(
        path,
        max_bytes=1_500,
        keep_segments=1,
        snapshot=lambda segment: written.snapshot(segment, clock()),
        clock=clock,
    )
    with LogFold(path, Projection()) as fold:
        with log:
            written.apply_all(log.append(registered()))
            log.flush()
            first = fold.poll()
            assert seqs(first.events) == list(range(1, log.last_seq + 1)) and first.gaps == ()
            assert first.version == fold.projection.version
            assert sorted(fold.projection.services) == NAMES
            read_up_to = fold.last_seq
            for _ in range(10):  # rotations, one closed segment kept: the fold is behind
                written.apply_all(log.append(failures("db", 4)))
                log.flush()
            last = log.last_seq
        # Closed: compression and pruning (off the writer's thread) are over, so which segment
        # is the oldest kept no longer depends on how the machine scheduled them.

        steps = []
        while not steps or steps[-1].events:
            steps.append(fold.poll())
            # Never empty between two polls: what a reader serves meanwhile.
            assert sorted(fold.projection.services) == NAMES

    gaps = [gap for step in steps for gap in step.gaps]
    kept = list(read_history(path))
    assert isinstance(kept[0], Snapshot) and kept[0].segment > 1
    (gap,) = gaps
    assert isinstance(gap, SegmentPruned) and gap.retention
    # The segment it needed next (after draining the one it had open), and exactly what is
    # lost: up to the snapshot of the oldest segment kept, where it went on.
    assert gap.segment == 1 and read_up_to < gap.first and gap.last == kept[0].seq - 1
    assert describe_gap(gap) == (
        f"{path}: events {gap.first}..{gap.last} were lost to this reader: segment 1 was pruned "
        f"(retention) before it was read; going on from seq {kept[0].seq}"
    )
    read = [event for step in steps for event in step.events]
    assert seqs(read) == [*range(read_up_to + 1, gap.first), *range(kept[0].seq, last + 1)]
    # The state is the one the snapshot restored and the events after it led to.
    expected = Projection()
    expected.apply_all(kept)
    assert views(fold.projection) == views(expected) == views(written)
    assert fold.projection.services["db"].fsm.state == "degraded"


def test_a_bad_line_is_a_value_and_the_event_it_held_is_said_missing(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path) as log:
        log.append(registered())
        log.flush()
    lines = path.read_bytes().split(b"\n")
    lines[3] = b"{not json"
    path.write_bytes(b"\n".join(lines))

    with LogFold(path, Projection()) as fold:
        steps = [fold.poll()]
        while steps[-1].events:
            steps.append(fold.poll())
    gaps = [gap for step in steps for gap in step.gaps]
    assert len(gaps) == 2
    bad, missing = gaps
    assert isinstance(bad, LineSkipped) and (bad.path, bad.line) == (path, 4)
    assert describe_gap(bad).startswith(f"skipped a bad line: {path}, line 4: ")
    assert isinstance(missing, EventsMissing) and (missing.first, missing.last) == (4, 4)
    assert describe_gap(missing).startswith(
        f"{path}: events 4..4 were lost to this reader: skipped"
    )
    assert sorted(fold.projection.services) == NAMES


def test_without_a_projection_the_events_are_handed_back_unfolded(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path) as log:
        stamped = log.append(registered())
    with LogFold(path, None) as fold:
        step = fold.poll()
    assert step.events == stamped and step.version is None and fold.last_seq == stamped[-1].seq


def test_reopened_it_goes_on_after_what_it_read_with_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path) as log, LogFold(path, Projection()) as fold:
        log.append(registered())
        log.flush()
        read = fold.poll().events
        fold.reopen("reading was interrupted (a test)")
        new = log.append(failures("web", 2))
        log.flush()
        step = fold.poll()
    assert step.events == new and step.gaps == ()  # nothing lost: the reason is not said
    assert seqs(read + step.events) == list(range(1, new[-1].seq + 1))
    assert fold.projection.services["web"].fsm.state == "degraded"

"""Size-based rotation into numbered gzip segments, each opening with a snapshot; retention by
count; reading a history across segments; finishing an interrupted rotation."""

from __future__ import annotations

import gzip
import json
import os
import threading
from pathlib import Path

import msgspec
from support.clock import ManualClock

from hbsm.events import MonitorView, Probe, ServiceView, Snapshot
from hbsm.log import FileEventLog, ReadStats, read_history, segment_paths
from hbsm.state import ServiceState

from .log_support import probes, raw_lines, seqs


def fill(log: FileEventLog, batches: int, size: int = 10) -> None:
    for _ in range(batches):
        log.append(probes(size))
        log.flush()


def segment_lines(path: Path) -> list[dict[str, object]]:
    with gzip.open(path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


def test_rotation_writes_numbered_gzip_segments_each_opening_with_a_snapshot(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events" / "heartbeat.jsonl"
    with FileEventLog.open(path, max_bytes=3000) as log:
        fill(log, 12)
        last = log.last_seq
        active = log.segment
    segments = segment_paths(path)
    assert len(segments) >= 3
    assert [p.name for p in segments] == [
        f"heartbeat.{n:08d}.jsonl.gz" for n in range(len(segments))
    ]
    assert active == len(segments)
    assert not list(path.parent.glob("*.jsonl.gz.tmp"))
    assert not list(path.parent.glob("heartbeat.0*.jsonl"))  # all compressed
    expected_seq = 1
    for number, segment in enumerate([*segments, path]):
        lines = segment_lines(segment) if segment != path else raw_lines(path)
        if number > 0:
            assert lines[0]["type"] == "snapshot"
            assert lines[0]["segment"] == number
        for line in lines:
            assert line["seq"] == expected_seq  # seq continues across segments, no gap
            expected_seq += 1
    assert expected_seq - 1 == last


def test_read_history_reads_every_segment_in_order(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path, max_bytes=2000) as log:
        fill(log, 10)
        last = log.last_seq
    stats = ReadStats()
    events = list(read_history(path, stats=stats))
    assert seqs(events) == list(range(1, last + 1))
    assert stats.segments == len(segment_paths(path)) + 1
    assert stats.events == last
    snapshots = [e for e in events if isinstance(e, Snapshot)]
    assert [s.segment for s in snapshots] == list(range(1, len(segment_paths(path)) + 1))
    # after_seq skips whole segments and still starts at the right event.
    assert seqs(list(read_history(path, after_seq=last - 7))) == list(range(last - 6, last + 1))
    # One segment can be read on its own.
    first = list(read_history(segment_paths(path)[0]))
    assert first[0].seq == 1


def test_the_snapshot_callback_opens_each_new_segment(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    asked: list[tuple[int, int]] = []

    def snapshot(segment: int) -> Snapshot:
        asked.append((segment, log.last_seq))
        return Snapshot(monitor=MonitorView(running=True, last_seq=log.last_seq), segment=99)

    clock = ManualClock(500.0)
    log = FileEventLog.open(path, max_bytes=1000, snapshot=snapshot, clock=clock)
    with log:
        fill(log, 6)
    assert [segment for segment, _ in asked] == list(range(1, len(asked) + 1))
    events = list(read_history(path))
    snapshots = [e for e in events if isinstance(e, Snapshot)]
    assert len(snapshots) == len(asked) >= 2
    for snap, (segment, seq_before) in zip(snapshots, asked, strict=True):
        assert snap.segment == segment  # the log's number wins over the callback's
        assert snap.seq == seq_before + 1
        assert snap.ts == 500.0
        assert snap.monitor.running and snap.monitor.last_seq == seq_before


def test_rotation_waits_for_the_next_append(tmp_path: Path) -> None:
    # The snapshot is taken when the caller appends again, having folded everything before.
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path, max_bytes=500) as log:
        log.append(probes(20))
        log.flush()
        assert segment_paths(path) == []
        log.append(probes(1))
        assert len(segment_paths(path)) == 1
        assert raw_lines(path)[0]["type"] == "snapshot"


def test_keep_segments_prunes_the_oldest(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path, max_bytes=1000, keep_segments=2) as log:
        fill(log, 12)
        last = log.last_seq
        active = log.segment
    segments = segment_paths(path)
    assert [p.name for p in segments] == [
        f"heartbeat.{n:08d}.jsonl.gz" for n in (active - 2, active - 1)
    ]
    events = list(read_history(path))
    assert isinstance(events[0], Snapshot) and events[0].segment == active - 2
    assert seqs(events) == list(range(events[0].seq, last + 1))


def test_keep_zero_keeps_only_the_active_file(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path, max_bytes=800, keep_segments=0) as log:
        fill(log, 6)
    assert segment_paths(path) == []
    assert isinstance(next(iter(read_history(path))), Snapshot)


def test_a_huge_snapshot_rotates_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    services = [
        ServiceView(
            name=f"service-{i:04d}",
            fsm=ServiceState(name=f"service-{i:04d}"),
            latency_ms=[12.5] * 240,
        )
        for i in range(1000)
    ]

    def snapshot(segment: int) -> Snapshot:
        return Snapshot(services=services)

    with FileEventLog.open(path, max_bytes=100_000, snapshot=snapshot, clock=ManualClock()) as log:
        for _ in range(4):
            log.append(probes(2000))  # > max_bytes: every append after the first rotates
            log.flush()
        last = log.last_seq
    assert path.stat().st_size > 1_000_000  # the active file starts with a >1 MB line
    events = list(read_history(path))
    assert seqs(events) == list(range(1, last + 1))
    snapshots = [e for e in events if isinstance(e, Snapshot)]
    assert len(snapshots) == 3
    expected = msgspec.json.encode(services)
    assert all(msgspec.json.encode(s.services) == expected for s in snapshots)
    with FileEventLog.open(path) as log:
        assert log.last_seq == last


def _rotated_log(path: Path) -> int:
    with FileEventLog.open(path, max_bytes=2000) as log:
        fill(log, 6)
        return log.last_seq


def test_open_drops_a_next_file_whose_rotation_never_renamed(tmp_path: Path) -> None:
    # Crash while writing `.next`: the active file was never renamed; redo the rotation later.
    path = tmp_path / "heartbeat.jsonl"
    last = _rotated_log(path)
    closed_before = segment_paths(path)
    pending = path.with_name(path.name + ".next")
    pending.write_bytes(b'{"type":"snapshot","seq":')
    with FileEventLog.open(path, max_bytes=10**9) as log:
        assert not pending.exists()
        assert log.recovered is None
        assert log.last_seq == last
    assert segment_paths(path) == closed_before
    assert seqs(list(read_history(path))) == list(range(1, last + 1))


def test_open_finishes_a_rotation_cut_between_its_renames(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    last = _rotated_log(path)
    number = len(segment_paths(path))
    # The state a crash leaves after `active -> numbered` and before `.next -> active`.
    os.rename(path, path.with_name(f"heartbeat.{number:08d}.jsonl"))
    snapshot = {"type": "snapshot", "seq": last + 1, "ts": 1.0, "segment": number + 1}
    path.with_name(path.name + ".next").write_text(json.dumps(snapshot) + "\n")
    with FileEventLog.open(path) as log:
        assert log.last_seq == last + 1
        assert log.segment == number + 1
        log.append(probes(2))
    assert [p.name for p in segment_paths(path)][-1] == f"heartbeat.{number:08d}.jsonl.gz"
    assert not path.with_name(f"heartbeat.{number:08d}.jsonl").exists()
    assert seqs(list(read_history(path))) == list(range(1, last + 4))


def test_open_compresses_a_segment_left_plain(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    last = _rotated_log(path)
    gz = segment_paths(path)[-1]
    plain = gz.with_name(gz.name.removesuffix(".gz"))
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    stray = gz.with_name(gz.name + ".tmp")
    stray.write_bytes(b"half a gzip")
    assert segment_paths(path)[-1] == plain  # readers take the plain form meanwhile
    assert seqs(list(read_history(path))) == list(range(1, last + 1))
    with FileEventLog.open(path):
        pass
    assert segment_paths(path)[-1] == gz
    assert not plain.exists() and not stray.exists()
    assert seqs(list(read_history(path))) == list(range(1, last + 1))


def test_open_removes_a_plain_copy_once_its_gzip_is_in_place(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    last = _rotated_log(path)
    gz = segment_paths(path)[0]
    plain = gz.with_name(gz.name.removesuffix(".gz"))
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    assert segment_paths(path)[0] == gz  # the complete .gz wins over the plain copy
    with FileEventLog.open(path):
        pass
    assert not plain.exists()
    assert seqs(list(read_history(path))) == list(range(1, last + 1))


def test_events_keep_their_own_ts_across_rotation(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path, max_bytes=500, clock=ManualClock(7.0)) as log:
        for i in range(5):
            log.append([Probe(service="a", ok=True, ts=100.0 + i) for _ in range(5)])
            log.flush()
    events = list(read_history(path))
    assert {e.ts for e in events if isinstance(e, Probe)} == {100.0, 101.0, 102.0, 103.0, 104.0}
    assert {e.ts for e in events if isinstance(e, Snapshot)} == {7.0}


def test_read_history_during_rotations_is_whole_each_time(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    log = FileEventLog.open(path, max_bytes=700, keep_segments=10_000, fsync="never")
    done = threading.Event()

    def write() -> None:
        try:
            for _ in range(200):
                log.append(probes(4))
                log.flush()
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    try:
        while not done.is_set() or reads == 0:
            got = seqs(list(read_history(path)))
            assert got == list(range(1, len(got) + 1))  # no gap, no repeat, from the start
            reads += 1
    finally:
        writer.join()
        log.close()
    assert len(segment_paths(path)) > 40

"""Following a live log by offset: partial lines wait for their newline, rotations are crossed
without missing or repeating an event, whether the writer is a thread or another process."""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path

import pytest
from support.clock import ManualClock
from support.waiting import DEADLINE

from hbsm.events import LogRecovered, Probe, Snapshot, encode
from hbsm.log import (
    CorruptLineError,
    FileEventLog,
    LogError,
    LogFollower,
    Position,
    ReadStats,
    segment_paths,
)

from .log_support import probes, seqs, spawn, without_snapshots


def line(seq: int, service: str = "a") -> bytes:
    return encode(Probe(seq=seq, ts=1.0, service=service, ok=True)) + b"\n"


def poll_until(follower: LogFollower, last_seq: int, timeout: float = DEADLINE) -> list:
    seen: list = []
    deadline = time.monotonic() + timeout
    while not seen or seen[-1].seq < last_seq:
        assert time.monotonic() < deadline, f"follower stuck at {seqs(seen)[-3:]}"
        seen += follower.poll()
    return seen


def test_an_event_without_its_seq_is_delivered_not_dropped(tmp_path: Path) -> None:
    # A line without `seq` decodes as seq 0; "from the start" drops nothing, as read_history.
    path = tmp_path / "heartbeat.jsonl"
    path.write_bytes(b'{"type":"probe","ts":1.0,"service":"a","ok":true}\n' + line(1))
    with LogFollower(path) as follower:
        assert seqs(follower.poll()) == [0, 1]


def test_a_partial_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    path.write_bytes(line(1))
    whole = line(2, service="b" * 100)
    with LogFollower(path) as follower:
        assert seqs(follower.poll()) == [1]
        with path.open("ab") as f:
            f.write(whole[:40])
        assert follower.poll() == []
        assert follower.position == Position(0, len(line(1)))
        with path.open("ab") as f:
            f.write(whole[40:])
        events = follower.poll()
        assert seqs(events) == [2]
        assert isinstance(events[0], Probe) and events[0].service == "b" * 100
        assert follower.position == Position(0, len(line(1)) + len(whole))


def test_from_start_false_sees_only_new_events(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path) as log:
        log.append(probes(5))
        log.flush()
        with LogFollower(path, from_start=False) as follower:
            assert follower.poll() == []
            new = log.append(probes(2))
            log.flush()
            assert follower.poll() == new


def test_from_start_begins_at_the_active_segments_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path, max_bytes=1000) as log:
        for _ in range(6):
            log.append(probes(10))
            log.flush()
        active = log.segment
        last = log.last_seq
    with LogFollower(path) as follower:
        events = follower.poll()
    assert isinstance(events[0], Snapshot) and events[0].segment == active
    assert seqs(events) == list(range(events[0].seq, last + 1))


def test_a_follower_waits_for_a_log_that_does_not_exist_yet(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with LogFollower(path) as follower:
        assert follower.poll() == []
        with FileEventLog.open(path) as log:
            new = log.append(probes(3))
        assert follower.poll() == new


def test_a_resumed_follower_continues_where_the_last_one_stopped(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path, max_bytes=1500) as log:
        first = LogFollower(path)
        log.append(probes(10))
        log.flush()
        seen = first.poll()
        where = first.position
        first.close()
        for _ in range(8):
            log.append(probes(10))
            log.flush()
        last = log.last_seq
    assert len(segment_paths(path)) >= 2  # the resumed follower starts in a closed segment
    with LogFollower(path, start=where) as second:
        seen += poll_until(second, last)
    assert seqs(seen) == list(range(1, last + 1))


def test_follower_crosses_rotations_while_a_thread_appends(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    log = FileEventLog.open(path, max_bytes=4000, keep_segments=1000, fsync="never")
    follower = LogFollower(path)
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for batch in range(300):
                log.append(probes(batch % 7 + 1, prefix=f"t{batch}"))
                log.flush()
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen: list = []
    while not done.is_set():
        seen += follower.poll()
    writer.join()
    last = log.last_seq
    log.close()
    seen += poll_until(follower, last) if not seen or seen[-1].seq < last else []
    follower.close()
    assert not errors
    assert seqs(seen) == list(range(1, last + 1))  # no miss, no duplicate
    snapshots = [e for e in seen if isinstance(e, Snapshot)]
    assert len(snapshots) >= 10
    assert [s.segment for s in snapshots] == list(range(1, len(snapshots) + 1))


WRITER = """
    import sys
    from hbsm.events import Probe
    from hbsm.log import FileEventLog
    log = FileEventLog.open(sys.argv[1], max_bytes=600, keep_segments=5000, fsync="never")
    print("open", flush=True)
    sys.stdin.readline()
    for batch in range(700):
        log.append([Probe(service=f"p{batch}-{i}", ok=True) for i in range(batch % 5 + 1)])
        log.flush()
    print(log.last_seq, flush=True)
    log.close()
"""


def test_follower_crosses_rotations_while_another_process_appends(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    writer = spawn(WRITER, str(path))
    assert writer.stdout is not None and writer.stdin is not None
    assert writer.stdout.readline().strip() == "open"
    follower = LogFollower(path, stats=(stats := ReadStats()))
    writer.stdin.write("go\n")
    writer.stdin.flush()
    seen: list = []
    while writer.poll() is None:
        seen += follower.poll()
    assert writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
    last = int(writer.stdout.readline())
    seen += poll_until(follower, last) if not seen or seen[-1].seq < last else []
    follower.close()
    assert seqs(seen) == list(range(1, last + 1))
    assert len(without_snapshots(seen)) == sum(b % 5 + 1 for b in range(700))
    assert stats.segments == len(segment_paths(path)) + 1
    assert stats.torn == []


def test_a_follower_lagging_several_rotations_reads_the_closed_segments(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path, max_bytes=1000) as log:
        follower = LogFollower(path)
        log.append(probes(5))
        log.flush()
        seen = follower.poll()
        for _ in range(10):
            log.append(probes(10))
            log.flush()
        last = log.last_seq
        closed = len(segment_paths(path))
    assert closed >= 4
    seen += poll_until(follower, last)
    follower.close()
    assert seqs(seen) == list(range(1, last + 1))


def test_follower_after_a_writer_cut_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path) as log:
        log.append(probes(3))
    with path.open("ab") as f:
        f.write(b'{"type":"probe","seq":4,"ts":1.0,"serv')  # a writer died mid-line
    with LogFollower(path) as follower:
        assert seqs(follower.poll()) == [1, 2, 3]
        with FileEventLog.open(path) as log:  # cuts the torn line, records it
            more = log.append(probes(1))
        events = follower.poll()
    assert isinstance(events[0], LogRecovered)
    assert seqs(events) == [4, more[0].seq]


def test_a_bad_line_raises_once_then_the_follower_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    path.write_bytes(line(1) + line(2) + b"garbage\n" + line(3))
    with LogFollower(path) as follower:
        assert seqs(follower.poll()) == [1, 2]
        with pytest.raises(CorruptLineError) as caught:
            follower.poll()
        assert (Path(caught.value.path), caught.value.line) == (path, 3)
        assert seqs(follower.poll()) == [3]
        with path.open("ab") as f:
            f.write(line(4))
        assert seqs(follower.poll()) == [4]


def test_a_bad_line_is_numbered_in_its_file_when_following_from_the_end(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    path.write_bytes(line(1) + line(2))
    with LogFollower(path, from_start=False) as follower:
        with path.open("ab") as f:
            f.write(b"{oops\n")
        with pytest.raises(CorruptLineError) as caught:
            follower.poll()
    assert caught.value.line == 3


def test_skip_bad_follower_counts_instead(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    path.write_bytes(line(1) + b"garbage\n" + line(2) + line(2))
    stats = ReadStats()
    with LogFollower(path, skip_bad=True, stats=stats) as follower:
        assert seqs(follower.poll()) == [1, 2]
    assert stats.skipped == 2


def test_a_pruned_segment_is_an_error_not_a_silent_gap(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path, max_bytes=800, keep_segments=1, clock=ManualClock()) as log:
        log.append(probes(3))
        log.flush()
        follower = LogFollower(path, start=Position(0, 0))
        for _ in range(8):
            log.append(probes(10))
            log.flush()
    with follower, pytest.raises(LogError, match="pruned"):
        follower.poll()


def test_a_bounded_poll_returns_the_history_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path) as log:
        log.append(probes(500))
    with LogFollower(path, max_poll_bytes=4096) as follower:
        first = follower.poll()
        assert 0 < len(first) < 500
        rest = poll_until(follower, 500)
    assert seqs(first + rest) == list(range(1, 501))


def test_from_the_end_of_a_log_created_later_is_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with LogFollower(path, from_start=False) as follower:
        with FileEventLog.open(path) as log:
            new = log.append(probes(2))
        assert follower.poll() == new


def test_a_bad_line_inside_a_closed_segment_loses_nothing_after_it(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path, max_bytes=1500) as log:
        for _ in range(4):
            log.append(probes(10))
            log.flush()
        last = log.last_seq
    first = segment_paths(path)[0]
    lines = gzip.decompress(first.read_bytes()).split(b"\n")
    bad_seq = json.loads(lines[4])["seq"]
    lines[4] = b"garbage"
    first.write_bytes(gzip.compress(b"\n".join(lines)))
    with LogFollower(path, start=Position(0, 0)) as follower:
        seen = follower.poll()
        with pytest.raises(CorruptLineError) as caught:
            follower.poll()
        seen += poll_until(follower, last)
    assert (Path(caught.value.path), caught.value.line) == (first, 5)
    assert seqs(seen) == [s for s in range(1, last + 1) if s != bad_seq]


@pytest.mark.parametrize("after", [0, 1, 2345, 4999, 5000])
def test_follow_after_a_seq_starts_right_there_in_a_large_file(tmp_path: Path, after: int) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path) as log:
        log.append(probes(5000))
        log.flush()
        assert path.stat().st_size > 300_000  # large enough for the binary search to matter
        with log.follow(after) as follower:
            assert isinstance(follower, LogFollower)
            start = follower.position
            events = poll_until(follower, 5000) if after < 5000 else follower.poll()
            assert seqs(events) == list(range(after + 1, 5001))
            # It seeks near the first wanted line instead of reading from the start.
            assert start.offset <= path.stat().st_size
            if after >= 2345:
                assert start.offset > 100_000

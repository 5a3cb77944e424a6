"""Crash recovery and bad lines: a torn last line is cut and recorded; a bad line elsewhere is
an error naming file and line, or skipped and counted with skip_bad."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from hbsm.events import LogRecovered, OpaqueEvent, Probe
from hbsm.log import CorruptLineError, FileEventLog, ReadStats, read_history

from .log_support import probes, python, raw_lines, seqs, spawn

TORN = b'{"type":"probe","seq":11,"ts":1.0,"service":"api","o'


def write_log(path: Path, count: int) -> None:
    with FileEventLog.open(path) as log:
        log.append(probes(count))


def replace_line(path: Path, number: int, text: bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[number - 1] = text
    path.write_bytes(b"\n".join(lines))


def test_a_torn_last_line_is_cut_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    write_log(path, 10)
    good_size = path.stat().st_size
    with path.open("ab") as f:
        f.write(TORN)
    with FileEventLog.open(path) as log:
        recovered = log.recovered
        assert isinstance(recovered, LogRecovered)
        assert (recovered.seq, recovered.offset, recovered.cut_bytes) == (11, good_size, len(TORN))
        assert recovered.path == str(path)
        assert "torn" in recovered.detail
        assert log.last_seq == 11
        nxt = log.append(probes(1))
    assert seqs(nxt) == [12]
    events = list(read_history(path))
    assert seqs(events) == list(range(1, 13))
    assert events[10] == recovered
    assert path.read_bytes().endswith(b"\n")
    assert TORN not in path.read_bytes()


def test_the_next_open_finds_nothing_to_recover(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    write_log(path, 3)
    with path.open("ab") as f:
        f.write(TORN)
    FileEventLog.open(path).close()
    size = path.stat().st_size
    with FileEventLog.open(path) as log:
        assert log.recovered is None
        assert log.last_seq == 4
    assert path.stat().st_size == size


def test_a_complete_line_without_its_newline_is_still_cut(tmp_path: Path) -> None:
    # Its flush never returned (the newline is written in the same write), so nothing acted on it.
    path = tmp_path / "heartbeat.jsonl"
    write_log(path, 2)
    with path.open("ab") as f:
        f.write(b'{"type":"probe","seq":3,"ts":1.0,"service":"x","ok":true}')
    with FileEventLog.open(path) as log:
        assert log.recovered is not None
        assert log.recovered.seq == 3
    assert [type(e).__name__ for e in read_history(path)] == ["Probe", "Probe", "LogRecovered"]


def test_a_log_that_is_only_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    path.write_bytes(TORN)
    with FileEventLog.open(path) as log:
        assert log.recovered is not None
        assert (log.recovered.seq, log.recovered.offset) == (1, 0)
    assert [e["type"] for e in raw_lines(path)] == ["log.recovered"]


def test_a_writer_killed_mid_stream_is_recovered(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    writer = spawn(
        """
        import sys
        from hbsm.events import Probe
        from hbsm.log import FileEventLog
        log = FileEventLog.open(sys.argv[1], fsync="never")
        batch = [Probe(service="s" * 200, ok=True) for _ in range(2000)]
        log.append(batch)
        log.flush()
        print("going", flush=True)
        while True:
            log.append(batch)
            log.flush()
        """,
        str(path),
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "going"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    with FileEventLog.open(path) as log:
        last = log.last_seq
    events = list(read_history(path))
    assert seqs(events) == list(range(1, last + 1))
    # Whether the kill tore a line is luck; if it did, the record says where.
    assert all(isinstance(e, Probe) for e in events[:-1])


def test_a_corrupt_middle_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    write_log(path, 10)
    replace_line(path, 5, b'{"type":"probe","seq":5,oops}')
    seen = []
    with pytest.raises(CorruptLineError) as caught:
        for event in read_history(path):
            seen.append(event)
    error = caught.value
    assert (Path(error.path), error.line) == (path, 5)
    assert str(error).startswith(f"{path}, line 5: ")
    assert "\n" not in str(error)
    assert seqs(seen) == [1, 2, 3, 4]  # what precedes the bad line is delivered first


def test_skip_bad_skips_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    write_log(path, 10)
    replace_line(path, 5, b"not json at all")
    replace_line(path, 8, b'{"type":"probe","seq":8,"ts":1.0,"service":"a","ok":"yes"}')
    stats = ReadStats()
    events = list(read_history(path, skip_bad=True, stats=stats))
    assert seqs(events) == [1, 2, 3, 4, 6, 7, 9, 10]
    assert (stats.skipped, stats.events, stats.segments) == (2, 8, 1)


def test_a_known_type_with_invalid_fields_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    write_log(path, 4)
    replace_line(path, 2, b'{"type":"probe","seq":2,"ts":1.0,"service":"a","ok":"yes"}')
    with pytest.raises(CorruptLineError) as caught:
        list(read_history(path))
    assert caught.value.line == 2


def test_a_seq_that_does_not_increase_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    write_log(path, 6)
    lines = path.read_bytes().split(b"\n")
    replace_line(path, 4, lines[1])  # line 4 repeats seq 2
    with pytest.raises(CorruptLineError) as caught:
        list(read_history(path))
    assert caught.value.line == 4
    assert "does not increase" in caught.value.reason
    stats = ReadStats()
    assert seqs(list(read_history(path, skip_bad=True, stats=stats))) == [1, 2, 3, 5, 6]
    assert stats.skipped == 1


def test_an_unknown_type_is_kept_opaque_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    write_log(path, 3)
    replace_line(path, 2, b'{"type":"future.thing","seq":2,"ts":5.0,"service":"x","n":1}')
    events = list(read_history(path))
    assert seqs(events) == [1, 2, 3]
    assert isinstance(events[1], OpaqueEvent)
    assert (events[1].type, events[1].service, events[1].body["n"]) == ("future.thing", "x", 1)


def test_open_does_not_scan_the_middle_but_read_reports_it(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    write_log(path, 5)
    replace_line(path, 3, b"garbage")
    with FileEventLog.open(path) as log:
        assert log.last_seq == 5
        with pytest.raises(CorruptLineError) as caught:
            list(log.read())
        assert caught.value.line == 3


def test_a_corrupt_last_line_fails_open_unless_skip_bad(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    write_log(path, 5)
    replace_line(path, 5, b"{broken")
    with pytest.raises(CorruptLineError) as caught:
        FileEventLog.open(path)
    assert (Path(caught.value.path), caught.value.line) == (path, 5)
    with FileEventLog.open(path, skip_bad=True) as log:
        assert log.last_seq == 4
        assert seqs(log.append(probes(1))) == [5]
    # The lock was released by the failed open: the skip_bad open above succeeded.


def test_readers_leave_a_line_being_written_for_later(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    write_log(path, 3)
    size = path.stat().st_size
    with path.open("ab") as f:
        f.write(TORN)
    stats = ReadStats()
    assert seqs(list(read_history(path, stats=stats))) == [1, 2, 3]
    assert stats.torn == [(path, size, len(TORN))]
    # Reading changed nothing: only the writer cuts.
    assert path.read_bytes().endswith(TORN)


def test_a_line_far_longer_than_a_read_block(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    detail = "x" * (9 * 2**20)  # far longer than a read block
    with FileEventLog.open(path) as log:
        log.append(probes(2))
        log.append([Probe(service="big", ok=False, detail=detail)])
        log.append(probes(2))
    events = list(read_history(path))
    assert seqs(events) == [1, 2, 3, 4, 5]
    assert events[2].detail == detail  # type: ignore[union-attr]
    with FileEventLog.open(path) as log:
        assert log.last_seq == 5


def test_a_second_process_reads_what_the_first_flushed_before_dying(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    result = python(
        """
        import os, sys
        from hbsm.events import Probe
        from hbsm.log import FileEventLog
        log = FileEventLog.open(sys.argv[1])
        log.append([Probe(service="a", ok=True) for _ in range(5)])
        log.flush()
        log.append([Probe(service="lost", ok=True)])  # appended, never flushed
        os._exit(0)
        """,
        str(path),
    )
    assert result.returncode == 0, result.stderr
    events = list(read_history(path))
    assert seqs(events) == [1, 2, 3, 4, 5]
    with FileEventLog.open(path) as log:
        assert log.recovered is None
        assert log.last_seq == 5


def test_a_flush_that_fails_midway_can_be_retried_without_damage(tmp_path: Path) -> None:
    # A real short write: the child caps its file size (RLIMIT_FSIZE), flushes past the cap,
    # then lifts the cap and flushes again.
    path = tmp_path / "heartbeat.jsonl"
    result = python(
        """
        import resource, signal, sys
        from hbsm.events import Probe
        from hbsm.log import FileEventLog
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        log = FileEventLog.open(sys.argv[1])
        log.append([Probe(service="a" * 50, ok=True) for _ in range(100)])
        log.flush()
        resource.setrlimit(resource.RLIMIT_FSIZE, (log.path.stat().st_size + 5000, hard))
        log.append([Probe(service="b" * 50, ok=True) for _ in range(1000)])
        try:
            log.flush()
        except OSError as exc:
            print("failed", exc.errno)
        print("partial", log.path.stat().st_size)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        log.flush()
        log.close()
        """,
        str(path),
    )
    assert result.returncode == 0, result.stderr
    report = result.stdout.split()
    assert report[0] == "failed"
    assert 0 < int(report[3]) < path.stat().st_size
    events = list(read_history(path))
    assert seqs(events) == list(range(1, 1101))

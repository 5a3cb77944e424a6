"""Crash recovery and bad lines: a torn last line is cut and recorded; a bad line elsewhere is
an error naming file and line, or skipped and counted with skip_bad."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from hbsm.events import LogRecovered, OpaqueEvent, Probe
from hbsm.log import CorruptLineError, FileEventLog, ReadStats, read_history
from hbsm.log.recovery import Torn, cut_torn_tail

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


# --- cut_torn_tail itself: what is cut, what is refused, and what it says ------------------------


def _cut(path: Path, *, skip_bad: bool | None = None, named: bool = True) -> Torn | None:
    """cut_torn_tail on `path`; skip_bad as given, else left to its default."""
    fd = os.open(path, os.O_RDWR)
    try:
        where = path if named else None
        if skip_bad is None:
            return cut_torn_tail(fd, where)
        return cut_torn_tail(fd, where, skip_bad=skip_bad)
    finally:
        os.close(fd)


def test_the_cut_says_where_how_much_and_what(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    write_log(path, 3)
    whole = path.stat().st_size
    tail = TORN + b"x" * 100  # longer than the preview kept
    with path.open("ab") as f:
        f.write(tail)
    assert _cut(path) == Torn(whole, len(tail), tail[:60])
    assert path.stat().st_size == whole


@pytest.mark.parametrize(
    "tail", [b"\0" * 300, b"  \t\r", b"\0\0 "], ids=["zeros", "blanks", "mixed"]
)
def test_zeros_or_blanks_after_the_last_line_are_a_torn_write(tmp_path: Path, tail: bytes) -> None:
    # What a machine that crashed before the data reached the disk leaves: cut, not refused.
    path = tmp_path / "heartbeat.jsonl"
    write_log(path, 2)
    whole = path.stat().st_size
    with path.open("ab") as f:
        f.write(tail)
    torn = _cut(path)
    assert torn is not None and (torn.offset, torn.cut_bytes) == (whole, len(tail))
    assert path.stat().st_size == whole


@pytest.mark.parametrize("named", [True, False], ids=["named", "unnamed"])
def test_a_last_line_that_is_no_event_is_refused_naming_file_line_and_text(
    tmp_path: Path, named: bool
) -> None:
    # `--log notes.txt`: a file of text without a final newline is not cut as "torn".
    path = tmp_path / "notes.txt"
    last = b"third, and the longest of the three notes, no newline"
    path.write_bytes(b"first note\nsecond note\n" + last)
    before = path.read_bytes()
    with pytest.raises(CorruptLineError) as caught:
        _cut(path, named=named)
    err = caught.value
    assert (Path(err.path), err.line) == ((path if named else Path("?")), 3)
    assert err.reason == (
        "the last line has no newline and is not the start of an event (it begins "
        f"{last[:30]!r}): not cut, since this may not be an hbsm event log"
    )
    assert path.read_bytes() == before


def test_a_torn_tail_after_a_bad_last_line_is_refused_unless_skip_bad(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    write_log(path, 3)
    replace_line(path, 3, b"{broken")
    with path.open("ab") as f:
        f.write(b"\n" + TORN)
    before = path.read_bytes()
    with pytest.raises(CorruptLineError) as caught:
        _cut(path)
    assert (Path(caught.value.path), caught.value.line) == (path, 3)
    assert path.read_bytes() == before  # refused: nothing cut
    torn = _cut(path, skip_bad=True)
    assert torn is not None and torn.cut_bytes == len(TORN)


def test_a_torn_line_that_is_the_whole_file_is_cut_to_nothing(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    path.write_bytes(TORN)
    assert _cut(path) == Torn(0, len(TORN), TORN[:60])
    assert path.read_bytes() == b""


def test_the_last_seq_comes_from_the_newest_segment_when_the_active_file_is_empty(
    tmp_path: Path,
) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path, max_bytes=2_000, keep_segments=10) as log:
        for _ in range(12):
            log.append(probes(10))
            log.flush()
    assert len(list(tmp_path.glob("heartbeat.*.jsonl.gz"))) >= 3  # the newest is not the 2nd
    first_active = int(raw_lines(path)[0]["seq"])  # the newest segment ends just before it
    path.write_bytes(b"")  # the active file emptied by hand
    with FileEventLog.open(path) as log:
        assert log.last_seq == first_active - 1
        assert seqs(log.append(probes(1))) == [first_active]


def test_open_removes_half_written_compressed_segments(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    write_log(path, 2)
    leftovers = [tmp_path / "heartbeat.3.jsonl.gz.tmp", tmp_path / "heartbeat.12.jsonl.gz.tmp"]
    for tmp in leftovers:
        tmp.write_bytes(b"half a gzip")
    other = tmp_path / "other.3.jsonl.gz.tmp"  # another log's: not ours to remove
    other.write_bytes(b"x")
    FileEventLog.open(path).close()
    assert not any(tmp.exists() for tmp in leftovers)
    assert other.exists()

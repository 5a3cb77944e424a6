"""Fsync policies: group commit by default, one fsync per flush; the others as documented; a bad
policy is refused with a clear error before anything is opened."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.clock import ManualClock

from hbsm.log import FileEventLog, read_history
from hbsm.log.recovery import cut_torn_tail

from .log_support import probes, seqs


class Fsyncs:
    """Every real os.fsync while installed: which file (inode) and its size at that moment.

    Observation, not a stand-in: the recorder calls the real os.fsync. The store's own
    `fsyncs` counter says what it meant to do; this says what the system was asked to do.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def of(self, path: Path) -> list[int]:
        """The sizes `path` had at each fsync of it."""
        inode = path.stat().st_ino
        return [size for ino, size in self.calls if ino == inode]


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Fsyncs:
    seen = Fsyncs()
    real = os.fsync

    def recording(fd: int) -> None:
        st = os.fstat(fd)
        seen.calls.append((st.st_ino, st.st_size))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return seen


@pytest.mark.parametrize("policy", ["batch", "always", "interval", "never"])
def test_every_policy_keeps_every_event(tmp_path: Path, policy: str) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path, fsync=policy) as log:  # type: ignore[arg-type]
        for _ in range(5):
            log.append(probes(20))
            log.flush()
    assert seqs(list(read_history(path))) == list(range(1, 101))


def test_batch_fsyncs_once_per_flush_that_wrote(tmp_path: Path) -> None:
    with FileEventLog.open(tmp_path / "h.jsonl", fsync="batch") as log:
        for _ in range(10):
            log.append(probes(100))
        assert log.fsyncs == 0  # buffered: nothing durable yet, nothing synced
        log.flush()
        assert log.fsyncs == 1
        log.flush()  # nothing new: no fsync
        assert log.fsyncs == 1
        log.append(probes(1))
        log.flush()
        assert log.fsyncs == 2


def test_batch_flush_fsyncs_the_log_file_itself_after_writing(
    tmp_path: Path, fsyncs: Fsyncs
) -> None:
    path = tmp_path / "h.jsonl"
    with FileEventLog.open(path, fsync="batch") as log:
        log.append(probes(10))
        assert fsyncs.of(path) == []
        log.flush()
        first = path.stat().st_size
        assert fsyncs.of(path) == [first]  # one fsync, of this file, with every byte written
        log.flush()
        assert fsyncs.of(path) == [first]  # nothing new: no system call
        log.append(probes(1))
        log.flush()
        assert fsyncs.of(path) == [first, path.stat().st_size]


def test_always_fsyncs_the_file_at_every_append(tmp_path: Path, fsyncs: Fsyncs) -> None:
    path = tmp_path / "h.jsonl"
    with FileEventLog.open(path, fsync="always") as log:
        log.append(probes(3))
        after_first = path.stat().st_size
        log.append(probes(2))
        assert fsyncs.of(path) == [after_first, path.stat().st_size]


def test_never_asks_the_system_for_an_fsync_of_the_file(tmp_path: Path, fsyncs: Fsyncs) -> None:
    path = tmp_path / "h.jsonl"
    with FileEventLog.open(path, fsync="never") as log:
        log.append(probes(3))
        log.flush()
    assert path.stat().st_size > 0 and fsyncs.of(path) == []


def test_interval_fsyncs_exactly_at_the_end_of_the_interval(tmp_path: Path, fsyncs: Fsyncs) -> None:
    path = tmp_path / "h.jsonl"
    clock = ManualClock(1000.0)
    with FileEventLog.open(path, fsync="interval", fsync_interval=5, clock=clock) as log:
        log.append(probes(1))
        log.flush()  # at the instant of the open (the interval's start): not synced
        clock.now = 1004.75  # just before its end: still not
        log.flush()
        assert fsyncs.of(path) == [] and log.fsyncs == 0
        clock.now = 1005.0  # the interval's end itself: synced
        log.flush()
        assert fsyncs.of(path) == [path.stat().st_size] and log.fsyncs == 1
        log.append(probes(1))
        clock.now = 1009.75  # counted from that fsync, not from the open
        log.flush()
        assert log.fsyncs == 1
        clock.now = 1010.0
        log.flush()
        assert log.fsyncs == 2 and len(fsyncs.of(path)) == 2


def test_close_fsyncs_what_is_pending(tmp_path: Path, fsyncs: Fsyncs) -> None:
    path = tmp_path / "h.jsonl"
    log = FileEventLog.open(path, fsync="interval", fsync_interval=3600)
    log.append(probes(2))
    log.flush()
    assert fsyncs.of(path) == []
    log.close()
    assert fsyncs.of(path) == [path.stat().st_size]


def test_a_torn_tail_is_cut_and_the_cut_fsynced(tmp_path: Path, fsyncs: Fsyncs) -> None:
    path = tmp_path / "h.jsonl"
    with FileEventLog.open(path) as log:
        log.append(probes(2))
    whole = path.stat().st_size
    with path.open("ab") as f:
        f.write(b'{"type":"probe","se')
    fd = os.open(path, os.O_RDWR)
    try:
        torn = cut_torn_tail(fd, path)
    finally:
        os.close(fd)
    assert torn is not None and torn.offset == whole
    assert fsyncs.of(path)[-1] == whole  # the file was synced once it was cut back


def test_a_log_with_nothing_written_asks_for_no_fsync(tmp_path: Path, fsyncs: Fsyncs) -> None:
    path = tmp_path / "h.jsonl"
    with FileEventLog.open(path) as log:
        log.flush()
        assert log.fsyncs == 0
    assert fsyncs.of(path) == []


def test_batch_appends_stay_in_memory_until_flush(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with FileEventLog.open(path) as log:
        log.append(probes(3))
        assert path.stat().st_size == 0
        log.flush()
        assert seqs(list(read_history(path))) == [1, 2, 3]


def test_always_fsyncs_every_append(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with FileEventLog.open(path, fsync="always") as log:
        log.append(probes(3))
        log.append(probes(2))
        assert log.fsyncs == 2
        assert seqs(list(read_history(path))) == [1, 2, 3, 4, 5]  # visible without flush


def test_never_writes_on_flush_but_does_not_fsync(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with FileEventLog.open(path, fsync="never") as log:
        log.append(probes(3))
        log.flush()
        assert seqs(list(read_history(path))) == [1, 2, 3]
        log.close()
        assert log.fsyncs == 0


def test_interval_fsyncs_when_the_interval_has_passed(tmp_path: Path) -> None:
    clock = ManualClock(1000.0)
    with FileEventLog.open(
        tmp_path / "h.jsonl", fsync="interval", fsync_interval=5, clock=clock
    ) as log:
        log.append(probes(1))
        log.flush()
        assert log.fsyncs == 0
        clock.now += 4.9
        log.append(probes(1))
        log.flush()
        assert log.fsyncs == 0
        clock.now += 0.2
        log.flush()  # written but not yet synced data is still pending: synced now
        assert log.fsyncs == 1
        clock.now -= 3600  # a clock stepped back must not stop fsyncs
        log.append(probes(1))
        log.flush()
        assert log.fsyncs == 2
        log.append(probes(1))
    assert log.fsyncs == 3  # close syncs what is pending


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"fsync": "sometimes"},
            "fsync policy must be one of batch, always, interval, never; got 'sometimes'",
        ),
        ({"fsync": "interval", "fsync_interval": 0}, "fsync_interval must be a positive number"),
        # A bool is an int to Python, not a number of seconds here.
        ({"fsync": "interval", "fsync_interval": True}, "fsync_interval must be a positive number"),
        ({"max_bytes": 0}, "max_bytes must be positive"),
        ({"keep_segments": -1}, "keep_segments must be 0 or more"),
    ],
)
def test_bad_settings_are_refused_clearly(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    path = tmp_path / "h.jsonl"
    with pytest.raises(ValueError) as caught:
        FileEventLog.open(path, **kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)
    assert not path.exists()  # refused before opening or locking anything
    FileEventLog.open(path).close()

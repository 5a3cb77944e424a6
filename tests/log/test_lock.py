"""One writer per log: a second one fails at once, naming the pid that holds the lock."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from hbsm.log import FileEventLog, LogError, LogLockedError, read_history

from .log_support import probes, python, spawn

SECOND_WRITER = """
    import json, sys
    from hbsm.log import FileEventLog, LogLockedError
    try:
        FileEventLog.open(sys.argv[1])
    except LogLockedError as exc:
        print(json.dumps({"pid": exc.pid, "message": str(exc), "path": str(exc.path)}))
    else:
        print(json.dumps({"opened": True}))
"""

HOLDER = """
    import sys
    from hbsm.log import FileEventLog
    log = FileEventLog.open(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.readline()
    log.close()
    print("closed", flush=True)
    sys.stdin.readline()
"""


def test_second_writer_in_the_same_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events" / "heartbeat.jsonl"
    with FileEventLog.open(path), pytest.raises(LogLockedError) as caught:
        FileEventLog.open(path)
    error = caught.value
    assert isinstance(error, LogError)
    assert error.pid == os.getpid()
    assert Path(error.path) == path
    assert str(error) == (
        f"{path} is locked by pid {os.getpid()} (another hbsm writer); stop it or use another --log"
    )


def test_second_writer_in_another_process_gets_the_holders_pid(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path):
        result = python(SECOND_WRITER, str(path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["pid"] == os.getpid()
    assert f"locked by pid {os.getpid()}" in report["message"]
    assert str(path) in report["message"]


def test_a_writer_in_another_process_locks_us_out_until_it_closes(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    holder = spawn(HOLDER, str(path))
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LogLockedError) as caught:
            FileEventLog.open(path)
        assert caught.value.pid == holder.pid
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "closed"
        with FileEventLog.open(path) as log:
            log.append(probes(1))
    finally:
        holder.kill()
        holder.wait()


def test_a_crashed_writer_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    holder = spawn(HOLDER, str(path))
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with FileEventLog.open(path) as log:
        assert log.last_seq == 0


def test_the_lock_is_released_on_close(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    FileEventLog.open(path).close()
    with FileEventLog.open(path) as log:
        log.append(probes(1))


def test_a_refused_open_leaves_the_holder_working(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path) as log:
        log.append(probes(2))
        with pytest.raises(LogLockedError):
            FileEventLog.open(path)
        log.append(probes(1))
        log.flush()
        assert [e.seq for e in log.read()] == [1, 2, 3]


def test_readers_do_not_need_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    with FileEventLog.open(path) as log:
        log.append(probes(3))
        log.flush()
        assert [e.seq for e in read_history(path)] == [1, 2, 3]
        result = python(
            """
            import sys
            from hbsm.log import read_history
            print(sum(1 for _ in read_history(sys.argv[1])))
            """,
            str(path),
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"

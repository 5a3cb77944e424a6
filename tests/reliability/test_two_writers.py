"""Fault: two `hbsm run` on one event log.

The second is refused (exit 3, one line on stderr naming the holder's pid) however it names the
log: the same config, another config with `--log`, `HEARTBEAT_EVENT_LOG` over a config that
names another log, a path through a symlinked directory. The log and everything beside it stay
byte for byte as the holder left them: the holder is SIGSTOPped while the second tries, so any
change would be the second's. Once the holder dies by SIGKILL, its lock goes with it: the next
monitor takes the log (its supervised child, which outlived it, does not hold the lock).
"""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from monitor import support as monitor_support
from monitor.conftest import HbsmRun, HbsmRuns
from support.configs import supervised

from hbsm.events import MonitorStarted, MonitorStopped, ProcessStarted

from .crash_support import disk_lines

# A restart as soon as the first repair step has not fixed it.
LADDER = ["diagnose", "restart"]

ChildService = monitor_support.ChildService


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[HbsmRuns]:
    processes = HbsmRuns(tmp_path)
    yield processes
    processes.close()


@pytest.fixture
def children(tmp_path: Path) -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for child in made:
        child.kill_all()


def directory_state(folder: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every file in `folder`: inode, size, mtime (ns) and a digest of its bytes."""
    state = {}
    for entry in sorted(folder.iterdir()):
        st = entry.lstat()
        digest = hashlib.sha256(entry.read_bytes()).hexdigest() if entry.is_file() else ""
        state[entry.name] = (st.st_ino, st.st_size, st.st_mtime_ns, digest)
    return state


def started_pids(log: Path) -> list[int]:
    return [e.pid for e in disk_lines(log).events if isinstance(e, MonitorStarted)]


def assert_refused(second: HbsmRun, holder: int) -> None:
    assert second.wait() == 3, second.err()
    err = second.err().strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("hbsm run: ") and f"locked by pid {holder}" in err, err


def test_a_second_writer_is_refused_however_it_names_the_log_and_touches_nothing(
    tmp_path: Path, runs: HbsmRuns, children: list[Any]
) -> None:
    api = ChildService(tmp_path / "children", "api")
    intruder = ChildService(tmp_path / "children", "intruder")
    children += [api, intruder]
    events = tmp_path / "events"
    log = events / "heartbeat.jsonl"
    config = monitor_support.write_toml_config(
        tmp_path / "hbsm.toml", [supervised(api, ladder=LADDER)], check_interval=0.1
    )
    first = runs.start(config, log)
    # Running and writing: a probe every 0.1 s, flushed every 0.2 s.
    first.until(lambda: started_pids(log) == [first.pid], "the first monitor started")
    mark = max(disk_lines(log).lines)
    first.until(lambda: max(disk_lines(log).lines) > mark + 5, "the first monitor writing")

    # Another config (another service, a supervised one: it must never be started) ...
    other = monitor_support.write_toml_config(
        tmp_path / "other.toml",
        [supervised(intruder, ladder=LADDER)],
        check_interval=0.05,
        max_retries=1,
    )
    # ... one that names another log, overridden by the environment ...
    elsewhere = monitor_support.write_toml_config(
        tmp_path / "elsewhere.toml",
        [supervised(intruder, ladder=LADDER)],
        log={"path": str(tmp_path / "elsewhere" / "heartbeat.jsonl")},
    )
    # ... and the same directory by another name.
    (tmp_path / "alias").symlink_to(events, target_is_directory=True)
    attempts: list[tuple[Path, Path | None, dict[str, str]]] = [
        (config, log, {}),
        (other, log, {}),
        (elsewhere, None, {"HEARTBEAT_EVENT_LOG": str(log)}),
        (config, tmp_path / "alias" / "heartbeat.jsonl", {}),
    ]

    first.signal(signal.SIGSTOP)
    try:
        before = directory_state(events)
        held = disk_lines(log)
        for cfg, path, env in attempts:
            second = runs.start(cfg, path, env)
            assert_refused(second, first.pid)
            assert directory_state(events) == before, (cfg.name, path, env)
        assert not (tmp_path / "elsewhere").exists()
        assert intruder.started_pids() == []
        assert (events / "heartbeat.jsonl.lock").read_text().strip() == str(first.pid)
    finally:
        first.signal(signal.SIGCONT)

    # The holder goes on where it was, the only writer: what it had written is a prefix.
    first.until(lambda: max(disk_lines(log).lines) > max(held.lines) + 5, "the first writing on")
    first.signal(signal.SIGTERM)
    assert first.wait() == 0, first.err()
    after = disk_lines(log)
    assert log.read_bytes().startswith(b"\n".join(held.lines.values()) + b"\n")
    assert after.tail == b""
    assert started_pids(log) == [first.pid]
    stopped = after.events[-1]
    assert isinstance(stopped, MonitorStopped) and stopped.pid == first.pid
    seqs = list(after.lines)
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    checked = monitor_support.verify_log(log)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_lock_of_a_sigkilled_writer_is_no_obstacle(
    tmp_path: Path, runs: HbsmRuns, children: list[Any]
) -> None:
    api = ChildService(tmp_path / "children", "api")
    children.append(api)
    log = tmp_path / "events" / "heartbeat.jsonl"
    config = monitor_support.write_toml_config(
        tmp_path / "hbsm.toml", [supervised(api, ladder=LADDER)], check_interval=0.1
    )
    first = runs.start(config, log)
    first.until(
        lambda: any(isinstance(e, ProcessStarted) for e in disk_lines(log).events),
        "the first monitor started its service",
    )
    (child,) = api.started_pids()
    # Stopped, then killed: it never gets to release anything.
    first.signal(signal.SIGSTOP)
    assert first.kill() == -signal.SIGKILL
    held = disk_lines(log)
    assert monitor_support.alive(child)  # outlives the monitor, and must not hold the lock
    assert (log.parent / "heartbeat.jsonl.lock").read_text().strip() == str(first.pid)

    second = runs.start(config, log)
    second.until(lambda: started_pids(log) == [first.pid, second.pid], "the log taken over")
    second.until(
        lambda: [e for e in disk_lines(log).events if isinstance(e, ProcessStarted)][-1].adopted,
        "the child adopted",
    )
    assert (log.parent / "heartbeat.jsonl.lock").read_text().strip() == str(second.pid)
    second.signal(signal.SIGTERM)
    assert second.wait() == 0, second.err()

    after = disk_lines(log)
    for seq, line in held.lines.items():
        assert after.lines[seq] == line
    adopted = [e for e in after.events if isinstance(e, ProcessStarted)][-1]
    assert adopted.pid == child
    checked = monitor_support.verify_log(log)
    assert checked.returncode == 0, checked.stdout + checked.stderr

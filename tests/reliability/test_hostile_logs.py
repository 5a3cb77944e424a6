"""Hostile event logs, each found by running the real commands on the sample logs: a log the
user may not reach, timestamps no clock can show, a rotated log with a segment deleted, a clock
stepped back, a byte order mark. `hbsm replay`, `--verify` and `hbsm dashboard --replay` either
read them and say what was wrong with them, or refuse with one line naming the file (and line
or seq) and exit 2; never a traceback, never a silently wrong report, never a modified file.

The damaged logs are made here, in tmp_path, by the real writer (tests/reliability/
damaged_logs.py); the commands run in this process (`hbsm.cli.main`) or, where the test needs
another user's rights, as child processes.
"""

from __future__ import annotations

import codecs
import os
import re
import shutil
from pathlib import Path

import pytest

from hbsm.log import CorruptLineError, FileEventLog, LogFollower, ReadStats, read_history
from tui.app import DashboardApp

from .bad_input_support import (
    hbsm_inline,
    one_error_line,
    run_hbsm,
    without_read_override,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "events" / "samples"
CRASH = SAMPLES / "crash_restart_cooldown.jsonl"


def test_a_log_the_user_may_not_reach_is_one_line_and_exit_2(tmp_path: Path) -> None:
    wrapper = without_read_override()
    if wrapper is None:
        pytest.skip("root, and no setpriv to drop the right to search every directory")
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    log = hidden / "heartbeat.jsonl"
    shutil.copy(CRASH, log)
    before = log.read_bytes(), log.stat().st_mtime_ns
    cannot = f"{log}: cannot read: Permission denied"
    try:
        # A directory the user may not search: the log cannot even be looked at.
        hidden.chmod(0o000)
        for args, expected in [
            (["replay", log], f"hbsm replay: {cannot}"),
            (["replay", "--verify", log], f"hbsm replay: {cannot}"),
            (["replay", "--stats", "--skip-bad", log], f"hbsm replay: {cannot}"),
            (["dashboard", "--replay", CRASH, log], f"hbsm dashboard: {cannot}"),
        ]:
            assert one_error_line(run_hbsm(args, cwd=tmp_path, wrapper=wrapper)) == expected
        # One the user may search but not list: the log is there, its segments cannot be found.
        hidden.chmod(0o311)
        unlisted = f"{hidden}: cannot list the log's directory (to find its closed segments)"
        for command, args in [("replay", [log]), ("dashboard", ["--replay", log])]:
            line = one_error_line(run_hbsm([command, *args], cwd=tmp_path, wrapper=wrapper))
            assert line == f"hbsm {command}: {unlisted}: Permission denied"
    finally:
        hidden.chmod(0o755)
    assert (log.read_bytes(), log.stat().st_mtime_ns) == before
    assert sorted(os.listdir(hidden)) == ["heartbeat.jsonl"]


def fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def with_ts(tmp: Path, line: int, ts: str) -> Path:
    """The crash sample with the `ts` of line `line` (1-based) spelled `ts`."""
    lines = CRASH.read_bytes().splitlines(keepends=True)
    lines[line - 1], n = re.subn(rb'"ts":[0-9.]+', b'"ts":' + ts.encode(), lines[line - 1])
    assert n == 1
    path = tmp / "heartbeat.jsonl"
    path.write_bytes(b"".join(lines))
    return path


SANE = "1970-01-01T00:00:00Z .. 9999-12-31T23:59:59Z (0 .. 253402300799 seconds since the epoch)"


@pytest.mark.parametrize("ts", ["1e308", "1e400", "-1", "-0.001", "253402300800", "3e11"])
async def test_a_ts_no_clock_can_show_is_bad_input_for_every_reader(
    ts: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = with_ts(tmp_path, 41, ts)
    before = fingerprint(path)
    why = f"ts {ts} is outside {SANE}"
    for args in (["replay", path], ["replay", "--verify", path], ["replay", "--stats", path]):
        assert one_error_line(hbsm_inline(args, capsys)) == f"hbsm replay: {path}:41: {why}"
    with pytest.raises(CorruptLineError) as caught:
        list(read_history(path))
    assert (caught.value.line, caught.value.reason) == (41, why)
    follower = LogFollower(path, from_start=True)
    try:
        assert len(follower.poll()) == 40  # the events before it first, then the error
        with pytest.raises(CorruptLineError) as caught:
            follower.poll()
        assert (caught.value.line, caught.value.reason) == (41, why)
    finally:
        follower.close()
    # Skipped and counted like any bad line; the end time is the log's, not 1e308's.
    done = hbsm_inline(["replay", "--skip-bad", path], capsys)
    assert done.returncode == 0 and "skipped 1 bad line(s)" in done.stderr
    assert "131 events (seq 1..132, 2026-11-01T03:00:00.000Z .. 2026-11-01T03:07:00.000Z)" in (
        done.stdout
    )
    # The dashboard (which died with an OverflowError) shows the history without that line.
    app = DashboardApp(replay=[str(path)])
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.press("g", "right", "right")
        await pilot.press("G")
        board = app.replay
        assert board is not None and len(board.events) == 131
        assert all(0 <= e.ts < 253402300800 for e in board.events)
    assert fingerprint(path) == before


def test_the_writer_refuses_a_log_whose_last_line_has_a_bad_ts(tmp_path: Path) -> None:
    path = with_ts(tmp_path, 132, "-5")
    before = fingerprint(path)
    with pytest.raises(CorruptLineError, match="line 132: ts -5 is outside"):
        FileEventLog.open(path)
    assert fingerprint(path) == before


def test_a_byte_order_mark_is_read_past_by_every_reader_and_the_writer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An operator's editor saved the log with a UTF-8 BOM in front: the data is intact.
    path = tmp_path / "heartbeat.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + CRASH.read_bytes())
    before = fingerprint(path)
    plain = hbsm_inline(["replay", CRASH, "--json"], capsys)
    done = hbsm_inline(["replay", path, "--json"], capsys)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == plain.stdout.replace(str(CRASH), str(path))
    verified = hbsm_inline(["replay", "--verify", path], capsys)
    assert (verified.returncode, verified.stderr) == (0, "")
    assert verified.stdout.startswith("verified 132 events")
    follower = LogFollower(path, from_start=True)
    try:
        assert [e.seq for e in follower.poll()] == list(range(1, 133))
    finally:
        follower.close()
    assert fingerprint(path) == before
    # One line only: the writer reads its last (and only) line to number on from it.
    one = tmp_path / "one.jsonl"
    one.write_bytes(codecs.BOM_UTF8 + CRASH.read_bytes().splitlines(keepends=True)[0])
    with FileEventLog.open(one) as log:
        assert log.last_seq == 1
        log.append(list(read_history(CRASH))[1:3])
    assert [e.seq for e in read_history(one)] == [1, 2, 3]
    assert one.read_bytes().startswith(codecs.BOM_UTF8)


@pytest.mark.parametrize(
    ("line", "name"),
    [(b"null", "null"), (b"[1, 2]", "array"), (b'"probe"', "string"), (b"3.5", "number"),
     (b"true", "boolean")],
)  # fmt: skip
def test_json_that_is_not_an_object_is_named_as_json_names_it(
    line: bytes, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = CRASH.read_bytes().splitlines(keepends=True)
    path = tmp_path / "heartbeat.jsonl"
    path.write_bytes(b"".join([*lines[:3], line + b"\n", *lines[3:]]))
    expected = f"hbsm replay: {path}:4: not an event: a JSON {name}, not an object"
    assert one_error_line(hbsm_inline(["replay", path], capsys)) == expected
    stats = ReadStats()
    assert len(list(read_history(path, skip_bad=True, stats=stats))) == 132
    assert stats.skipped == 1

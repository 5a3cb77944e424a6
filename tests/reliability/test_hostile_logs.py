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
import itertools
import json
import os
import re
import shutil
from pathlib import Path

import msgspec
import pytest
from support.waiting import wait_for
from textual.pilot import Pilot

from hbsm.log import (
    CorruptLineError,
    FileEventLog,
    LogFollower,
    Position,
    ReadStats,
    SegmentPrunedError,
    read_history,
)
from hbsm.log.errors import SeqHole, SeqHoleError
from hbsm.replay.clock import ClockWatch
from tui.app import DashboardApp
from tui.widgets.replaybar import ReplayNotice

from .bad_input_support import (
    hbsm_inline,
    one_error_line,
    run_hbsm,
    without_read_override,
)
from .damaged_logs import (
    DAY,
    clock_step_history,
    outage_history,
    punch_hole,
    recovery_seq,
    write_log,
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
        # A monitor told to write a log there, or in a new directory below: exit 3, one line.
        hidden.chmod(0o000)
        config = tmp_path / "hbsm.toml"
        config.write_text('[[services]]\nname = "x"\nurl = "http://127.0.0.1:9/health"\n')
        for where, why in [
            (hidden / "new" / "heartbeat.jsonl", "cannot create its directory"),
            (log, "cannot open the lock file"),
        ]:
            args = ["run", "--config", config, "--log", where]
            line = one_error_line(run_hbsm(args, cwd=tmp_path, wrapper=wrapper), code=3)
            assert line.startswith(f"hbsm run: {where}") and f"{why}: Permission denied" in line
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


def files_of(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: fingerprint(p) for p in sorted(directory.iterdir())}


def test_a_deleted_middle_segment_is_a_hole_named_with_its_seqs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A rotated log (real rotations, each segment opening with its snapshot) whose segment
    # holding api's recovery was deleted: before, replay and --verify exited 0 without a word,
    # and replay reported api's incident "ongoing" while listing api as healthy.
    path = write_log(tmp_path / "log" / "heartbeat.jsonl", outage_history(), max_bytes=3000)
    deleted, first, last = punch_hole(path, recovery_seq(path, "api"))
    number = int(deleted.name.split(".")[1])
    after = path.with_name(f"heartbeat.{number + 1:08d}.jsonl.gz")
    previous = path.with_name(f"heartbeat.{number - 1:08d}.jsonl.gz")
    before = files_of(path.parent)
    why = (
        f"a hole in the history: seqs {first}..{last} are missing ({previous.name} ends at seq "
        f"{first - 1}, this segment begins at seq {last + 1}: a segment was deleted, or lost)"
    )
    for args in (["replay", path], ["replay", "--verify", path], ["replay", "--stats", path]):
        line = one_error_line(hbsm_inline(args, capsys))
        assert line == f"hbsm replay: {after}:1: {why}; --skip-bad replays across it"
    with pytest.raises(SeqHoleError) as caught:
        list(read_history(path))
    assert caught.value.hole == SeqHole(after, 1, first, last, previous)
    stats = ReadStats()
    seqs = [e.seq for e in read_history(path, skip_bad=True, stats=stats)]
    assert stats.holes == [SeqHole(after, 1, first, last, previous)]
    assert seqs == [s for s in range(1, seqs[-1] + 1) if not first <= s <= last]

    # --skip-bad: the hole is in the report, and the incident across it is not "ongoing".
    done = hbsm_inline(["replay", "--skip-bad", "--json", path], capsys)
    assert done.returncode == 0
    assert f"notice: {after}:1: {why}; replayed across it (--skip-bad)" in done.stderr
    report = json.loads(done.stdout)
    assert report["holes"] == [
        {"path": str(after), "line": 1, "first_seq": first, "last_seq": last,
         "after": str(previous), "message": why},
    ]  # fmt: skip
    (incident,) = report["incidents"]
    assert (incident["service"], incident["ongoing"], incident["hole"]) == ("api", False, True)
    assert incident["end_seq"] is None and incident["state"] == "healthy"
    assert 0 < incident["duration_s"] <= 9 * 60
    services = {s["service"]: s for s in report["services"]}
    assert services["api"]["state"] == "healthy" and services["api"]["closed"] == 1
    assert services["api"]["mttr_s"] is None and report["totals"]["mttr_s"] is None  # not whole
    text = hbsm_inline(["replay", "--skip-bad", path], capsys).stdout
    assert f"{after}:1: {why}; replayed across it (--skip-bad)" in text
    assert "incidents (1: 1 recovered, 0 ongoing)" in text
    assert "(recovered inside a hole in the history, by the snapshot after it; not in MTTR)" in text
    verified = hbsm_inline(["replay", "--verify", "--skip-bad", path], capsys)
    assert verified.returncode == 0
    assert f"{after}:1: {why}; replayed across it (--skip-bad)" in verified.stdout
    # A follower goes by segment number: it stops at the missing one, and does not blame
    # retention (which deletes oldest first) while older segments are still there.
    follower = LogFollower(path, Position(0, 0))
    try:
        read = [e.seq for e in follower.poll()]
        with pytest.raises(SegmentPrunedError) as pruned:
            follower.poll()
        assert read[-1] == first - 1 and not pruned.value.retention
        assert f"segment {number} is missing, with older segments still there (deleted by " in (
            str(pruned.value)
        )
        follower.skip_pruned()
        assert follower.poll()[0].seq == last + 1
    finally:
        follower.close()
    assert files_of(path.parent) == before


def test_a_clock_stepped_back_is_named_and_no_duration_goes_negative(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The host's clock stepped back a day while api's repair run was under way: before, replay
    # gave an MTTR of -23h 58m and --verify passed without a word.
    path = write_log(tmp_path / "heartbeat.jsonl", clock_step_history())
    before = fingerprint(path)
    events = list(read_history(path))
    (step_at,) = [b for a, b in itertools.pairwise(events) if b.ts < a.ts]
    back = events[step_at.seq - 2].ts - step_at.ts
    assert DAY - 60 < back < DAY
    warning = (
        f"warning: time goes back 23h 59m at seq {step_at.seq} (2026-10-31T03:03:30.000Z, after "
        f"2026-11-01T03:03:00.500Z at seq {step_at.seq - 1}): the clock was stepped back; "
        "durations across it count the step as no time"
    )
    done = hbsm_inline(["replay", path], capsys)
    assert (done.returncode, done.stderr) == (0, f"hbsm replay: {warning}\n")
    assert warning in done.stdout.splitlines()
    mttr = {line.split()[0]: line for line in done.stdout.splitlines()[-3:]}
    assert "2m 00s" in mttr["api"] and "-" not in mttr["api"].split("healthy")[1].split()[2]
    assert "(the clock went back 23h 59m during it)" in done.stdout

    report = json.loads(hbsm_inline(["replay", "--json", path], capsys).stdout)
    assert report["clock_steps_total"] == 1
    assert report["clock_steps"] == [
        {"seq": step_at.seq, "ts": step_at.ts, "time": "2026-10-31T03:03:30.000Z",
         "previous_seq": step_at.seq - 1, "previous_ts": step_at.ts + back,
         "previous_time": "2026-11-01T03:03:00.500Z", "back_s": back},
    ]  # fmt: skip
    (incident,) = report["incidents"]
    # 60.5 s before the step, none across it, 1 min after it (to the first good probe after
    # the restart): by the events' order.
    assert incident["duration_s"] == 120.5 and incident["clock_back_s"] == back
    assert report["totals"]["mttr_s"] == 120.5 and incident["detect_s"] == 60.0

    verified = hbsm_inline(["replay", "--verify", path], capsys)
    assert (verified.returncode, verified.stderr) == (0, f"hbsm replay: {warning}\n")
    assert verified.stdout.splitlines()[1:] == [warning]
    result = json.loads(hbsm_inline(["replay", "--verify", "--json", path], capsys).stdout)
    assert result["ok"] is True and result["clock_steps_total"] == 1
    stats = hbsm_inline(["replay", "--stats", path], capsys)
    assert stats.stderr == f"hbsm replay: {warning}\n" and warning in stats.stdout
    assert fingerprint(path) == before


def test_events_a_few_ms_out_of_order_are_absorbed_without_a_warning() -> None:
    # Events recorded concurrently can be stamped a few ms out of order: no clock step to
    # name, but elapsed time still never goes back.
    watch = ClockWatch()
    events = list(read_history(CRASH))
    early = msgspec.structs.replace(events[11], ts=events[10].ts - 0.003)
    shuffled = [*events[:11], early, *events[12:]]
    offsets = watch.feed(shuffled)
    assert offsets is not None and watch.steps == [] and watch.named == 0
    elapsed = [e.ts + o for e, o in zip(shuffled, offsets, strict=True)]
    assert elapsed == sorted(elapsed)
    assert ClockWatch().feed(events) is None  # in order: the one C-level pass, nothing else


async def notice_of(app: DashboardApp) -> str:
    """The replay notice as shown ("" when hidden)."""
    notice = app.main.query_one(ReplayNotice)
    if not notice.display or notice.region.height == 0:
        return ""
    return str(notice.render())


async def shown_notice(app: DashboardApp, pilot: Pilot[None]) -> str:
    """The replay notice once the dashboard shows it (laid out later on a loaded machine)."""
    return await wait_for(lambda: notice_of(app), "the replay notice shown", pause=pilot.pause)


async def test_the_dashboard_says_what_it_read_past_in_a_log_replay_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A rotated log with a segment deleted, another cut short, and a bad line in the active
    # file: `hbsm replay` refuses it; the dashboard used to show it without a word.
    path = write_log(tmp_path / "log" / "heartbeat.jsonl", outage_history(), max_bytes=3000)
    deleted, first, last = punch_hole(path, recovery_seq(path, "api"))
    cut = path.with_name("heartbeat.00000002.jsonl.gz")
    cut.write_bytes(cut.read_bytes()[:-30])
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([lines[0], b"{oops\n", *lines[1:]]))
    assert hbsm_inline(["replay", path], capsys).returncode == 2
    before = files_of(path.parent)
    app = DashboardApp(replay=[str(path)])
    async with app.run_test(size=(160, 45)) as pilot:
        shown = await shown_notice(app, pilot)
        notes = shown.splitlines()
        assert len(notes) == 4, shown
        assert notes[0].startswith(" ⚠  skipped 1 bad line: heartbeat.jsonl:2 (not JSON: ")
        assert notes[1].startswith(
            " ⚠  skipped the rest of heartbeat.00000002.jsonl.gz:1 on: damaged compressed segment"
        )
        # The segment cut short leaves a hole too; then the deleted one.
        assert " missing before heartbeat.00000003.jsonl.gz:1: a hole in the history" in notes[2]
        number = int(deleted.name.split(".")[1])
        assert notes[3] == (
            f" ⚠  seqs {first}..{last} missing before heartbeat.{number + 1:08d}.jsonl.gz:1: a "
            f"hole in the history (after heartbeat.{number - 1:08d}.jsonl.gz: a segment deleted, "
            "or lost); the state after it is the snapshot's"
        )
        # It stays on screen while the cursor moves: it is about the file, not the moment.
        await pilot.press("g", "right", "n")
        assert await notice_of(app) == shown
    assert files_of(path.parent) == before
    # A whole log shows no notice.
    app = DashboardApp(replay=[str(CRASH)])
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        assert await notice_of(app) == ""


async def test_the_dashboard_plays_across_a_clock_stepped_back_and_says_so(tmp_path: Path) -> None:
    path = write_log(tmp_path / "heartbeat.jsonl", clock_step_history())
    app = DashboardApp(replay=[str(path)])
    async with app.run_test(size=(160, 45)) as pilot:
        assert "time goes back 23h 59m at seq 15 (2026-10-31T03:03:30.000Z, after " in (
            await shown_notice(app, pilot)
        )
        board = app.replay
        assert board is not None
        # Played at 1000x (100 s of history a tick) from the start, it goes through the
        # history in steps and reaches the end; by ts, the first tick jumped to the end,
        # past everything after the step (the times there are a day earlier).
        await pilot.press("g", "right_square_bracket", "right_square_bracket", "space")
        seen: list[int] = []
        for _ in range(200):
            if board.cursor not in seen:
                seen.append(board.cursor)
            if not app.playing:
                break
            await pilot.pause(0.01)
        assert board.cursor == len(board.events) - 1 and not app.playing
        assert len(seen) >= 4 and seen == sorted(seen), seen
        assert any(board.events[i].ts < board.events[0].ts for i in seen[1:-1]), seen


async def test_a_later_file_the_dashboard_cannot_show_is_a_notice_not_a_traceback(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n")
    app = DashboardApp(replay=[str(CRASH), str(empty)])
    async with app.run_test(size=(160, 45), notifications=True) as pilot:
        await pilot.press("o")
        await pilot.pause()
        board = app.replay
        assert board is not None and board.label == str(CRASH)  # still on the first
        notes = [(n.severity, n.message) for n in app._notifications]
        assert ("error", f"cannot replay {empty}: the history holds no event") in notes

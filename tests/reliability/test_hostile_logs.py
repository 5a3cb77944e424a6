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

import os
import shutil
from pathlib import Path

import pytest

from .bad_input_support import one_error_line, run_hbsm, without_read_override

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
        for args, command in [(["replay", log], "replay"), (["dashboard", "--replay", log], "dashboard")]:
            line = one_error_line(run_hbsm(args, cwd=tmp_path, wrapper=wrapper))
            assert line == f"hbsm {command}: {unlisted}: Permission denied"
    finally:
        hidden.chmod(0o755)
    assert (log.read_bytes(), log.stat().st_mtime_ns) == before
    assert sorted(os.listdir(hidden)) == ["heartbeat.jsonl"]

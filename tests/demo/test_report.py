"""hbsm.demo.report on made-up histories: detection, the repairing step, restarts, cooldown."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from hbsm.demo.chaos import Fault
from hbsm.demo.report import analyze, format_summary, hbsm_command
from hbsm.events import RepairStarted, RestartStarted, Transition


def _t(ts: float, src: str, dst: str, trigger: str = "probe_failed") -> Transition:
    return Transition(ts=ts, service="svc", src=src, dst=dst, trigger=trigger)


def test_a_fault_repaired_by_a_step() -> None:
    events = [
        _t(1, "unknown", "healthy", "probe_ok"),
        _t(3, "healthy", "degraded"),
        _t(4, "degraded", "repairing"),
        RepairStarted(ts=4, service="svc", run=1, step="diagnose", index=0),
        RepairStarted(ts=4.2, service="svc", run=1, step="command", index=2),
        _t(4.5, "repairing", "healthy", "verified"),
    ]
    fault = Fault(n=1, ts=2.0, service="svc", kind="badconfig")
    report = analyze(events, [fault], restart_cooldown=3, detection_bound=4.6)
    (o,) = report.outcomes
    assert (o.detect_s, o.recover_s, o.repaired_by, o.restarts) == (2.0, 2.5, "command", 0)
    assert report.ok
    text = format_summary(report, log_path="L", faults_path="F")
    assert "every injected fault was repaired" in text and "hbsm replay L" in text


def test_restarts_cooldown_and_unrepaired_faults() -> None:
    events = [
        _t(1, "unknown", "healthy", "probe_ok"),
        _t(3, "healthy", "degraded"),
        _t(4, "degraded", "repairing"),
        _t(4.1, "repairing", "restarting", "step_failed"),
        RestartStarted(ts=4.1, service="svc", attempt=1),
        _t(4.2, "restarting", "cooldown", "restart_done"),
        RestartStarted(ts=6.0, service="svc", attempt=2),  # too soon after 4.1
        _t(8, "cooldown", "healthy", "probe_ok"),
        _t(20, "healthy", "degraded"),
    ]
    faults = [
        Fault(n=1, ts=2.0, service="svc", kind="crash"),
        Fault(n=2, ts=10.0, service="svc", kind="hang"),
    ]
    report = analyze(events, faults, restart_cooldown=3, detection_bound=4.6)
    first, second = report.outcomes
    assert first.repaired_by == "restart" and first.restarts == 2
    assert not second.repaired and second.detected_at is None
    assert report.cooldown_violations == [("svc", 4.1, 6.0)]
    assert not report.ok and [o.fault.n for o in report.late] == [2]
    report.in_progress = {2}  # the user stopped the demo while it was being repaired
    assert report.all_repaired
    text = format_summary(report, log_path="L", faults_path="F")
    assert "COOLDOWN BROKEN" in text and "in progress when stopped" in text


def test_the_summary_runs_hbsm_as_it_is_given() -> None:
    report = analyze([], [], restart_cooldown=3, detection_bound=None)
    text = format_summary(report, log_path="d/e.jsonl", faults_path="F", hbsm=".venv/bin/hbsm")
    assert ".venv/bin/hbsm replay d/e.jsonl" in text
    assert ".venv/bin/hbsm replay --verify d/e.jsonl" in text
    assert ".venv/bin/hbsm dashboard --replay d/e.jsonl" in text
    assert "\n               hbsm " not in text and "  hbsm replay" not in text


def test_without_this_hbsm_on_path_the_summary_names_one_a_new_shell_can_run(
    tmp_path: Path,
) -> None:
    # Another hbsm is on PATH (an old install, say); it is not this one.
    decoy = tmp_path / "hbsm"
    decoy.write_text("#!/bin/sh\necho decoy; exit 7\n")
    decoy.chmod(0o755)
    command = hbsm_command(search_path=str(tmp_path))
    assert command != "hbsm" and "/" in shlex.split(command)[0], command
    done = subprocess.run(
        f"{command} --version",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": str(tmp_path)},
    )
    assert (done.returncode, done.stdout.split()[0]) == (0, "hbsm"), done.stdout + done.stderr


def test_with_this_hbsm_on_path_the_summary_says_hbsm() -> None:
    here = Path(sys.executable).parent
    if (here / "hbsm").is_file():
        assert hbsm_command(search_path=str(here)) == "hbsm"
    else:  # hbsm importable but not installed as a command: the summary says `PYTHON -m hbsm`
        assert hbsm_command(search_path=str(here)).endswith(" -m hbsm")

"""End to end: `hbsm demo --headless --chaos` for a bounded time, then check from its event
log (read here as raw JSON, independently of hbsm.demo.report) and its faults side file:

* every injected fault was detected — the service went `repairing` — by the probes the policy
  needs: at most max_retries of the service's probes after the fault, and one more (a probe
  already under way when the fault came may pass). Counted in probes, not seconds: how many
  seconds it took is the demo's own summary (its exit code holds it to
  hbsm.demo.workdir.detection_bound);
* every fault was repaired: the service came back to `healthy` after it;
* no two restart.started of one service are closer than restart_cooldown;
* every kind of fault appeared, and the demo exited 0;
* `hbsm replay --verify LOG`, copied from the summary into a shell whose PATH has no hbsm (a new
  shell: the venv is not activated there), exits 0;
* every process the log says was started (process.started, restart.finished) is gone.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.net import free_port

from hbsm.demo.service import FAULTS
from hbsm.demo.workdir import THRESHOLDS

pytestmark = pytest.mark.slow  # `just test-slow` (CI runs it)

DURATION = 45
RETRIES = int(THRESHOLDS["max_retries"])
COOLDOWN = float(THRESHOLDS["restart_cooldown"])
# A new shell's environment: no directory on PATH holds an hbsm (`.ci/run` puts the venv's bin/
# on PATH, a user who has not activated the venv has none).
NEW_SHELL = {
    **os.environ,
    "PATH": os.pathsep.join(
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not Path(d, "hbsm").exists()
    ),
}


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    log: Path
    events: list[dict[str, Any]]
    faults: list[dict[str, Any]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Run:
    work = tmp_path_factory.mktemp("demo")
    argv = [
        sys.executable, "-m", "hbsm.demo", "--headless", "--chaos", "--duration", str(DURATION),
        "--seed", "1", "--dir", str(work), "--port", str(free_port()),
    ]  # fmt: skip
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=DURATION + 45, env=NEW_SHELL
    )
    log = work / "events" / "demo.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    faults_file = work / "events" / "demo-faults.jsonl"
    faults = [json.loads(line) for line in faults_file.read_text().splitlines() if line.strip()]
    return Run(proc.returncode, proc.stdout, proc.stderr, log, events, faults)


def _of(run: Run, service: str, kind: str, after: float) -> list[dict[str, Any]]:
    return [
        e
        for e in run.events
        if e["type"] == kind and e.get("service") == service and e["ts"] >= after
    ]


def test_it_exits_0_with_a_summary(demo: Run) -> None:
    assert demo.code == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "every injected fault was repaired" in demo.stdout
    assert f"hbsm replay {demo.log}" in demo.stdout
    assert f"hbsm dashboard --replay {demo.log}" in demo.stdout


def test_every_kind_of_fault_was_injected(demo: Run) -> None:
    assert {f["kind"] for f in demo.faults} == set(FAULTS)


def test_every_fault_was_detected_by_what_it_needs_and_repaired(demo: Run) -> None:
    for fault in demo.faults:
        moves = _of(demo, fault["service"], "transition", fault["ts"])
        # Decided on: a repair run after failed probes, or (a crash: the supervised process
        # ended) a restart on the end itself, with no probe needed.
        decided = next((t for t in moves if t["dst"] == "repairing"
                        or t["trigger"] == "process_lost"), None)  # fmt: skip
        assert decided is not None, f"fault never detected: {fault}"
        probes = [
            e for e in _of(demo, fault["service"], "probe", fault["ts"])
            if e["seq"] < decided["seq"] and not e["ok"]
        ]  # fmt: skip
        needed = 0 if decided["trigger"] == "process_lost" else RETRIES
        assert len(probes) <= needed + 1, f"detected after {len(probes)} failed probes: {fault}"
        if fault["kind"] == "crash":
            assert decided["trigger"] == "process_lost", f"a crash waited for probes: {fault}"
        healthy = next(
            (t for t in moves if t["dst"] == "healthy" and t["ts"] > decided["ts"]), None
        )
        assert healthy is not None, f"never repaired: {fault}"


def test_the_ladder_repairs_without_restarts_where_it_can(demo: Run) -> None:
    for fault in demo.faults:
        moves = _of(demo, fault["service"], "transition", fault["ts"])
        healthy = next(t for t in moves if t["dst"] == "healthy" and t["src"] != "unknown")
        restarts = [
            r for r in _of(demo, fault["service"], "restart.started", fault["ts"])
            if r["ts"] <= healthy["ts"]
        ]  # fmt: skip
        if fault["kind"] in ("crash", "hang"):
            assert restarts, f"repaired without a restart: {fault}"
        else:
            assert not restarts, f"restarted: {fault}"
            assert healthy["trigger"] == "verified"


def test_no_restart_broke_the_cooldown(demo: Run) -> None:
    starts: dict[str, list[float]] = {}
    for e in demo.events:
        if e["type"] == "restart.started":
            starts.setdefault(e["service"], []).append(e["ts"])
    assert starts, "no restart at all: crash and hang faults need one"
    for service, times in starts.items():
        for earlier, later in itertools.pairwise(times):
            assert later - earlier >= COOLDOWN, f"{service}: restarts {later - earlier:.2f} s apart"


def test_replay_verify_from_the_summary_runs_in_a_new_shell_and_passes(demo: Run) -> None:
    (line,) = [line for line in demo.stdout.splitlines() if " replay --verify " in line]
    command = line.strip()
    assert command.endswith(f" replay --verify {demo.log}") and not command.startswith("hbsm ")
    verify = subprocess.run(
        command, shell=True, capture_output=True, text=True, timeout=60, env=NEW_SHELL
    )
    assert verify.returncode == 0, command + "\n" + verify.stdout + verify.stderr


def test_every_child_process_is_gone(demo: Run) -> None:
    pids = {
        e["pid"]
        for e in demo.events
        if e["type"] in ("process.started", "restart.finished") and e.get("pid")
    }
    assert len(pids) >= 3
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    assert not alive, f"still running: {alive}"
    assert demo.events[-1]["type"] == "monitor.stopped"

"""Fault: the monitor SIGKILLed at random points of a repair ladder, 20 times in a row, each time
started again on its log.

The service is supervised by hbsm and broken (its /health answers 500) until the very end, so
the monitor climbs its ladder (diagnose, a command that takes a while, an HTTP hook, restart)
over and over, and each kill lands somewhere else in it: in a step, between a step and its
verification, in a restart, in the cooldown, during start-up. Between a kill and the next start
the test records what the disk holds, and in some rounds leaves half a line at the end of the
log as a write cut short would. At the end the service is mended, must come back healthy, and
the whole log must show:

* every line on disk at a kill still there, byte for byte (no flushed event lost);
* seq strictly increasing; no torn line left: each was cut and reported by `log.recovered`;
* `hbsm replay --verify` agreeing with every recorded decision;
* no two restarts closer than the cooldown in force;
* every repair step or restart in flight at a kill finished as `interrupted` by a later start,
  and the ladder taken up where it was (the step's verification probe, then the next step).

The seed is printed; HBSM_KILL_SEED=<n> replays the same choices (the timing still varies).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from monitor import support as monitor_support
from monitor.conftest import HbsmRuns

from hbsm.events import (
    Event,
    LogRecovered,
    MonitorStarted,
    MonitorStopped,
    OpaqueEvent,
    Probe,
    ProcessStarted,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    Transition,
)
from hbsm.projection import Projection

from .crash_support import DiskLines, disk_lines

ROUNDS = 20
# Random delays after a monitor has logged its start; start-up takes ~0.5 s more before that.
KILL_AFTER = (0.0, 1.5)
# Share of rounds that leave half a line at the end of the log between the kill and the start.
TORN_SHARE = 0.3
COOLDOWN = 1.0
COOLDOWN_MAX = 2.0

History = list[Event | OpaqueEvent]


def step_marker(tmp_path: Path) -> str:
    """In the repair command's argv: what is left of it can be found and killed."""
    return f"hbsm-kill-loop-step:{tmp_path}"


@pytest.fixture
def seed() -> int:
    chosen = int(os.environ.get("HBSM_KILL_SEED") or random.randrange(2**32))
    print(f"kill loop seed: HBSM_KILL_SEED={chosen}")
    return chosen


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[HbsmRuns]:
    processes = HbsmRuns(tmp_path)
    yield processes
    processes.close()
    marker = step_marker(tmp_path)
    monitor_support.kill_pids(monitor_support.processes_mentioning(marker), must_mention=marker)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Any]:
    child = monitor_support.ChildService(tmp_path / "children", "api")
    yield child
    child.kill_all()


@pytest.fixture
def hook() -> Iterator[Any]:
    server = monitor_support.SwitchableTarget().start()
    yield server
    server.stop()


def service_config(api: Any, hook: Any, marker: str) -> dict[str, Any]:
    step = "import sys, time; time.sleep(0.3); sys.exit(1)"
    return {
        "name": "api",
        "url": api.url,
        "probe": {"timeout": 1.0},
        "restart": {"kind": "supervise", "argv": api.argv, "grace": 1.0},
        "ladder": ["diagnose", "command", "http", "restart"],
        "steps": {
            "command": {"argv": [monitor_support.PY, "-c", step, marker], "timeout": 5.0},
            # The hook answers after 200 ms, and repairs nothing.
            "http": {"url": hook.url("/slow/200"), "timeout": 5.0},
        },
    }


def in_flight(history: History) -> tuple[set[tuple[int, int]], set[int]]:
    """Repair steps (run, index) and restarts (seq of restart.started) started, not finished."""
    steps: set[tuple[int, int]] = set()
    restarts: set[int] = set()
    for e in history:
        if isinstance(e, RepairStarted):
            steps.add((e.run, e.index))
        elif isinstance(e, RepairFinished):
            steps.discard((e.run, e.index))
        elif isinstance(e, RestartStarted):
            restarts = {e.seq}
        elif isinstance(e, RestartFinished):
            restarts = set()
    return steps, restarts


def healthy(log: Path, since_pid: int | None = None) -> bool:
    """Whether the log leaves `api` healthy; with `since_pid`, only once the monitor with that
    pid has started (its signal handlers are in place by then) and probed it ok itself."""
    events = disk_lines(log).events
    if since_pid is not None:
        start = next(
            (
                i
                for i, e in enumerate(events)
                if isinstance(e, MonitorStarted) and e.pid == since_pid
            ),
            None,
        )
        if start is None:
            return False
        if not any(isinstance(e, Probe) and e.service == "api" and e.ok for e in events[start:]):
            return False
    projection = Projection()
    projection.apply_all(events)
    view = projection.services.get("api")
    return view is not None and view.fsm.state == "healthy"


@pytest.mark.slow  # `just test-slow` (CI runs it)
def test_sigkill_at_random_points_of_the_ladder_twenty_times_loses_nothing_flushed(
    tmp_path: Path, seed: int, runs: HbsmRuns, api: Any, hook: Any
) -> None:
    rng = random.Random(seed)
    log = tmp_path / "events" / "heartbeat.jsonl"
    config = monitor_support.write_toml_config(
        tmp_path / "hbsm.toml",
        [service_config(api, hook, step_marker(tmp_path))],
        check_interval=0.1,
        max_retries=1,
        restart_cooldown=COOLDOWN,
        cooldown_max=COOLDOWN_MAX,
        restart_budget=1000,  # never `failed`: the ladder goes on all through the loop
    )
    api.break_it()

    on_disk: dict[int, bytes] = {}  # every complete line seen on disk at a kill, by seq
    torn: set[tuple[int, int]] = set()  # (offset, bytes) of each tail left for a start to cut
    open_steps: set[tuple[int, int]] = set()
    open_restarts: set[int] = set()
    natural = 0
    for round_ in range(ROUNDS):
        run = runs.start(config, log)
        run.until(
            lambda: any(
                isinstance(e, MonitorStarted) and e.pid == run.pid  # noqa: B023
                for e in disk_lines(log).events
            ),
            f"round {round_}: the monitor started",
        )
        time.sleep(rng.uniform(*KILL_AFTER))
        assert run.kill() == -signal.SIGKILL

        disk = disk_lines(log)
        for seq, line in disk.lines.items():
            assert on_disk.setdefault(seq, line) == line, f"round {round_}: seq {seq} changed"
        steps, restarts = in_flight(disk.events)
        open_steps |= steps
        open_restarts |= restarts
        if disk.tail:
            natural += 1
            torn.add((disk.size - len(disk.tail), len(disk.tail)))
        elif rng.random() < TORN_SHARE:
            half = b'{"type":"probe","seq":%d,"ts":%.3f,"service":"api","ok":fa' % (
                max(disk.lines) + 1,
                time.time(),
            )
            with log.open("ab") as f:
                f.write(half)
            torn.add((disk.size, len(half)))

    # The last start: mended, the service must come back, then a clean stop.
    api.mend()
    final = runs.start(config, log)
    # Healthy as this run found it: the log may end healthy already (a probe that passed
    # just before the last kill), and a SIGTERM before this run handles signals kills it.
    final.until(lambda: healthy(log, since_pid=final.pid), "api healthy once mended", 60.0)
    final.signal(signal.SIGTERM)
    assert final.wait() == 0, final.err()

    disk = disk_lines(log)
    history = disk.events
    print(
        f"{ROUNDS} kills: {len(open_steps)} repair steps and {len(open_restarts)} restarts in "
        f"flight, {len(torn)} torn tails ({natural} left by the kill itself), "
        f"{len(history)} events"
    )
    assert_nothing_flushed_was_lost(disk, on_disk)
    assert_torn_tails_cut_and_reported(disk, torn)
    checked = monitor_support.verify_log(log)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert_restarts_kept_the_cooldown(history)
    assert_interrupted_work_recorded_and_taken_up(history, open_steps, open_restarts)
    starts = [e for e in history if isinstance(e, MonitorStarted)]
    assert [s.pid for s in starts] == [r.pid for r in runs.runs]
    stopped = history[-1]
    assert isinstance(stopped, MonitorStopped) and stopped.pid == final.pid
    # The loop did go through the ladder, not just start-ups.
    assert [e for e in history if isinstance(e, RestartStarted)]
    assert {e.step for e in history if isinstance(e, RepairStarted)} >= {"command", "http"}


def assert_nothing_flushed_was_lost(disk: DiskLines, on_disk: dict[int, bytes]) -> None:
    assert disk.tail == b""
    lost = {seq for seq in on_disk if disk.lines.get(seq) != on_disk[seq]}
    assert not lost, f"lines on disk at a kill, gone or changed since: seqs {sorted(lost)}"
    seqs = [e.seq for e in disk.events]
    assert all(a < b for a, b in itertools.pairwise(seqs)), "seq not strictly increasing"


def assert_torn_tails_cut_and_reported(disk: DiskLines, torn: set[tuple[int, int]]) -> None:
    reported = {(e.offset, e.cut_bytes) for e in disk.events if isinstance(e, LogRecovered)}
    assert reported == torn
    for e in disk.events:
        if isinstance(e, LogRecovered):
            # Reported by the next start, first thing, in place of what was cut.
            after = disk.events[disk.events.index(e) + 1]
            assert isinstance(after, MonitorStarted)


def assert_restarts_kept_the_cooldown(history: History) -> None:
    restarts = [e for e in history if isinstance(e, RestartStarted)]
    for a, b in itertools.pairwise(restarts):
        assert b.ts - a.ts >= max(a.cooldown_s, COOLDOWN), (a.seq, b.seq, b.ts - a.ts)
    gaps = monitor_support.restart_gaps(history, "api")
    assert all(gap >= COOLDOWN for gap in gaps)


def assert_interrupted_work_recorded_and_taken_up(
    history: History, open_steps: set[tuple[int, int]], open_restarts: set[int]
) -> None:
    finished = [e for e in history if isinstance(e, RepairFinished)]
    interrupted = {(e.run, e.index) for e in finished if e.interrupted}
    # Each step in flight at a kill finished once, as interrupted; no other one was.
    assert interrupted == open_steps
    outcomes = [(e.run, e.index) for e in finished]
    assert len(outcomes) == len(set(outcomes)), "a repair step finished twice"
    for e in history:
        if isinstance(e, RepairStarted):
            assert (e.run, e.index) in outcomes, f"repair step {e.step} (seq {e.seq}) never ended"

    # Each restart in flight at a kill: the next restart.finished says interrupted.
    for i, e in enumerate(history):
        if isinstance(e, RestartStarted):
            outcome = next((x for x in history[i:] if isinstance(x, RestartFinished)), None)
            assert outcome is not None, f"restart (seq {e.seq}) never finished"
            assert outcome.interrupted == (e.seq in open_restarts), (e.seq, outcome.seq)

    # Taken up where it was: the first probe after an interrupted step (by the same monitor)
    # verifies it, and is followed at once by the ladder's next move.
    for i, e in enumerate(history):
        if not (isinstance(e, RepairFinished) and e.interrupted):
            continue
        for j in range(i + 1, len(history)):
            x = history[j]
            if isinstance(x, MonitorStarted):
                break  # killed again before the verification: the next start takes it up
            if isinstance(x, Probe):
                move = history[j + 1] if j + 1 < len(history) else None
                assert isinstance(move, Transition | RepairStarted), (e.seq, x.seq)
                if isinstance(move, RepairStarted):
                    assert (move.run, move.index) == (e.run, e.index + 1)
                else:
                    assert move.src == "repairing"
                break


# --- the narrowest point: a child started, its pid not yet recorded ---------------------------

# The supervised service of the test below: it writes its pid first thing (so the test sees it
# well inside the supervisor's settle time), then answers 500 while FLAG exists, 200 otherwise.
EAGER_CHILD = """\
import os, sys
port, flag, pids = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(pids, "a") as f:
    f.write(f"{os.getpid()}\\n")
import http.server

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if os.path.exists(flag) else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.serve_forever(poll_interval=0.05)
"""


def test_killed_after_starting_a_child_before_recording_it_the_next_monitor_adopts_it(
    tmp_path: Path, runs: HbsmRuns, api: Any
) -> None:
    api.script.write_text(EAGER_CHILD)
    log = tmp_path / "events" / "heartbeat.jsonl"
    svc = {
        "name": "api",
        "url": api.url,
        "probe": {"timeout": 1.0},
        "restart": {"kind": "supervise", "argv": api.argv, "grace": 1.0},
        "ladder": ["diagnose", "restart"],
    }
    config = monitor_support.write_toml_config(
        tmp_path / "hbsm.toml",
        [svc],
        check_interval=0.1,
        max_retries=1,
        restart_cooldown=COOLDOWN,
        cooldown_max=COOLDOWN,
    )
    first = runs.start(config, log)
    first.until(lambda: healthy(log), "api healthy")
    api.break_it()

    def recorded(pid: int) -> bool:
        return any(isinstance(e, RestartFinished) and e.pid == pid for e in disk_lines(log).events)

    # Stop the monitor the moment a restart has started the new child: if its pid is on disk
    # already, the moment was missed (let it go on to the next restart); else kill it there.
    orphan = None
    for _ in range(10):
        count = len(api.started_pids())
        first.until(lambda: len(api.started_pids()) > count, "a restart starts a child")  # noqa: B023
        first.signal(signal.SIGSTOP)
        newest = api.started_pids()[-1]
        if not recorded(newest):
            orphan = newest
            break
        first.signal(signal.SIGCONT)
    assert orphan is not None, "never caught a restart between starting its child and recording it"
    assert first.kill() == -signal.SIGKILL
    assert monitor_support.alive(orphan)
    before = api.started_pids()

    second = runs.start(config, log)
    second.until(
        lambda: (
            second.pid
            in [e.pid for e in disk_lines(log).events if isinstance(e, MonitorStarted)][-1:]
        ),
        "the second monitor started",
    )
    resumed = disk_lines(log).events
    start = max(i for i, e in enumerate(resumed) if isinstance(e, MonitorStarted))
    taken = [(e.pid, e.adopted) for e in resumed[start:] if isinstance(e, ProcessStarted)]
    assert taken == [(orphan, True)], second.err()
    assert api.started_pids() == before  # not started a second time

    # The restart it was in is taken as done; once cooled down the ladder restarts it again,
    # and that works (the port is free for the new child once the adopted one is stopped).
    def restarted_after_adoption() -> bool:
        # Polled from the start: on a loaded machine no restart may be recorded yet.
        finished = [e for e in disk_lines(log).events if isinstance(e, RestartFinished)]
        return bool(finished) and finished[-1].ok and len(api.started_pids()) > len(before)

    second.until(restarted_after_adoption, "a restart after the adoption")
    api.mend()
    second.until(lambda: healthy(log), "api healthy once mended")
    second.signal(signal.SIGTERM)
    assert second.wait() == 0, second.err()
    history = disk_lines(log).events
    finished = [e for e in history[start:] if isinstance(e, RestartFinished)]
    assert finished[0].interrupted and all(e.ok for e in finished), finished
    assert not monitor_support.alive(orphan)  # stopped by that restart, as its own child would be
    checked = monitor_support.verify_log(log)
    assert checked.returncode == 0, checked.stdout + checked.stderr

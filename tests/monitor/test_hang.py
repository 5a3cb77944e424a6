"""A hung service (it accepts connections and never answers) reaches its restart without another
probe timeout's wait: `diagnose` takes the failure the monitor has just recorded instead of
probing again, and neither it nor `check_config` (steps that change nothing) waits for a
verification probe. Real parts: a local HTTP target that hangs and counts the requests reaching
it, the file log, a restart command; the log is checked, then `hbsm replay --verify`."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from support.configs import make_config, service
from support.waiting import wait_for

from hbsm.config import Config
from hbsm.events import Probe, RepairFinished, RepairStarted, RestartStarted, Transition

from .conftest import Harness
from .support import SwitchableTarget, of, probes_between, transitions, verify_log

StartMonitor = Callable[[Config], Awaitable[Harness]]

# The restart: says it has begun (a file), then waits for the test's word (another file), so the
# test can count the requests at the target while the restart is in progress and no probe runs.
RESTART = """\
import pathlib, sys, time
began, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
began.touch()
deadline = time.monotonic() + 20
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.02)
"""


async def test_a_hung_service_is_restarted_without_a_second_timeout_wait(
    tmp_path: Path, target: SwitchableTarget, start_monitor: StartMonitor
) -> None:
    began, go = tmp_path / "restart.began", tmp_path / "restart.go"
    svc = service(
        "web",
        target.svc_url("web"),
        probe={"timeout": 0.3},
        ladder=["diagnose", "check_config", "restart"],
        restart={"kind": "command", "argv": [sys.executable, "-c", RESTART, str(began), str(go)]},
    )
    config = make_config(
        tmp_path / "events" / "heartbeat.jsonl", [svc], check_interval=0.5, max_retries=2
    )
    h = await start_monitor(config)
    await h.wait_state("web", "healthy")
    mark = h.store.last_seq
    before = target.requests
    target.modes["web"] = "/hang"
    await wait_for(began.exists, "the restart begun", 20)
    # What reached the target from the hang to the restart: the failed probes, nothing else.
    reached = target.requests - before
    target.modes.clear()
    go.touch()
    await h.wait_state("web", "healthy")
    history = await h.stop()

    (started,) = of(history, RestartStarted, "web")
    failed = [p for p in of(history, Probe, "web") if mark < p.seq < started.seq]
    assert failed and not any(p.ok for p in failed)
    assert {p.error for p in failed} == {"timeout"}
    assert reached == len(failed)
    steps = [e for e in of(history, RepairStarted, "web") if e.seq > mark]
    assert [s.step for s in steps] == ["diagnose", "check_config"]
    # No probe between the decision and the restart: the run went from step to step at once.
    assert probes_between(history, "web", steps[0].seq, started.seq) == []
    diagnose, check = (e for e in of(history, RepairFinished, "web") if e.seq > mark)
    # diagnose classified the very probe that decided the run, and says so.
    decided_by = failed[-1]
    assert decided_by.seq < steps[0].seq
    assert diagnose.error_class == "timeout" and not diagnose.verify
    assert f"(reused probe #{decided_by.seq}: not probed again)" in diagnose.output
    assert check.ok and not check.verify
    assert transitions(history, "web", mark)[:4] == [
        ("healthy", "degraded", "probe_failed"),
        ("degraded", "repairing", "probe_failed"),
        ("repairing", "restarting", "step_failed"),
        ("restarting", "cooldown", "restart_done"),
    ]
    to_restart = next(
        t for t in of(history, Transition, "web") if t.seq > mark and t.dst == "restarting"
    )
    assert to_restart.reason == (
        "still failing after check_config: timeout (the step changed nothing: no probe to wait for)"
    )
    done = verify_log(h.path)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_a_failure_older_than_a_check_interval_is_probed_afresh(
    tmp_path: Path, target: SwitchableTarget, start_monitor: StartMonitor
) -> None:
    # An operator's repair run on a service whose last failure is long past: diagnose looks.
    svc = service("web", target.svc_url("web"), ladder=["diagnose"], probe={"timeout": 0.3})
    h = await start_monitor(make_config(tmp_path / "events" / "heartbeat.jsonl", [svc]))
    await h.wait_state("web", "healthy")
    mark = h.store.last_seq
    await h.monitor.admin("repair_now", "web", who="test")
    await h.wait_logged(
        lambda e: isinstance(e, RepairFinished) and e.seq > mark, "diagnose finished"
    )
    await h.wait_state("web", "healthy")
    history = await h.stop()

    (diagnose,) = (e for e in of(history, RepairFinished, "web") if e.seq > mark)
    assert diagnose.output.startswith("recovered: ") and "reused" not in diagnose.output
    assert diagnose.verify  # recovered: the probe after it confirms it
    (verified,) = (t for t in of(history, Transition, "web") if t.seq > diagnose.seq)
    assert (verified.src, verified.dst, verified.trigger) == ("repairing", "healthy", "verified")
    done = verify_log(h.path)
    assert done.returncode == 0, done.stdout + done.stderr

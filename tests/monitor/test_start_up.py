"""What a monitor does when it starts, with real children: a first start opens the start
grace; a supervised process found gone is restarted as a restart (cooldown and budget hold); a
process stopped on purpose is started afresh; a restart the last monitor left unfinished is
finished, not decided again. And repair runs that cannot restart give up, loudly."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from support.configs import make_config, service, supervised
from support.waiting import wait_for_sync

from hbsm.config import Config
from hbsm.events import (
    Event,
    MonitorStarted,
    OpaqueEvent,
    Probe,
    ProcessLost,
    ProcessStarted,
    ProcessStopped,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    ServiceRegistered,
    Transition,
)
from hbsm.fsm import decide
from hbsm.log import FileEventLog
from hbsm.state import RULES, ServiceState

from .conftest import Harness
from .support import (
    ChildService,
    SwitchableTarget,
    alive,
    http_get,
    of,
    restart_gaps,
    transitions,
    verify_log,
)

History = list[Event | OpaqueEvent]
# Every service here restarts as soon as its first repair step has not fixed it.
LADDER = ["diagnose", "restart"]
StartMonitor = Callable[[Config], Awaitable[Harness]]


def log_path(tmp_path: Path) -> Path:
    return tmp_path / "events" / "heartbeat.jsonl"


def since(history: History, start: int) -> History:
    """The history from the `start`-th monitor.started (0-based) on."""
    at = [i for i, e in enumerate(history) if isinstance(e, MonitorStarted)][start]
    return history[at:]


def kill(pid: int | None) -> None:
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for_sync(lambda: not alive(pid), f"pid {pid} gone")


# --- the start grace -------------------------------------------------------------------------


async def test_a_service_slow_to_bind_raises_no_incident_at_start(
    tmp_path: Path, children: Callable[..., ChildService], start_monitor: StartMonitor
) -> None:
    api = children("api", bind_after=1.5)
    config = make_config(
        log_path(tmp_path), [supervised(api, ladder=LADDER)], max_retries=1, start_grace=10.0
    )
    h = await start_monitor(config)
    await h.wait_state("api", "healthy")
    history = await h.stop()
    refused = [p for p in of(history, Probe, "api") if not p.ok]
    assert len(refused) >= 3, "probed while it was not listening yet"
    assert all(p.error == "refused" for p in refused)
    assert transitions(history, "api") == [("unknown", "healthy", "probe_ok")]
    assert verify_log(h.path).returncode == 0


async def test_without_a_grace_the_same_start_is_an_incident(
    tmp_path: Path, children: Callable[..., ChildService], start_monitor: StartMonitor
) -> None:
    api = children("api", bind_after=1.5)
    config = make_config(
        log_path(tmp_path), [supervised(api, ladder=LADDER)], max_retries=1, start_grace=0.0
    )
    h = await start_monitor(config)
    await h.wait_logged(lambda e: isinstance(e, Transition) and e.dst == "repairing", "a repair")
    await h.stop()


# --- a process gone while hbsm was down ----------------------------------------------------------


async def test_a_lost_process_is_restarted_under_the_cooldown_however_often_hbsm_restarts(
    tmp_path: Path, children: Callable[..., ChildService], start_monitor: StartMonitor
) -> None:
    api = children("api")
    cooldown = 4.0
    config = make_config(
        log_path(tmp_path), [supervised(api, ladder=LADDER)],
        restart_cooldown=cooldown, cooldown_max=cooldown, start_grace=5.0,
    )  # fmt: skip
    first = await start_monitor(config)
    await first.wait_state("api", "healthy")
    await first.stop()  # leaves api running (stop_on_exit off)
    kill(first.monitor.projection.services["api"].pid)

    # The next start finds it gone: a restart, decided and carried out at once (none before).
    second = await start_monitor(config)
    await second.wait_state("api", "healthy")
    await second.stop()
    kill(second.monitor.projection.services["api"].pid)

    # Again, at once: now inside the cooldown of that restart. It waits for the deadline.
    third = await start_monitor(config)
    assert third.state("api") == "cooldown"
    assert http_get(api.url)[0] == 0  # not started: nothing answers
    await third.wait_state("api", "healthy", timeout=30.0)
    history = await third.stop()

    lost = of(history, ProcessLost, "api")
    assert len(lost) == 2
    restarts = of(history, RestartStarted, "api")
    assert len(restarts) == 2 and restart_gaps(history, "api")[0] >= cooldown
    (waited,) = [t for t in of(since(history, 2), Transition, "api") if t.dst == "cooldown"][:1]
    assert (waited.trigger, waited.until) == ("process_lost", restarts[0].ts + cooldown)
    assert restarts[1].ts >= waited.until
    # Only the very first start was a plain start.
    assert [p.adopted for p in of(history, ProcessStarted, "api")] == [False]
    assert verify_log(third.path).returncode == 0


async def test_a_process_stopped_on_purpose_is_started_afresh_not_restarted(
    tmp_path: Path, children: Callable[..., ChildService], start_monitor: StartMonitor
) -> None:
    api = children("api")
    config = make_config(log_path(tmp_path), [supervised(api, stop_on_exit=True, ladder=LADDER)])
    first = await start_monitor(config)
    await first.wait_state("api", "healthy")
    pid = first.monitor.projection.services["api"].pid
    await first.stop()
    assert pid is not None and not alive(pid)
    second = await start_monitor(config)
    await second.wait_state("api", "healthy")
    history = await second.stop()
    (stopped, _) = of(history, ProcessStopped, "api")
    assert stopped.pid == pid and "stop_on_exit" in stopped.reason
    assert [p.adopted for p in of(history, ProcessStarted, "api")] == [False, False]
    assert not of(history, ProcessLost) and not of(history, RestartStarted)


# --- a restart cut short by the monitor's death ---------------------------------------------------


async def test_a_restart_cut_short_after_the_old_process_was_stopped_is_finished(
    tmp_path: Path, children: Callable[..., ChildService], start_monitor: StartMonitor
) -> None:
    api = children("api")
    svc = supervised(api, ladder=LADDER)
    config = make_config(log_path(tmp_path), [svc], restart_cooldown=60.0, cooldown_max=60.0)
    policy = config.policy_for(config.services[0])
    # What a monitor killed mid-restart leaves: the restart decided, the old process (a real
    # one of ours, here) already stopped, no new one started, no restart.finished.
    old = await asyncio.create_subprocess_exec(*api.argv)
    old.kill()
    await old.wait()
    now = time.time()
    state = ServiceState(name="api")
    with FileEventLog.open(log_path(tmp_path)) as store:
        facts: list[Event] = [
            MonitorStarted(ts=now - 5, pid=1, rules=RULES),
            ServiceRegistered(ts=now - 5, service="api", policy=policy, target=api.url),
            ProcessStarted(ts=now - 5, service="api", pid=old.pid, argv=api.argv),
        ]
        decide(state, facts[-1], policy)
        lost = ProcessLost(ts=now - 2, service="api", pid=old.pid)
        store.append([*facts, lost, *decide(state, lost, policy)])
    assert state.in_flight == "restart"

    h = await start_monitor(config)
    await h.wait_state("api", "healthy")
    history = await h.stop()
    (decided,) = of(history, RestartStarted, "api")  # no second decision
    (finished,) = of(history, RestartFinished, "api")
    assert finished.ok and finished.interrupted and finished.pid is not None
    assert finished.output.startswith("taken up after hbsm restarted")
    assert "was not running" in finished.output
    cooling = next(t for t in of(history, Transition, "api") if t.dst == "cooldown")
    assert cooling.until == decided.ts + 60.0  # from the decision, not from now
    (recorded_loss,) = of(history, ProcessLost, "api")
    assert not of([e for e in history if e.seq > recorded_loss.seq], ProcessStarted, "api")
    assert verify_log(h.path).returncode == 0


# --- repair runs that cannot restart ---------------------------------------------------------


async def test_a_ladder_without_restart_backs_off_and_gives_up_past_its_budget(
    tmp_path: Path, target: SwitchableTarget, start_monitor: StartMonitor
) -> None:
    login = service(
        "login_page", target.svc_url("login"), ladder=["diagnose"],
        restart={"kind": "none"},
    )  # fmt: skip
    config = make_config(
        log_path(tmp_path), [login], max_retries=1, check_interval=0.1,
        repair_backoff=0.4, repair_backoff_max=0.8, repair_budget=3,
    )  # fmt: skip
    h = await start_monitor(config)
    await h.wait_state("login_page", "healthy")
    target.modes["login"] = "/status/500"
    await h.wait_state("login_page", "failed")
    await asyncio.sleep(1.0)  # nothing more once failed: no run, however long it fails
    history = await h.stop()

    runs = [r for r in of(history, RepairStarted, "login_page") if r.index == 0]
    assert len(runs) == 3
    ends = [t for t in of(history, Transition, "login_page") if t.trigger == "step_failed"]
    assert [t.dst for t in ends] == ["degraded", "degraded", "failed"]
    assert [t.until - t.ts for t in ends[:2]] == pytest.approx([0.4, 0.8])  # type: ignore[operator]
    for end, run in zip(ends[:2], runs[1:], strict=True):
        assert run.ts >= end.until  # type: ignore[operator]
    assert ends[-1].reason.startswith("repair budget spent: 3 repair run(s) in a row")
    assert verify_log(h.path).returncode == 0

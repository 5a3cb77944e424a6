"""The monitor in-process, with real parts: local HTTP servers switched to fail, hang, answer
slowly or with 500; supervised child processes killed with SIGKILL; the file event log; real
prober, repair runner, supervisor and notifier. Each test drives a scenario, stops the monitor
and checks what the log says happened, then that `hbsm replay --verify` agrees with it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from support.configs import make_config, service, supervised
from support.waiting import wait_for

from hbsm.config import Config, NotifyConfig
from hbsm.events import (
    Admin,
    Event,
    LogOutage,
    MonitorStopped,
    Notification,
    OpaqueEvent,
    Probe,
    ProcessLost,
    ProcessStarted,
    ProcessStopped,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    Transition,
)
from hbsm.projection import Projection

from .conftest import Harness
from .support import (
    ChildService,
    SwitchableTarget,
    alive,
    closed_port,
    http_get,
    of,
    probes_between,
    processes_mentioning,
    restart_gaps,
    transitions,
    verify_log,
)

History = list[Event | OpaqueEvent]
StartMonitor = Callable[[Config], Awaitable[Harness]]


def log_path(tmp_path: Path) -> Path:
    return tmp_path / "events" / "heartbeat.jsonl"


def assert_consistent(h: Harness, history: History) -> None:
    """What every test ends with: the log is whole and ordered, its fold gives the monitor's
    own states, and `hbsm replay --verify` re-decides it to the same decisions."""
    seqs = [e.seq for e in history]
    assert seqs == sorted(set(seqs)), "seq must increase strictly"
    assert isinstance(history[-1], MonitorStopped)
    folded = Projection()
    folded.apply_all(history)
    for name, state in h.monitor.states.items():
        mine = msgspec.structs.asdict(state)
        assert msgspec.structs.asdict(h.monitor.projection.services[name].fsm) == mine, name
        assert msgspec.structs.asdict(folded.services[name].fsm) == mine, name
    done = verify_log(h.path)
    assert done.returncode == 0, done.stdout + done.stderr


def repair_steps(history: History, name: str) -> list[tuple[str, str, bool | None]]:
    """("started"/"finished", step, ok) in log order."""
    out: list[tuple[str, str, bool | None]] = []
    for e in history:
        if isinstance(e, RepairStarted) and e.service == name:
            out.append(("started", e.step, None))
        elif isinstance(e, RepairFinished) and e.service == name:
            out.append(("finished", e.step, e.ok))
    return out


def position(history: History, match: Callable[[Any], bool]) -> int:
    return next(i for i, e in enumerate(history) if match(e))


# --- a killed process: diagnosed, restarted, cooled down, healthy ------------------------------


async def test_killed_child_is_restarted_at_once_and_healthy_at_its_first_good_probe(
    tmp_path: Path, children: Callable[..., ChildService], start_monitor: StartMonitor
) -> None:
    api = children("api")
    svc = supervised(
        api,
        stop_on_exit=True,
        ladder=["diagnose", "check_config", "restart"],
        steps={"check_config": {"port": api.port}},
    )
    h = await start_monitor(make_config(log_path(tmp_path), [svc]))
    await h.wait_state("api", "healthy")
    first_pid = h.monitor.supervisor.pid("api")
    assert first_pid is not None and first_pid == api.started_pids()[-1]
    mark = h.store.last_seq

    os.kill(first_pid, signal.SIGKILL)
    view = h.monitor.projection.services["api"]
    await wait_for(
        lambda: view.restarts_total == 1 and h.state("api") == "healthy",
        "api restarted once and healthy again",
    )
    new_pid = h.monitor.supervisor.pid("api")
    assert new_pid is not None and new_pid != first_pid and view.pid == new_pid
    status, body = await asyncio.to_thread(http_get, api.url)
    assert (status, body.strip()) == (200, f"ok pid={new_pid}")
    assert not alive(first_pid)
    history = await h.stop()

    assert of(history, ProcessStarted, "api")[0].pid == first_pid
    # Its end is a fact at once (the supervisor saw its child exit): the state machine decides
    # the restart on it, as a restart step, without a failed probe or a repair step first.
    assert transitions(history, "api", mark) == [
        ("healthy", "restarting", "process_lost"),
        ("restarting", "cooldown", "restart_done"),
        ("cooldown", "healthy", "probe_ok"),
    ]
    after = [e for e in history if e.seq > mark]
    moves = of(after, Transition, "api")
    (lost,) = of(after, ProcessLost, "api")
    assert lost.pid == first_pid and "killed by SIGKILL" in lost.detail
    assert position(history, lambda e: e is lost) < position(history, lambda e: e is moves[0])
    assert not [p for p in of(after, Probe, "api") if not p.ok and p.seq < moves[0].seq]
    assert repair_steps(history, "api") == []

    (started,) = of(history, RestartStarted, "api")
    (finished,) = of(history, RestartFinished, "api")
    assert finished.ok and finished.pid == new_pid
    assert f"pid {first_pid} had exited (killed by SIGKILL)" in finished.output
    # The cooldown runs from the restart's decision and keeps the next restart away; it holds
    # nothing else: healthy at the first good probe. A probe that found the new process not
    # listening yet fell in the start grace (1 s) and counted for nothing.
    until = moves[1].until
    assert until is not None and until == pytest.approx(started.ts + 2.0)
    after_restart = probes_between(history, "api", moves[1].seq, moves[2].seq)
    assert after_restart[-1].ok and moves[2].trigger == "probe_ok"
    assert all(p.ts < finished.ts + 1.0 for p in after_restart if not p.ok)
    assert_consistent(h, history)


async def test_killed_again_inside_its_cooldown_it_waits_for_the_cooldown(
    tmp_path: Path, children: Callable[..., ChildService], start_monitor: StartMonitor
) -> None:
    api = children("api")
    svc = supervised(api, stop_on_exit=True, ladder=["diagnose", "restart"])
    h = await start_monitor(make_config(log_path(tmp_path), [svc]))
    await h.wait_state("api", "healthy")
    view = h.monitor.projection.services["api"]
    for restarts in (1, 2):
        pid = h.monitor.supervisor.pid("api")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await wait_for(lambda n=restarts: view.restarts_total == n and h.state("api") == "healthy",
                       f"api restarted {restarts} times, healthy")  # fmt: skip
    history = await h.stop()
    first, second = of(history, RestartStarted, "api")
    # The second end came inside the first restart's cooldown (2 s): that restart waited for it.
    assert second.ts - first.ts >= 2.0
    assert len(of(history, ProcessLost, "api")) == 2
    assert_consistent(h, history)


# --- the cooldown holds: no restart sooner than restart_cooldown after the last ---------------


async def test_no_restart_during_cooldown_even_when_asked(
    tmp_path: Path, children: Callable[..., ChildService], start_monitor: StartMonitor
) -> None:
    api = children("api")
    svc = supervised(api, stop_on_exit=True, ladder=["diagnose", "restart"])
    h = await start_monitor(make_config(log_path(tmp_path), [svc]))
    await h.wait_state("api", "healthy")
    view = h.monitor.projection.services["api"]

    api.break_it()  # 500 from now on, across restarts: the restart does not fix it
    await wait_for(lambda: h.state("api") == "cooldown", "api restarted and in cooldown")
    assert view.restarts_total == 1
    # An operator insists during the cooldown: the ladder runs, but its restart waits.
    mark = h.store.last_seq
    await h.monitor.admin("repair_now", "api", who="test", source="pytest")
    await wait_for(
        lambda: any(
            t[:2] == ("repairing", "cooldown") for t in transitions(h.history(), "api", mark)
        ),
        "the repair asked for in cooldown ended back in cooldown",
    )
    assert view.restarts_total == 1
    # Still broken after the cooldown: a second restart, then mended.
    await wait_for(lambda: view.restarts_total == 2, "a second restart after the cooldown")
    api.mend()
    await wait_for(
        lambda: h.state("api") == "healthy" and view.restarts_total == 2, "api healthy again"
    )
    history = await h.stop()

    first, second = of(history, RestartStarted, "api")
    assert second.ts - first.ts >= first.cooldown_s == 2.0
    assert all(gap >= 2.0 for gap in restart_gaps(history, "api"))
    assert transitions(history, "api", mark)[:3] == [
        ("cooldown", "repairing", "repair_now"),
        ("repairing", "cooldown", "step_failed"),
        ("cooldown", "restarting", "probe_failed"),  # at the cooldown's end, still failing
    ]
    too_soon = of([e for e in history if e.seq > mark], Transition, "api")[1]
    assert too_soon.until == pytest.approx(first.ts + first.cooldown_s)
    assert not [r for r in of(history, RestartStarted, "api") if mark < r.seq < too_soon.seq]
    (asked,) = of(history, Admin, "api")
    assert (asked.action, asked.who, asked.source, asked.allowed) == (
        "repair_now",
        "test",
        "pytest",
        True,
    )
    # The probes said why: HTTP 500 from the restarted (still broken) process too. A probe right
    # after a restart may find the new process not listening yet (refused): it is started, not
    # ready, when the restart is done.
    failed = [p for p in of(history, Probe, "api") if not p.ok and p.seq > first.seq]
    classes = {p.error for p in failed}
    assert "http_5xx" in classes and classes <= {"http_5xx", "refused"}
    assert_consistent(h, history)


# --- failure classes of a service that answers 500, hangs or is slow --------------------------


async def test_failure_classes_of_500_hang_and_slow(
    tmp_path: Path, target: SwitchableTarget, start_monitor: StartMonitor
) -> None:
    services = [
        service("five", target.svc_url("five"), ladder=["diagnose"], probe={"timeout": 1.0}),
        service("hang", target.svc_url("hang"), ladder=["diagnose"], probe={"timeout": 0.5}),
        service(
            "slow",
            target.svc_url("slow"),
            ladder=["diagnose"],
            probe={"timeout": 3.0, "slow_ms": 300.0},
        ),
    ]
    h = await start_monitor(make_config(log_path(tmp_path), services))
    names = ("five", "hang", "slow")
    await wait_for(lambda: all(h.state(n) == "healthy" for n in names), "all healthy")
    mark = h.store.last_seq
    target.modes.update(five="/status/500", hang="/hang", slow="/slow/800")

    def diagnosed(name: str) -> bool:
        return any(
            isinstance(e, RepairFinished) and e.service == name and e.seq > mark
            for e in h.history()
        )

    await wait_for(lambda: all(diagnosed(n) for n in names), "each failure diagnosed")
    mend = h.store.last_seq
    target.modes.clear()
    await wait_for(
        lambda: all(
            h.state(n) == "healthy"
            and any(t[1] == "healthy" for t in transitions(h.history(), n, mend))
            for n in names
        ),
        "all healthy again",
    )
    history = await h.stop()

    expected = {"five": "http_5xx", "hang": "timeout", "slow": "slow"}
    for name, cls in expected.items():
        failed = [p for p in of(history, Probe, name) if p.seq > mark and not p.ok]
        assert len(failed) >= 2, name
        # Failures before the target was mended are of the one class (a probe in flight at
        # the switch back may still fail, of the same class).
        assert {p.error for p in failed} == {cls}, name
        diagnose = next(e for e in of(history, RepairFinished, name) if e.seq > mark)
        assert diagnose.ok and diagnose.error_class == cls, name
        assert transitions(history, name, mark)[:3] == [
            ("healthy", "degraded", "probe_failed"),
            ("degraded", "repairing", "probe_failed"),
            ("repairing", "degraded", "step_failed"),  # the ladder (diagnose only) is spent
        ], name
        assert transitions(history, name, mark)[-1][1] == "healthy", name
        assert not of(history, RestartStarted, name)
    five = [p for p in of(history, Probe, "five") if p.seq > mark and not p.ok]
    assert all(p.status == 500 and "HTTP 500" in p.detail for p in five)
    hang = [p for p in of(history, Probe, "hang") if p.seq > mark and not p.ok]
    assert all(p.latency_ms is None and p.status is None for p in hang)
    slow = [p for p in of(history, Probe, "slow") if p.seq > mark and not p.ok]
    # A slow success is a failure of class "slow", with the latency it really had.
    assert all(p.status == 200 and p.latency_ms is not None and p.latency_ms >= 800 for p in slow)
    assert all("slow_ms 300" in p.detail for p in slow)
    assert_consistent(h, history)


# --- the operator: heartbeat start/stop, pause/resume, probe now ---------------------------


async def test_admin_start_stop_pause_resume_and_probe_now(
    tmp_path: Path, target: SwitchableTarget, start_monitor: StartMonitor
) -> None:
    from hbsm.probes import first_offset

    # "lazy" is probed every 60 s, its first slot late in that minute: any probe of it during
    # this test is one asked for.
    assert first_offset("lazy", 60.0) > 40.0
    services = [
        service("a", target.svc_url("a"), ladder=["diagnose"]),
        service("b", target.svc_url("b"), ladder=["diagnose"]),
        service("lazy", target.svc_url("lazy"), ladder=["diagnose"], check_interval=60.0),
    ]
    h = await start_monitor(make_config(log_path(tmp_path), services))
    m = h.monitor
    await wait_for(lambda: h.state("a") == h.state("b") == "healthy", "a and b healthy")
    assert m.heartbeat_running and m.projection.monitor.running

    def probes_of(name: str, after: int) -> list[Probe]:
        return [p for p in of(h.history(), Probe, name) if p.seq > after]

    # start while running, stop, stop again: idempotent, each recorded.
    (again,) = of(await m.admin("start", who="ops", source="127.0.0.1"), Admin)
    assert again.detail == "already running" and m.heartbeat_running
    (stopped,) = of(await m.admin("stop", who="ops", source="127.0.0.1"), Admin)
    assert stopped.detail == "" and not m.heartbeat_running
    # On disk by the time it is answered: what other processes reading the log see at once.
    assert stopped in h.history()
    assert not m.projection.monitor.running
    (stopped_again,) = of(await m.admin("stop", who="ops", source="127.0.0.1"), Admin)
    assert stopped_again.detail == "already stopped" and not m.heartbeat_running

    # Stopped: nothing is probed, except on request.
    (asked,) = [e for e in await m.admin("probe_now", "a", who="ops") if isinstance(e, Admin)]
    await wait_for(lambda: probes_of("a", asked.seq), "the probe asked for while stopped")
    await asyncio.sleep(0.6)  # three intervals of b: proof of absence needs some time
    assert not probes_of("b", stopped.seq)
    assert len(probes_of("a", stopped.seq)) == 1

    (started,) = of(await m.admin("start", who="ops"), Admin)
    assert started.detail == "" and m.heartbeat_running and m.projection.monitor.running
    await wait_for(lambda: len(probes_of("b", started.seq)) >= 2, "b probed again")

    # Pause a: b goes on being probed, a is not (a probe already in flight may still land).
    paused = await m.admin("pause", "a", who="ops")
    assert h.state("a") == "paused"
    pause_seq = paused[-1].seq
    await wait_for(lambda: len(probes_of("b", pause_seq)) >= 4, "b probed while a is paused")
    assert len(probes_of("a", pause_seq)) <= 1
    assert h.state("a") == "paused"
    resumed = await m.admin("resume", "a", who="ops")
    assert h.state("a") == "healthy"
    await wait_for(lambda: len(probes_of("a", resumed[-1].seq)) >= 2, "a probed after resume")

    # probe_now while running: "lazy" is probed at once, out of its 60 s turn.
    assert not probes_of("lazy", 0)
    (now,) = [e for e in await m.admin("probe_now", "lazy") if isinstance(e, Admin)]
    await wait_for(lambda: probes_of("lazy", now.seq), "lazy probed on request")

    # Refused actions are recorded and change nothing; unknown services are an error.
    (denied,) = of(await m.admin("stop", who="intruder", source="10.0.0.9", allowed=False), Admin)
    assert not denied.allowed and m.heartbeat_running and m.projection.monitor.running
    denied_pause = await m.admin("pause", "b", who="intruder", allowed=False)
    assert len(denied_pause) == 1 and h.state("b") == "healthy"
    with pytest.raises(KeyError):
        await m.admin("pause", "nope")
    history = await h.stop()

    admin = [(e.action, e.service, e.detail) for e in of(history, Admin)]
    assert admin == [
        ("start", None, "already running"),
        ("stop", None, ""),
        ("stop", None, "already stopped"),
        ("probe_now", "a", ""),
        ("start", None, ""),
        ("pause", "a", ""),
        ("resume", "a", ""),
        ("probe_now", "lazy", ""),
        ("stop", None, ""),
        ("pause", "b", ""),
    ]
    assert all(e.who == "ops" and e.allowed for e in of(history, Admin)[:7])
    assert [(e.who, e.allowed) for e in of(history, Admin)[-2:]] == [
        ("intruder", False),
        ("intruder", False),
    ]
    assert not [t for t in of(history, Transition, "b") if t.dst == "paused"]
    assert transitions(history, "a")[-2:] == [
        ("healthy", "paused", "pause"),
        ("paused", "healthy", "resume"),
    ]
    (lazy,) = of(history, Probe, "lazy")
    assert lazy.ok and lazy.seq > now.seq
    assert_consistent(h, history)


# --- a hung repair command is killed at its timeout; the ladder goes on -----------------------


async def test_hung_repair_command_times_out_and_the_ladder_goes_on(
    tmp_path: Path,
    children: Callable[..., ChildService],
    start_monitor: StartMonitor,
    strays: Callable[[list[str]], list[str]],
) -> None:
    api = children("api")
    # A distinctive argv, to find the process if it survived its timeout.
    hang = strays(["sleep", "61.25"])
    svc = supervised(
        api,
        stop_on_exit=True,
        ladder=["diagnose", "command", "restart"],
        steps={"command": {"argv": hang, "timeout": 0.5}},
    )
    h = await start_monitor(make_config(log_path(tmp_path), [svc]))
    await h.wait_state("api", "healthy")
    mark = h.store.last_seq
    api.break_it()  # it answers 500: the ladder runs (a process that ends is restarted at once)
    view = h.monitor.projection.services["api"]
    await wait_for(lambda: view.restarts_total == 1, "api restarted after the hung step")
    api.mend()
    await wait_for(lambda: h.state("api") == "healthy", "api healthy again")
    assert not processes_mentioning(" ".join(hang))
    history = await h.stop()

    assert repair_steps(history, "api") == [
        ("started", "diagnose", None),
        ("finished", "diagnose", True),
        ("started", "command", None),
        ("finished", "command", False),
    ]
    command = of(history, RepairFinished, "api")[1]
    assert command.output.splitlines()[-1] == "timed out after 0.5 s"
    assert command.duration_ms >= 500
    assert not command.interrupted
    (restart,) = of(history, RestartStarted, "api")
    assert restart.seq > command.seq
    assert transitions(history, "api", mark) == [
        ("healthy", "degraded", "probe_failed"),
        ("degraded", "repairing", "probe_failed"),
        ("repairing", "restarting", "step_failed"),
        ("restarting", "cooldown", "restart_done"),
        ("cooldown", "healthy", "probe_ok"),
    ]
    assert of(history, RestartFinished, "api")[0].ok
    assert_consistent(h, history)


# --- a webhook receiver that is down does not disturb monitoring -------------------------------


async def test_webhook_down_gives_undelivered_notifications_and_probes_go_on(
    tmp_path: Path, target: SwitchableTarget, start_monitor: StartMonitor
) -> None:
    with closed_port() as port:
        hook = f"http://127.0.0.1:{port}/hooks/secret-token"
        notify = msgspec.convert(
            {"webhooks": [{"url": hook, "retries": 2, "timeout": 1.0}]},
            NotifyConfig,
        )
        services = [
            service("web", target.svc_url("web"), ladder=["diagnose"]),
            service("other", target.svc_url("other"), ladder=["diagnose"]),
        ]
        h = await start_monitor(make_config(log_path(tmp_path), services, notify=notify))
        await wait_for(lambda: h.state("web") == h.state("other") == "healthy", "both healthy")
        mark = h.store.last_seq
        target.modes["web"] = "/status/500"
        await wait_for(
            lambda: (
                ("repairing", "degraded", "step_failed") in transitions(h.history(), "web", mark)
            ),
            "web diagnosed and degraded",
        )
        target.modes.clear()
        await h.wait_state("web", "healthy")
        sent = await h.wait_logged(
            lambda e: isinstance(e, Notification) and e.service == "web",
            "the recovery notification's outcome",
        )
        history = await h.stop()

    assert isinstance(sent, Notification)
    assert sent.channel == f"webhook:http://127.0.0.1:{port}"
    assert not sent.delivered and sent.error.endswith("(after 3 attempts)")
    assert "secret-token" not in sent.error  # the URL's path is its secret
    assert sent.message.startswith("web recovered after")
    (recovered,) = [
        t for t in of(history, Transition, "web") if t.seq > mark and t.dst == "healthy"
    ]
    # Delivery was tried three times with 0.5 s + 1 s of backoff between: meanwhile the
    # probes of both services kept coming.
    for name in ("web", "other"):
        during = probes_between(history, name, recovered.seq, sent.seq)
        assert len(during) >= 3, name
    assert h.monitor.states["web"].state == "healthy"
    assert_consistent(h, history)


# --- stopping while a repair runs: what it leads to is carried out and recorded first ---------


async def test_stop_during_a_repair_step_leaves_no_unrecorded_process(
    tmp_path: Path,
    children: Callable[..., ChildService],
    start_monitor: StartMonitor,
    strays: Callable[[list[str]], list[str]],
) -> None:
    api = children("api")
    # As `hbsm run` does by default: supervised processes outlive the monitor.
    svc = supervised(
        api,
        ladder=["diagnose", "command", "restart"],
        steps={"command": {"argv": strays(["sleep", "61.75"]), "timeout": 1.0}},
    )
    h = await start_monitor(make_config(log_path(tmp_path), [svc]))
    await h.wait_state("api", "healthy")
    api.break_it()  # it answers 500: the ladder runs (a process that ends is restarted at once)
    await wait_for(
        lambda: h.monitor.states["api"].in_flight == "repair:command", "the command step running"
    )
    # Stop while the step runs: it times out, its verification fails, the ladder asks for a
    # restart. That restart must be carried out and recorded before monitor.stopped.
    history = await h.stop()
    await asyncio.sleep(0.3)  # anything left running in the background would act by now

    assert [type(e) for e in history[-1:]] == [MonitorStopped]
    started = of(history, RestartStarted, "api")
    finished = of(history, RestartFinished, "api")
    assert len(started) == len(finished) == 1
    assert finished[0].ok and finished[0].pid is not None
    # Every process of the service that is alive is one the log knows about.
    known = {e.pid for e in of(history, ProcessStarted, "api")} | {finished[0].pid}
    running = [p for p in api.started_pids() if alive(p)]
    assert running and set(running) <= known
    assert_consistent(h, history)


# --- a restarted monitor does not notify twice for one incident -------------------------------


async def test_monitor_restarted_mid_incident_does_not_notify_twice(
    tmp_path: Path, target: SwitchableTarget, start_monitor: StartMonitor
) -> None:
    with closed_port() as port:
        notify = msgspec.convert(
            {"webhooks": [{"url": f"http://127.0.0.1:{port}/hook", "retries": 0}]},
            NotifyConfig,
        )
        # A repair whose command always fails: each run's failure is a "repair_failed" notice,
        # sent once per incident.
        web = service(
            "web",
            target.svc_url("web"),
            ladder=["diagnose", "command"],
            steps={"command": {"argv": ["false"]}},
        )
        config = make_config(log_path(tmp_path), [web], notify=notify)

        def failed_runs(history: History) -> set[int]:
            return {e.run for e in of(history, RepairFinished, "web") if not e.ok}

        first = await start_monitor(config)
        await first.wait_state("web", "healthy")
        target.modes["web"] = "/status/500"
        await wait_for(lambda: len(failed_runs(first.history())) >= 2, "two failed repair runs")
        await first.stop()
        runs = len(failed_runs(first.history()))

        second = await start_monitor(config)
        assert second.state("web") in ("degraded", "repairing")
        await wait_for(
            lambda: len(failed_runs(second.history())) >= runs + 2,
            "two more failed repair runs after the restart",
        )
        target.modes.clear()
        await second.wait_state("web", "healthy")
        await second.wait_logged(
            lambda e: isinstance(e, Notification) and e.message.startswith("web recovered"),
            "the recovery notified",
        )
        history = await second.stop()

    sent = [e.message for e in of(history, Notification, "web")]
    assert len(sent) == 2, sent
    assert sent[0].startswith("web: repair step 'command' failed")
    assert sent[1].startswith("web recovered after")
    assert_consistent(second, history)


# --- a pid in the log that now belongs to another process is not adopted -----------------------


async def test_a_reused_pid_is_not_adopted_or_signalled(
    tmp_path: Path, children: Callable[..., ChildService], start_monitor: StartMonitor
) -> None:
    from hbsm.log import FileEventLog

    api = children("api")
    svc = supervised(api, stop_on_exit=True, ladder=["diagnose", "restart"])
    config = make_config(log_path(tmp_path), [svc])
    # A log from an earlier run (an hour ago, say before a reboot) names a pid that now
    # belongs to another process: here, a sleep of ours.
    stranger = await asyncio.create_subprocess_exec("sleep", "62.5")
    try:
        with FileEventLog.open(log_path(tmp_path)) as store:
            store.append(
                [
                    ProcessStarted(
                        ts=time.time() - 3600, service="api", pid=stranger.pid, argv=api.argv
                    )
                ]
            )
        h = await start_monitor(config)
        await h.wait_state("api", "healthy")
        history = await h.stop()
        assert stranger.returncode is None and alive(stranger.pid)
    finally:
        if stranger.returncode is None:
            stranger.kill()
        await stranger.wait()

    # The recorded process is gone (its pid is another's now): a lost process, restarted.
    assert not of([e for e in history if e.seq > 1], ProcessStarted, "api")
    (lost,) = of(history, ProcessLost, "api")
    assert lost.pid == stranger.pid
    (finished,) = of(history, RestartFinished, "api")
    assert finished.ok and finished.pid != stranger.pid
    assert finished.pid in api.started_pids()
    assert f"pid {stranger.pid}" not in finished.output  # never stopped, never signalled
    assert_consistent(h, history)


async def test_no_repair_runs_while_its_decision_cannot_be_written(
    tmp_path: Path, target: SwitchableTarget, start_monitor: StartMonitor
) -> None:
    # No record, no side effect (docs/architecture.md): with writes failing from the moment a repair
    # is decided (a full disk, here the store's flush raising ENOSPC), the repair waits and probing
    # stops; once writes succeed again the outage is recorded and the repair runs, after its
    # decision is on disk. (tests/reliability/test_disk_full.py does it with a real full disk.)
    web = service("web", target.svc_url("web"), ladder=["diagnose"])
    h = await start_monitor(
        make_config(
            log_path(tmp_path), [web, service("api", target.svc_url("api"), ladder=["diagnose"])]
        )
    )
    await h.wait_state("web", "healthy")
    full = False
    append, flush = h.store.append, h.store.flush

    def append_then_fill(events: list[Event]) -> list[Event]:
        nonlocal full
        stamped = append(events)
        full = full or any(isinstance(e, RepairStarted) for e in stamped)
        return stamped

    def flush_unless_full() -> None:
        if full:
            raise OSError(28, "No space left on device")
        flush()

    h.store.append = append_then_fill  # type: ignore[method-assign]
    h.store.flush = flush_unless_full  # type: ignore[method-assign]
    target.modes["web"] = "/status/500"
    await h.wait_state("web", "repairing")
    view = h.monitor.projection.services["web"]
    await asyncio.sleep(1.0)  # five flush periods: the repair must still not have run
    assert view.fsm.in_flight == "repair:diagnose"
    assert h.monitor.projection.monitor.counts.get("repair.finished", 0) == 0
    outage = h.monitor.outage
    assert outage is not None and "No space left" in outage.error
    assert outage.skipped > 0  # api's scheduled probes were not run

    target.modes.clear()
    restored = time.time()
    full = False  # writes succeed again
    await h.wait_state("web", "healthy")
    assert h.monitor.outage is None
    history = await h.stop()
    (recorded,) = [e for e in history if isinstance(e, LogOutage)]
    assert recorded.since == outage.since and recorded.ts >= restored
    assert recorded.skipped >= outage.skipped
    (started,) = of(history, RepairStarted, "web")
    (finished,) = of(history, RepairFinished, "web")
    assert started.seq < recorded.seq < finished.seq
    assert started.seq < finished.seq and finished.ts >= restored


async def test_stopping_a_supervised_child_keeps_the_monitors_own_reason(
    tmp_path: Path, children: Callable[..., ChildService], start_monitor: StartMonitor
) -> None:
    # The child's stop has its own reason; the monitor's `monitor.stopped` keeps the caller's
    # (it once took the child's, so a SIGTERM read "restart.stop_on_exit" in the log).
    api = children("api")
    h = await start_monitor(make_config(log_path(tmp_path), [supervised(api, stop_on_exit=True)]))
    await h.wait_state("api", "healthy")
    history = await h.stop()

    (stopped,) = of(history, ProcessStopped, "api")
    assert stopped.reason == "hbsm stopped (restart.stop_on_exit)"
    assert isinstance(history[-1], MonitorStopped) and history[-1].reason == "test over"

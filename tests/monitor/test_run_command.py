"""`hbsm run --config FILE --log PATH` as an operator runs it: a TOML config, supervised child
services on free ports, SIGKILL to a child and to hbsm itself, SIGTERM to stop, and the log
read back with `hbsm replay`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.configs import TIGHT, supervised
from support.waiting import wait_for_sync

from hbsm.events import (
    Event,
    MonitorStarted,
    MonitorStopped,
    OpaqueEvent,
    Probe,
    ProcessLost,
    ProcessStarted,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    Transition,
)
from hbsm.projection import Projection

from .conftest import HbsmRun
from .support import (
    PY,
    ChildService,
    SwitchableTarget,
    alive,
    closed_port,
    events,
    http_get,
    of,
    restart_gaps,
    transitions,
    write_toml_config,
)

History = list[Event | OpaqueEvent]
StartRun = Callable[[Path, Path], HbsmRun]


def write_config(
    path: Path, services: list[dict[str, Any]], log: dict[str, Any] | None = None, **top: Any
) -> Path:
    """An hbsm.toml with the tests' tight thresholds (support.configs.TIGHT); a restart as soon
    as the first repair step has not fixed it."""
    tight = {**TIGHT, "ladder": ["diagnose", "restart"]}
    return write_toml_config(path, services, log, **{**tight, **top})


def fold(log: Path) -> Projection:
    projection = Projection()
    if log.exists():
        projection.apply_all(events(log))
    return projection


def service_is(log: Path, name: str, state: str, restarts: int | None = None) -> bool:
    view = fold(log).services.get(name)
    if view is None or view.fsm.state != state:
        return False
    return restarts is None or view.restarts_total == restarts


def replay(*args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "hbsm", "replay", *map(str, args)], capture_output=True, text=True, timeout=60
    )


def since_last_start(history: History) -> History:
    starts = [i for i, e in enumerate(history) if isinstance(e, MonitorStarted)]
    return history[starts[-1] :]


def started_by(history: History, pid: int) -> History:
    """The history from the `monitor.started` of the monitor with this pid on ([] if none)."""
    start = next(
        (i for i, e in enumerate(history) if isinstance(e, MonitorStarted) and e.pid == pid),
        len(history),
    )
    return history[start:]


def assert_clean_stop(run: HbsmRun) -> None:
    run.signal(signal.SIGTERM)
    assert run.wait() == 0, run.err()
    assert "Traceback" not in run.err()
    # Libraries that narrate every step at INFO (a line per probe request, three per state
    # change) are kept to their warnings: the event log has every probe and transition.
    assert "transitions.core" not in run.err() and "httpx" not in run.err(), run.err()


# --- kill the service: hbsm restarts it; SIGTERM hbsm: it stops cleanly ----------------------


def test_run_restarts_a_killed_service_then_stops_on_sigterm(
    tmp_path: Path, children: Callable[..., ChildService], hbsm_run: StartRun
) -> None:
    api = children("api")
    log = tmp_path / "events" / "heartbeat.jsonl"
    config = write_config(tmp_path / "hbsm.toml", [supervised(api)])
    run = hbsm_run(config, log)
    run.until(lambda: service_is(log, "api", "healthy"), "api healthy")
    first = fold(log).services["api"].pid
    assert first is not None and first == api.started_pids()[-1]
    mark = events(log)[-1].seq

    os.kill(first, signal.SIGKILL)
    run.until(lambda: service_is(log, "api", "healthy", restarts=1), "api restarted, healthy")
    new = fold(log).services["api"].pid
    assert new is not None and new != first
    assert http_get(api.url) == (200, f"ok pid={new}\n")
    assert_clean_stop(run)

    history = events(log)
    stopped = history[-1]
    assert isinstance(stopped, MonitorStopped) and stopped.reason == "SIGTERM"
    assert stopped.pid == run.pid
    # Its end is a fact the moment it happens: restarted at once, no failed probe waited for.
    moves = transitions(history, "api", mark)
    assert [move[1:] for move in moves[-3:]] == [
        ("restarting", "process_lost"),
        ("cooldown", "restart_done"),
        ("healthy", "probe_ok"),
    ]
    # A probe already in flight at the kill may fail before the exit is read (the two race on
    # a loaded machine): a true fact, recorded, but not what started the restart.
    assert moves[:-3] in ([], [("healthy", "degraded", "probe_failed")]), moves
    (lost,) = of(history, ProcessLost, "api")
    assert lost.pid == first and "killed by SIGKILL" in lost.detail
    failed = [e for e in of(history, Probe, "api") if not e.ok and e.seq > mark]
    assert all(e.seq < lost.seq for e in failed), failed
    (finished,) = of(history, RestartFinished, "api")
    assert finished.ok and finished.pid == new
    # stop_on_exit is false by default: the service outlives the monitor.
    assert alive(new)

    shown = replay(log)
    assert shown.returncode == 0, shown.stderr
    assert "incidents (1: 1 recovered, 0 ongoing)" in shown.stdout
    assert "api  restarting -> cooldown (restart_done)" in shown.stdout
    assert f"monitor stopped (pid {run.pid}): SIGTERM" in shown.stdout
    checked = replay("--verify", log)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- SIGKILL hbsm during a cooldown, start it again: it resumes from its log -----------------


def test_run_killed_during_cooldown_resumes_from_its_log(
    tmp_path: Path, children: Callable[..., ChildService], hbsm_run: StartRun
) -> None:
    api = children("api")  # restarted, then still running while hbsm is down: adopted
    web = children("web")  # killed while hbsm is down: a lost process, restarted
    log = tmp_path / "events" / "heartbeat.jsonl"
    cooldown = 3.0
    config = write_config(
        tmp_path / "hbsm.toml",
        [supervised(api), supervised(web)],
        # Small segments: the log rotates several times, so resuming reads closed (gzipped)
        # segments and the snapshots that open each one.
        log={"max_bytes": 8192, "keep_segments": 100},
        restart_cooldown=cooldown,
        cooldown_max=cooldown,
    )
    first = hbsm_run(config, log)
    first.until(
        lambda: service_is(log, "api", "healthy") and service_is(log, "web", "healthy"),
        "both healthy",
    )
    os.kill(fold(log).services["api"].pid or 0, signal.SIGKILL)
    first.until(lambda: service_is(log, "api", "cooldown", restarts=1), "api in cooldown")
    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    before = events(log)
    assert not of(before, MonitorStopped)
    (restart1,) = of(before, RestartStarted, "api")
    (done1,) = of(before, RestartFinished, "api")
    adoptee = done1.pid
    assert adoptee is not None and alive(adoptee)
    web_old = fold(log).services["web"].pid
    assert web_old is not None
    os.kill(web_old, signal.SIGKILL)
    wait_for_sync(lambda: not alive(web_old), "web's process gone")

    second = hbsm_run(config, log)
    second.until(
        lambda: of(started_by(events(log), second.pid), RestartFinished, "web"),
        "the second monitor took up both processes",
    )
    resumed = started_by(events(log), second.pid)
    (api_proc,) = of(resumed, ProcessStarted, "api")
    assert api_proc.adopted and api_proc.pid == adoptee
    # A start after a crash is a restart: decided (web has had none yet), then carried out.
    assert not of(resumed, ProcessStarted, "web")
    (lost,) = of(resumed, ProcessLost, "web")
    assert lost.pid == web_old
    (web_restart,) = of(resumed, RestartStarted, "web")
    (web_done,) = of(resumed, RestartFinished, "web")
    assert lost.seq < web_restart.seq < web_done.seq and web_done.ok
    assert web_done.pid is not None and web_done.pid != web_old
    # The adopted process dies at once: still, no restart before the cooldown is over.
    os.kill(adoptee, signal.SIGKILL)
    second.until(lambda: service_is(log, "api", "healthy", restarts=2), "api restarted again")
    assert http_get(web.url) == (200, f"ok pid={web_done.pid}\n")
    assert_clean_stop(second)

    history = events(log)
    after = since_last_start(history)
    # Resumed in cooldown: the next restart of api comes only after that cooldown's end.
    cooling = of(before, Transition, "api")[-1]
    assert cooling.dst == "cooldown" and cooling.until is not None
    restart2 = of(after, RestartStarted, "api")[0]
    assert restart2.ts >= cooling.until
    assert restart2.ts - restart1.ts >= cooldown
    assert restart_gaps(history, "api") == [pytest.approx(restart2.ts - restart1.ts)]
    assert [t[:2] for t in transitions(after, "web")] == [
        ("healthy", "restarting"), ("restarting", "cooldown"), ("cooldown", "healthy"),
    ]  # fmt: skip
    assert len(of(history, MonitorStarted)) == 2
    assert len(list(log.parent.glob("heartbeat.*.jsonl.gz"))) >= 2

    shown = replay(log)
    assert shown.returncode == 0, shown.stderr
    # api's two (killed before, and after, hbsm's own crash), and web's, lost while hbsm was down.
    assert "incidents (3: 3 recovered, 0 ongoing)" in shown.stdout
    checked = replay("--verify", log)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- SIGKILL hbsm in the middle of a restart ---------------------------------------------------


def test_run_killed_during_a_restart_finishes_it_on_its_next_start(
    tmp_path: Path, children: Callable[..., ChildService], hbsm_run: StartRun
) -> None:
    # The service ignores SIGTERM: a restart waits out its 3 s grace, time to kill hbsm in it.
    api = children("api", ignore_term=True)
    log = tmp_path / "events" / "heartbeat.jsonl"
    svc = supervised(api)
    svc["restart"] = {**svc["restart"], "grace": 3.0}
    config = write_config(tmp_path / "hbsm.toml", [svc])
    first = hbsm_run(config, log)
    first.until(lambda: service_is(log, "api", "healthy"), "api healthy")
    pid = fold(log).services["api"].pid
    api.break_it()
    first.until(lambda: of(events(log), RestartStarted, "api"), "a restart decided")
    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert fold(log).services["api"].fsm.in_flight == "restart"
    assert pid is not None and alive(pid)  # SIGTERM ignored, SIGKILL never came

    api.mend()
    second = hbsm_run(config, log)
    second.until(lambda: service_is(log, "api", "healthy"), "api healthy after its restart")
    assert_clean_stop(second)

    history = events(log)
    after = since_last_start(history)
    # The old process still ran: the restart had not happened. It is carried out now, under
    # the decision already recorded (no second restart.started), and no later than needed.
    (adopted,) = of(after, ProcessStarted, "api")
    assert adopted.adopted and adopted.pid == pid
    (decided,) = of(history, RestartStarted, "api")
    (finished,) = of(history, RestartFinished, "api")
    assert finished.interrupted and finished.ok
    assert finished.pid is not None and finished.pid != pid and not alive(pid)
    assert finished.output.startswith("taken up after hbsm restarted")
    assert f"stopped pid {pid}" in finished.output
    assert transitions(after, "api") == [
        ("restarting", "cooldown", "restart_done"),
        ("cooldown", "healthy", "probe_ok"),
    ]
    cooling = of(after, Transition, "api")[0]
    assert cooling.until == pytest.approx(decided.ts + 2.0)  # from the restart's decision
    checked = replay("--verify", log)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- refusals: a log held by another monitor, a bad config ------------------------------------


def test_second_run_on_the_same_log_exits_3_naming_the_holder(
    tmp_path: Path, target: SwitchableTarget, hbsm_run: StartRun
) -> None:
    log = tmp_path / "events" / "heartbeat.jsonl"
    config = write_config(
        tmp_path / "hbsm.toml", [{"name": "web", "url": target.svc_url("web")}], ladder=["diagnose"]
    )
    first = hbsm_run(config, log)
    first.until(lambda: service_is(log, "web", "healthy"), "web healthy")
    second = hbsm_run(config, log)
    assert second.wait() == 3
    err = second.err().strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("hbsm run: ") and f"locked by pid {first.pid}" in err
    assert str(log) in err
    assert first.proc.poll() is None  # the first one goes on, undisturbed
    assert_clean_stop(first)
    assert len(of(events(log), MonitorStarted)) == 1


def test_sigterms_during_the_stop_do_not_cut_it_short(
    tmp_path: Path, target: SwitchableTarget, hbsm_run: StartRun
) -> None:
    # A supervisor (or an impatient operator) sends SIGTERM again while hbsm stops: the stop
    # goes on to its end and exit 0, not -15 once the loop and its handler are gone.
    log = tmp_path / "events" / "heartbeat.jsonl"
    config = write_config(
        tmp_path / "hbsm.toml", [{"name": "web", "url": target.svc_url("web")}], ladder=["diagnose"]
    )
    run = hbsm_run(config, log)
    run.until(lambda: service_is(log, "web", "healthy"), "web healthy")
    while run.proc.poll() is None:
        run.signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            run.proc.wait(0.005)
    assert run.wait() == 0, run.err()
    assert of(events(log), MonitorStopped)


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("max_retries = 0", "max_retries"),
        ("check_intervall = 1.0", "check_intervall"),
    ],
)
def test_bad_config_exits_2_naming_the_key(
    tmp_path: Path, hbsm_run: StartRun, setting: str, key: str
) -> None:
    config = tmp_path / "hbsm.toml"
    config.write_text(f'{setting}\n\n[[services]]\nname = "web"\nurl = "http://127.0.0.1:9/"\n')
    log = tmp_path / "events" / "heartbeat.jsonl"
    run = hbsm_run(config, log)
    assert run.wait() == 2
    err = run.err().strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"hbsm run: {config}: ") and key in err
    assert not log.exists()


# --- a service that will not start does not stop the monitoring of the others ----------------


def test_a_service_that_will_not_start_fails_alone(
    tmp_path: Path, target: SwitchableTarget, hbsm_run: StartRun
) -> None:
    log = tmp_path / "events" / "heartbeat.jsonl"
    with closed_port() as port:
        broken = {
            "name": "broken",
            "url": f"http://127.0.0.1:{port}/health",
            "restart": {
                "kind": "supervise",
                "argv": [PY, "-c", "import sys; print('no settings file'); sys.exit(3)"],
            },
        }
        config = write_config(
            tmp_path / "hbsm.toml",
            [{"name": "web", "url": target.svc_url("web"), "ladder": ["diagnose"]}, broken],
        )
        run = hbsm_run(config, log)
        run.until(
            lambda: service_is(log, "broken", "failed") and service_is(log, "web", "healthy"),
            "broken given up on, web monitored",
        )
        assert run.proc.poll() is None
        assert_clean_stop(run)
    history = events(log)
    assert not of(history, ProcessStarted, "broken")
    (restart,) = of(history, RestartFinished, "broken")
    assert not restart.ok and "exited at once (exit 3): no settings file" in restart.output
    assert transitions(history, "broken")[-1] == ("restarting", "failed", "restart_failed")
    assert "broken: pid" in run.err() and "exited at once (exit 3)" in run.err()
    checked = replay("--verify", log)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- SIGKILL hbsm in the middle of a repair step ----------------------------------------------


def test_run_killed_during_a_repair_step_records_it_interrupted_and_goes_on(
    tmp_path: Path,
    children: Callable[..., ChildService],
    hbsm_run: StartRun,
    strays: Callable[[list[str]], list[str]],
) -> None:
    api = children("api")
    # The step's command outlives the SIGKILLed hbsm (its own process group): see the report.
    hang = strays(["sleep", "63.5"])
    log = tmp_path / "events" / "heartbeat.jsonl"
    svc = supervised(
        api,
        ladder=["diagnose", "command", "restart"],
        steps={"command": {"argv": hang, "timeout": 30.0}},
    )
    config = write_config(tmp_path / "hbsm.toml", [svc])
    first = hbsm_run(config, log)
    first.until(lambda: service_is(log, "api", "healthy"), "api healthy")
    pid = fold(log).services["api"].pid
    api.break_it()  # 500s: the process stays up (and is adopted), still broken
    first.until(
        lambda: fold(log).services["api"].fsm.in_flight == "repair:command",
        "the command step running",
    )
    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL

    second = hbsm_run(config, log)
    second.until(lambda: of(events(log), RestartFinished, "api"), "api restarted")
    api.mend()
    second.until(lambda: service_is(log, "api", "healthy", restarts=1), "api healthy")
    assert_clean_stop(second)

    history = events(log)
    after = started_by(history, second.pid)
    (adopted,) = of(after, ProcessStarted, "api")
    assert adopted.adopted and adopted.pid == pid
    interrupted = of(after, RepairFinished, "api")[0]
    assert (interrupted.step, interrupted.ok, interrupted.interrupted) == ("command", False, True)
    # Resumed where it was: the step counted as failed, verified, then the ladder's next step.
    assert transitions(after, "api") == [
        ("repairing", "restarting", "step_failed"),
        ("restarting", "cooldown", "restart_done"),
        ("cooldown", "healthy", "probe_ok"),
    ]
    assert not of(after, RepairStarted, "api")
    checked = replay("--verify", log)
    assert checked.returncode == 0, checked.stdout + checked.stderr

"""Supervisor: real child processes started, stopped, killed, restarted and adopted."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from support.waiting import wait_for

from hbsm.config.model import RestartConfig
from hbsm.repair import Supervisor, SupervisorError

from .support import alive, py

SERVE = "import sys, time; print('serving', flush=True); print('oops', file=sys.stderr, flush=True); time.sleep(60)"  # noqa: E501
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


@pytest.fixture
async def supervisor(tmp_path):
    sup = Supervisor(output_dir=tmp_path / "out")
    yield sup
    await sup.stop_all(grace=0.2)


def config(code: str = SERVE, **kwargs) -> RestartConfig:
    return RestartConfig(kind="supervise", argv=py(code), grace=1.0, **kwargs)


async def test_start_records_the_pid_and_captures_output_to_a_file(supervisor, tmp_path):
    pid = await supervisor.start("api", config())
    assert supervisor.pid("api") == pid
    assert supervisor.running("api")
    assert alive(pid)
    assert os.getpgid(pid) == pid  # its own process group
    out = tmp_path / "out" / "api.out"
    await wait_for(lambda: "oops" in out.read_text(), "the child's output captured")
    text = out.read_text()
    assert "serving" in text  # stdout
    assert "oops" in text  # stderr, same file
    assert "hbsm" in text.splitlines()[0]  # a header line saying when it started


async def test_start_does_not_start_a_running_service_twice(supervisor):
    first = await supervisor.start("api", config())
    again = await supervisor.start("api", config())
    assert again == first


async def test_output_goes_to_the_configured_file_appending(supervisor, tmp_path):
    target = tmp_path / "logs" / "mine.log"
    target.parent.mkdir()
    target.write_text("earlier run\n")
    await supervisor.start("api", config(output=str(target)))
    await wait_for(lambda: "serving" in target.read_text(), "the child serving")
    assert target.read_text().startswith("earlier run\n")


async def test_stop_sends_sigterm_and_returns_the_exit_status(supervisor):
    pid = await supervisor.start("api", config())
    code = await supervisor.stop("api")
    assert code == -signal.SIGTERM
    assert not supervisor.running("api")
    assert supervisor.pid("api") is None
    assert not alive(pid)


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(supervisor, tmp_path):
    pid = await supervisor.start("api", config(STUBBORN))
    out = tmp_path / "out" / "api.out"
    await wait_for(
        lambda: "ready" in out.read_text(), "the child ready"
    )  # its SIGTERM handler is in place
    t0 = time.monotonic()
    code = await supervisor.stop("api", grace=0.3)
    assert code == -signal.SIGKILL
    assert time.monotonic() - t0 >= 0.3
    assert not alive(pid)


async def test_a_stopped_child_acts_on_sigterm_rather_than_wait_for_sigkill(supervisor):
    # A hang made with SIGSTOP: SIGTERM stays pending while the process is stopped; woken by
    # SIGCONT it ends by SIGTERM, not by the SIGKILL that the grace's end would send.
    pid = await supervisor.start("api", config())
    os.kill(pid, signal.SIGSTOP)
    code = await supervisor.stop("api", grace=10.0)
    assert code == -signal.SIGTERM
    assert not alive(pid)


async def test_a_stopped_adopted_process_acts_on_sigterm_too(supervisor):
    child = subprocess.Popen(py("import time; time.sleep(60)"), start_new_session=True)
    try:
        assert await supervisor.adopt("api", child.pid)
        os.kill(child.pid, signal.SIGSTOP)
        await supervisor.stop("api", grace=10.0)
        assert child.wait(timeout=5) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


async def test_restart_gives_a_new_pid(supervisor):
    old = await supervisor.start("api", config())
    new, description = await supervisor.restart("api", config())
    assert new != old
    assert not alive(old)
    assert alive(new) and supervisor.pid("api") == new
    assert f"stopped pid {old}" in description and f"started pid {new}" in description


async def test_restart_brings_back_a_child_killed_from_outside(supervisor):
    old = await supervisor.start("api", config())
    os.kill(old, signal.SIGKILL)
    await wait_for(lambda: not supervisor.running("api"), "api no longer running")
    new, description = await supervisor.restart("api", config())
    assert new != old and supervisor.running("api")
    assert f"pid {old} had exited (killed by SIGKILL)" in description


async def test_restart_of_a_service_never_started_starts_it(supervisor):
    pid, description = await supervisor.restart("api", config())
    assert alive(pid)
    assert description.endswith(f"was not running; started pid {pid}")


async def test_stop_kills_what_the_service_left_in_its_group(supervisor, tmp_path):
    marker = tmp_path / "worker.pid"
    code = (
        "import subprocess, sys, time; "
        "w = subprocess.Popen(['sleep', '60']); "
        f"open({str(marker)!r}, 'w').write(str(w.pid)); time.sleep(60)"
    )
    await supervisor.start("api", config(code))
    await wait_for(lambda: marker.exists() and marker.read_text() != "", "the marker written")
    worker = int(marker.read_text())
    assert alive(worker)
    await supervisor.stop("api", grace=1.0)
    await wait_for(lambda: not alive(worker), "the worker gone")


async def test_a_child_exiting_at_once_is_an_error_with_its_output(supervisor):
    bad = config("import sys; print('config error: no port', flush=True); sys.exit(3)")
    sup = Supervisor(output_dir=supervisor.output_dir, settle=2.0)
    with pytest.raises(SupervisorError, match=r"exited at once \(exit 3\): config error: no port"):
        await sup.start("bad", bad)
    assert not sup.running("bad")


async def test_a_missing_executable_is_an_error_naming_it(supervisor):
    with pytest.raises(SupervisorError, match="no-such-binary-hbsm"):
        await supervisor.start("api", RestartConfig(kind="supervise", argv=["no-such-binary-hbsm"]))


async def test_adopt_takes_over_a_running_process_without_starting_another(supervisor):
    child = subprocess.Popen(py("import time; time.sleep(60)"), start_new_session=True)
    try:
        assert await supervisor.adopt("api", child.pid)
        assert supervisor.running("api") and supervisor.pid("api") == child.pid
        # Starting an adopted service does not start it twice.
        assert await supervisor.start("api", config()) == child.pid
        assert await supervisor.stop("api", grace=1.0) is None  # not our child: status unknown
        assert child.wait(timeout=5) == -signal.SIGTERM
        await wait_for(lambda: not supervisor.running("api"), "api no longer running")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


async def test_adopt_refuses_a_dead_pid(supervisor):
    child = subprocess.Popen(["true"])
    child.wait()
    assert not await supervisor.adopt("api", child.pid)
    assert not supervisor.running("api")


async def test_adopt_treats_a_zombie_as_dead(supervisor):
    child = subprocess.Popen(["true"])  # exits, and stays a zombie until reaped
    try:
        await wait_for(lambda: not alive(child.pid), "the child gone")
        assert not await supervisor.adopt("api", child.pid)
    finally:
        child.wait()


async def test_stop_of_an_adopted_process_ignoring_sigterm_kills_it(supervisor):
    child = subprocess.Popen(
        py(STUBBORN), start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        assert await supervisor.adopt("api", child.pid)
        await supervisor.stop("api", grace=0.3)
        assert child.wait(timeout=5) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


async def test_stop_all_stops_every_child(supervisor):
    pids = [await supervisor.start(name, config()) for name in ("a", "b", "c")]
    await supervisor.stop_all(grace=1.0)
    assert not any(alive(pid) for pid in pids)
    assert not any(supervisor.running(name) for name in ("a", "b", "c"))


async def test_an_end_nobody_asked_for_is_reported_at_once_and_a_stop_is_not(supervisor):
    ended: list[tuple[str, int, str]] = []
    supervisor.on_exit = lambda name, pid, how: ended.append((name, pid, how))
    pid = await supervisor.start("api", config())
    os.kill(pid, signal.SIGKILL)
    await wait_for(lambda: ended, "the end reported")
    assert ended == [("api", pid, "killed by SIGKILL")]
    # Restarted, then stopped by hbsm itself: no news.
    again, _ = await supervisor.restart("api", config())
    await supervisor.stop("api", grace=1.0)
    assert not supervisor.running("api") and ended == [("api", pid, "killed by SIGKILL")]
    assert again != pid


async def test_an_adopted_process_that_ends_is_reported_too(supervisor):
    ended: list[tuple[str, int, str]] = []
    supervisor.on_exit = lambda name, pid, how: ended.append((name, pid, how))
    child = subprocess.Popen(py("import time; time.sleep(60)"), start_new_session=True)
    try:
        assert await supervisor.adopt("api", child.pid)
        child.kill()
        child.wait()  # reaped by its parent (this test), as a process hbsm did not start would be
        await wait_for(lambda: ended, "the adopted process's end reported")
        assert ended == [("api", child.pid, "exit status unknown")]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


async def test_close_stops_watching_and_leaves_the_process_running(supervisor):
    ended: list[tuple[str, int, str]] = []
    supervisor.on_exit = lambda name, pid, how: ended.append((name, pid, how))
    pid = await supervisor.start("api", config())
    await supervisor.close()
    assert alive(pid)
    os.kill(pid, signal.SIGKILL)
    await wait_for(lambda: not alive(pid), "gone")
    assert ended == []  # nobody watches any more: hbsm is stopping and leaves it be

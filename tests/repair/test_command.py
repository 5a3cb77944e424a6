"""The `command` step and the command kind of restart: real processes, real process groups."""

from __future__ import annotations

import os
import signal
import time
import tracemalloc

from hbsm.config.model import RestartConfig, StepConfig
from hbsm.repair import Supervisor

from .support import alive, probe_returning, py, restart_started, runner, service_to_repair, started

NO_PROBE = probe_returning()


async def run_command_step(tmp_path, settings: StepConfig, **kwargs):
    svc = service_to_repair(steps={"command": settings})
    return await runner(tmp_path, **kwargs).run_step(
        svc, started("command"), failure=None, probe=NO_PROBE
    )


async def test_exit_0_is_ok_with_its_output(tmp_path):
    done = await run_command_step(tmp_path, StepConfig(argv=py("print('cache flushed')")))
    assert done.ok
    assert "cache flushed" in done.output
    assert done.output.endswith("exit status 0")
    assert (done.step, done.run, done.index, done.service) == ("command", 1, 0, "api")
    assert done.duration_ms > 0


async def test_a_nonzero_exit_fails_with_the_output_tail(tmp_path):
    code = (
        "import sys; print('reloading'); print('error: bad config', file=sys.stderr); sys.exit(3)"
    )
    done = await run_command_step(tmp_path, StepConfig(argv=py(code)))
    assert not done.ok
    assert "reloading" in done.output and "error: bad config" in done.output  # stderr merged
    assert done.output.endswith("exit status 3")


async def test_no_shell_unless_asked(tmp_path):
    done = await run_command_step(tmp_path, StepConfig(argv=["echo", "$HOME; echo", "injected"]))
    assert done.ok
    assert "$HOME; echo injected" in done.output  # one argv, passed as is


async def test_shell_runs_a_script_with_its_arguments(tmp_path):
    settings = StepConfig(argv=['echo "first=$1" && exit 4', "one"], shell=True)
    done = await run_command_step(tmp_path, settings)
    assert not done.ok
    assert "first=one" in done.output and done.output.endswith("exit status 4")


async def test_cwd_is_honoured(tmp_path):
    (tmp_path / "here").mkdir()
    done = await run_command_step(
        tmp_path, StepConfig(argv=py("import os; print(os.getcwd())"), cwd=str(tmp_path / "here"))
    )
    assert str(tmp_path / "here") in done.output


async def test_a_missing_executable_fails_clearly(tmp_path):
    done = await run_command_step(tmp_path, StepConfig(argv=["no-such-binary-hbsm"]))
    assert not done.ok
    assert "no-such-binary-hbsm" in done.output


async def test_no_argv_fails_clearly(tmp_path):
    done = await run_command_step(tmp_path, StepConfig())
    assert not done.ok and "no argv" in done.output


async def test_a_hanging_command_is_killed_with_its_whole_group(tmp_path):
    # The script starts a grandchild, records its pid, then hangs.
    script = "echo started; sleep 60 & echo $! > grandchild.pid; sleep 60"
    t0 = time.monotonic()
    done = await run_command_step(
        tmp_path, StepConfig(argv=[script], shell=True, cwd=str(tmp_path), timeout=0.5)
    )
    elapsed = time.monotonic() - t0
    assert not done.ok
    assert done.output.endswith("timed out after 0.5 s")
    assert "started" in done.output  # what it printed before the timeout is kept
    assert elapsed < 5
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    assert not alive(grandchild)


async def test_a_background_child_holding_the_output_does_not_hold_the_step(tmp_path):
    # The command exits at once but leaves a daemon with our pipe as its stdout.
    script = "sleep 30 & echo $! > daemon.pid; echo done"
    t0 = time.monotonic()
    done = await run_command_step(
        tmp_path, StepConfig(argv=[script], shell=True, cwd=str(tmp_path), timeout=10)
    )
    daemon = int((tmp_path / "daemon.pid").read_text())
    try:
        assert done.ok and "done" in done.output
        assert time.monotonic() - t0 < 5
        assert alive(daemon)  # a command's normal exit leaves what it started alone
    finally:
        os.kill(daemon, signal.SIGKILL)


async def test_a_huge_output_keeps_only_a_bounded_tail(tmp_path):
    code = (
        "import sys\n"
        "line = b'x' * 1023 + b'\\n'\n"
        "w = sys.stdout.buffer.write\n"
        "for _ in range(50 * 1024): w(line)\n"  # 50 MB
        "print('LAST LINE')\n"
    )
    tracemalloc.start()
    try:
        done = await run_command_step(
            tmp_path, StepConfig(argv=py(code), timeout=60), output_limit=1000
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done.ok
    assert len(done.output) <= 1000
    assert done.output.startswith("…")
    assert done.output.endswith("LAST LINE\nexit status 0")
    assert peak < 5 * 2**20  # 50 MB went through; a few chunks were ever held


# --- restart: kind = "command" ------------------------------------------------------------------


async def restart_with(tmp_path, cfg: RestartConfig):
    return await runner(tmp_path).restart(service_to_repair(restart=cfg), restart_started())


async def test_restart_command_true_is_ok(tmp_path):
    done = await restart_with(tmp_path, RestartConfig(kind="command", argv=["true"]))
    assert done.ok and done.exit_code == 0
    assert done.service == "api" and done.duration_ms > 0


async def test_restart_command_false_fails_with_its_exit_code(tmp_path):
    done = await restart_with(tmp_path, RestartConfig(kind="command", argv=["false"]))
    assert not done.ok and done.exit_code == 1
    assert done.output.endswith("false: exit status 1")


async def test_restart_command_env_reaches_the_command(tmp_path):
    cfg = RestartConfig(
        kind="command", argv=py("import os; print(os.environ['UNIT'])"), env={"UNIT": "api.svc"}
    )
    done = await restart_with(tmp_path, cfg)
    assert done.ok and "api.svc" in done.output


async def test_restart_command_hanging_is_killed_on_timeout(tmp_path):
    cfg = RestartConfig(
        kind="command",
        argv=["/bin/sh", "-c", "sleep 60 & echo $! > gc.pid; sleep 60"],
        cwd=str(tmp_path),
        timeout=0.5,
    )
    done = await restart_with(tmp_path, cfg)
    assert not done.ok and done.exit_code is None
    assert "timed out after 0.5 s" in done.output
    assert not alive(int((tmp_path / "gc.pid").read_text()))


async def test_restart_none_fails_saying_so(tmp_path):
    done = await restart_with(tmp_path, RestartConfig(kind="none"))
    assert not done.ok and "no restart configured" in done.output


async def test_restart_supervise_restarts_the_process(tmp_path):
    r = runner(tmp_path)
    cfg = RestartConfig(kind="supervise", argv=py("import time; time.sleep(60)"), grace=1.0)
    try:
        first = await r.supervisor.start("api", cfg)
        done = await r.restart(service_to_repair(restart=cfg), restart_started())
        assert done.ok, done.output
        assert r.supervisor.pid("api") not in (None, first)
        assert done.pid == r.supervisor.pid("api")  # recorded, so a restarted hbsm can adopt it
        assert f"stopped pid {first}" in done.output
        assert not alive(first)
    finally:
        await r.supervisor.stop_all(grace=0.2)


async def test_restart_supervise_failing_to_start_is_not_ok(tmp_path):
    cfg = RestartConfig(kind="supervise", argv=py("import sys; print('bad'); sys.exit(2)"))
    # A generous settle time: "exits at once" must not depend on the machine's speed.
    sup = Supervisor(output_dir=tmp_path / "out", settle=3.0)
    done = await runner(tmp_path, supervisor=sup).restart(
        service_to_repair(restart=cfg), restart_started()
    )
    assert not done.ok
    assert "exited at once (exit 2): bad" in done.output

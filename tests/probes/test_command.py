"""Command probes: exit status, bounded output, and a timeout that kills the process group."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.configs import probed
from support.waiting import wait_for

from hbsm.config.model import ServiceConfig
from hbsm.probes import Prober


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    async with Prober(clock=lambda: 1_700_000_000.0) as p:
        yield p


# The children here sleep 30 s: a deadline shorter than that, so a child left alive cannot pass
# by ending on its own, and long enough that only a hang misses it.
KILLED = 20.0


def command(*argv: str, **probe: object) -> ServiceConfig:
    return probed("", name="cmd", kind="command", argv=list(argv), **probe)


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie waiting for a reaper that is not us."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def test_exit_zero_is_ok(prober: Prober) -> None:
    result = await prober.probe(command(sys.executable, "-c", "print('fine')"))
    assert (result.ok, result.status, result.error) == (True, 0, None)
    assert result.latency_ms is not None and result.latency_ms > 0
    assert result.ts == 1_700_000_000.0


async def test_non_zero_exit_reports_status_and_output_tail(prober: Prober) -> None:
    result = await prober.probe(command("sh", "-c", "echo starting; echo 'disk full' >&2; exit 3"))
    assert (result.ok, result.status, result.error) == (False, 3, "command")
    assert result.detail.endswith("exit 3: starting disk full")


async def test_output_is_bounded_to_its_tail(prober: Prober) -> None:
    script = "import sys; sys.stdout.write('x' * 5_000_000 + 'THE END'); sys.exit(1)"
    result = await prober.probe(command(sys.executable, "-c", script))
    assert (result.error, result.status) == ("command", 1)
    assert len(result.detail) <= 200
    assert result.detail.endswith("xxxTHE END")


async def test_no_shell_is_involved(prober: Prober, tmp_path: Path) -> None:
    marker = tmp_path / "injected"
    result = await prober.probe(command("echo", f"; touch {marker}"))
    assert result.ok
    assert not marker.exists()


async def test_timeout_kills_the_whole_process_group(prober: Prober, tmp_path: Path) -> None:
    pidfile = tmp_path / "sleep.pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    started = time.perf_counter()
    result = await prober.probe(command("sh", "-c", script, timeout=0.5))
    assert time.perf_counter() - started < KILLED  # not the 30 s of the child
    assert (result.ok, result.error, result.latency_ms) == (False, "timeout", None)
    sleeper = int(pidfile.read_text())
    await wait_for(lambda: gone(sleeper), f"grandchild {sleeper} gone after the timeout", KILLED)


async def test_cancelling_a_probe_kills_its_process_group(prober: Prober, tmp_path: Path) -> None:
    pidfile = tmp_path / "sleep.pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    task = asyncio.create_task(prober.probe(command("sh", "-c", script, timeout=30)))
    await wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), "the child started")
    sleeper = int(pidfile.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(lambda: gone(sleeper), f"grandchild {sleeper} gone", KILLED)


async def test_a_missing_program_is_a_command_failure(prober: Prober) -> None:
    result = await prober.probe(command("/nonexistent/hbsm-check"))
    assert (result.ok, result.error, result.status) == (False, "command", None)
    assert "cannot run" in result.detail


async def test_no_argv_is_a_fact(prober: Prober) -> None:
    result = await prober.probe(command())
    assert (result.ok, result.error) == (False, "other")


async def test_slow_command(prober: Prober) -> None:
    result = await prober.probe(command("sleep", "0.2", slow_ms=50))
    assert (result.ok, result.error, result.status) == (False, "slow", 0)
    assert result.latency_ms is not None and result.latency_ms >= 200


async def test_a_straggler_holding_the_output_does_not_hold_the_probe(
    prober: Prober, tmp_path: Path
) -> None:
    pidfile = tmp_path / "straggler.pid"
    # The shell exits at once; the background sleep keeps stdout open.
    script = f"sleep 30 & echo $! > {pidfile}; exit 0"
    result = await prober.probe(command("sh", "-c", script, timeout=5))
    assert result.ok, result  # not a timeout waiting for the straggler's end of the output
    straggler = int(pidfile.read_text())
    await wait_for(lambda: gone(straggler), f"straggler {straggler} gone", KILLED)


@pytest.mark.parametrize("yields", [0, 1, 2, 3, 5, 8])
async def test_a_probe_cancelled_while_its_command_starts_leaves_nothing_running(
    prober: Prober, tmp_path: Path, yields: int
) -> None:
    # Cancelled at some point of the start (which point depends on `yields` and on the
    # machine): whatever the command managed to start dies with it.
    pidfile = tmp_path / "sleep.pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    task = asyncio.create_task(prober.probe(command("sh", "-c", script, timeout=30)))
    for _ in range(yields):
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)  # time for a shell that ran to write its pidfile
    if pidfile.exists() and pidfile.read_text().strip():
        sleeper = int(pidfile.read_text())
        await wait_for(lambda: gone(sleeper), f"grandchild {sleeper} gone", KILLED)

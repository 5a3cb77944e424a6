"""Fixtures of the monitor tests. Every server, child process and monitor a test starts is
stopped by a finalizer here, whatever the test's outcome."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from support.waiting import DEADLINE, wait_for, wait_for_sync

from hbsm.config import Config
from hbsm.events import Event, OpaqueEvent
from hbsm.log import FileEventLog
from hbsm.monitor import Monitor
from hbsm.notify import Notifier
from hbsm.probes import Prober
from hbsm.repair import RepairRunner, Supervisor

from .support import PY, ChildService, events, kill_pids, processes_mentioning


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Callable[..., ChildService]]:
    """`children(name, ignore_term=False, bind_after=0.0)`: a supervised service's script; every
    process it ever started is SIGKILLed at the end."""
    made: list[ChildService] = []

    def make(name: str, *, ignore_term: bool = False, bind_after: float = 0.0) -> ChildService:
        child = ChildService(
            tmp_path / "children", name, ignore_term=ignore_term, bind_after=bind_after
        )
        made.append(child)
        return child

    yield make
    for child in made:
        child.kill_all()


@pytest.fixture
def strays() -> Iterator[Callable[[list[str]], list[str]]]:
    """`strays(argv)`: argv (returned as is) of a command a repair step runs; any process with
    that command line still alive at the end is SIGKILLed (make the argv distinctive)."""
    commands: list[str] = []

    def register(argv: list[str]) -> list[str]:
        commands.append(" ".join(argv))
        return argv

    yield register
    for text in commands:
        kill_pids(processes_mentioning(text), must_mention=text)


class Harness:
    """A Monitor wired to real parts (file log, prober, runner, supervisor, notifier)."""

    def __init__(self, monitor: Monitor, store: FileEventLog, path: Path) -> None:
        self.monitor = monitor
        self.store = store
        self.path = path
        self.stopped = False

    def state(self, name: str) -> str:
        return self.monitor.states[name].state

    def history(self) -> list[Event | OpaqueEvent]:
        """What the log holds so far (flushed: the monitor flushes every 0.2 s)."""
        return events(self.path)

    async def wait_state(self, name: str, state: str, timeout: float = DEADLINE) -> None:
        await wait_for(
            lambda: self.state(name) == state,
            f"{name} {state} (it is {self.state(name)})",
            timeout,
        )

    async def wait_logged(
        self, match: Callable[[Event | OpaqueEvent], bool], what: str, timeout: float = DEADLINE
    ) -> Event | OpaqueEvent:
        """The first event in the log that `match`es, once it is there."""

        def found() -> Event | OpaqueEvent | None:
            return next((e for e in self.history() if match(e)), None)

        return await wait_for(found, what, timeout, every=0.05)

    async def stop(self) -> list[Event | OpaqueEvent]:
        """Stop the monitor, close the log; the whole history as the log holds it."""
        if not self.stopped:
            self.stopped = True
            try:
                await self.monitor.stop("test over", grace=5.0)
            finally:
                self.store.close()
        return self.history()


@pytest.fixture
async def start_monitor(tmp_path: Path) -> AsyncIterator[Callable[[Config], Awaitable[Harness]]]:
    harnesses: list[Harness] = []
    supervisors: list[Supervisor] = []

    async def start(config: Config) -> Harness:
        path = Path(config.log.path)
        store = FileEventLog.open(path, fsync=config.log.fsync)
        supervisor = Supervisor(output_dir=tmp_path / "out")
        supervisors.append(supervisor)
        monitor = Monitor(
            config,
            store=store,
            prober=Prober(concurrency=config.concurrency),
            repairs=RepairRunner(supervisor=supervisor, log_dir=tmp_path / "out"),
            supervisor=supervisor,
            notifier=Notifier(config.notify),
        )
        harness = Harness(monitor, store, path)
        harnesses.append(harness)
        try:
            await monitor.start()
        except BaseException:
            harness.stopped = True
            store.close()
            raise
        return harness

    yield start
    for harness in harnesses:
        with contextlib.suppress(Exception):
            await harness.stop()
    for supervisor in supervisors:
        with contextlib.suppress(Exception):
            await supervisor.stop_all(grace=0.5)


# --- `hbsm run` as a subprocess --------------------------------------------------------------


class HbsmRun:
    """One `hbsm run --config FILE [--log PATH] [ARGS...]` (with `env` over this process's
    environment); stdout/stderr go to files in `workdir`."""

    def __init__(
        self,
        config: Path,
        log: Path | None,
        workdir: Path,
        number: int,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.log = log
        self.stdout = workdir / f"hbsm-{number}.out"
        self.stderr = workdir / f"hbsm-{number}.err"
        argv = [PY, "-m", "hbsm", "run", "--config", str(config)]
        if log is not None:
            argv += ["--log", str(log)]
        argv += args
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=workdir,
                env={**os.environ, **(env or {})},
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def err(self) -> str:
        return self.stderr.read_text()

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = DEADLINE) -> int:
        return self.proc.wait(timeout)

    def until(self, condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
        """Wait for `condition`, failing at once (with hbsm's stderr) if hbsm has exited."""

        def check() -> object:
            if self.proc.poll() is not None:
                raise AssertionError(f"hbsm exited ({self.proc.returncode}): {self.err()}")
            return condition()

        wait_for_sync(check, what, timeout)

    def kill(self) -> int:
        """SIGKILL (a stopped process dies too) and reap it; its exit status."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(30)


class HbsmRuns:
    """Every `hbsm run` a test starts; `close` SIGKILLs those still running."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.runs: list[HbsmRun] = []

    def start(
        self,
        config: Path,
        log: Path | None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> HbsmRun:
        run = HbsmRun(config, log, self.workdir, len(self.runs) + 1, env, args)
        self.runs.append(run)
        return run

    def close(self) -> None:
        for run in self.runs:
            run.kill()


@pytest.fixture
def hbsm_run(tmp_path: Path) -> Iterator[Callable[..., HbsmRun]]:
    """`hbsm_run(config, log, env=None, args=())` starts `hbsm run`; each still running is
    killed at the end."""
    runs = HbsmRuns(tmp_path)
    yield runs.start
    runs.close()

"""Processes hbsm runs itself: started in their own process group, output appended to a file,
stopped with SIGTERM (and SIGCONT, for a stopped one) then SIGKILL after a grace period,
started again.

After hbsm itself restarts, `adopt` takes over a child that is still running (its pid comes
from the log) so the service is not started twice. An adopted process is not hbsm's child any
more: its liveness is polled, and its exit status is unknown (None).

A process that ends without being asked (a crash, a kill -9) is reported the moment it ends:
`on_exit(name, pid, how)`, from the child's own exit for a child, from a pidfd (or polling where
there is none) for an adopted process. The monitor makes it a fact at once, rather than waiting
for failed probes to tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hbsm.config.model import RestartConfig
from hbsm.errors import HbsmError
from hbsm.repair._process import alive, group_gone, kill_group

__all__ = ["Supervisor", "SupervisorError"]

log = logging.getLogger("hbsm.repair")

_DEFAULT_GRACE = RestartConfig().grace
_POLL = 0.02
# Once SIGKILLed, how long to wait for an adopted process to vanish before giving up on it.
_KILL_WAIT = 5.0
_TAIL_BYTES = 2000
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class SupervisorError(HbsmError, RuntimeError):
    """A supervised process could not be started (or died at once)."""


@dataclass
class _Child:
    pid: int
    config: RestartConfig | None
    proc: asyncio.subprocess.Process | None = None  # None when adopted
    # Set when hbsm stops it: its end is then no news.
    stopping: bool = False
    watcher: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        if self.proc is not None:
            return self.proc.returncode is None
        return alive(self.pid)


class Supervisor:
    def __init__(
        self,
        *,
        output_dir: Path,
        clock: Callable[[], float] = time.time,
        settle: float = 0.1,
    ) -> None:
        """`settle`: how long start() watches a new child; one that exits within it is an
        error carrying its exit status and the end of its output."""
        self.output_dir = Path(output_dir)
        self.clock = clock
        self.settle = settle
        self._children: dict[str, _Child] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Called (on the loop) when a supervised process ends unbidden: (name, pid, how).
        self.on_exit: Callable[[str, int, str], None] | None = None

    # --- queries -------------------------------------------------------------------------------

    def pid(self, name: str) -> int | None:
        """The pid of the service's process while it runs, else None."""
        child = self._children.get(name)
        return child.pid if child is not None and child.running else None

    def running(self, name: str) -> bool:
        child = self._children.get(name)
        return child is not None and child.running

    def names(self) -> list[str]:
        return list(self._children)

    def output_path(self, name: str, config: RestartConfig | None = None) -> Path:
        if config is not None and config.output:
            return Path(config.output)
        return self.output_dir / f"{_UNSAFE.sub('_', name)}.out"

    # --- actions -------------------------------------------------------------------------------

    async def start(self, name: str, config: RestartConfig) -> int:
        """Start `config.argv` (no shell) in its own process group; return its pid.

        A service already running is not started twice: its pid is returned.
        """
        async with self._lock(name):
            return await self._start(name, config)

    async def stop(self, name: str, *, grace: float | None = None) -> int | None:
        """SIGTERM to the process group, SIGKILL after `grace` seconds (default: the config's).

        Returns the exit status (negative: killed by that signal), None when unknown (an
        adopted process, or none was running).
        """
        async with self._lock(name):
            return await self._stop(name, grace)

    async def restart(self, name: str, config: RestartConfig) -> tuple[int, str]:
        """Stop the process if it runs, start it again; return (new pid, what happened)."""
        async with self._lock(name):
            child = self._children.get(name)
            if child is None:
                before = "was not running"
            elif child.running:
                code = await self._stop(name, config.grace)
                before = f"stopped pid {child.pid} ({_status(code)})"
            else:
                code = child.proc.returncode if child.proc is not None else None
                before = f"pid {child.pid} had exited ({_status(code)})"
            pid = await self._start(name, config)
            # How it ended and what replaced it come last: timelines show the tail.
            return pid, f"{_cmdline(config.argv)}: {before}; started pid {pid}"

    async def adopt(self, name: str, pid: int, config: RestartConfig | None = None) -> bool:
        """Take over a still-running process (after hbsm itself restarted). False if it is
        gone, or if another process already runs under this name."""
        async with self._lock(name):
            current = self._children.get(name)
            if current is not None and current.running:
                if current.pid == pid:
                    return True
                log.warning("%s: not adopting pid %d: pid %d already runs", name, pid, current.pid)
                return False
            if not alive(pid):
                return False
            child = self._children[name] = _Child(pid=pid, config=config)
            self._watch(name, child)
            return True

    async def stop_all(self, *, grace: float | None = None) -> None:
        """Stop every supervised process, all at once."""
        await asyncio.gather(*(self.stop(name, grace=grace) for name in list(self._children)))

    async def close(self) -> None:
        """Stop watching (the processes go on): hbsm is stopping and leaves them running."""
        watchers = [c.watcher for c in self._children.values() if c.watcher is not None]
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)

    # --- watching ------------------------------------------------------------------------------

    def _watch(self, name: str, child: _Child) -> None:
        child.watcher = asyncio.create_task(self._watching(name, child), name=f"hbsm-watch-{name}")

    async def _watching(self, name: str, child: _Child) -> None:
        if child.proc is not None:
            how = _status(await child.proc.wait())
        else:
            await _adopted_gone(child.pid)
            how = _status(None)
        if self._children.get(name) is child and not child.stopping and self.on_exit:
            log.warning("%s: pid %d ended (%s)", name, child.pid, how)
            self.on_exit(name, child.pid, how)

    # --- the work, under the service's lock ----------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def _start(self, name: str, config: RestartConfig) -> int:
        current = self._children.get(name)
        if current is not None and current.running:
            return current.pid
        if not config.argv:
            raise SupervisorError(f"{name}: no argv to start (restart.argv is empty)")
        path = self.output_path(name, config)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock()))
            os.write(fd, f"--- hbsm {stamp}: starting {_cmdline(config.argv)}\n".encode())
            offset = os.lseek(fd, 0, os.SEEK_END)
            env = {**os.environ, **config.env} if config.env else None
            try:
                proc = await asyncio.create_subprocess_exec(
                    *config.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=fd,
                    stderr=fd,
                    cwd=config.cwd,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise SupervisorError(f"{name}: cannot start {config.argv[0]!r}: {exc}") from exc
        finally:
            os.close(fd)
        child = self._children[name] = _Child(pid=proc.pid, config=config, proc=proc)
        log.info("%s: started pid %d, output to %s", name, proc.pid, path)
        if self.settle > 0:
            with contextlib.suppress(TimeoutError):
                code = await asyncio.wait_for(asyncio.shield(proc.wait()), self.settle)
                kill_group(proc.pid)  # anything it left behind in its group
                raise SupervisorError(
                    f"{name}: pid {proc.pid} exited at once ({_status(code)}): "
                    f"{_read_tail(path, offset).strip() or 'no output'}"
                )
        self._watch(name, child)  # from here on, an end unasked for is news
        return proc.pid

    async def _stop(self, name: str, grace: float | None) -> int | None:
        child = self._children.get(name)
        if child is None:
            return None
        if grace is None:
            grace = child.config.grace if child.config is not None else _DEFAULT_GRACE
        child.stopping = True
        if child.proc is not None:
            code = await _stop_child(child.proc, grace)
        else:
            await _stop_adopted(child.pid, grace)
            code = None
        log.info("%s: stopped pid %d (%s)", name, child.pid, _status(code))
        return code


async def _stop_child(proc: asyncio.subprocess.Process, grace: float) -> int:
    if proc.returncode is None:
        kill_group(proc.pid, signal.SIGTERM)
        # A stopped process (SIGSTOP, a debugger's, a hang made by hand) holds SIGTERM pending
        # until it runs again: woken, it acts on it now instead of after the whole grace.
        kill_group(proc.pid, signal.SIGCONT)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
        except TimeoutError:
            kill_group(proc.pid, signal.SIGKILL)
    code = await proc.wait()
    # Whatever else the service left in its group (workers that outlive their parent would
    # keep its port and files busy): the group goes with it, before anything starts again.
    if kill_group(proc.pid, signal.SIGKILL):
        await group_gone(proc.pid)
    return code


async def _stop_adopted(pid: int, grace: float) -> None:
    if not alive(pid):
        return
    try:
        leads_group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if leads_group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    send(signal.SIGTERM)
    send(signal.SIGCONT)  # a stopped process acts on SIGTERM only once it runs (_stop_child)
    if await _vanished(pid, grace):
        if leads_group and kill_group(pid, signal.SIGKILL):
            await group_gone(pid)
        return
    send(signal.SIGKILL)
    if not await _vanished(pid, _KILL_WAIT):
        log.warning("pid %d still there %.0f s after SIGKILL", pid, _KILL_WAIT)


async def _adopted_gone(pid: int) -> None:
    """Returns once `pid` (not a child of ours) has ended: a pidfd turns readable then (Linux
    5.3 and later); elsewhere, or without one, its liveness is polled."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        while alive(pid):
            await asyncio.sleep(0.2)
        return
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await ended
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _vanished(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL)
    return True


def _status(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def _cmdline(argv: list[str]) -> str:
    return " ".join(argv)


def _read_tail(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(offset, f.seek(0, os.SEEK_END) - _TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""

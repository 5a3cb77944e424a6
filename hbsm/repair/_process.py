"""Running a command in its own process group, with a bounded output tail, killable as a whole.

The child's stdout and stderr go to one pipe hbsm owns (not asyncio's subprocess pipes): on
Python 3.11 `Process.wait()` does not return while any pipe is open, and a background
grandchild (`daemon &`) would hold it open forever. Owning the pipe, hbsm waits for the leader
only, drains what is left for a moment, and then stops reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hbsm.repair._base import OutputTail

__all__ = ["alive", "group_gone", "kill_group", "run_command"]

_CHUNK = 64 * 1024
# Reads per wake-up: a command printing without pause must not starve the loop (timeouts).
_READS_PER_WAKEUP = 16
# After the leader exits, how long to wait for the pipe's end (its children may still write).
_DRAIN = 0.5
# After a SIGKILL to a group, how long to wait for its last member to be gone (and reaped).
_GONE_WAIT = 2.0
_POLL = 0.01


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.cache
def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, loaded once, in hbsm's process (never in a forked child), by the first
    command it starts: ctypes is not imported by a monitor that runs none. None off Linux or
    without it."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def _dies_with_hbsm() -> Callable[[], None] | None:
    """A preexec_fn that makes the command die with hbsm (Linux), or None where it cannot.

    Fix (tests/reliability): a repair or restart command still running when hbsm was SIGKILLed
    ran on forever, an orphan nobody would time out or kill (a restarted hbsm does not know it).
    PR_SET_PDEATHSIG has the kernel SIGKILL the command when hbsm goes. Limits: it reaches the
    command itself, not what the command started (a grandchild survives, in the dead command's
    process group); and "hbsm goes" means the thread that started the command ends, which is
    the event loop's thread, so also when a loop run in a thread of its own finishes. Never for
    supervised services: they outlive hbsm on purpose, to be adopted when it comes back.
    """
    prctl = _load_prctl()
    if prctl is None:
        return None
    hbsm = os.getpid()

    def preexec() -> None:  # in the child, between fork and exec: two system calls, no locks
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != hbsm:  # hbsm died before the line above: too late to be told
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def alive(pid: int) -> bool:
    """Whether `pid` names a live process (a zombie is dead: it only waits to be reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: trust kill(0)
    # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")".
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] not in ("Z", "X")


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a whole process group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


async def run_command(
    argv: Sequence[str],
    tail: OutputTail,
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run argv (no shell) in a new session, stdout+stderr into `tail`; return its exit status.

    Cancelled (a timeout around it, or shutdown), it kills the command's whole process group
    with SIGKILL, waits for the group to be gone and re-raises. A command that exits by itself
    leaves alone what it started in the background (`systemctl`-less scripts start daemons so).
    If hbsm itself is killed, the command is killed too (Linux; see _dies_with_hbsm).
    """
    if not argv:
        raise ValueError("empty argv: nothing to run")
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                cwd=cwd,
                env=None if env is None else dict(env),
                start_new_session=True,
                preexec_fn=_dies_with_hbsm(),
            )
        finally:
            os.close(write_fd)
        eof = _read_into(loop, read_fd, tail)
        try:
            code = await proc.wait()
        except BaseException:
            kill_group(proc.pid)
            await asyncio.shield(proc.wait())
            # SIGKILL is sent at once but takes effect when each process is next scheduled: wait
            # for the group to be gone, so what comes next (a restart) does not overlap with it.
            await group_gone(proc.pid, _GONE_WAIT)
            await asyncio.wait([eof], timeout=_DRAIN)
            raise
        await asyncio.wait([eof], timeout=_DRAIN)
        return code
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(read_fd)
        os.close(read_fd)


async def group_gone(pgid: int, within: float = 2.0) -> bool:
    """Wait until no live process of the group is left (True), at most `within` seconds.

    Zombies do not count. Fix (tests/reliability): a killed command's grandchildren are
    reparented to init and stay zombies until init collects them; an init that does so slowly
    (a VM's or container's, about once a second here) made every timed-out command, and every
    stop of a supervised service, wait out the whole `within` for processes already dead.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # a member changed its user id: still there
        else:
            if not _live_member(pgid):
                return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL)


def _live_member(pgid: int) -> bool:
    """Whether a process of the group is alive, not a zombie (True when /proc cannot tell)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) S ppid pgrp ...": comm may hold anything; the fields follow the last ")".
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _read_into(loop: asyncio.AbstractEventLoop, fd: int, tail: OutputTail) -> asyncio.Future[None]:
    """Feed everything readable from `fd` into `tail`; the future is done at end of file."""
    os.set_blocking(fd, False)
    eof: asyncio.Future[None] = loop.create_future()

    def finish() -> None:
        loop.remove_reader(fd)
        if not eof.done():
            eof.set_result(None)

    def on_readable() -> None:
        for _ in range(_READS_PER_WAKEUP):
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                return
            except OSError:
                finish()
                return
            if not chunk:
                finish()
                return
            tail.feed(chunk)

    loop.add_reader(fd, on_readable)
    return eof

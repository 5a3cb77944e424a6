"""The command probe: argv run without a shell, in its own process group; exit 0 is up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from typing import Any

from hbsm.config.model import ServiceConfig

from ._classify import short
from ._outcome import Outcome

__all__ = ["OUTPUT_TAIL", "probe_command"]

# How much of the command's output is kept (the end of it: errors are printed last).
OUTPUT_TAIL = 4096
# Output that a stray grandchild keeps open is not waited for longer than this after exit.
_EOF_GRACE = 0.5


class _Capture(asyncio.SubprocessProtocol):
    """Keeps the tail of the output; tells when the process exits and when its pipes close.

    A protocol rather than `create_subprocess_exec`: there, `Process.wait()` (Python 3.11)
    returns only once every pipe is closed, so a grandchild holding stdout would hold the probe.
    """

    def __init__(self, exited: asyncio.Future[None], closed: asyncio.Future[None]) -> None:
        self.tail = bytearray()
        self.exited = exited
        self.closed = closed

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        self.tail += data
        if len(self.tail) > OUTPUT_TAIL:
            del self.tail[:-OUTPUT_TAIL]

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _kill_group(pid: int) -> None:
    # The child leads its own session, so its pid is the group id: this reaches grandchildren.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _kill_when_started(spawn: asyncio.Future[tuple[Any, Any]]) -> None:
    """Let a start that was cancelled finish, then kill the new process's whole group."""
    try:
        transport, _ = await spawn
    except (OSError, asyncio.CancelledError):
        return  # it never ran
    _kill_group(transport.get_pid())
    transport.close()


def _tail_text(tail: bytes, limit: int) -> str:
    text = " ".join(tail.decode("utf-8", "replace").split())
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


async def probe_command(service: ServiceConfig) -> Outcome:
    argv = service.probe.argv
    if not argv:
        return Outcome(False, error="other", detail="command probe without probe.argv")
    what = short(f"command {shlex.join(argv)}", 80)
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()
    closed: asyncio.Future[None] = loop.create_future()
    started = time.perf_counter()
    spawn = asyncio.ensure_future(
        loop.subprocess_exec(
            lambda: _Capture(exited, closed),
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    )
    try:
        # Shielded: cancelled mid-start, asyncio would kill the child alone, and whatever it had
        # started already (seen on a loaded machine) would outlive the probe.
        transport, capture = await asyncio.shield(spawn)
    except asyncio.CancelledError:
        await _kill_when_started(spawn)
        raise
    except OSError as exc:
        return Outcome(False, error="command", detail=short(f"{what}: cannot run: {exc}"))
    pid = transport.get_pid()
    try:
        # asyncio.wait, not wait_for: a timeout must not cancel the `exited` future.
        if not (await asyncio.wait([exited], timeout=service.probe.timeout))[0]:
            _kill_group(pid)
            await asyncio.wait([exited], timeout=5)
            output = _tail_text(bytes(capture.tail), 80)
            detail = f"{what}: timed out, process group killed" + (output and f": {output}")
            return Outcome(False, None, None, "timeout", short(detail))
        latency_ms = (time.perf_counter() - started) * 1000.0
        code = transport.get_returncode()
        if not (await asyncio.wait([closed], timeout=_EOF_GRACE))[0]:
            # Something the command started still holds its output open: a straggler of a
            # probe that has already answered.
            _kill_group(pid)
    finally:
        if transport.get_returncode() is None:  # cancelled from outside: leave nothing behind
            _kill_group(pid)
        transport.close()
    if code == 0:
        return Outcome(True, latency_ms, 0)
    output = _tail_text(bytes(capture.tail), 200 - len(what) - 20) or "no output"
    return Outcome(False, latency_ms, code, "command", f"{what}: exit {code}: {output}")

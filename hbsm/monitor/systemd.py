"""Telling systemd how `hbsm run` is doing: the sd_notify protocol, without libsystemd.

A `Type=notify` unit is started with $NOTIFY_SOCKET naming a datagram socket (a path, or an
abstract name when it starts with "@"); the service sends it lines of KEY=VALUE: READY=1 once it
serves, STATUS=... (what `systemctl status` shows), WATCHDOG=1 at least every $WATCHDOG_USEC
(else systemd kills and restarts it) and STOPPING=1 as its stop begins. `hbsm run` imports this
module only when NOTIFY_SOCKET is set.

The pings are callbacks on the monitor's own event loop: a loop that hangs (a blocking call, a
callback that never returns) stops them, and systemd restarts hbsm, which is the point of them.
Nothing here may stop the monitor: a socket that cannot be reached is one warning, then
silence; a datagram that does not fit the socket's queue is dropped rather than waited for.

The top half is pure (reading the environment, wording the messages); the bottom half sends.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, NamedTuple

from hbsm.vocabulary import STATES

if TYPE_CHECKING:
    from hbsm.monitor.runtime import Monitor

__all__ = [
    "ENV_VARS",
    "STATUS_EVERY",
    "NotifySocket",
    "Settings",
    "SystemdLink",
    "monitor_status",
    "ping_interval",
    "settings",
    "socket_address",
    "status_text",
]

log = logging.getLogger("hbsm.systemd")

# What systemd gives the service; taken out of the environment once read, so that what hbsm
# starts (supervised services, commands) does not inherit them and speak for hbsm.
ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

# Seconds between looks at the services' counts; STATUS is sent only when its text changed.
STATUS_EVERY = 2.0


# --- pure: the environment read, the messages worded ----------------------------------------


class Settings(NamedTuple):
    address: str | None  # where to send (None: nowhere usable; `problems` says why)
    ping_every: float | None  # seconds between WATCHDOG=1 pings (None: no watchdog)
    problems: tuple[str, ...]  # what was wrong with the variables, for one warning each


def socket_address(value: str) -> str:
    """NOTIFY_SOCKET as an AF_UNIX address: "@name" is the abstract socket "\\0name", a path
    must be absolute. ValueError for anything else (systemd's vsock: form among them)."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    raise ValueError(
        f"NOTIFY_SOCKET={value!r}: expected an absolute path or an @abstract socket name"
    )


def ping_interval(usec: str | None, pid: str | None, our_pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of WATCHDOG_USEC, as systemd advises, so one
    late ping is not yet a timeout. None when there is no watchdog for this process (unset,
    or WATCHDOG_PID names another process). ValueError for a value that is not a number."""
    if not usec:
        return None
    if pid and pid.strip() != str(our_pid):
        return None
    try:
        micros = int(usec)
    except ValueError:
        raise ValueError(f"WATCHDOG_USEC={usec!r}: expected microseconds (an integer)") from None
    if micros <= 0:
        raise ValueError(f"WATCHDOG_USEC={usec!r}: expected a positive number of microseconds")
    return micros / 2_000_000


def settings(environ: MutableMapping[str, str], our_pid: int) -> Settings:
    """What systemd asked of this process, read from `environ` and taken out of it."""
    values = {name: environ.pop(name, None) for name in ENV_VARS}
    problems: list[str] = []
    address = None
    if values["NOTIFY_SOCKET"]:
        try:
            address = socket_address(values["NOTIFY_SOCKET"])
        except ValueError as exc:
            problems.append(str(exc))
    try:
        every = ping_interval(values["WATCHDOG_USEC"], values["WATCHDOG_PID"], our_pid)
    except ValueError as exc:
        problems.append(f"{exc}; no watchdog pings")
        every = None
    return Settings(address, every, tuple(problems))


def status_text(states: Iterable[str], notes: Iterable[str] = ()) -> str:
    """ "3 services: 2 healthy, 1 degraded", in the states' own order, zero counts left out;
    `notes` follow after a semicolon each ("event log cannot be written")."""
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    total = sum(counts.values())
    order = [s for s in STATES if s in counts] + sorted(set(counts) - set(STATES))
    text = f"{total} service{'' if total == 1 else 's'}"
    if order:
        text += ": " + ", ".join(f"{counts[s]} {s}" for s in order)
    return "; ".join([text, *notes])


def monitor_status(monitor: Monitor) -> str:
    """The STATUS text of a running monitor: its configured services by state, as its API's
    projection has them (what /health says), then what keeps it from doing its work."""
    views = monitor.projection.services
    states = (
        view.fsm.state if (view := views.get(name)) is not None else "unknown"
        for name in monitor.services
    )
    notes = []
    if monitor.outage is not None:
        notes.append("event log cannot be written, probing suspended")
    if not monitor.heartbeat_running:
        notes.append("probing stopped")
    return status_text(states, notes)


# --- I/O: the socket, and the timers on the monitor's loop ----------------------------------


class NotifySocket:
    """A datagram socket to systemd's. `send` never raises and never blocks: the first failure
    is logged as a warning, the later ones only at debug level."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sent = 0
        self._warned = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def send(self, *fields: str) -> bool:
        """One datagram of `fields` (KEY=VALUE each), one per line."""
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except (OSError, ValueError) as exc:  # ValueError: an address the OS cannot take
            where = "@" + self.address[1:] if self.address.startswith("\0") else self.address
            if not self._warned:
                self._warned = True
                log.warning(
                    "cannot tell systemd (NOTIFY_SOCKET %s): %s; carrying on without it",
                    where,
                    exc,
                )
            else:
                log.debug("NOTIFY_SOCKET %s: %s", where, exc)
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        self._sock.close()


class SystemdLink:
    """READY=1, STATUS, WATCHDOG=1 and STOPPING=1 for one `hbsm run`.

    `status` gives the STATUS text of the moment; it is called on the loop every
    `STATUS_EVERY` seconds, and what it gives sent when it changed."""

    def __init__(
        self,
        sock: NotifySocket,
        ping_every: float | None,
        status: Callable[[], str],
        *,
        status_every: float = STATUS_EVERY,
    ) -> None:
        self.sock = sock
        self.ping_every = ping_every
        self._status = status
        self._status_every = status_every
        self._last_status: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handles: dict[str, asyncio.TimerHandle] = {}

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str], our_pid: int, status: Callable[[], str]
    ) -> SystemdLink | None:
        """The link systemd's variables in `environ` ask for (taken out of it), or None when
        they name no usable socket. Problems with them are warnings: hbsm runs without."""
        found = settings(environ, our_pid)
        for problem in found.problems:
            log.warning("%s", problem)
        if found.address is None:
            return None
        try:
            sock = NotifySocket(found.address)
        except OSError as exc:  # out of descriptors, say: hbsm runs on, systemd untold
            log.warning("cannot tell systemd: no socket (%s); carrying on without it", exc)
            return None
        return cls(sock, found.ping_every, status)

    def ready(self, loop: asyncio.AbstractEventLoop) -> None:
        """The monitor has resumed and the API listens: say so, then keep pinging and telling
        the counts from `loop` (the monitor's)."""
        self._loop = loop
        self._last_status = self._current_status()
        status = () if self._last_status is None else (f"STATUS={self._last_status}",)
        self.sock.send("READY=1", *status)
        if self.ping_every is not None:
            log.info("systemd watchdog: a ping every %g s", self.ping_every)
            self._ping()
        self._handles["status"] = loop.call_later(self._status_every, self._look)

    def stopping(self, why: str) -> None:
        self.sock.send("STOPPING=1", f"STATUS=stopping: {why}")
        # The counts are no longer news; the pings go on until `close`: a stop that hangs is
        # systemd's to end (TimeoutStopSec), and it knows when the process has exited.
        handle = self._handles.pop("status", None)
        if handle is not None:
            handle.cancel()

    def close(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self.sock.close()

    def _ping(self) -> None:
        assert self._loop is not None and self.ping_every is not None
        self.sock.send("WATCHDOG=1")
        # From the time this callback ran, not a fixed schedule: after a stall the next ping
        # waits a whole interval again rather than several being sent at once to catch up.
        self._handles["ping"] = self._loop.call_later(self.ping_every, self._ping)

    def _look(self) -> None:
        assert self._loop is not None
        text = self._current_status()
        if text is not None and text != self._last_status:
            self._last_status = text
            self.sock.send(f"STATUS={text}")
        self._handles["status"] = self._loop.call_later(self._status_every, self._look)

    def _current_status(self) -> str | None:
        try:
            return self._status()
        except Exception:  # the counts are a courtesy: never a reason to fail, nor lose a timer
            log.exception("systemd STATUS: counting the services failed")
            return None

"""Supervised processes a killed monitor started but never recorded.

The supervisor starts a service, watches it settle, and only then is its pid appended to the log
and flushed. A monitor SIGKILLed in between (in a restart, or while starting its services) leaves
a running child the log does not name. The next monitor, seeing the recorded pid gone, would
start the service a second time: the newcomer finds the port taken and dies, the orphan goes on
serving unsupervised, and every restart after that fails the same way.

Such an orphan is recognisable on Linux: it runs exactly the service's argv, it leads its own
session (the supervisor starts every child with a new session), and it started after the last
monitor did. Without /proc nothing is found, and the service is started as before.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Orphans"]

# /proc/stat's btime is in whole seconds: how much earlier than its true start a process may
# seem to have started.
_SLACK = 1.0


class Orphans:
    """The session leaders started since `since`, by command line. /proc is read once, when
    first asked: a monitor with many supervised services does not scan it for each."""

    def __init__(self, since: float) -> None:
        self.since = since
        self._by_cmdline: dict[bytes, list[tuple[float, int]]] | None = None

    def of(self, argv: Sequence[str]) -> list[int]:
        """Live processes running exactly `argv`: newest first. Never this process."""
        if not argv:
            return []
        if self._by_cmdline is None:
            self._by_cmdline = _session_leaders(self.since - _SLACK)
        wanted = b"\0".join(os.fsencode(a) for a in argv) + b"\0"
        found = self._by_cmdline.get(wanted, [])
        return [pid for _, pid in sorted(found, reverse=True)]


def _session_leaders(since: float) -> dict[bytes, list[tuple[float, int]]]:
    found: dict[bytes, list[tuple[float, int]]] = {}
    try:
        boot = Path("/proc/stat").read_text()
        btime = next(int(line.split()[1]) for line in boot.splitlines() if line.startswith("btime"))
        entries = list(Path("/proc").iterdir())
    except (OSError, StopIteration, ValueError, IndexError):
        return found
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            if os.getsid(pid) != pid:
                continue
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
            # Fields after "(comm)" begin at field 3; starttime is field 22, in clock ticks.
            started = btime + int(stat[stat.rfind(")") + 2 :].split()[19]) / tick
        except (OSError, ValueError, IndexError):
            continue
        if cmdline and started >= since:
            found.setdefault(cmdline, []).append((started, pid))
    return found

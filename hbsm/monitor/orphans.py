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

__all__ = ["orphans_of", "started_at"]

# /proc/stat's btime is in whole seconds: how much earlier than its true start a process may
# seem to have started.
_SLACK = 1.0


def started_at(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/stat").read_text()
        btime = next(int(line.split()[1]) for line in boot.splitlines() if line.startswith("btime"))
        # Fields after "(comm)" begin at field 3; starttime is field 22, in clock ticks.
        ticks = int(stat[stat.rfind(")") + 2 :].split()[19])
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def orphans_of(argv: Sequence[str], since: float) -> list[int]:
    """Live processes running exactly `argv`, each leading its own session, started no earlier
    than `since`: newest first. Never this process."""
    if not argv:
        return []
    wanted = b"\0".join(os.fsencode(a) for a in argv) + b"\0"
    found: list[tuple[float, int]] = []
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            if (entry / "cmdline").read_bytes() != wanted or os.getsid(pid) != pid:
                continue
        except (OSError, ProcessLookupError):
            continue
        start = started_at(pid)
        if start is not None and start >= since - _SLACK:
            found.append((start, pid))
    return [pid for _, pid in sorted(found, reverse=True)]

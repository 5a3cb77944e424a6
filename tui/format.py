"""How values read on screen: durations, clock times, countdowns, sparklines. Pure functions."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

from hbsm._format import latency
from hbsm.events import ServiceView
from hbsm.projection import next_action

__all__ = [
    "STATE_RANK",
    "clock",
    "countdown",
    "duration",
    "latency",
    "next_text",
    "sparkline",
    "stamp",
]

# Worst first: sorting by state puts what needs attention at the top.
STATE_RANK: Final[dict[str, int]] = {
    "failed": 0,
    "restarting": 1,
    "repairing": 2,
    "cooldown": 3,
    "degraded": 4,
    "paused": 5,
    "unknown": 6,
    "healthy": 7,
}

_BARS: Final = "▁▂▃▄▅▆▇█"

# Shorter words for the table's "next" column; the countdown says when.
_NEXT_LABELS: Final[dict[str, str]] = {
    "cooldown ends": "cooldown",
    "restart if still failing": "restart",
    "next repair run": "repair",
    "probe": "probe",
}


def duration(seconds: float | None) -> str:
    """`0:07`, `3:12`, `1:02:03`, `2d 03:04:05`; empty for None."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours:02d}:{minutes:02d}:{s:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{s:02d}"
    return f"{minutes}:{s:02d}"


def stamp(ts: float | None) -> str:
    """A UTC date and time to the second, e.g. `2026-11-01 03:04:05Z`."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + "Z"


def clock(ts: float | None) -> str:
    """A UTC time of day with milliseconds, e.g. `03:04:05.123`."""
    if ts is None:
        return "-"
    millis = round((ts % 1) * 1000) % 1000
    return time.strftime("%H:%M:%S", time.gmtime(ts)) + f".{millis:03d}"


def countdown(when: float | None, now: float) -> str:
    if when is None:
        return ""
    left = when - now
    return duration(left) if left > 0 else "due"


def next_text(view: ServiceView, now: float) -> str:
    """What hbsm does next for the service and in how long, e.g. `cooldown 3:12`."""
    label, when = next_action(view)
    label = _NEXT_LABELS.get(label, label)
    left = countdown(when, now)
    return f"{label} {left}" if left else label


def sparkline(values: Sequence[float | None], width: int = 16) -> str:
    """The last `width` latencies as bars scaled to their own max; `✗` for a probe without one."""
    tail = list(values[-width:])
    numbers = [v for v in tail if v is not None]
    top = max(numbers) if numbers else 0.0
    out = []
    for v in tail:
        if v is None:
            out.append("✗")
        elif top <= 0:
            out.append(_BARS[0])
        else:
            out.append(_BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1) + 0.5))])
    return "".join(out)

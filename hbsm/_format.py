"""Small formatting helpers: times, durations, latencies, output tails (replay, describe)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["duration", "iso", "latency", "millis", "rate", "tail"]


def iso(ts: float) -> str:
    """UTC ISO-8601 with milliseconds, e.g. 2026-11-01T03:00:00.250Z."""
    try:
        moment = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{ts:.3f}"  # out of datetime's range: still say something true
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def duration(seconds: float | None) -> str:
    """A duration an operator reads at a glance: 850 ms, 12.5 s, 4m 05s, 2h 03m, 1d 02h."""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 1:
        return f"{sign}{s * 1000:.0f} ms"
    if s < 60:
        return f"{sign}{s:.1f} s"
    whole = round(s)
    if whole < 3600:
        return f"{sign}{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{sign}{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{sign}{whole // 86400}d {whole % 86400 // 3600:02d}h"


def millis(ms: float) -> str:
    return duration(ms / 1000.0)


def latency(ms: float | None) -> str:
    """A probe's latency as the dashboard shows it: `1.3 ms`, `42 ms`, `1.5 s`, `12 s`; `-`."""
    if ms is None:
        return "-"
    if ms >= 10_000:
        return f"{ms / 1000:.0f} s"
    if ms >= 1000:
        return f"{ms / 1000:.1f} s"
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def tail(output: str, width: int = 80) -> str:
    """The end of a command's output on one line: the part that usually says what went wrong."""
    lines = (" ".join(line.split()) for line in output.splitlines())
    text = " | ".join(line for line in lines if line)
    if len(text) <= width:
        return text
    return "…" + text[-(width - 1) :]


def rate(events: int, seconds: float) -> str:
    """Events per second with thousands separators (e.g. 1,087,000)."""
    if seconds <= 0:
        return "inf"
    return f"{events / seconds:,.0f}"

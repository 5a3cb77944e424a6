"""What a replay reports: a time window (--since/--until) and a set of services (--service).

Filters narrow what is *reported*; the history is still folded from its start, so states are
right inside the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = ["Window", "parse_time"]


def parse_time(text: str) -> float:
    """ISO-8601 (2026-11-01T03:00:00Z; no offset means UTC) or epoch seconds, to epoch seconds.

    Raises ValueError with a message fit for the command line.
    """
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"{text!r} is not a time")
        return seconds
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither ISO-8601 (e.g. 2026-11-01T03:00:00Z) nor epoch seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class Window:
    since: float | None = None
    until: float | None = None
    # Empty: every service.
    services: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("--since is later than --until")

    def wants(self, service: str | None) -> bool:
        """Whether events of `service` are reported; monitor-wide events (None) always are."""
        return service is None or not self.services or service in self.services

    def contains(self, ts: float) -> bool:
        return (self.since is None or ts >= self.since) and (self.until is None or ts <= self.until)

    def overlaps(self, start: float, end: float | None) -> bool:
        """Whether [start, end] (end None: still open) meets the window."""
        if self.until is not None and start > self.until:
            return False
        return self.since is None or end is None or end >= self.since

    @property
    def unbounded(self) -> bool:
        return self.since is None and self.until is None and not self.services

"""What one probe found, before it becomes a `Probe` event."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Outcome"]


class Outcome(NamedTuple):
    ok: bool
    # The target's response time; None when it never answered (refused, timeout, ...).
    latency_ms: float | None = None
    status: int | None = None
    error: str | None = None
    detail: str = ""

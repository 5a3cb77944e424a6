"""What the API and the dashboard show: per-service and monitor views, folded from the log.

Pure data. `hbsm.projection` builds these from events; the `snapshot` event that opens every log
segment carries them, so a reader can start at the newest segment instead of the whole history.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hbsm.state import Policy, ServiceState

__all__ = ["LATENCY_HISTORY", "MonitorView", "ServiceView"]

# Probes kept per service for sparklines and charts: memory stays bounded however long the log.
LATENCY_HISTORY = 120


class ServiceView(msgspec.Struct, kw_only=True):
    name: str
    fsm: ServiceState
    policy: Policy = Policy()
    target: str = ""
    description: str = ""
    critical: bool = False
    probe_kind: str = "http"
    registered_at: float = 0.0
    # The last probe.
    last_probe_ts: float | None = None
    last_ok: bool | None = None
    last_latency_ms: float | None = None
    last_status: int | None = None
    # The last failed probe (or failed repair/restart): class, detail and when.
    last_error: str | None = None
    last_error_detail: str = ""
    last_error_ts: float | None = None
    # Bounded latency history: timestamps and milliseconds, oldest first (None = no answer).
    latency_ts: list[float] = []
    latency_ms: list[float | None] = []
    probes_total: int = 0
    probes_failed: int = 0
    repairs_total: int = 0
    restarts_total: int = 0
    last_reason: str = ""


class MonitorView(msgspec.Struct, kw_only=True):
    running: bool = False
    pid: int | None = None
    version: str = ""
    started_at: float | None = None
    stopped_at: float | None = None
    config: dict[str, Any] = {}
    events_total: int = 0
    counts: dict[str, int] = {}
    last_seq: int = 0
    last_ts: float | None = None
    segment: int = 0

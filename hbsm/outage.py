"""The event log's outage as readers see it: plain data the monitor keeps while the log refuses
writes (a full disk, say), and that /health, /health/detailed and the status views report.

The monitor's bookkeeping of outages (what is said and notified, and when) is
hbsm.monitor.outage; the views need only this.
"""

from __future__ import annotations

import msgspec

__all__ = ["Outage"]


class Outage(msgspec.Struct, kw_only=True):
    """The event log cannot be written (a full disk, say): since when, why, what was skipped."""

    since: float
    error: str
    skipped: int = 0
    noticed: bool = False  # a log_unwritable notice went out for it

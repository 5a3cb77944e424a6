"""Recorded events as readable timeline entries: transitions, repairs, restarts, admin actions,
monitor starts and stops, log recoveries, notifications and (with several nodes) take-overs.

Probes are not entries (a log is mostly probes; the transitions they cause are), nor are
registrations and snapshots (bookkeeping, not things that happened to a service).
"""

from __future__ import annotations

from typing import Final

import msgspec

from hbsm._format import iso
from hbsm.describe import describe
from hbsm.events import (
    Admin,
    ConfigReloaded,
    Event,
    LogOutage,
    LogRecovered,
    MonitorCaughtUp,
    MonitorOverloaded,
    MonitorStarted,
    MonitorStopped,
    Notification,
    OpaqueEvent,
    ProcessLost,
    ProcessStopped,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    ServiceOwned,
    ServiceRemoved,
    Transition,
    type_name,
)

__all__ = ["ENTRY_KINDS", "TimelineEntry", "entry"]


class TimelineEntry(msgspec.Struct, kw_only=True):
    seq: int
    ts: float
    time: str  # ts as UTC ISO-8601
    type: str
    service: str | None
    text: str
    event: Event  # as recorded, for machines (the fields the text is made of)


# The kinds that are timeline entries; their wording is hbsm.describe's.
ENTRY_KINDS: Final[frozenset[type]] = frozenset(
    {
        Transition,
        RepairStarted,
        RepairFinished,
        RestartStarted,
        RestartFinished,
        Admin,
        MonitorStarted,
        MonitorStopped,
        LogRecovered,
        LogOutage,
        MonitorOverloaded,
        MonitorCaughtUp,
        ProcessLost,
        ProcessStopped,
        Notification,
        ServiceOwned,
        ServiceRemoved,
        ConfigReloaded,
    }
)


def entry(event: Event | OpaqueEvent) -> TimelineEntry | None:
    """The event as a timeline entry, or None if it is no timeline entry."""
    if type(event) not in ENTRY_KINDS:
        return None
    text = describe(event, with_service=False)  # the entry carries the service apart
    return TimelineEntry(
        seq=event.seq,
        ts=event.ts,
        time=iso(event.ts),
        type=type_name(event),
        service=getattr(event, "service", None),
        text=text,
        event=event,  # type: ignore[arg-type]  # only Events are entry kinds
    )

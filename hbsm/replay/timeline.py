"""Recorded events as readable timeline entries: transitions, repairs, restarts, admin actions,
monitor starts and stops, log recoveries and notifications.

Probes are not entries (a log is mostly probes; the transitions they cause are), nor are
registrations and snapshots (bookkeeping, not things that happened to a service).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec

from hbsm.events import (
    Admin,
    Event,
    LogOutage,
    LogRecovered,
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
    Transition,
    type_name,
)
from hbsm.replay._format import duration, iso, millis, tail

__all__ = ["TimelineEntry", "describe", "entry"]


class TimelineEntry(msgspec.Struct, kw_only=True):
    seq: int
    ts: float
    time: str  # ts as UTC ISO-8601
    type: str
    service: str | None
    text: str
    event: Event  # as recorded, for machines (the fields the text is made of)


def _transition(e: Transition) -> str:
    text = f"{e.src} -> {e.dst} ({e.trigger})"
    if e.reason:
        text += f": {e.reason}"
    if e.until is not None and e.dst == "cooldown":
        text += f"; cooldown until {iso(e.until)}"
    elif e.until is not None:  # degraded after a repair run that did not fix it
        text += f"; next repair run not before {iso(e.until)}"
    return text


def _repair_started(e: RepairStarted) -> str:
    of = f"/{len(e.ladder)}" if e.ladder else ""
    return f"repair run {e.run}: step {e.index + 1}{of} {e.step} started"


def _repair_finished(e: RepairFinished) -> str:
    outcome = "ok" if e.ok else "FAILED"
    text = f"repair run {e.run}: step {e.step} {outcome} in {millis(e.duration_ms)}"
    if e.error_class:
        text += f", found {e.error_class}"
    if e.interrupted:
        text += ", interrupted"
    if e.output.strip():
        text += f": {tail(e.output)}"
    return text


def _restart_started(e: RestartStarted) -> str:
    return (
        f"restart started (attempt {e.attempt} in the window, backoff {e.backoff}, "
        f"cooldown {duration(e.cooldown_s)})"
    )


def _restart_finished(e: RestartFinished) -> str:
    text = f"restart {'ok' if e.ok else 'FAILED'} in {millis(e.duration_ms)}"
    if e.exit_code is not None:
        text += f", exit {e.exit_code}"
    if e.interrupted:
        text += ", interrupted"
    if e.output.strip():
        text += f": {tail(e.output)}"
    return text


def _admin(e: Admin) -> str:
    text = f"admin {e.action}"
    if e.who:
        text += f" by {e.who}"
    if e.source:
        text += f" from {e.source}"
    if not e.allowed:
        text += " (DENIED)"
    if e.suppressed:
        text += f" (+{e.suppressed} more refused, not recorded one by one)"
    if e.detail:
        text += f": {tail(e.detail)}"
    return text


def _monitor_started(e: MonitorStarted) -> str:
    parts = [f"pid {e.pid}"] if e.pid else []
    if e.version:
        parts.append(f"version {e.version}")
    if e.host:
        parts.append(f"host {e.host}")
    return "monitor started" + (f" ({', '.join(parts)})" if parts else "")


def _monitor_stopped(e: MonitorStopped) -> str:
    text = "monitor stopped" + (f" (pid {e.pid})" if e.pid else "")
    return text + (f": {e.reason}" if e.reason else "")


def _log_recovered(e: LogRecovered) -> str:
    text = f"log recovered: cut a torn line of {e.cut_bytes} bytes at offset {e.offset}"
    if e.path:
        text += f" of {e.path}"
    return text + (f" ({e.detail})" if e.detail else "")


def _log_outage(e: LogOutage) -> str:
    text = f"log unwritable for {e.ts - e.since:.1f} s"
    if e.error:
        text += f" ({e.error})"
    return text + f": {e.skipped} probes not run, no repair or restart started"


def _process_lost(e: ProcessLost) -> str:
    text = f"supervised process {e.pid} gone" if e.pid is not None else "supervised process gone"
    return text + (f": {tail(e.detail)}" if e.detail else "")


def _process_stopped(e: ProcessStopped) -> str:
    text = "supervised process" + (f" {e.pid}" if e.pid is not None else "") + " stopped by hbsm"
    return text + (f": {tail(e.reason)}" if e.reason else "")


def _notification(e: Notification) -> str:
    text = f"notification [{e.level}]"
    if e.channel:
        text += f" via {e.channel}"
    if e.message:
        text += f": {tail(e.message, 120)}"
    if not e.delivered:
        text += " (NOT delivered" + (f": {tail(e.error)}" if e.error else "") + ")"
    return text


_DESCRIBERS: Final[dict[type, Callable[[Any], str]]] = {
    Transition: _transition,
    RepairStarted: _repair_started,
    RepairFinished: _repair_finished,
    RestartStarted: _restart_started,
    RestartFinished: _restart_finished,
    Admin: _admin,
    MonitorStarted: _monitor_started,
    MonitorStopped: _monitor_stopped,
    LogRecovered: _log_recovered,
    LogOutage: _log_outage,
    ProcessLost: _process_lost,
    ProcessStopped: _process_stopped,
    Notification: _notification,
}


def describe(event: Event | OpaqueEvent) -> str | None:
    """One line saying what the event records, or None if it is no timeline entry."""
    describer = _DESCRIBERS.get(type(event))
    return describer(event) if describer is not None else None


def entry(event: Event | OpaqueEvent) -> TimelineEntry | None:
    """The event as a timeline entry, or None if it is no timeline entry."""
    text = describe(event)
    if text is None:
        return None
    return TimelineEntry(
        seq=event.seq,
        ts=event.ts,
        time=iso(event.ts),
        type=type_name(event),
        service=getattr(event, "service", None),
        text=text,
        event=event,  # type: ignore[arg-type]  # only Events have describers
    )

"""`describe(event)`: one line saying what a recorded event records, for people.

The one wording of every kind of event, used by `hbsm replay`'s timeline and by the dashboard's
event feed and replay bar (which add only their own presentation: columns, colour, truncation).
Pure: no I/O, no clock, no UI library.

The line names the event's service first (`web: healthy -> degraded ...`) when it has one;
`with_service=False` leaves it out, for a layout that shows the service in a column of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from hbsm._format import duration, iso, latency, millis, tail
from hbsm.events import (
    Admin,
    CertExpiring,
    CertSeen,
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
    Probe,
    ProbeSeen,
    ProcessLost,
    ProcessStarted,
    ProcessStopped,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    ServiceOwned,
    ServiceRegistered,
    ServiceRemoved,
    Snapshot,
    Transition,
)

__all__ = ["describe"]


def describe(event: Event | OpaqueEvent, *, with_service: bool = True) -> str:
    """One line saying what the event records (its time and seq are shown apart)."""
    describer = _DESCRIBERS.get(type(event))
    if describer is not None:
        text = describer(event)
    elif isinstance(event, OpaqueEvent):
        text = f"{event.type} (unknown to this version)"
    else:  # an Event subclass this module was not taught: still say what it is
        text = type(event).__name__
    service = getattr(event, "service", None)
    if with_service and service:
        return f"{service}: {text}"
    return text


def _probe(e: Probe) -> str:
    if e.ok:
        text = f"probe ok {latency(e.latency_ms)}"
        if e.error:  # a success past the slow threshold
            text += f", {e.error}"
    else:
        parts = ["probe FAIL"]
        if e.error:
            parts.append(e.error)
        if e.status is not None:
            parts.append(str(e.status))
        text = " ".join(parts)
    if e.votes:
        failing = sum(1 for v in e.votes if not v.ok)
        text += f" [{failing} of {len(e.votes)} vantage points failing]"
    return text + (f": {tail(e.detail, 120)}" if e.detail.strip() else "")


def _probe_seen(e: ProbeSeen) -> str:
    text = f"seen by {e.node}: " + _probe(
        Probe(service=e.service, ok=e.ok, latency_ms=e.latency_ms, status=e.status,
              error=e.error, detail=e.detail)
    )  # fmt: skip
    return text


def _service_owned(e: ServiceOwned) -> str:
    return f"decided by node {e.node} from here" + (f" ({e.reason})" if e.reason else "")


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
    return text + _how_it_ended(e.interrupted, e.output)


def _restart_started(e: RestartStarted) -> str:
    return (
        f"restart started (attempt {e.attempt} in the window, backoff {e.backoff}, "
        f"cooldown {duration(e.cooldown_s)})"
    )


def _restart_finished(e: RestartFinished) -> str:
    text = f"restart {'ok' if e.ok else 'FAILED'} in {millis(e.duration_ms)}"
    if e.exit_code is not None:
        text += f", exit {e.exit_code}"
    return text + _how_it_ended(e.interrupted, e.output)


def _how_it_ended(interrupted: bool, output: str) -> str:
    """The end a repair step's or a restart's outcome shares: interrupted, the output's tail."""
    return (", interrupted" if interrupted else "") + (
        f": {tail(output)}" if output.strip() else ""
    )


def _process_started(e: ProcessStarted) -> str:
    return f"supervised process {e.pid} {'adopted' if e.adopted else 'started'}"


def _process_lost(e: ProcessLost) -> str:
    text = f"supervised process {e.pid} gone" if e.pid is not None else "supervised process gone"
    return text + (f": {tail(e.detail)}" if e.detail else "")


def _process_stopped(e: ProcessStopped) -> str:
    text = "supervised process" + (f" {e.pid}" if e.pid is not None else "") + " stopped by hbsm"
    return text + (f": {tail(e.reason)}" if e.reason else "")


def _service_registered(e: ServiceRegistered) -> str:
    return f"registered {e.probe_kind} {e.target}".rstrip()


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


def _notification(e: Notification) -> str:
    text = f"notification [{e.level}]"
    if e.channel:
        text += f" via {e.channel}"
    if e.message:
        text += f": {tail(e.message, 120)}"
    if not e.delivered:
        text += " (NOT delivered" + (f": {tail(e.error)}" if e.error else "") + ")"
    return text


def _monitor_started(e: MonitorStarted) -> str:
    parts = [f"node {e.node}"] if e.node else []
    parts += [f"pid {e.pid}"] if e.pid else []
    if e.version:
        parts.append(f"version {e.version}")
    if e.host:
        parts.append(f"host {e.host}")
    return "monitor started" + (f" ({', '.join(parts)})" if parts else "")


def _monitor_stopped(e: MonitorStopped) -> str:
    parts = [f"node {e.node}"] if e.node else []
    parts += [f"pid {e.pid}"] if e.pid else []
    text = "monitor stopped" + (f" ({', '.join(parts)})" if parts else "")
    return text + (f": {e.reason}" if e.reason else "")


def _snapshot(e: Snapshot) -> str:
    return f"snapshot: segment {e.segment}, {len(e.services)} services"


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


def _service_removed(e: ServiceRemoved) -> str:
    return e.reason or "no longer monitored"


def _config_reloaded(e: ConfigReloaded) -> str:
    if e.error:
        return f"config reload refused, the running configuration stays: {e.error}"
    parts = []
    changed = [f"{name} ({', '.join(keys)})" for name, keys in e.changed.items()]
    for what, names in (("added", e.added), ("removed", e.removed), ("changed", changed)):
        if names:
            parts.append(f"{what} {', '.join(names)}")
    if e.deferred:
        parts.append(f"{', '.join(e.deferred)} once their repair run ends")
    if e.needs_restart:
        parts.append(f"needs a restart: {', '.join(e.needs_restart)}")
    text = f"config reloaded (version {e.version}, {e.hash})"
    return text + (f": {'; '.join(parts)}" if parts else ": nothing changed")


def _overloaded(e: MonitorOverloaded) -> str:
    return (
        f"monitor overloaded: {e.asked:.0f} probes/s asked, {e.done:.0f}/s done; "
        f"every interval stretched {e.stretch:.2f}x"
    ) + (f" (node {e.node})" if e.node else "")


def _caught_up(e: MonitorCaughtUp) -> str:
    return (
        f"monitor caught up after {e.ts - e.since:.1f} s overloaded "
        f"(intervals stretched up to {e.stretch_max:.2f}x)"
    ) + (f" (node {e.node})" if e.node else "")


def _cert_seen(e: CertSeen) -> str:
    who = f" {tail(e.subject, 60)}" if e.subject else ""
    return (
        f"certificate{who} valid until {iso(e.not_after)} "
        f"(serial {tail(e.serial, 40) or '?'}, sha256 {e.fingerprint[:16]}…)"
    )


def _cert_expiring(e: CertExpiring) -> str:
    when = f"expires in {e.days_left:.1f} days" if e.days_left >= 0 else "has EXPIRED"
    return (
        f"certificate {when} ({iso(e.not_after)}; warned within {e.warn_days:g} days; "
        f"{e.error}: reported, nothing restarted)"
    )


_DESCRIBERS: Final[dict[type, Callable[[Any], str]]] = {
    Probe: _probe,
    Transition: _transition,
    RepairStarted: _repair_started,
    RepairFinished: _repair_finished,
    RestartStarted: _restart_started,
    RestartFinished: _restart_finished,
    ProcessStarted: _process_started,
    ProcessLost: _process_lost,
    ProcessStopped: _process_stopped,
    ServiceRegistered: _service_registered,
    ServiceRemoved: _service_removed,
    ConfigReloaded: _config_reloaded,
    ProbeSeen: _probe_seen,
    ServiceOwned: _service_owned,
    CertSeen: _cert_seen,
    CertExpiring: _cert_expiring,
    Admin: _admin,
    Notification: _notification,
    MonitorStarted: _monitor_started,
    MonitorStopped: _monitor_stopped,
    Snapshot: _snapshot,
    LogRecovered: _log_recovered,
    LogOutage: _log_outage,
    MonitorOverloaded: _overloaded,
    MonitorCaughtUp: _caught_up,
}

"""What to notify and when: incidents, dedupe and the rate limit. Pure: no I/O, no clock.

Kinds (only those listed in `NotifyConfig.on` go out):

* ``restart``: a `restart.started` decision. One notice per restart: operators want to know
  about each one. The dedupe key is the decision's own `ts`, not its `attempt`, since `attempt`
  counts the restarts inside the restart window and can repeat within one long incident.
* ``failed``: a transition to `failed`. One per incident (a `repair_now` that fails again
  within the same incident stays quiet).
* ``recovered``: a transition to `healthy` from degraded, repairing, restarting or cooldown
  that closes a known incident which went past degraded (a repair or more). One per incident;
  never from `unknown` (the first probe), never after a blip (degraded and back).
* ``cert_expiring``: a `cert.expiring` decision (a TLS certificate within `cert_warn_days` of
  its end). No incident: the service answers, nothing is repaired. One per certificate (the
  decision itself is recorded once per certificate; the dedupe key is its fingerprint too).
* ``log_unwritable`` / ``log_writable``: not planned here but by the monitor itself, which
  alone knows that its log refuses writes (at most one pair every 5 minutes).
* ``repair_failed``: a `repair.finished` with ok=false during an incident. One per incident:
  the first failed step says the ladder is climbing; the next ones would only repeat it. A step
  cut short by the monitor's own shutdown (`interrupted`) is not a repair failure.

Incidents: an incident of a service opens on the first transition (with none open) into
degraded, repairing, restarting, cooldown or failed, and is named "<service>@<ISO time of that
transition>". It closes on a transition to `healthy` (the recovery) or to `unknown` (a reset,
or a resume after a pause in mid-repair: a human took over, so what follows is a new incident).
A pause keeps it open. A `recovered` without a known open incident is not sent: feed the log
to `remember` on start.

Dedupe: each (incident, kind[, restart ts]) is planned once. Events of a service whose `seq` is
not above the last one seen for it are skipped, so feeding the same log tail twice (to
`remember` and then to `plan`, or to `plan` again) is harmless.

Rate limit: at most `rate_per_hour` notices per service in any rolling hour, measured on the
events' own `ts` (so planning stays deterministic); `rate_per_hour <= 0` means no limit. A
suppressed notice uses up its dedupe key (it is never sent later); the next notice that goes
out for the service says how many were suppressed, in its message and in
``details["suppressed"]`` / ``details["suppressed_kinds"]``. A ``failed`` notice is never
suppressed (it counts toward the limit all the same): it is the one that says a human is needed,
and there is at most one per incident, since only a reset leaves `failed`.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from hbsm.events import (
    CertExpiring,
    Event,
    Notification,
    OpaqueEvent,
    RepairFinished,
    RestartStarted,
    Snapshot,
    Transition,
    type_name,
)
from hbsm.notify.notice import KINDS, LEVELS, Notice, NoticeKind, iso_utc

__all__ = ["HOUR", "NoticePlanner"]

HOUR: Final = 3600.0
# States that mean something is wrong: entering one opens an incident.
_PROBLEM: Final = frozenset({"degraded", "repairing", "restarting", "cooldown", "failed"})
_RECOVERED_FROM: Final = frozenset({"degraded", "repairing", "restarting", "cooldown"})
# Kinds the rate limit never holds back. Fix (tests/reliability): a service flapping for an
# hour spent the rate on restart notices, and the notice that it had given up and needed a human
# was suppressed; nothing followed it to report the suppression, so giving up went unannounced
# (docs/architecture.md: past the restart budget the service is failed, loudly).
_NEVER_SUPPRESSED: Final = frozenset({"failed"})
# How much of a repair step's output a notice carries.
_OUTPUT_TAIL: Final = 500

_Key = tuple[Any, ...]


@dataclass(slots=True)
class _Track:
    """What the planner knows of one service."""

    incident: str | None = None
    incident_ts: float = 0.0
    # Dedupe keys already planned within the open incident.
    keys: set[_Key] = field(default_factory=set)
    # The open incident went past degraded (a repair, a restart, a cooldown or failed).
    escalated: bool = False
    # Times of the notices that went out in the last hour, oldest first.
    sent: deque[float] = field(default_factory=deque)
    suppressed: Counter[str] = field(default_factory=Counter)
    last_seq: int = 0
    # remember(): one notice's Notification events (one per channel, sharing message and ts)
    # count once.
    last_notification: tuple[str, float] | None = None
    # Certificates reported (their fingerprints): outside incidents, kept across them.
    certs: set[str] = field(default_factory=set)


class NoticePlanner:
    """Turns appended events into notices; the pure half of `Notifier`."""

    def __init__(self, on: Iterable[str] = KINDS, rate_per_hour: int = 20) -> None:
        self.on = frozenset(on)
        self.rate_per_hour = rate_per_hour
        self._tracks: dict[str, _Track] = {}

    def open_incident(self, service: str) -> str | None:
        """The incident of `service` in progress, if any."""
        track = self._tracks.get(service)
        return track.incident if track else None

    def plan(self, events: Sequence[Event | OpaqueEvent]) -> list[Notice]:
        """The notices these just-appended events call for, after dedupe and rate limit."""
        out: list[Notice] = []
        for event in events:
            notice = self._step(event, live=True)
            if notice is not None:
                out.append(notice)
        return out

    def remember(self, event: Event | OpaqueEvent) -> None:
        """Learn from history without notifying: incidents, what was already notified, and the
        notices (Notification events) that count toward the rate limit."""
        if isinstance(event, Snapshot):
            self._remember_snapshot(event)
        else:
            self._step(event, live=False)

    # --- internals ------------------------------------------------------------------------

    def _step(self, event: Event | OpaqueEvent, *, live: bool) -> Notice | None:
        if not isinstance(
            event, Transition | RestartStarted | RepairFinished | Notification | CertExpiring
        ):
            return None
        service = event.service
        if service is None:
            return None
        track = self._tracks.get(service)
        if track is None:
            track = self._tracks[service] = _Track()
        if event.seq:
            if event.seq <= track.last_seq:
                return None  # seen already
            track.last_seq = event.seq
        if isinstance(event, Notification):
            if not live:
                self._count_sent(track, event)
            return None  # plan() counted its own notices when it made them
        if isinstance(event, CertExpiring):
            return self._cert_notice(track, service, event, live=live)
        found = self._observe(track, service, event)
        if found is None:
            return None
        notice, key = found
        if key is not None:
            if key in track.keys:
                return None
            track.keys.add(key)
        if not live or notice.kind not in self.on:
            return None
        return self._rate_limit(track, notice)

    def _cert_notice(
        self, t: _Track, service: str, e: CertExpiring, *, live: bool
    ) -> Notice | None:
        if e.fingerprint in t.certs:
            return None
        t.certs.add(e.fingerprint)
        if not live or "cert_expiring" not in self.on:
            return None
        when = f"expires in {e.days_left:.1f} days" if e.days_left >= 0 else "has expired"
        notice = Notice(
            service=service,
            kind="cert_expiring",
            incident=f"{service}@cert:{e.fingerprint[:16]}",
            level=LEVELS["cert_expiring"],
            message=(
                f"{service}: its TLS certificate {when} (not after {iso_utc(e.not_after)}); "
                "renew it: hbsm restarts nothing for this"
            ),
            ts=e.ts,
            details={
                "event": type_name(e),
                "seq": e.seq,
                "error": e.error,
                "fingerprint": e.fingerprint,
                "not_after": iso_utc(e.not_after),
                "days_left": e.days_left,
                "warn_days": e.warn_days,
            },
        )
        return self._rate_limit(t, notice)

    def _observe(
        self, t: _Track, service: str, e: Transition | RestartStarted | RepairFinished
    ) -> tuple[Notice, _Key | None] | None:
        """Update the incident state; the notice the event calls for and its dedupe key."""
        if isinstance(e, Transition):
            return self._observe_transition(t, service, e)
        if isinstance(e, RestartStarted):
            if t.incident is None:
                self._open(t, service, e.ts)
            number = 1 + sum(1 for key in t.keys if key[0] == "restart")
            cooldown = f"; cooldown {_duration(e.cooldown_s)} after it" if e.cooldown_s else ""
            details: dict[str, Any] = {
                "attempt": e.attempt,
                "restart": number,
                "backoff": e.backoff,
                "cooldown_s": e.cooldown_s,
            }
            message = (
                f"{service} is being restarted (restart {number} of this incident, "
                f"attempt {e.attempt} in the restart window{cooldown})"
            )
            return self._notice(t, service, "restart", e, message, details), ("restart", e.ts)
        if e.ok or e.interrupted or t.incident is None:
            return None  # a late outcome after the incident ended tells nobody anything
        output = e.output[-_OUTPUT_TAIL:]
        last_line = output.strip().splitlines()[-1] if output.strip() else ""
        details = {
            "step": e.step,
            "run": e.run,
            "index": e.index,
            "error_class": e.error_class,
            "duration_ms": e.duration_ms,
            "output": output,
        }
        message = f"{service}: repair step {e.step!r} failed" + (
            f": {last_line}" if last_line else ""
        )
        return self._notice(t, service, "repair_failed", e, message, details), ("repair_failed",)

    def _observe_transition(
        self, t: _Track, service: str, e: Transition
    ) -> tuple[Notice, _Key | None] | None:
        details: dict[str, Any] = {
            "src": e.src,
            "dst": e.dst,
            "trigger": e.trigger,
            "reason": e.reason,
            "failures": e.failures,
        }
        if e.dst == "healthy":
            if t.incident is None:
                return None
            found = None
            # A blip (degraded and back without a repair) closes silently: nothing was wrong
            # enough to act on, so its end is no news either.
            if e.src in _RECOVERED_FROM and t.escalated:
                took = max(0.0, e.ts - t.incident_ts)
                details["duration_s"] = took
                message = f"{service} recovered after {_duration(took)} ({e.src} -> healthy)"
                found = self._notice(t, service, "recovered", e, message, details), None
            self._close(t)  # an incident closes once: its recovery needs no dedupe key
            return found
        if e.dst == "unknown":
            self._close(t)
            return None
        if e.dst in _PROBLEM and t.incident is None:
            self._open(t, service, e.ts)
        if e.dst in _PROBLEM and e.dst != "degraded":
            t.escalated = True
        if e.dst == "failed":
            reason = f": {e.reason}" if e.reason else ""
            message = f"{service} FAILED and needs a human reset{reason}"
            return self._notice(t, service, "failed", e, message, details), ("failed",)
        return None

    def _notice(
        self,
        t: _Track,
        service: str,
        kind: NoticeKind,
        event: Event,
        message: str,
        details: dict[str, Any],
    ) -> Notice:
        assert t.incident is not None  # every notice belongs to an incident
        details = {
            **details,
            "event": type_name(event),
            "seq": event.seq,
            "incident_started": iso_utc(t.incident_ts),
        }
        return Notice(
            service=service,
            kind=kind,
            incident=t.incident,
            level=LEVELS[kind],
            message=message,
            ts=event.ts,
            details=details,
        )

    @staticmethod
    def _open(t: _Track, service: str, ts: float) -> None:
        t.incident = f"{service}@{iso_utc(ts)}"
        t.incident_ts = ts
        t.keys.clear()
        t.escalated = False

    @staticmethod
    def _close(t: _Track) -> None:
        t.incident = None
        t.keys.clear()

    def _rate_limit(self, t: _Track, notice: Notice) -> Notice | None:
        _forget_before(t.sent, notice.ts - HOUR)
        limited = self.rate_per_hour > 0 and notice.kind not in _NEVER_SUPPRESSED
        if limited and len(t.sent) >= self.rate_per_hour:
            t.suppressed[notice.kind] += 1
            return None
        t.sent.append(notice.ts)
        if not t.suppressed:
            return notice
        count = t.suppressed.total()
        details = {
            **notice.details,
            "suppressed": count,
            "suppressed_kinds": dict(t.suppressed),
        }
        t.suppressed.clear()
        plural = "notice was" if count == 1 else "notices were"
        message = f"{notice.message} ({count} earlier {plural} suppressed by the rate limit)"
        return replace(notice, message=message, details=details)

    def _count_sent(self, t: _Track, e: Notification) -> None:
        # A notice yields one Notification per channel, with one ts: count it once.
        if (e.message, e.ts) == t.last_notification:
            return
        t.last_notification = (e.message, e.ts)
        _forget_before(t.sent, e.ts - HOUR)
        t.sent.append(e.ts)

    def _remember_snapshot(self, snap: Snapshot) -> None:
        """A log segment opens with a snapshot: an incident begun in an earlier segment shows
        only as the state a service is in. Its start is approximated by the state's `since`."""
        for view in snap.services:
            fsm = view.fsm
            state = fsm.paused_from if fsm.state == "paused" else fsm.state
            track = self._tracks.setdefault(view.name, _Track())
            if track.incident is None and state in _PROBLEM:
                self._open(track, view.name, fsm.since)
                track.escalated = state != "degraded"
                if state == "failed":
                    track.keys.add(("failed",))


def _forget_before(sent: deque[float], horizon: float) -> None:
    while sent and sent[0] <= horizon:
        sent.popleft()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 120:
        return f"{minutes:.0f} min"
    hours, rest = divmod(int(minutes), 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"

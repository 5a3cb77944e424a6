"""Incidents, time to detect and time to recovery, from the recorded decisions.

An incident runs from the first failed probe after a service was healthy (or unknown), or from
a supervised process found gone at start-up (process.lost), to its next transition to healthy.
The FSM answers either fact with a transition stamped with the fact's own `ts` (healthy/unknown
-> degraded, straight to repairing, or to restarting or cooldown for a lost process), so incidents
are found from transitions alone and probes need not be looked at: the tracker holds only the
few non-probe events. Time to detect is from the first failure to the transition into
repairing; an incident still open at the end of the history is reported as ongoing, with its
duration so far. MTTR per service is the mean duration of its closed incidents.

Durations are measured in elapsed time (hbsm.replay.clock): whoever feeds the tracker sets
`offset`, the sum of the clock's backward steps so far, so a clock stepped back mid-incident
makes no negative duration. A hole in the history (events missing where a segment was deleted,
read across with --skip-bad) is said with `hole()`: an incident open across it is marked; if
the snapshot that opens the next segment shows the service recovered, the incident ends when
the snapshot says the service got there, and it is left out of MTTR (not seen whole).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from hbsm._format import iso
from hbsm.events import (
    Event,
    OpaqueEvent,
    RepairStarted,
    RestartStarted,
    ServiceRegistered,
    Snapshot,
    Transition,
)
from hbsm.replay.window import Window

__all__ = ["SICK", "Incident", "IncidentTracker", "ServiceTally", "mean"]

# States that mean something is wrong (paused and unknown say nothing either way).
SICK = frozenset({"degraded", "repairing", "restarting", "cooldown", "failed"})
_SEVERITY = {"degraded": 1, "repairing": 2, "cooldown": 3, "restarting": 3, "failed": 4}


class Incident(msgspec.Struct, kw_only=True):
    service: str
    start: float
    start_time: str
    start_seq: int
    end: float | None = None
    end_time: str | None = None
    end_seq: int | None = None
    # To recovery; for an ongoing incident, so far (to the last event of the history).
    duration_s: float = 0.0
    ongoing: bool = False
    # First failure to the transition into repairing (None: no repair, or began before the log).
    detect_s: float | None = None
    repairs: int = 0
    restarts: int = 0
    worst: str = "degraded"  # the most severe state it reached
    state: str = "degraded"  # healthy once recovered; the current state while ongoing
    reason: str = ""  # why it began (the opening transition's reason)
    # Began before the replayed history (e.g. older segments pruned): start is when the service
    # entered the state the history first shows it in, so the duration is a lower bound and
    # the time to detect unknown.
    partial: bool = False
    # Open across a hole in the history (--skip-bad): what happened in it is unknown; if it
    # ended there, `end` is when the snapshot after the hole says the service recovered and
    # `end_seq` is None. Left out of MTTR.
    hole: bool = False
    # How far the clock went back during it: the duration counts those steps as no time.
    clock_back_s: float = 0.0


class ServiceTally(msgspec.Struct, kw_only=True):
    service: str
    state: str
    since: float | None
    incidents: int  # reported (in the window), closed and ongoing
    closed: int
    mttr_s: float | None  # mean time to recovery over the closed incidents
    mttd_s: float | None  # mean time to detect over the incidents that reached repairing
    repairs: int  # repair runs started inside the window
    restarts: int  # restarts started inside the window


@dataclass(slots=True)
class _Open:
    start: float
    start_seq: int
    reason: str
    partial: bool
    worst: str
    start_offset: float = 0.0  # the clock's offset at the start (elapsed = ts + offset)
    detect_s: float | None = None
    repairs: int = 0
    restarts: int = 0
    hole: bool = False


def mean(values: Iterable[float]) -> float | None:
    items = list(values)
    return sum(items) / len(items) if items else None


class IncidentTracker:
    """Feed it every non-probe event in order (probes are ignored); ask for incidents at the end.

    Every service is tracked from the start of the history, whatever the window; only what
    `window` wants is kept, so memory holds the reported incidents and one state per service.
    """

    def __init__(self, window: Window | None = None) -> None:
        self.window = window or Window()
        self.states: dict[str, str] = {}
        self.since: dict[str, float] = {}
        self.last_ts: float | None = None
        # The clock's backward steps so far, at the event being fed (see the module doc), and
        # at the last event of the history.
        self.offset = 0.0
        self.last_offset = 0.0
        self._after_hole = False
        self._open: dict[str, _Open] = {}
        self._closed: list[Incident] = []
        self._repairs: dict[str, int] = {}
        self._restarts: dict[str, int] = {}

    # --- folding --------------------------------------------------------------------------

    def feed(self, event: Event | OpaqueEvent) -> None:
        self.last_ts = event.ts
        if isinstance(event, Transition):
            self._on_transition(event)
        elif isinstance(event, RepairStarted):
            self._on_repair(event)
        elif isinstance(event, RestartStarted):
            self._on_restart(event)
        elif isinstance(event, ServiceRegistered):
            self.states.setdefault(event.service, "unknown")
        elif isinstance(event, Snapshot):
            after_hole, self._after_hole = self._after_hole, False
            for view in event.services:
                if after_hole:
                    self._resume(view.name, view.fsm.state, view.fsm.since, event.seq)
                else:
                    self.seed(view.name, view.fsm.state, view.fsm.since, event.seq)

    def seed(self, service: str, state: str, since: float, seq: int) -> None:
        """Where a service stands when the history first shows it whole (a snapshot). A
        service already tracked keeps what the events said."""
        if service in self.states:
            return
        self.states[service] = state
        self.since[service] = since
        if state in SICK:
            self._open[service] = _Open(
                start=since, start_seq=seq, reason=f"{state} before the replayed history",
                partial=True, worst=state, start_offset=self.offset,
            )  # fmt: skip

    def hole(self) -> None:
        """Events are missing here: every open incident spans the hole, and the next snapshot
        (the one opening the segment after it) says where each service got to."""
        for inc in self._open.values():
            inc.hole = True
        self._after_hole = True

    def _resume(self, service: str, state: str, since: float, seq: int) -> None:
        # Fix (tests/reliability): after a hole the old state was kept over the snapshot's, so
        # an incident whose recovery was in the hole stayed "ongoing" for a healthy service.
        if service not in self.states:
            self.seed(service, state, since, seq)
            return
        self.states[service] = state
        self.since[service] = since
        inc = self._open.get(service)
        if inc is not None and state not in SICK:
            del self._open[service]  # recovered inside the hole, at `since`
            end = max(since, inc.start)
            if self.window.wants(service) and self.window.overlaps(inc.start, end):
                self._closed.append(
                    self._incident(service, inc, end=None, state=state, ended=(end, None))
                )
        elif inc is None and state in SICK:
            # Began inside the hole: from when the snapshot says the service got there.
            self._open[service] = _Open(
                start=since, start_seq=seq, reason=f"{state} (began in a hole in the history)",
                partial=True, worst=state, start_offset=self.offset, hole=True,
            )  # fmt: skip

    def _on_transition(self, e: Transition) -> None:
        name, dst = e.service, e.dst
        known = name in self.states
        self.states[name] = dst
        self.since[name] = e.ts
        inc = self._open.get(name)
        if inc is None:
            if dst not in SICK:
                return
            # A failed probe opens one, and so does a supervised process found gone at start-up.
            opening = e.trigger in ("probe_failed", "process_lost")
            began_here = opening and e.src in ("healthy", "unknown")
            if opening or (not known and e.src in SICK):
                # Seen first mid-incident: it began before the replayed history.
                partial = not known and not began_here
                inc = self._open[name] = _Open(
                    start=e.ts, start_seq=e.seq, reason=e.reason, partial=partial, worst=dst,
                    start_offset=self.offset,
                )  # fmt: skip
            else:
                return  # e.g. an operator's repair_now on a healthy service: no incident
        if _SEVERITY.get(dst, 0) > _SEVERITY.get(inc.worst, 0):
            inc.worst = dst
        if dst == "repairing" and inc.detect_s is None and not (inc.partial or inc.hole):
            inc.detect_s = _elapsed(e.ts, self.offset, inc)
        elif dst == "healthy":
            del self._open[name]
            if self.window.wants(name) and self.window.overlaps(inc.start, e.ts):
                self._closed.append(self._incident(name, inc, end=e, state=dst))

    def _on_repair(self, e: RepairStarted) -> None:
        if e.index != 0:
            return  # a run counts once, at its first step
        inc = self._open.get(e.service)
        if inc is not None:
            inc.repairs += 1
        if self.window.wants(e.service) and self.window.contains(e.ts):
            self._repairs[e.service] = self._repairs.get(e.service, 0) + 1

    def _on_restart(self, e: RestartStarted) -> None:
        inc = self._open.get(e.service)
        if inc is not None:
            inc.restarts += 1
        if self.window.wants(e.service) and self.window.contains(e.ts):
            self._restarts[e.service] = self._restarts.get(e.service, 0) + 1

    # --- results --------------------------------------------------------------------------

    def _incident(
        self,
        name: str,
        inc: _Open,
        *,
        end: Transition | None,
        state: str,
        ended: tuple[float, int | None] | None = None,
    ) -> Incident:
        """`end`: the transition that closed it; `ended`: (ts, seq) where it closed otherwise
        (in a hole); neither: still open."""
        if end is not None:
            ended = (end.ts, end.seq)
        if ended is not None:
            stop, offset = ended[0], self.offset
        else:
            stop, offset = max(self.last_ts or inc.start, inc.start), self.last_offset
        return Incident(
            service=name,
            start=inc.start,
            start_time=iso(inc.start),
            start_seq=inc.start_seq,
            end=ended[0] if ended is not None else None,
            end_time=iso(ended[0]) if ended is not None else None,
            end_seq=ended[1] if ended is not None else None,
            duration_s=_elapsed(stop, offset, inc),
            ongoing=ended is None,
            detect_s=inc.detect_s,
            repairs=inc.repairs,
            restarts=inc.restarts,
            worst=inc.worst,
            state=state,
            reason=inc.reason,
            partial=inc.partial,
            hole=inc.hole,
            clock_back_s=offset - inc.start_offset,
        )

    def incidents(self) -> list[Incident]:
        """Reported incidents, closed and ongoing, by start time."""
        out = list(self._closed)
        for name, inc in self._open.items():
            if self.window.wants(name) and self.window.overlaps(inc.start, None):
                out.append(self._incident(name, inc, end=None, state=self.states[name]))
        out.sort(key=lambda i: (i.start, i.service))
        return out

    def tallies(
        self, services: Iterable[str], incidents: list[Incident] | None = None
    ) -> list[ServiceTally]:
        """Per service (in the order given, the window's only): counts, MTTR and MTTD."""
        found = self.incidents() if incidents is None else incidents
        out = []
        for name in services:
            if not self.window.wants(name):
                continue
            mine = [i for i in found if i.service == name]
            closed = [i.duration_s for i in mine if not i.ongoing and not i.hole]
            out.append(
                ServiceTally(
                    service=name,
                    state=self.states.get(name, "unknown"),
                    since=self.since.get(name),
                    incidents=len(mine),
                    closed=sum(1 for i in mine if not i.ongoing),
                    mttr_s=mean(closed),
                    mttd_s=mean(i.detect_s for i in mine if i.detect_s is not None),
                    repairs=self._repairs.get(name, 0),
                    restarts=self._restarts.get(name, 0),
                )
            )
        return out


def _elapsed(ts: float, offset: float, inc: _Open) -> float:
    """From the incident's start to `ts` (with the clock's `offset` at it), in elapsed time:
    never negative, whatever the clock did."""
    return max(0.0, (ts + offset) - (inc.start + inc.start_offset))

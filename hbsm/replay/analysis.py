"""The plain replay: fold a history batch by batch into the projection, a timeline and the
incidents, and count what went by.

The projection folds every event through `Projection.apply_all` (the fast path: no FSM, no
`transitions`); the timeline and the incident tracker look only at the non-probe events, so
memory grows with transitions and repairs, never with probes. With `detail=False` (`--stats`)
only the fold and the counts run, and memory stays bounded however long the history.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import msgspec

from hbsm._format import iso
from hbsm.events import TYPE_NAMES, Event, OpaqueEvent, Probe
from hbsm.log.errors import SeqHole
from hbsm.projection import Projection
from hbsm.replay.clock import ClockStep, ClockWatch
from hbsm.replay.incidents import Incident, IncidentTracker, ServiceTally, mean
from hbsm.replay.timeline import TimelineEntry, entry
from hbsm.replay.window import Window

__all__ = ["Analysis", "Hole", "ReplayReport", "StatsReport", "TornLine", "Totals"]


class TornLine(msgspec.Struct):
    path: str
    offset: int
    cut_bytes: int


class Hole(msgspec.Struct, kw_only=True):
    """Events first_seq..last_seq are missing before line `line` of `path` (read across with
    --skip-bad); `after` is the file whose last event precedes them."""

    path: str
    line: int
    first_seq: int
    last_seq: int
    after: str
    message: str

    @classmethod
    def of(cls, hole: SeqHole) -> Hole:
        return cls(
            path=str(hole.path), line=hole.line, first_seq=hole.first, last_seq=hole.last,
            after=str(hole.after), message=hole.describe(),
        )  # fmt: skip


class Totals(msgspec.Struct, kw_only=True):
    incidents: int
    closed: int
    ongoing: int
    mttr_s: float | None
    mttd_s: float | None
    repairs: int
    restarts: int


class ReplayReport(msgspec.Struct, kw_only=True):
    files: list[str]
    events: int
    skipped: int
    torn: list[TornLine]
    first_seq: int | None
    last_seq: int | None
    first_time: str | None
    last_time: str | None
    since: str | None
    until: str | None
    services_filter: list[str]
    timeline: list[TimelineEntry]
    incidents: list[Incident]
    services: list[ServiceTally]
    totals: Totals
    # Damage read across (--skip-bad) and a clock that went back: `clock_steps` holds the first
    # 100 steps back of a second or more, `clock_steps_total` counts them all.
    holes: list[Hole] = []
    clock_steps: list[ClockStep] = []
    clock_steps_total: int = 0


class StatsReport(msgspec.Struct, kw_only=True):
    files: list[str]
    events: int
    seconds: float
    events_per_s: float
    skipped: int
    torn: list[TornLine]
    segments: int
    counts: dict[str, int]  # per event type, most frequent first
    states: dict[str, int]  # services by final state
    services: int
    holes: list[Hole] = []
    clock_steps: list[ClockStep] = []
    clock_steps_total: int = 0


class Analysis:
    """Feed it batches of a history in order; then ask for `report()` or `stats(...)`."""

    def __init__(self, window: Window | None = None, *, detail: bool = True) -> None:
        self.window = window or Window()
        self.detail = detail
        self.projection = Projection()
        self.tracker = IncidentTracker(self.window)
        self.clock = ClockWatch()
        self.holes: list[Hole] = []
        self.timeline: list[TimelineEntry] = []
        self.events = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self._classes: Counter[type] = Counter()
        self._opaque: Counter[str] = Counter()

    def feed(self, batch: Sequence[Event | OpaqueEvent]) -> None:
        if not batch:
            return
        self.projection.apply_all(batch)
        offsets = self.clock.feed(batch)
        classes = Counter(map(type, batch))
        self._classes.update(classes)
        if OpaqueEvent in classes:
            self._opaque.update(e.type for e in batch if isinstance(e, OpaqueEvent))
        self.events += len(batch)
        if self.first_seq is None:
            self.first_seq, self.first_ts = batch[0].seq, batch[0].ts
        self.last_seq, self.last_ts = batch[-1].seq, batch[-1].ts
        if not self.detail or classes.get(Probe, 0) == len(batch):
            return
        window, tracker, timeline = self.window, self.tracker, self.timeline
        tracker.offset = self.clock.offset
        for index, event in enumerate(batch):
            if type(event) is Probe:
                continue
            if offsets is not None:
                tracker.offset = offsets[index]
            tracker.feed(event)
            item = entry(event)
            if item is not None and window.wants(item.service) and window.contains(item.ts):
                timeline.append(item)

    def hole(self, hole: SeqHole) -> None:
        """Events are missing before the next batch (the reader went on across a hole)."""
        self.holes.append(Hole.of(hole))
        self.tracker.hole()

    # --- results --------------------------------------------------------------------------

    @property
    def services(self) -> list[str]:
        return sorted(self.projection.services)

    def counts(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for cls, n in self._classes.items():
            if cls is not OpaqueEvent:
                out[TYPE_NAMES.get(cls, cls.__name__)] += n
        out.update(self._opaque)
        return dict(out.most_common())

    def report(
        self, files: list[str], *, skipped: int = 0, torn: list[TornLine] | None = None
    ) -> ReplayReport:
        self.tracker.last_ts = self.last_ts
        self.tracker.last_offset = self.clock.offset
        incidents = self.tracker.incidents()
        tallies = self.tracker.tallies(self.services, incidents)
        views = self.projection.services
        for tally in tallies:  # the projection knows services that never changed state too
            view = views.get(tally.service)
            if view is not None:
                tally.state, tally.since = view.fsm.state, view.fsm.since or None
        closed = [i for i in incidents if not i.ongoing]
        whole = [i for i in closed if not i.hole]  # MTTR: only incidents seen from end to end
        w = self.window
        return ReplayReport(
            files=files,
            events=self.events,
            skipped=skipped,
            torn=torn or [],
            first_seq=self.first_seq,
            last_seq=self.last_seq,
            first_time=iso(self.first_ts) if self.first_ts is not None else None,
            last_time=iso(self.last_ts) if self.last_ts is not None else None,
            since=iso(w.since) if w.since is not None else None,
            until=iso(w.until) if w.until is not None else None,
            services_filter=sorted(w.services),
            timeline=self.timeline,
            incidents=incidents,
            services=tallies,
            totals=Totals(
                incidents=len(incidents),
                closed=len(closed),
                ongoing=len(incidents) - len(closed),
                mttr_s=mean(i.duration_s for i in whole),
                mttd_s=mean(i.detect_s for i in incidents if i.detect_s is not None),
                repairs=sum(t.repairs for t in tallies),
                restarts=sum(t.restarts for t in tallies),
            ),
            holes=self.holes,
            clock_steps=self.clock.steps,
            clock_steps_total=self.clock.named,
        )

    def stats(
        self,
        files: list[str],
        seconds: float,
        *,
        skipped: int = 0,
        torn: list[TornLine] | None = None,
        segments: int = 0,
    ) -> StatsReport:
        states = self.projection.by_state()
        return StatsReport(
            files=files,
            events=self.events,
            seconds=seconds,
            events_per_s=self.events / seconds if seconds > 0 else 0.0,
            skipped=skipped,
            torn=torn or [],
            segments=segments,
            counts=self.counts(),
            states=dict(sorted(states.items(), key=lambda kv: (-kv[1], kv[0]))),
            services=len(self.projection.services),
            holes=self.holes,
            clock_steps=self.clock.steps,
            clock_steps_total=self.clock.named,
        )

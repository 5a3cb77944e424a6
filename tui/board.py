"""What the views read, whatever the source: the projection, "now", the feed, a service's history.

`LiveBoard` folds the batches a source delivers; its "now" is the wall clock. `ReplayBoard` holds
a recorded history and a cursor into it; its "now" is the cursor event's `ts`, so countdowns and
times in state read as they did at that moment. Both fold with `hbsm.projection.Projection`
(never the monitor's private state). No Textual here: the boards are tested on their own.
"""

from __future__ import annotations

import bisect
import copy
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Final

from hbsm.events import (
    Admin,
    Event,
    Notification,
    OpaqueEvent,
    Probe,
    ProcessLost,
    ProcessStarted,
    ProcessStopped,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    Snapshot,
    Transition,
)
from hbsm.log import ReadStats, read_blocks
from hbsm.projection import Projection
from hbsm.replay.clock import ClockWatch
from tui.damage import damage_notes

__all__ = [
    "FEED_FILTERS",
    "AnyEvent",
    "Board",
    "LiveBoard",
    "ReplayBoard",
    "service_of",
]

AnyEvent = Event | OpaqueEvent

# Per service, the events its screen shows (everything but successful probes), bounded.
NOTABLE_KEEP: Final = 500
FEED_KEEP: Final = 400
# Replay: a projection kept every this many events, so a seek folds at most this many.
CHECKPOINT_EVERY: Final = 2000
# events/s is measured over this window (seconds of event time in replay, wall time live).
RATE_WINDOW: Final = 10.0

_REPAIRS = (
    RepairStarted, RepairFinished, RestartStarted, RestartFinished, ProcessStarted, ProcessLost,
    ProcessStopped,
)  # fmt: skip


def service_of(event: AnyEvent) -> str | None:
    name = getattr(event, "service", None)
    return name if isinstance(name, str) else None


def is_notable(event: AnyEvent) -> bool:
    return not (isinstance(event, Probe) and event.ok and event.error is None)


# The feed's kind filters, cycled with `f`: (label, predicate).
FEED_FILTERS: Final[tuple[tuple[str, Callable[[AnyEvent], bool]], ...]] = (
    ("notable", is_notable),
    ("transitions", lambda e: isinstance(e, Transition)),
    ("repairs", lambda e: isinstance(e, _REPAIRS)),
    ("probes", lambda e: isinstance(e, Probe)),
    ("admin", lambda e: isinstance(e, Admin | Notification)),
    ("all", lambda e: True),
)


class Board:
    """The interface the widgets read."""

    label: str = ""
    projection: Projection

    def now(self) -> float:
        raise NotImplementedError

    def rate(self) -> float:
        """Events per second, lately."""
        raise NotImplementedError

    def feed(self, kind: int = 0, name_filter: str = "", limit: int = 200) -> list[AnyEvent]:
        """The latest events, newest first, of the kind FEED_FILTERS[kind] and, when
        `name_filter` is set, of services whose name contains it."""
        raise NotImplementedError

    def notable(self, service: str) -> Sequence[AnyEvent]:
        """The service's events but successful probes, oldest first (bounded)."""
        raise NotImplementedError


def _select(events: Iterable[AnyEvent], kind: int, name_filter: str, limit: int) -> list[AnyEvent]:
    keep = FEED_FILTERS[kind % len(FEED_FILTERS)][1]
    out: list[AnyEvent] = []
    for e in events:
        if not keep(e):
            continue
        if name_filter:
            name = service_of(e)
            if name is None or name_filter not in name:
                continue
        out.append(e)
        if len(out) >= limit:
            break
    return out


class LiveBoard(Board):
    """Folds what a live source delivers. `apply` returns the services whose view changed."""

    def __init__(self, label: str, clock: Callable[[], float] = time.time) -> None:
        self.label = label
        self.projection = Projection()
        self._clock = clock
        self._notable: dict[str, deque[AnyEvent]] = {}
        self._feed_all: deque[AnyEvent] = deque(maxlen=FEED_KEEP)
        self._feed_notable: deque[AnyEvent] = deque(maxlen=FEED_KEEP)
        self._arrivals: deque[tuple[float, int]] = deque()

    def now(self) -> float:
        return self._clock()

    def apply(self, events: list[AnyEvent]) -> set[str]:
        self.projection.apply_all(events)
        changed: set[str] = set()
        notable = self._notable
        for e in events:
            name = service_of(e)
            if name is not None:
                changed.add(name)
            if is_notable(e):
                self._feed_notable.append(e)
                if name is not None:
                    kept = notable.get(name)
                    if kept is None:
                        kept = notable[name] = deque(maxlen=NOTABLE_KEEP)
                    kept.append(e)
        # Only the newest FEED_KEEP can show: skip the rest of a big batch.
        self._feed_all.extend(events[-FEED_KEEP:])
        if any(isinstance(e, Snapshot) for e in events):
            changed.update(self.projection.services)
        wall = time.monotonic()
        self._arrivals.append((wall, len(events)))
        return changed

    def rate(self) -> float:
        wall = time.monotonic()
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] < wall - RATE_WINDOW:
            arrivals.popleft()
        if not arrivals:
            return 0.0
        return sum(n for _, n in arrivals) / RATE_WINDOW

    def feed(self, kind: int = 0, name_filter: str = "", limit: int = 200) -> list[AnyEvent]:
        source = self._feed_notable if kind == 0 else self._feed_all
        return _select(reversed(source), kind, name_filter, limit)

    def notable(self, service: str) -> Sequence[AnyEvent]:
        return list(self._notable.get(service, ()))


class ReplayBoard(Board):
    """A recorded history and a cursor (an index into it): every view as of the cursor."""

    def __init__(self, events: list[AnyEvent], label: str = "") -> None:
        if not events:
            raise ValueError("the history holds no event")
        self.label = label
        self.events = events
        self.ts = [e.ts for e in events]
        # Playing goes by elapsed time (ts plus the clock's steps back so far), which never
        # decreases: after a clock stepped back, playing by ts jumped or stalled at the step.
        clock = ClockWatch()
        offsets = clock.feed(events)
        self.elapsed = (
            self.ts if offsets is None else [t + o for t, o in zip(self.ts, offsets, strict=True)]
        )
        # What the history lacked or got wrong, for the replay notice (see ReplayBoard.load).
        self.notes = damage_notes(ReadStats(), clock.steps, clock.named)
        self._by_service: dict[str, list[int]] = {}
        self.transitions: list[int] = []
        checkpoints: list[Projection] = []
        folding = Projection()
        for i, e in enumerate(events):
            if i % CHECKPOINT_EVERY == 0:
                checkpoints.append(copy.deepcopy(folding))
            folding.apply(e)
            if is_notable(e):
                name = service_of(e)
                if name is not None:
                    self._by_service.setdefault(name, []).append(i)
            if isinstance(e, Transition) and e.src != e.dst:
                self.transitions.append(i)
        self._checkpoints = checkpoints
        # Starts at the end: the state the history ended in; `g` goes back to the start.
        self.cursor = len(events) - 1
        self.projection = folding

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ReplayBoard:
        """Every event of the log at `path` (closed segments first), read past bad lines,
        damaged segments and holes: `notes` says what was read past, and where."""
        events: list[AnyEvent] = []
        stats = ReadStats()
        for block in read_blocks(path, skip_bad=True, stats=stats):
            events.extend(block)
        board = cls(events, label=str(Path(path)))
        # Fix (tests/reliability): all of it was read past without a word, on a log that
        # `hbsm replay` refuses with exit 2.
        board.notes = damage_notes(stats, [], 0) + board.notes
        return board

    # --- the cursor ------------------------------------------------------------------------

    @property
    def event(self) -> AnyEvent:
        return self.events[self.cursor]

    def now(self) -> float:
        return self.ts[self.cursor]

    def seek(self, index: int) -> set[str]:
        """Move the cursor (clamped); returns the services whose view may have changed."""
        index = max(0, min(len(self.events) - 1, index))
        old = self.cursor
        if index == old:
            return set()
        lo, hi = min(old, index), max(old, index)
        if index > old and index - old <= CHECKPOINT_EVERY:
            self.projection.apply_all(self.events[old + 1 : index + 1])
        else:
            k = index // CHECKPOINT_EVERY
            projection = copy.deepcopy(self._checkpoints[k])
            projection.apply_all(self.events[k * CHECKPOINT_EVERY : index + 1])
            self.projection = projection
        self.cursor = index
        if hi - lo > CHECKPOINT_EVERY:
            return set(self.projection.services)
        changed = {service_of(e) for e in self.events[lo + 1 : hi + 1]}
        changed.discard(None)
        return changed  # type: ignore[return-value]

    def step(self, by: int) -> set[str]:
        return self.seek(self.cursor + by)

    def next_transition(self) -> int | None:
        i = bisect.bisect_right(self.transitions, self.cursor)
        return self.transitions[i] if i < len(self.transitions) else None

    def previous_transition(self) -> int | None:
        i = bisect.bisect_left(self.transitions, self.cursor)
        return self.transitions[i - 1] if i > 0 else None

    def play_time(self) -> float:
        """The cursor's elapsed time: what playing counts from."""
        return self.elapsed[self.cursor]

    def index_at(self, elapsed: float) -> int:
        """The last event at or before `elapsed` (the first event if none)."""
        return max(0, bisect.bisect_right(self.elapsed, elapsed) - 1)

    # --- what the views read ---------------------------------------------------------------

    def rate(self) -> float:
        now = self.play_time()
        first = bisect.bisect_right(self.elapsed, now - RATE_WINDOW)
        return (self.cursor + 1 - first) / RATE_WINDOW

    def feed(self, kind: int = 0, name_filter: str = "", limit: int = 200) -> list[AnyEvent]:
        # Bounded look-back: a filter that matches nothing must not scan a whole big history.
        start = max(0, self.cursor + 1 - 50 * FEED_KEEP)
        window = self.events[start : self.cursor + 1]
        return _select(reversed(window), kind, name_filter, limit)

    def notable(self, service: str) -> Sequence[AnyEvent]:
        indices = self._by_service.get(service, [])
        end = bisect.bisect_right(indices, self.cursor)
        return [self.events[i] for i in indices[max(0, end - NOTABLE_KEEP) : end]]

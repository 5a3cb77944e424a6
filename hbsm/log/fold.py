"""Following the live log into a projection, with every gap handed back as a value.

The standalone API, the Flask blueprint's `follow_log` and the dashboard all read a log another
process writes and fold it into a `Projection`. What a reader must do when it cannot read
everything is the same for all of them, so it lives here once: a bad line is passed over and
said (file and line); a segment that retention pruned before it was read is skipped to the
oldest segment still kept, whose opening snapshot holds the state the lost events led to, so
the projection is never emptied; and the events missing are named by seq once the next event
read shows where they end. `LogFold.poll()` returns all of that as a `Step`: the caller decides
what to do with it (log it, keep it for a status, show it), and `describe_gap()` words each gap the
same way for every reader.

No I/O here besides reading the log; threads, locks around the projection and messages are the
callers'.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hbsm.events import Event, OpaqueEvent
from hbsm.log.errors import CorruptLineError
from hbsm.log.follower import LogFollower, SegmentPrunedError
from hbsm.projection import Projection

__all__ = [
    "EventsMissing",
    "Gap",
    "LineSkipped",
    "LogFold",
    "SegmentPruned",
    "Step",
    "describe_gap",
]

# A poll that keeps meeting trouble (a run of bad lines, prune after prune) returns after this
# many reads with what it has; the next poll goes on.
MAX_READS_PER_POLL = 100


@dataclass(frozen=True, slots=True)
class LineSkipped:
    """A line (or the rest of a damaged segment) that could not be decoded and was passed over.
    `line` is 1-based in `path` (a closed segment's uncompressed text)."""

    path: Path
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class SegmentPruned:
    """Segment `segment` was gone (pruned by retention, or deleted when `retention` is False)
    before it was read: events `first`..`last` are lost to this reader, which went on at the
    next segment kept (its snapshot, seq `last + 1`). Handed back with that snapshot, the first
    event read after the loss, which is what says where the loss ends."""

    path: Path
    segment: int
    first: int
    last: int
    retention: bool = True


@dataclass(frozen=True, slots=True)
class EventsMissing:
    """Events `first`..`last` never reached this reader for another reason: `why` (a bad line
    skipped, reading interrupted), or empty when the log just does not hold them."""

    path: Path
    first: int
    last: int
    why: str = ""


Gap = LineSkipped | SegmentPruned | EventsMissing


@dataclass(frozen=True, slots=True)
class Step:
    """What one `LogFold.poll()` did: the events read (and folded, in this order), the gaps met,
    and the projection's version after them (None when the fold keeps no projection)."""

    events: list[Event | OpaqueEvent]
    gaps: tuple[Gap, ...]
    version: int | None


def describe_gap(gap: Gap) -> str:
    """The sentence an operator reads about `gap`, in the API's log, the blueprint's status and
    the dashboard alike."""
    if isinstance(gap, LineSkipped):
        return f"skipped a bad line: {os.fspath(gap.path)}, line {gap.line}: {gap.reason}"
    if isinstance(gap, SegmentPruned):
        why = (
            f"segment {gap.segment} was pruned (retention) before it was read"
            if gap.retention
            else f"segment {gap.segment} is missing (deleted by hand, or lost)"
        )
    else:
        why = gap.why or "they are not in the log"
    return (
        f"{os.fspath(gap.path)}: events {gap.first}..{gap.last} were lost to this reader: "
        f"{why}; going on from seq {gap.last + 1}"
    )


class LogFold:
    """Follows the log at `path` from the start of its active segment (its snapshot), or from
    after `after_seq`, and folds every event into `projection` while holding `lock`.

    `projection` None: the events are handed back unfolded, for a caller that folds them
    elsewhere (the dashboard, on its UI thread). `last_seq` is the seq of the last event read
    (0: none yet)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        projection: Projection | None,
        *,
        lock: contextlib.AbstractContextManager[Any] | None = None,
        after_seq: int = 0,
    ) -> None:
        self.path = Path(path)
        self.projection = projection
        self._lock = lock if lock is not None else contextlib.nullcontext()
        self.last_seq = after_seq
        self._follower: LogFollower | None = None  # opened by the first poll
        # What the events after last_seq were lost to, until the next event read says where
        # they end: a pruned segment (number, retention) or a reason.
        self._pruned: SegmentPrunedError | None = None
        self._why = ""

    def poll(self) -> Step:
        """Read one batch (bounded, as LogFollower's poll), fold it, and say what happened.

        Raises what is not a gap (the log cannot be read, say: LogError, OSError); nothing is
        folded by that call, and the next one reads on from the same place."""
        gaps: list[Gap] = []
        events: list[Event | OpaqueEvent] = []
        for _ in range(MAX_READS_PER_POLL):
            if self._follower is None:
                self._follower = LogFollower(self.path, from_start=True, after_seq=self.last_seq)
            try:
                events = self._follower.poll()
            except SegmentPrunedError as exc:
                if self._pruned is None:
                    self._pruned = exc  # the first one needed: the seq range covers the rest
                self._follower.skip_pruned()
                continue
            except CorruptLineError as exc:
                # Passed over by the next poll; the event it held, if any, is missing.
                bad = LineSkipped(Path(exc.path), exc.line, exc.reason)
                gaps.append(bad)
                self._why = self._why or (
                    f"skipped as bad ({os.fspath(bad.path)}, line {bad.line}: {bad.reason})"
                )
                continue
            break
        if events:
            gaps.extend(self._missing(events[0].seq))
            if self.projection is not None:
                with self._lock:
                    self.projection.apply_all(events)
            self.last_seq = events[-1].seq
        version = self.projection.version if self.projection is not None else None
        return Step(events, tuple(gaps), version)

    def _missing(self, first: int) -> list[Gap]:
        pruned, why = self._pruned, self._why
        self._pruned, self._why = None, ""
        if not self.last_seq or first <= self.last_seq + 1:
            return []
        lost = (self.last_seq + 1, first - 1)
        if pruned is not None:
            return [SegmentPruned(self.path, pruned.segment, *lost, retention=pruned.retention)]
        return [EventsMissing(self.path, *lost, why=why)]

    def reopen(self, why: str) -> None:
        """Start reading again (after an error that was not a gap) at the next poll, from the
        active segment's start, skipping what was read already; the projection is kept. Events
        lost meanwhile are reported, with `why`, when the next are read."""
        self.close()
        self._why = self._why or why

    def close(self) -> None:
        if self._follower is not None:
            self._follower.close()
            self._follower = None

    def __enter__(self) -> LogFold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

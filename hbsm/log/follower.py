"""Following a live file log by (segment, byte offset), across rotations.

The follower keeps the active file's descriptor open. When the name starts pointing at another
inode, the writer has renamed the old file away, and every write to it happened before that
rename: reading the old descriptor dry therefore yields everything, and the follower moves on to
the next segment (closed by then, or the new active file), which it identifies by the
`snapshot(segment=N)` line that opens it. Only complete lines are consumed: a partial last line
is read again on the next poll, so a writer that cuts a torn line cannot leave stale bytes here.

A follower that falls more than the retention behind finds its next segment pruned: it raises
SegmentPrunedError (events are lost to it, and it says so) and, if asked to, `skip_pruned()`
goes on at the oldest segment still kept, whose snapshot holds the state the lost events led to.
"""

from __future__ import annotations

import bisect
import os
from operator import attrgetter
from pathlib import Path
from typing import BinaryIO

from hbsm.events import Event, OpaqueEvent
from hbsm.log.blocks import NO_SEQ, BadLine, decode_block
from hbsm.log.errors import CorruptLineError, LogError
from hbsm.log.handles import ActiveFile, ClosedSegmentFile
from hbsm.log.reader import ReadStats
from hbsm.log.scan import (
    complete_end,
    decode_head,
    first_line,
    first_line_at,
    offset_after_seq,
    open_segment,
)
from hbsm.log.segments import closed_segments, gz_segment_path
from hbsm.log.store import Follower, Position

__all__ = ["DEFAULT_POLL_BYTES", "LogFollower", "SegmentPrunedError", "position_after"]

# One poll reads at most about this much, so a follower starting far back returns in bounded
# batches instead of a whole history at once: keep polling until it returns [].
DEFAULT_POLL_BYTES = 16 * 2**20

_seq_of = attrgetter("seq")


class SegmentPrunedError(LogError):
    """The segment a follower needed next was deleted by retention before it was read: the
    events in it (and in any other segment pruned with it) are lost to this follower.
    `last_seq` is the seq of the last event it read (-1: none). Polling again raises again;
    `LogFollower.skip_pruned()` moves on past the loss."""

    def __init__(self, path: Path, segment: int, last_seq: int, retention: bool = True) -> None:
        self.path = path
        self.segment = segment
        self.last_seq = last_seq
        # False: an older segment is still there, so retention (oldest first) did not delete
        # this one: a hole in the middle of the log (deleted by hand, or lost).
        self.retention = retention
        after = f"after seq {last_seq}" if last_seq >= 0 else "from its start"
        why = (
            "was pruned (retention) before the follower read it"
            if retention
            else "is missing, with older segments still there (deleted by hand, or lost)"
        )
        super().__init__(
            f"{path}: segment {segment} {why}; "
            f"the events {after} up to the next segment kept are lost to it"
        )


class LogFollower(Follower):
    """Follows the log at `path`. Start at `start`, else at the beginning of the active segment
    (its snapshot) when `from_start`, else at the end of the active file (new events only).

    Extras beyond the Follower interface: `after_seq` drops events up to that seq (used by
    FileEventLog.follow); `skip_bad` skips and counts bad lines instead of raising
    CorruptLineError; `stats` is filled in as lines are read. A bad line raises once (after the
    good events before it have been returned) and is then passed over.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        start: Position | None = None,
        from_start: bool = True,
        *,
        after_seq: int = 0,
        skip_bad: bool = False,
        stats: ReadStats | None = None,
        max_poll_bytes: int = DEFAULT_POLL_BYTES,
    ) -> None:
        self.path = Path(path)
        self.stats = stats if stats is not None else ReadStats()
        self._skip_bad = skip_bad
        self._budget = max_poll_bytes
        self._drop_upto = after_seq
        self._last_seq = NO_SEQ
        self._handle: ActiveFile | ClosedSegmentFile | None = None
        self._line_base: int | None = 0  # lines before self._offset in the segment, if known
        self._pending: CorruptLineError | None = None
        self._closed = False
        self._placed = start is not None
        self._from_start = from_start
        self._segment, self._offset = start if start is not None else Position(0, 0)
        if start is not None and start.offset > 0:
            self._line_base = None
        # Placed now, so "from the end" means the end at construction; if the log does not
        # exist yet, at the first poll that finds it (from its start: all of it is new).
        if start is None and self._place() is None:
            self._from_start = True

    @property
    def position(self) -> Position:  # type: ignore[override]
        return Position(self._segment, self._offset)

    def poll(self) -> list[Event | OpaqueEvent]:
        if self._closed:
            raise LogError(f"{self.path}: follower is closed")
        if self._pending is not None:
            error, self._pending = self._pending, None
            raise error
        out: list[Event | OpaqueEvent] = []
        try:
            self._read_into(out)
        except (LogError, OSError):
            # Fix (tests/reliability): the events already read in this poll are past the
            # follower's position, so raising here lost them: a follower that drained its old
            # segment and then found the next one pruned dropped the end of the old one. Hand
            # them over; the next poll meets the same trouble (nothing moved) and raises it.
            if not out:
                raise
        return out

    def _read_into(self, out: list[Event | OpaqueEvent]) -> None:
        budget = self._budget
        while budget > 0:
            handle = self._handle if self._handle is not None else self._open()
            if handle is None:
                break
            if isinstance(handle, ActiveFile) and handle.size() < self._offset:
                self._restart_truncated()
                continue
            data = handle.read_lines(self._offset, budget)
            if data:
                budget -= len(data)
                if not self._take(handle, data, out):
                    break
                continue
            if isinstance(handle, ActiveFile) and not handle.draining:
                if not handle.replaced():
                    break  # live and caught up
                handle.draining = True
                continue  # read what was written before the rename
            damage = handle.damage if isinstance(handle, ClosedSegmentFile) else None
            if damage is not None:
                line = self._line_number(handle) + 1
                self._finish_segment(handle)  # the next poll goes on at the next segment
                error = CorruptLineError(handle.path, line, damage)
                if not out:
                    raise error
                self._pending = error
                return
            self._finish_segment(handle)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def skip_pruned(self) -> None:
        """After a SegmentPrunedError: go on at the oldest segment still there (a closed one
        if any is newer than the pruned one, else the active file), from its start. It opens
        with a snapshot, so a consumer folding what it is given has the right state again; the
        events in between are lost, which the error has said."""
        if self._handle is not None:
            return  # nothing was pruned under this follower
        later = [number for number in self._closed_paths() if number > self._segment]
        if later:
            self._segment = min(later)
        else:
            self._placed = False  # the active file: placed (at its start) by the next poll
            self._from_start = True
        self._offset = 0
        self._line_base = 0

    # -- decoding -------------------------------------------------------------------------

    def _take(
        self, handle: ActiveFile | ClosedSegmentFile, data: bytes, out: list[Event | OpaqueEvent]
    ) -> bool:
        """Decode complete lines into `out`; False when a bad line stops this poll."""
        try:
            decoded = decode_block(data, self._last_seq, skip_bad=self._skip_bad)
        except BadLine as bad:
            out.extend(self._fresh(bad.events))
            line = self._line_number(handle) + bad.index + 1
            self._advance(data[: bad.end])
            handle.unread(data[bad.end :])
            self._last_seq = bad.last_seq
            error = CorruptLineError(handle.path, line, bad.reason)
            if not out:
                raise error from None
            self._pending = error
            return False
        self._last_seq = decoded.last_seq
        self.stats.skipped += decoded.skipped
        out.extend(self._fresh(decoded.events))
        self._advance(data)
        return True

    def _fresh(self, events: list[Event | OpaqueEvent]) -> list[Event | OpaqueEvent]:
        # As hbsm.log.reader._after: nothing to drop "after seq 0", so an event without its seq
        # (seq 0) is delivered, not silently lost.
        if self._drop_upto > 0 and events and events[0].seq <= self._drop_upto:
            events = events[bisect.bisect_right(events, self._drop_upto, key=_seq_of) :]
        self.stats.events += len(events)
        return events

    def _advance(self, consumed: bytes) -> None:
        self._offset += len(consumed)
        if self._line_base is not None:
            self._line_base += consumed.count(b"\n")

    def _line_number(self, handle: ActiveFile | ClosedSegmentFile) -> int:
        if self._line_base is None:
            self._line_base = handle.line_number_base(self._offset)
        return self._line_base

    # -- segments -------------------------------------------------------------------------

    def _finish_segment(self, handle: ActiveFile | ClosedSegmentFile) -> None:
        torn = handle.tail_bytes(self._offset)
        if torn:
            self.stats.torn.append((handle.path, self._offset, torn))
        handle.close()
        self._handle = None
        self._segment += 1
        self._offset = 0
        self._line_base = 0

    def _restart_truncated(self) -> None:
        # The file shrank below what was consumed: it was rewritten in place. Read it again
        # from its start and let seq decide what is new, so nothing is delivered twice.
        self._drop_upto = max(self._drop_upto, self._last_seq)
        self._last_seq = NO_SEQ
        self._offset = 0
        self._line_base = 0

    def _open(self) -> ActiveFile | ClosedSegmentFile | None:
        if not self._placed:
            return self._place()
        closed = self._closed_paths()
        if self._segment in closed:
            return self._open_closed(closed[self._segment])
        active = self._open_active(closed)
        if active is None:
            return None
        handle, number = active
        if number == self._segment:
            self._handle = handle
            self.stats.segments += 1
            return handle
        handle.close()
        if number < self._segment:
            return None  # the next segment is not there yet
        # Ours was rotated out between the listing and the open: it is closed now.
        closed = self._closed_paths()
        if self._segment in closed:
            return self._open_closed(closed[self._segment])
        raise self._pruned(closed)

    def _pruned(self, closed: dict[int, Path]) -> SegmentPrunedError:
        older = any(number < self._segment for number in closed)
        return SegmentPrunedError(self.path, self._segment, self._last_seq, retention=not older)

    def _closed_paths(self) -> dict[int, Path]:
        return {segment.number: segment.path for segment in closed_segments(self.path)}

    def _open_closed(self, path: Path) -> ClosedSegmentFile:
        stream: BinaryIO | None = None
        for candidate in (path, gz_segment_path(self.path, self._segment)):
            try:
                stream = open_segment(candidate)
                path = candidate
                break
            except FileNotFoundError:
                continue
        if stream is None:
            # Listed a moment ago, gone in both forms now: retention deleted it meanwhile.
            raise self._pruned(self._closed_paths())
        handle = ClosedSegmentFile(path, stream, self._offset)
        if self._line_base is None:
            self._line_base = handle.skipped_lines
        self._handle = handle
        self.stats.segments += 1
        return handle

    def _open_active(self, closed: dict[int, Path]) -> tuple[ActiveFile, int] | None:
        """The active file and its segment number. `closed` must be listed *before* the open:
        then a first line that is not a snapshot can only be segment 0's, and the listing
        cannot include the file just opened."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        line = first_line_at(fd)
        head = decode_head(line) if line is not None else None
        if head is not None and head.type == "snapshot" and head.segment > 0:
            number = head.segment
        else:
            number = max(closed) + 1 if closed else 0
        return ActiveFile(self.path, fd), number

    def _place(self) -> ActiveFile | None:
        active = self._open_active(self._closed_paths())
        if active is None:
            return None
        handle, number = active
        self._segment = number
        self._offset = 0
        self._line_base = 0
        if not self._from_start:
            # The end of the last complete line: a line being written is new, so it is read.
            self._offset = complete_end(handle.fd, handle.size())
            self._line_base = None
        self._placed = True
        self._handle = handle
        self.stats.segments += 1
        return handle


def position_after(path: Path, after_seq: int) -> Position:
    """Where a follower must start to see every event with seq > after_seq: the segment holding
    after_seq + 1 (found by each segment's first seq), at a byte offset found by binary search
    when it is the active file. The follower still filters by seq: this only saves reading."""
    closed = closed_segments(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return Position(closed[0].number if closed else 0, 0)
    try:
        line = first_line_at(fd)
        head = decode_head(line) if line is not None else None
        number = closed[-1].number + 1 if closed else 0
        if head is not None and head.type == "snapshot" and head.segment > 0:
            number = head.segment
        if head is None or head.seq <= after_seq + 1 or not closed:
            end = complete_end(fd, os.fstat(fd).st_size)
            return Position(number, offset_after_seq(fd, end, after_seq))
    finally:
        os.close(fd)
    for segment in reversed(closed):
        try:
            with open_segment(segment.path) as stream:
                line = first_line(stream)
        except FileNotFoundError:
            continue  # compressed or pruned meanwhile; an older segment will do
        head = decode_head(line) if line is not None else None
        if head is not None and 0 <= head.seq <= after_seq + 1:
            return Position(segment.number, 0)
    return Position(closed[0].number, 0)

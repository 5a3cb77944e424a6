"""An in-memory event store: the reference implementation the contract tests hold every other
store to, and a log for tests and demos that need no disk."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from operator import attrgetter

from hbsm.events import Event, OpaqueEvent
from hbsm.log.errors import LogError
from hbsm.log.store import EventStore, Follower

__all__ = ["MemoryEventLog", "MemoryFollower"]

_seq_of = attrgetter("seq")


class MemoryEventLog(EventStore):
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.last_seq = 0
        self._clock = clock
        # Flushed events only: like a file, what is merely appended is not yet visible.
        self._events: list[Event] = []
        self._pending: list[Event] = []
        self._closed = False

    @property
    def where(self) -> str:
        return "the event log in memory"

    def append(self, events: Sequence[Event]) -> list[Event]:
        self._check_open()
        return self._stamp_into(self._pending, events, self._clock)

    def flush(self) -> None:
        self._check_open()
        self._events.extend(self._pending)
        self._pending.clear()

    def read(self, after_seq: int = 0) -> Iterator[Event | OpaqueEvent]:
        # Bounds fixed now: a read is the history as of the call, like a file read.
        end = len(self._events)
        start = bisect.bisect_right(self._events, after_seq, 0, end, key=_seq_of)
        return islice(self._events, start, end)

    def follow(self, after_seq: int = 0) -> MemoryFollower:
        start = bisect.bisect_right(self._events, after_seq, key=_seq_of)
        return MemoryFollower(self._events, start)

    def close(self) -> None:
        # Events appended but not flushed are lost, as a file writer's buffer would be on a crash;
        # a clean close keeps them, as the file log does.
        if not self._closed:
            self.flush()
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise LogError("memory event log is closed")


class MemoryFollower(Follower):
    """Follows a MemoryEventLog by index into its flushed events (`position` is that index)."""

    def __init__(self, events: list[Event], start: int) -> None:
        self._events = events
        self.position: int = start
        self._closed = False

    def poll(self) -> list[Event | OpaqueEvent]:
        if self._closed:
            raise LogError("follower is closed")
        new: list[Event | OpaqueEvent] = list(self._events[self.position :])
        self.position += len(new)
        return new

    def close(self) -> None:
        self._closed = True

"""The small interface every event store implements, so the monitor, the API and the dashboard
never care whether the log is a local file or (later) a replicated stream.

Contract (tests/log/test_store_contract.py runs it against every store):

* `append` stamps `seq` = last_seq + 1, + 2, ... and buffers; `ts` is stamped from the store's
  clock only where the event's own ts is 0 (decisions carry the ts of the fact they answer).
* `flush` makes every appended event visible to `read`/`follow` and, under the "batch" and
  "always" policies, durable. It is the call to make before any side effect.
* `read(after_seq)` gives the flushed history in seq order; `follow(after_seq)` gives a follower
  whose `poll` never blocks and returns each later event exactly once, in order. Whether
  appended-but-unflushed events are visible is unspecified.
* A store may insert events of its own: the file log opens each segment with a `snapshot`
  (and records a `log.recovered` after a crash). They take seqs like any other event.
* After `close`, append and flush raise LogError; close is idempotent. Not thread-safe for
  writing: one thread appends and flushes; readers and followers may be anywhere.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import NamedTuple, Self

import msgspec

from hbsm.events import Event, OpaqueEvent

__all__ = ["EventStore", "Follower", "Position", "stamp"]


class Position(NamedTuple):
    """Where a file follower is: segment number and byte offset in its uncompressed text."""

    segment: int
    offset: int


class _Closable(abc.ABC):
    """`with` closes it."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Follower(_Closable):
    position: Position | int

    @abc.abstractmethod
    def poll(self) -> list[Event | OpaqueEvent]:
        """New complete events since the last poll, in order; [] if none. Never blocks."""


class EventStore(_Closable):
    last_seq: int
    # Whether other processes append to the same log (several nodes on one stream): then the
    # store numbers nothing itself, and a monitor learns the log's order by following it.
    shared: bool = False

    @property
    def where(self) -> str:
        """Where the events go, as an operator would look for them (a file's path): named in
        the monitor's messages when the store refuses writes."""
        return "the event log"

    @property
    def unwritten_bytes(self) -> int | None:
        """Bytes of appended events not yet written (None: the store cannot say)."""
        return None

    @abc.abstractmethod
    def append(self, events: Sequence[Event]) -> list[Event]:
        """Stamp and buffer `events`; return them as stamped."""

    def _stamp_into(
        self, pending: list[Event], events: Sequence[Event], clock: Callable[[], float]
    ) -> list[Event]:
        """`events` stamped after `last_seq` and added to `pending`; `last_seq` moves on."""
        stamped = stamp(events, self.last_seq, clock)
        if stamped:
            pending.extend(stamped)
            self.last_seq = stamped[-1].seq
        return stamped

    @abc.abstractmethod
    def flush(self) -> None:
        """Write what is buffered (durably under "batch"/"always"): call before a side effect."""

    def take_refused(self) -> dict[str, str]:
        """Services whose events a shared store refused since the last call, each with why
        (another node owns them now): the decisions among those events are void."""
        return {}

    @abc.abstractmethod
    def read(self, after_seq: int = 0) -> Iterator[Event | OpaqueEvent]:
        """The flushed history, oldest first, events with seq > after_seq."""

    @abc.abstractmethod
    def follow(self, after_seq: int = 0) -> Follower:
        """A non-blocking follower of events with seq > after_seq, present and future."""


_replace = msgspec.structs.replace


def stamp(events: Sequence[Event], last_seq: int, clock: Callable[[], float]) -> list[Event]:
    """`events` with seq continuing after `last_seq`, and ts from one clock reading where 0.

    One clock reading per batch: a batch is one decision, and it keeps the hot loop cheap.
    """
    now: float | None = None
    out: list[Event] = []
    seq = last_seq
    for event in events:
        seq += 1
        if event.ts:
            out.append(_replace(event, seq=seq))
        else:
            if now is None:
                now = clock()
            out.append(_replace(event, seq=seq, ts=now))
    return out

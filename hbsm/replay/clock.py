"""Time going backwards in a recorded history: the host's clock stepped back (an NTP step, a
VM restored from a snapshot, an operator setting the date) while the monitor ran.

Events are recorded in the order they happened, each stamped with the host's wall clock, so
after a step back a duration taken from two `ts` is wrong, even negative (an MTTR of -23h 58m).
The replay measures durations by the events' order instead: an event's *elapsed time* is its
`ts` plus every backward step before it, so a step back counts as no time at all and elapsed
time never decreases. A step back of STEP_NAMED or more is named (seq, from when, by how much);
smaller ones are absorbed the same way but not named, since events recorded concurrently can
be a few milliseconds out of order without anything being wrong with the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from operator import attrgetter, le
from typing import Final

import msgspec

from hbsm._format import duration, iso
from hbsm.events import Event, OpaqueEvent

__all__ = ["STEP_NAMED", "ClockStep", "ClockWatch"]

STEP_NAMED: Final = 1.0
# Steps kept for the report; more are counted (a log with thousands of steps has a clock
# problem that the first hundred already show).
KEEP: Final = 100

_ts_of = attrgetter("ts")


class ClockStep(msgspec.Struct, kw_only=True):
    """The clock went back `back_s` seconds between the event `previous_seq` and `seq`."""

    seq: int
    ts: float
    time: str
    previous_seq: int
    previous_ts: float
    previous_time: str
    back_s: float

    def describe(self) -> str:
        return (
            f"time goes back {duration(self.back_s)} at seq {self.seq} ({self.time}, after "
            f"{self.previous_time} at seq {self.previous_seq}): the clock was stepped back; "
            "durations across it count the step as no time"
        )


class ClockWatch:
    """Feed it every batch of a history in order. `offset` is the sum of the backward steps so
    far: an event's elapsed time is its ts plus the offset in force at it."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.steps: list[ClockStep] = []
        self.named = 0  # steps of STEP_NAMED or more, kept or not
        self._last_ts: float | None = None
        self._last_seq = 0

    def feed(self, batch: Sequence[Event | OpaqueEvent]) -> list[float] | None:
        """The offset at each event of `batch`, or None when time did not go back in it (the
        offset is then `self.offset` at every event). Costs one C-level pass when it did not."""
        if not batch:
            return None
        ts = list(map(_ts_of, batch))
        previous = ts[0] if self._last_ts is None else self._last_ts
        if previous <= ts[0] and all(map(le, ts, islice(ts, 1, None))):
            self._last_ts, self._last_seq = ts[-1], batch[-1].seq
            return None
        offsets: list[float] = []
        previous_seq = self._last_seq
        for event, t in zip(batch, ts, strict=True):
            if t < previous:
                back = previous - t
                self.offset += back
                if back >= STEP_NAMED:
                    self._name(event, t, previous_seq, previous, back)
            previous, previous_seq = t, event.seq
            offsets.append(self.offset)
        self._last_ts, self._last_seq = previous, previous_seq
        return offsets

    def _name(
        self, event: Event | OpaqueEvent, ts: float, previous_seq: int, previous: float, back: float
    ) -> None:
        self.named += 1
        if len(self.steps) < KEEP:
            self.steps.append(
                ClockStep(
                    seq=event.seq, ts=ts, time=iso(ts), previous_seq=previous_seq,
                    previous_ts=previous, previous_time=iso(previous), back_s=back,
                )
            )  # fmt: skip

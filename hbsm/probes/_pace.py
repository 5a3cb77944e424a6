"""`Pace`: by how much every interval is stretched when the probes ask for more than the monitor
can do.

Pure bookkeeping, no clock of its own and no I/O: the scheduler tells it how late each probe
started (as a fraction of that service's interval), how many finished, and asks it at the end of
each window whether the factor changes.

* A window is *late* when more than a tenth of its probes started later than `late_hi` of their
  interval (its p90 lateness is above it; an overlapping probe, whose slot could not start at
  all, counts as a whole interval late). It is *calm* when its p90 is below `late_lo`.
* An episode begins after `onset` late windows in a row (one stall, a collector's pause, is not
  an overload). The factor is then what the probes finished in the window say the monitor can
  do: asked / (done * headroom), so the loop keeps some slack for everything else it runs; at
  most doubled per change (a stall, not a lack of capacity, can also make `done` small).
* While overloaded, a late window raises the factor the same way (by a tenth at least); after a
  change the next window is not judged (the probes that were queued still start late). After
  `settle` windows without a rise, each calm window lowers it by a fifth (every other window: a
  change is not judged); at 1 the episode ends.

Counting, not keeping samples: memory stays the same whatever the number of probes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Pace", "PaceChange"]


@dataclass(frozen=True)
class PaceChange:
    """An overload episode began (`overloaded`) or ended (not `overloaded`)."""

    overloaded: bool
    # The factor every interval is stretched by: at the start, the one applied; at the end,
    # the largest of the episode.
    stretch: float
    # Probes/s the services' intervals ask for, unstretched; and probes/s finished in the last
    # window (what the monitor could do, when it began).
    asked: float
    done: float
    # The p90 lateness of the window (a fraction of the interval: at least this much), and when
    # the episode began (on the scheduler's clock).
    late: float
    since: float


class Pace:
    def __init__(
        self,
        *,
        window: float = 2.0,
        late_hi: float = 0.5,
        late_lo: float = 0.1,
        headroom: float = 0.85,
        onset: int = 2,
        settle: int = 3,
        max_stretch: float = 1000.0,
    ) -> None:
        if not window > 0:
            raise ValueError(f"the pace window must be a positive number of seconds: {window!r}")
        self.window = window
        self.late_hi = late_hi
        self.late_lo = late_lo
        self.headroom = headroom
        self.onset = onset
        self.settle = settle
        self.max_stretch = max_stretch
        self.episodes = 0
        self.reset()

    def reset(self) -> None:
        """Back to factor 1 and no episode (the scheduler stopped: nothing is asked any more)."""
        self.stretch = 1.0
        self.since: float | None = None  # set while overloaded
        self._largest = 1.0
        self._started_at: float | None = None  # the window's start
        self._n = self._over_hi = self._over_lo = self._done = 0
        self._late_windows = 0
        self._quiet = 0  # windows since the last change
        self._hold = 0  # calm windows to wait after it before lowering the factor
        self._skip = False

    @property
    def overloaded(self) -> bool:
        return self.since is not None

    def started(self, late: float) -> None:
        """A probe started `late` (a fraction of its interval) after its slot."""
        self._n += 1
        if late > self.late_lo:
            self._over_lo += 1
            if late > self.late_hi:
                self._over_hi += 1

    def missed(self, slots: int = 1) -> None:
        """Slots the loop slept through: each as late as a whole interval."""
        self._n += slots
        self._over_lo += slots
        self._over_hi += slots

    def finished(self) -> None:
        self._done += 1

    def due(self, now: float) -> bool:
        """Whether the window has ended (`tick` then judges it)."""
        return self._started_at is None or now - self._started_at >= self.window

    def tick(self, now: float, asked: float) -> PaceChange | None:
        """At the end of a window (`due`): judge it, maybe change the factor. `asked`: probes/s
        the intervals ask for, unstretched. Returns the change of episode, if any."""
        started_at = self._started_at
        self._started_at = now
        n, over_hi, over_lo, done = self._n, self._over_hi, self._over_lo, self._done
        self._n = self._over_hi = self._over_lo = self._done = 0
        if started_at is None or now <= started_at:
            return None
        if self._skip:
            self._skip = False
            return None
        late = n > 0 and over_hi * 10 > n
        calm = over_lo * 10 <= n  # no probe at all is calm too: nothing was late
        p90 = self.late_hi if late else (self.late_lo if not calm else 0.0)
        rate = done / (now - started_at)
        self._quiet += 1
        if late:
            self._late_windows += 1
            if not self.overloaded and self._late_windows < self.onset:
                return None
            target = asked / (rate * self.headroom) if rate > 0 else self.stretch * 2
            # At most doubled per change: a window's `done` also falls when the loop stalled
            # for a moment (a collector's pause, a neighbour's burst), and a factor of 14 read
            # off a stall of two windows took a minute to come down.
            target = min(target, self.stretch * 2)
            self._set(min(self.max_stretch, max(self.stretch * 1.1, target)), hold=self.settle)
            if not self.overloaded:
                self.since = started_at
                self.episodes += 1
                self._largest = self.stretch
                return PaceChange(True, self.stretch, asked, rate, p90, started_at)
            return None
        self._late_windows = 0
        if calm and self.overloaded and self._quiet > self._hold:
            lower = self.stretch * 0.8
            self._set(lower if lower > 1.05 else 1.0, hold=0)
            if self.stretch == 1.0:
                since, self.since = self.since, None
                assert since is not None
                return PaceChange(False, self._largest, asked, rate, p90, since)
        return None

    def _set(self, stretch: float, *, hold: int) -> None:
        self.stretch = stretch
        self._largest = max(self._largest, stretch)
        self._quiet = 0
        self._hold = hold
        self._skip = True

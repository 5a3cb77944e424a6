"""When the probes ask for more than the monitor can do: said once an episode, in the log and on
stderr.

The scheduler (hbsm/probes/_scheduler.py) stretches every interval by the same factor and tells
when an episode begins and ends (`PaceChange`). Here that becomes a `monitor.overloaded` event and
one warning when it begins, a `monitor.caught_up` event and one line when it ends: never a line
a second. The factor applied meanwhile moves with the load without further events; the
scheduler's stats have it as it is now.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hbsm.events import MonitorCaughtUp, MonitorOverloaded
from hbsm.probes import PaceChange

if TYPE_CHECKING:
    from hbsm.monitor.runtime import Monitor

__all__ = ["OverloadReport"]

log = logging.getLogger("hbsm.monitor")


class OverloadReport:
    """Records the overload episodes of one monitor's scheduler (`on_pace` is its callback)."""

    def __init__(self, monitor: Monitor) -> None:
        self.m = monitor
        self.since: float | None = None  # the monitor's clock, while an episode is recorded
        self._largest = 1.0

    def on_pace(self, change: PaceChange) -> None:
        m = self.m
        if m.outage is not None:
            return  # nothing is probed while the log cannot be written; nor can this be said
        now = m.clock()
        if change.overloaded:
            self.since, self._largest = now, change.stretch
            log.warning(
                "hbsm is overloaded: the intervals ask for %.0f probes/s, it finished %.0f/s "
                "(probes started %.0f%%+ of an interval late); every service's interval is "
                "stretched by %.2fx alike until it catches up",
                change.asked,
                change.done,
                change.late * 100,
                change.stretch,
            )
            m.recorder.append(
                [
                    MonitorOverloaded(
                        ts=now,
                        stretch=round(change.stretch, 3),
                        asked=round(change.asked, 1),
                        done=round(change.done, 1),
                        late=change.late,
                        node=m.node,
                    )
                ]
            )
        elif self.since is not None:
            self._caught_up(now, max(self._largest, change.stretch))

    def stopped(self) -> None:
        """The scheduler stopped (heartbeat stop, shutdown): an episode ends with it."""
        if self.since is not None and self.m.outage is None:
            self._caught_up(self.m.clock(), self._largest)

    def _caught_up(self, now: float, largest: float) -> None:
        since, self.since = self.since, None
        assert since is not None
        log.warning(
            "hbsm caught up after %.0f s overloaded (intervals stretched up to %.2fx): "
            "every service is probed at its own interval again",
            now - since,
            largest,
        )
        self.m.recorder.append(
            [MonitorCaughtUp(ts=now, since=since, stretch_max=round(largest, 3), node=self.m.node)]
        )

"""What the soak reads from `hbsm run`'s event log while it runs: the log followed by offset
(hbsm.log.LogFollower, across rotations, as the API and the dashboard follow it) and tallied,
so nothing is read twice and the figures at the end need no second pass over the files.

Kept per event: counts by type; per service the probes' (ts, latency) in compact arrays (for
the schedule figures) and whether any failed; transitions by destination and each service's
latest state; repairs by step and outcome; incidents (healthy or unknown -> degraded, until
healthy again) and how long they lasted; and, per seq, the time it was written at the earliest
(the running maximum of the events' `ts`: an event is appended after it is made), which the
dashboard's lag is measured against.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hbsm.events import (
    Event,
    MonitorStopped,
    OpaqueEvent,
    Probe,
    RepairFinished,
    RepairStarted,
    Transition,
)
from hbsm.log import LogFollower

__all__ = ["LogTally", "ServiceProbes"]


@dataclass
class ServiceProbes:
    ts: array[float] = field(default_factory=lambda: array("d"))
    latency_ms: array[float] = field(default_factory=lambda: array("d"))
    failed: int = 0

    def pairs(self) -> Iterator[tuple[float, float]]:
        return zip(self.ts, self.latency_ms, strict=True)


class LogTally:
    def __init__(self, path: Path) -> None:
        self.follower = LogFollower(path, from_start=True)
        self.by_type: Counter[str] = Counter()
        self.events = 0
        self.probes: dict[str, ServiceProbes] = {}
        self.probes_total = self.probes_failed = 0
        self.first_probe_ts: float | None = None
        self.transitions: Counter[str] = Counter()  # by destination state
        self.state: dict[str, str] = {}  # service -> latest state
        self.repairs_started: Counter[str] = Counter()  # by step
        self.repairs_finished: Counter[tuple[str, bool]] = Counter()  # (step, ok)
        self.incident_started: dict[str, float] = {}
        self.incident_seconds: list[float] = []
        self.stopped = False
        self.first_seq = 0
        self.last_seq = 0
        # written_at[seq - first_seq]: the earliest time the event of that seq can have been
        # written. Seqs are strictly increasing; a gap repeats the time before it.
        self.written_at: array[float] = array("d")
        self._max_ts = 0.0

    def poll(self) -> int:
        """Read everything written so far; the number of events read."""
        read = 0
        while batch := self.follower.poll():
            for event in batch:
                self._take(event)
            read += len(batch)
        return read

    def _take(self, event: Event | OpaqueEvent) -> None:
        self.events += 1
        if isinstance(event, OpaqueEvent):
            self.by_type["(opaque)"] += 1
            return
        kind = type(event).__struct_config__.tag
        self.by_type[str(kind)] += 1
        self._written(event)
        if isinstance(event, Probe):
            self._probe(event)
        elif isinstance(event, Transition):
            self._transition(event)
        elif isinstance(event, RepairStarted):
            self.repairs_started[event.step] += 1
        elif isinstance(event, RepairFinished):
            self.repairs_finished[event.step, event.ok] += 1
        elif isinstance(event, MonitorStopped):
            self.stopped = True

    def _written(self, event: Event) -> None:
        self._max_ts = max(self._max_ts, event.ts)
        if not self.first_seq:
            self.first_seq = self.last_seq = event.seq
            self.written_at.append(self._max_ts)
            return
        while self.last_seq < event.seq:
            self.written_at.append(self._max_ts)
            self.last_seq += 1

    def _probe(self, probe: Probe) -> None:
        self.probes_total += 1
        if self.first_probe_ts is None:
            self.first_probe_ts = probe.ts
        mine = self.probes.get(probe.service)
        if mine is None:
            mine = self.probes[probe.service] = ServiceProbes()
        mine.ts.append(probe.ts)
        mine.latency_ms.append(probe.latency_ms or 0.0)
        if not probe.ok:
            mine.failed += 1
            self.probes_failed += 1

    def _transition(self, t: Transition) -> None:
        self.transitions[t.dst] += 1
        self.state[t.service] = t.dst
        if t.dst == "degraded" and t.src in ("healthy", "unknown"):
            self.incident_started[t.service] = t.ts
        elif t.dst == "healthy" and t.service in self.incident_started:
            self.incident_seconds.append(t.ts - self.incident_started.pop(t.service))

    def written_by(self, seq: int) -> float | None:
        """The earliest time the event `seq` can have been written; None if not read yet."""
        if not self.first_seq or not self.first_seq <= seq <= self.last_seq:
            return None
        return self.written_at[seq - self.first_seq]

    def states(self, services: list[str]) -> Counter[str]:
        return Counter(self.state.get(name, "unknown") for name in services)

    def close(self) -> None:
        self.follower.close()

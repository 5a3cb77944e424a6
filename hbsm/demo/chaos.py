"""Fault injection for the demo: seeded, cycling through every kind, one fault per service at
a time, each injection recorded in `demo-faults.jsonl` beside the event log.

A fault injection is not a monitor event, so the demo keeps its own record: one JSON object
per line, `{"ts": ..., "service": ..., "kind": ..., "n": ...}`, written (and flushed) before
the fault is applied, so a fault the monitor sees is always on record first.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hbsm.demo.service import FAULTS, corrupt_config, set_mode

__all__ = ["Chaos", "Fault", "FaultTracker", "read_faults"]


@dataclass(frozen=True)
class Fault:
    n: int
    ts: float
    service: str
    kind: str

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "ts": self.ts, "service": self.service, "kind": self.kind}


def read_faults(path: str | os.PathLike[str]) -> list[Fault]:
    """The faults recorded in a demo-faults.jsonl file ([] when there is none)."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        if line.strip():
            raw = json.loads(line)
            out.append(Fault(n=raw["n"], ts=raw["ts"], service=raw["service"], kind=raw["kind"]))
    return out


@dataclass
class FaultTracker:
    """What chaos needs to know of each service: its last state and its unrepaired fault.

    Fed every transition (from the event log); a fault stays pending until the service has
    left `healthy` after it and come back."""

    states: dict[str, str] = field(default_factory=dict)
    pending: dict[str, Fault] = field(default_factory=dict)
    _left_healthy: set[str] = field(default_factory=set)

    def transition(self, service: str, dst: str, ts: float) -> Fault | None:
        """Note a transition; return the fault it repaired, if any."""
        self.states[service] = dst
        fault = self.pending.get(service)
        if fault is None or ts < fault.ts:
            return None
        if dst != "healthy":
            self._left_healthy.add(service)
            return None
        if service in self._left_healthy:
            self._left_healthy.discard(service)
            return self.pending.pop(service)
        return None

    def injected(self, fault: Fault) -> None:
        self.pending[fault.service] = fault
        self._left_healthy.discard(fault.service)

    def ready(self, services: Iterable[str]) -> list[str]:
        """Services healthy and with no fault pending: where a new fault may go."""
        return [s for s in services if self.states.get(s) == "healthy" and s not in self.pending]


class Chaos:
    """Chooses and applies faults: `kind` cycles through a seeded shuffle of every fault kind
    (so each appears once in every len(FAULTS) injections), the service is a seeded choice
    among those ready for one."""

    def __init__(
        self,
        *,
        control_dir: Path,
        configs: dict[str, Path],
        record: Path,
        seed: int | None = None,
        kinds: tuple[str, ...] = FAULTS,
    ) -> None:
        self.control_dir = control_dir
        self.configs = configs
        self.record = record
        self.rng = random.Random(seed)
        self.kinds = kinds
        self._deck: list[str] = []
        self.injected: list[Fault] = []

    def next_kind(self) -> str:
        if not self._deck:
            self._deck = list(self.kinds)
            self.rng.shuffle(self._deck)
        return self._deck.pop(0)

    def inject_random(self, ready: list[str], now: float) -> Fault | None:
        """Inject the next kind of fault into one of `ready` (None when none is ready)."""
        if not ready:
            return None
        service = self.rng.choice(sorted(ready))
        return self.inject(service, self.next_kind(), now)

    def inject(self, service: str, kind: str, now: float) -> Fault:
        """Record, then apply, one fault."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}: one of {', '.join(FAULTS)}")
        fault = Fault(n=len(self.injected) + 1, ts=now, service=service, kind=kind)
        self.record.parent.mkdir(parents=True, exist_ok=True)
        with self.record.open("a") as out:
            out.write(json.dumps(fault.to_json()) + "\n")
            out.flush()
        if kind == "badconfig":
            corrupt_config(self.configs[service])
        else:
            set_mode(self.control_dir, service, kind)
        self.injected.append(fault)
        return fault

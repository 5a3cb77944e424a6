"""Recorded histories for the replay tests, made the way the monitor makes them: facts go
through `hbsm.fsm.decide`, the decisions are recorded after the fact, and a scripted runtime
answers every repair step and restart with its outcome. Written as JSONL with seq 1..N."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from hbsm.events import (
    Admin,
    Event,
    MonitorStarted,
    Probe,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    ServiceRegistered,
    encode,
)
from hbsm.fsm import decide
from hbsm.state import RULES, Policy, ServiceState

T0 = 1_793_502_000.0  # 2026-11-01T03:00:00Z
INTERVAL = 30.0


class Recorder:
    """A scripted monitor: probes, admin actions and a runtime that answers each repair step
    after `repair_s` (ok: `repair_ok`) and each restart after `restart_s` (ok: `restart_ok`)."""

    def __init__(
        self,
        *,
        repair_ok: bool = True,
        restart_ok: bool = True,
        repair_s: float = 0.5,
        restart_s: float = 2.0,
    ) -> None:
        self.events: list[Event] = []
        self.states: dict[str, ServiceState] = {}
        self.policies: dict[str, Policy] = {}
        self.repair_ok = repair_ok
        self.restart_ok = restart_ok
        self.repair_s = repair_s
        self.restart_s = restart_s

    def add(self, event: Event) -> None:
        self.events.append(event)

    def start(self, ts: float = T0) -> None:
        self.add(MonitorStarted(ts=ts, pid=4242, version="0.1.0", host="test", rules=RULES))

    def register(self, name: str, policy: Policy | None = None, ts: float = T0) -> None:
        policy = policy or Policy()
        self.policies[name] = policy
        self.states[name] = ServiceState(name=name)
        self.add(ServiceRegistered(ts=ts, service=name, policy=policy, target=f"http://{name}"))

    def fact(self, fact: Event) -> list[Event]:
        """Record a fact, the decisions it leads to, and the runtime's answers to them."""
        name: str = fact.service  # type: ignore[attr-defined]
        state, policy = self.states[name], self.policies[name]
        self.add(fact)
        decisions = decide(state, fact, policy)
        self.events.extend(decisions)
        for d in decisions:
            if isinstance(d, RepairStarted):
                self.fact(
                    RepairFinished(
                        ts=d.ts + self.repair_s, service=name, run=d.run, step=d.step,
                        index=d.index, ok=self.repair_ok, duration_ms=self.repair_s * 1000,
                        output=f"{d.step} done\nall fine",
                    )
                )  # fmt: skip
            elif isinstance(d, RestartStarted):
                self.fact(
                    RestartFinished(
                        ts=d.ts + self.restart_s, service=name, ok=self.restart_ok,
                        duration_ms=self.restart_s * 1000,
                        exit_code=0 if self.restart_ok else 1,
                        output="restarted" if self.restart_ok else "unit failed to start",
                    )
                )  # fmt: skip
        return decisions

    def probes(self, name: str, pattern: str, start: float, every: float = INTERVAL) -> float:
        """One probe per character ('.' ok, 'x' failed), `every` seconds apart; returns the
        time of the next slot."""
        ts = start
        for c in pattern:
            ok = c == "."
            self.fact(
                Probe(
                    ts=ts, service=name, ok=ok, latency_ms=12.0 if ok else None,
                    status=200 if ok else None, error=None if ok else "refused",
                )
            )  # fmt: skip
            ts += every
        return ts

    def admin(self, name: str, action: str, ts: float, who: str = "alice") -> None:
        self.fact(Admin(ts=ts, service=name, action=action, who=who, source="127.0.0.1"))

    def stamped(self) -> list[Event]:
        return stamp(self.events)

    def write(self, path: Path) -> Path:
        write_log(path, self.events)
        return path


def stamp(events: Sequence[Event]) -> list[Event]:
    """In time order (stable: a fact stays before its decisions, as the monitor appends them;
    services scripted one after another interleave), with seq 1..N."""
    ordered = sorted(events, key=lambda e: e.ts)
    return [msgspec.structs.replace(e, seq=i) for i, e in enumerate(ordered, start=1)]


def write_log(path: Path, events: Sequence[Event], *, stamped: bool = False) -> Path:
    rows = events if stamped else stamp(events)
    path.write_bytes(b"".join(encode(e) + b"\n" for e in rows))
    return path


def outage(rec: Recorder, name: str = "api", start: float = T0) -> dict[str, float]:
    """healthy, then down: 3 failures -> repair (diagnose, check_config) -> restart -> cooldown
    -> healthy at the first good probe (default policy, runtime delays as given). Returns the
    key times."""
    t = rec.probes(name, "..", start)
    first_failure = t
    t = rec.probes(name, "xxxxx", t)  # 3rd: repairing; 4th, 5th: next steps, then restart
    # The restart worked: healthy at the first probe after it, well inside the cooldown (300 s
    # from the restart's decision), which only keeps the next restart away.
    recovered = t
    t = rec.probes(name, "..........", t)
    return {
        "first_failure": first_failure,
        "repairing": first_failure + 2 * INTERVAL,
        "restart": first_failure + 4 * INTERVAL,
        "recovered": recovered,
        "next": t,
    }


def run_cli(*args: Any, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hbsm", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )

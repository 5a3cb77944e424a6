"""Event streams for the planning tests: written out by hand, or decided by the real FSM."""

from __future__ import annotations

import itertools

import msgspec

from hbsm.events import Event, Probe, RepairFinished, RestartFinished, RestartStarted, Transition
from hbsm.fsm import decide
from hbsm.state import Policy, ServiceState

T0 = 1_700_000_000.0


class Log:
    """Stamps `seq` like the event log does, for one or more services."""

    def __init__(self) -> None:
        self._seq = itertools.count(1)
        self.events: list[Event] = []

    def add(self, *events: Event) -> list[Event]:
        stamped = [msgspec.structs.replace(e, seq=next(self._seq)) for e in events]
        self.events += stamped
        return stamped

    def move(
        self, service: str, src: str, dst: str, ts: float, trigger: str = "probe_failed"
    ) -> list[Event]:
        return self.add(Transition(ts=ts, service=service, src=src, dst=dst, trigger=trigger))

    def restart(self, service: str, ts: float, attempt: int = 1) -> list[Event]:
        return self.add(RestartStarted(ts=ts, service=service, attempt=attempt, cooldown_s=300.0))

    def repair_failed(self, service: str, ts: float, step: str = "check_config") -> list[Event]:
        return self.add(
            RepairFinished(
                ts=ts,
                service=service,
                run=1,
                step=step,
                index=1,
                ok=False,
                output="config.toml: missing\n",
            )
        )


class FsmRun:
    """One service driven through the real `decide`, every fact and decision logged."""

    def __init__(self, service: str = "api", **policy: object) -> None:
        self.state = ServiceState(name=service)
        self.policy = Policy(**policy)  # type: ignore[arg-type]
        self.log = Log()
        self.now = T0

    def feed(self, fact: Event) -> list[Event]:
        return self.log.add(fact, *decide(self.state, fact, self.policy))

    def probe(self, ok: bool, after: float = 30.0) -> list[Event]:
        self.now += after
        return self.feed(
            Probe(ts=self.now, service=self.state.name, ok=ok, error=None if ok else "refused")
        )

    def step_done(self, ok: bool, after: float = 2.0) -> list[Event]:
        self.now += after
        s = self.state
        return self.feed(
            RepairFinished(
                ts=self.now,
                service=s.name,
                run=s.run,
                step=s.ladder[s.step_index],
                index=s.step_index,
                ok=ok,
                output="" if ok else "exit 1",
            )
        )

    def restart_done(self, ok: bool = True, after: float = 5.0) -> list[Event]:
        self.now += after
        return self.feed(RestartFinished(ts=self.now, service=self.state.name, ok=ok))

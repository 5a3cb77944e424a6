"""A tiny driver for one service: builds facts, feeds them to `decide`, keeps the log.

The driver plays the runtime's part: it owns the clock (every fact's `ts`), appends each fact and
the decisions it led to, and offers the few scripted moves the tests need (fail until a repair
starts, fail a repair step, walk the ladder up to its restart).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from hbsm.events import (
    Admin,
    Event,
    Probe,
    ProcessLost,
    ProcessStarted,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    Transition,
)
from hbsm.fsm import decide, evolve, machine_for
from hbsm.state import RULES, Policy, ServiceState

SERVICE = "web"
# More steps than any ladder here has: a run still going after them is stuck.
MAX_STEPS = 20
# A realistic epoch: horizons such as `ts - restart_window` stay positive.
START = 1_700_000_000.0


def snapshot(state: ServiceState) -> dict[str, object]:
    """Every field of a state, for exact comparison (ServiceState compares by identity)."""
    return msgspec.structs.asdict(state)


def transitions(events: Iterable[Event]) -> list[Transition]:
    return [e for e in events if isinstance(e, Transition)]


def only_transition(events: Iterable[Event]) -> Transition:
    """The one transition among `events` (fails if there is not exactly one)."""
    found = transitions(events)
    assert len(found) == 1, events
    return found[0]


def restarts(events: Iterable[Event]) -> list[RestartStarted]:
    return [e for e in events if isinstance(e, RestartStarted)]


def repairs(events: Iterable[Event]) -> list[RepairStarted]:
    return [e for e in events if isinstance(e, RepairStarted)]


def replay(
    events: Iterable[Event], name: str = SERVICE, policy: Policy | None = None
) -> ServiceState:
    """A fresh state rebuilt from recorded events through `evolve` alone."""
    state = ServiceState(name=name)
    for event in events:
        evolve(state, event, policy or Policy())
    return state


class Driver:
    """One service, its policy, its rules and clock, and the log of everything fed and decided.

    `rules`: the version of the decision rules (default: the current ones; 1 for the first).
    """

    def __init__(
        self, policy: Policy | None = None, *, rules: int = RULES, **policy_fields: Any
    ) -> None:
        self.policy = policy if policy is not None else Policy(**policy_fields)
        self.machine = machine_for(rules)
        self.state = ServiceState(name=SERVICE)
        self.now = START
        self.log: list[Event] = []
        self.facts: list[Event] = []
        self.decisions: list[Event] = []
        # After each fact: the state, and the length of the log (the fact and its decisions).
        self.states: list[dict[str, object]] = []
        self.ends: list[int] = []

    # --- the log ----------------------------------------------------------------------------

    @property
    def transitions(self) -> list[Transition]:
        return transitions(self.log)

    @property
    def restarts(self) -> list[RestartStarted]:
        return restarts(self.log)

    @property
    def repairs(self) -> list[RepairStarted]:
        return repairs(self.log)

    @property
    def current(self) -> str:
        return self.state.state

    # --- facts ------------------------------------------------------------------------------

    def feed(self, fact: Event) -> list[Event]:
        out = decide(self.state, fact, self.policy, self.machine)
        self.facts.append(fact)
        self.log.append(fact)
        self.log.extend(out)
        self.decisions.extend(out)
        self.states.append(snapshot(self.state))
        self.ends.append(len(self.log))
        return out

    def wait(self, seconds: float) -> Driver:
        self.now += seconds
        return self

    def _tick(self, after: float | None) -> float:
        self.now += self.policy.check_interval if after is None else after
        return self.now

    def probe(
        self, ok: bool, error: str | None = None, *, after: float | None = None
    ) -> list[Event]:
        """A probe `after` seconds from now (default: the check interval)."""
        if not ok and error is None:
            error = "timeout"
        return self.feed(Probe(ts=self._tick(after), service=SERVICE, ok=ok, error=error))

    def ok(self, *, after: float | None = None) -> list[Event]:
        return self.probe(True, after=after)

    def fail(self, error: str = "timeout", *, after: float | None = None) -> list[Event]:
        return self.probe(False, error, after=after)

    def fails(self, n: int, error: str = "timeout") -> list[Event]:
        out: list[Event] = []
        for _ in range(n):
            out += self.fail(error)
        return out

    def finish_step(
        self,
        ok: bool = True,
        *,
        error_class: str | None = None,
        run: int | None = None,
        index: int | None = None,
        after: float = 2.0,
        verify: bool = True,
        interrupted: bool = False,
    ) -> list[Event]:
        """The outcome of the repair step in flight (or of the run/index given). `ok`: the step
        ran through (whether it fixed anything, the verification probe says); a check_config
        that is not ok found the configuration broken. `verify` false: the step changed nothing
        and the failure stands (no verification probe follows, from rules 4 on)."""
        s = self.state
        run = s.run if run is None else run
        index = s.step_index if index is None else index
        step = s.ladder[index] if 0 <= index < len(s.ladder) else "diagnose"
        return self.feed(
            RepairFinished(
                ts=self._tick(after),
                service=SERVICE,
                run=run,
                step=step,
                index=index,
                ok=ok,
                error_class=error_class,
                verify=verify,
                interrupted=interrupted,
            )
        )

    def finish_restart(self, ok: bool = True, *, after: float = 5.0) -> list[Event]:
        return self.feed(
            RestartFinished(
                ts=self._tick(after), service=SERVICE, ok=ok, output="" if ok else "exit 1"
            )
        )

    def process_started(self, *, adopted: bool = False, after: float = 1.0) -> list[Event]:
        return self.feed(
            ProcessStarted(ts=self._tick(after), service=SERVICE, pid=4242, adopted=adopted)
        )

    def process_lost(self, *, after: float = 1.0) -> list[Event]:
        return self.feed(ProcessLost(ts=self._tick(after), service=SERVICE, pid=4242))

    def admin(self, action: str, *, allowed: bool = True, after: float = 1.0) -> list[Event]:
        return self.feed(
            Admin(ts=self._tick(after), service=SERVICE, action=action, allowed=allowed, who="ops")
        )

    # --- scripted moves ---------------------------------------------------------------------

    def to_healthy(self) -> list[Event]:
        out: list[Event] = []
        for _ in range(self.policy.success_threshold):
            out += self.ok()
        assert self.current == "healthy", self.current
        return out

    def to_repairing(self, error: str = "timeout") -> list[Event]:
        """Consecutive failed probes until a repair run starts (from a counting state)."""
        out: list[Event] = []
        for _ in range(self.policy.max_retries):
            out += self.fail(error)
        assert self.current == "repairing", self.current
        return out

    def fail_step(
        self, error: str = "timeout", *, error_class: str | None = None, ok: bool = True
    ) -> list[Event]:
        """The step in flight finishes without fixing it: a verification probe still fails."""
        out = self.finish_step(ok, error_class=error_class)
        return out + self.fail(error)

    def climb_to_restart(self) -> list[Event]:
        """In a repair run: fail every step until the ladder reaches its restart step."""
        assert self.current == "repairing", self.current
        out: list[Event] = []
        # Bounded: a run that never leaves `repairing` is a failure to report, not a hang.
        for _ in range(MAX_STEPS):
            out += self.fail_step()
            if self.current != "repairing":
                return out
        raise AssertionError(f"still repairing after {MAX_STEPS} failed steps: {self.state}")

    def restart_cycle(self, *, ok: bool = True) -> list[Event]:
        """From a counting state: fail, repair, climb to the restart and finish it."""
        out = self.to_repairing()
        out += self.climb_to_restart()
        assert self.current == "restarting", self.current
        return out + self.finish_restart(ok)

    def stay_broken(self, facts: int, *, restart_ok: bool = True) -> None:
        """A service nothing fixes: every probe fails, every step and restart is answered."""
        for _ in range(facts):
            if self.current == "cooldown":
                self.past_cooldown()
            elif self.current == "degraded":
                self.past_repair_backoff()
            if self.current == "restarting":
                self.finish_restart(restart_ok)
            elif self.current == "repairing":
                self.fail_step()
            elif self.current == "failed":
                return
            else:
                self.fail()

    def past_cooldown(self) -> Driver:
        """Move the clock to the end of the cooldown in force: the next probe counts (first
        rules), or a restart is allowed again (a check interval from now)."""
        self.now = max(self.now, self.state.cooldown_until - self.policy.check_interval)
        return self

    def past_repair_backoff(self) -> Driver:
        """Move the clock so that the next probe is at or after the repair backoff's end."""
        self.now = max(self.now, self.state.repair_after - self.policy.check_interval)
        return self

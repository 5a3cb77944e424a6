"""The service state machine: `decide`.

`decide(state, fact, policy)` applies a fact (probe, repair.finished, restart.finished, admin,
process.started, process.lost) and returns the decisions it leads to (transition,
repair.started, restart.started), each already applied to `state` with `hbsm.evolve.evolve`.
The graph itself (which trigger leads where, under which guard) is one shared
`transitions.Machine` per version of the rules (`hbsm.state.RULES`); every service's
ServiceState is a model of it. A log is re-decided by the rules it was written under, which its
`monitor.started` events record, so a change of the rules never breaks `hbsm replay --verify`
of an older history.

Pure: no I/O, no clock (time is the fact's `ts`), no globals but the immutable machines.
Replaying a log through `evolve` rebuilds exactly the state `decide` left behind, which is what
makes `hbsm replay --verify` and resuming after a crash possible. docs/architecture.md draws
the graph.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

from transitions import Machine

from hbsm.errors import HbsmError
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
from hbsm.evolve import COUNTING_STATES, evolve, evolve_probe, holds_probe
from hbsm.graph import Context, record_transition, table
from hbsm.state import RULES, STATES, Policy, ServiceState

__all__ = [
    "ADMIN_ACTIONS",
    "COUNTING_STATES",
    "DECISIONS",
    "FACTS",
    "KNOWN_RULES",
    "ServiceMachine",
    "UnknownRulesError",
    "decide",
    "evolve",
    "evolve_probe",
    "machine_for",
]

# Events decide() consumes, and the ones it produces.
FACTS: Final = (Probe, RepairFinished, RestartFinished, Admin, ProcessStarted, ProcessLost)
DECISIONS: Final = (Transition, RepairStarted, RestartStarted)
ADMIN_ACTIONS: Final = ("pause", "resume", "reset", "probe_now", "repair_now", "start", "stop")
# Every version of the rules this hbsm can decide by (see hbsm.state.RULES).
KNOWN_RULES: Final = (1, 2)

# transitions logs a warning per skipped convenience method when model_override=True: for
# thousands of models that is most of add_model's time, and it is expected here, not a problem.
logging.getLogger("transitions").setLevel(logging.ERROR)


class UnknownRulesError(HbsmError, ValueError):
    """A log written under decision rules this hbsm does not know (a newer hbsm wrote it)."""


class _Models(list[Any]):
    """The machine's model list, with membership by identity in a set.

    `Machine.add_model` checks `model not in machine.models` once per model: a list scan, so
    adding 10,000 services cost a quadratic half second. transitions only appends to, removes
    from, iterates and indexes this list, which a list subclass keeps working.
    """

    def __init__(self, models: Iterable[Any] = ()) -> None:
        super().__init__(models)
        self._ids = {id(m) for m in self}

    def __contains__(self, model: object) -> bool:
        return id(model) in self._ids

    def append(self, model: Any) -> None:
        super().append(model)
        self._ids.add(id(model))

    def remove(self, model: Any) -> None:
        super().remove(model)
        self._ids.discard(id(model))


class ServiceMachine:
    """One shared `transitions.Machine` for a version of the rules; every service's state is a
    model of it."""

    def __init__(self, rules: int = RULES) -> None:
        if rules not in KNOWN_RULES:
            raise UnknownRulesError(
                f"decision rules {rules} are not known to this hbsm (it knows "
                f"{', '.join(map(str, KNOWN_RULES))}): a newer hbsm wrote this log"
            )
        self.rules = rules
        self.machine = Machine(
            model=None,
            states=list(STATES),
            initial="unknown",
            transitions=table(rules),
            auto_transitions=False,
            model_override=True,  # add no per-model methods: triggers are fired by name
            send_event=True,
            ignore_invalid_triggers=True,
            before_state_change=[record_transition],
        )
        self.machine.models = _Models(self.machine.models)
        self._events = self.machine.events

    def add(self, states: Iterable[ServiceState]) -> None:
        """Register services in one batch, keeping the state each already has."""
        batch = list(states)
        current = [s.state for s in batch]
        self.machine.add_model(batch)  # add_model resets each model to the initial state
        for s, name in zip(batch, current, strict=True):
            s.state = name

    def fire(self, trigger: str, ctx: Context) -> bool:
        event = self._events.get(trigger)
        if event is None:  # a fact these rules did not know (the first rules: process.lost)
            return False
        return bool(event.trigger(ctx.state, ctx=ctx))


_SHARED: dict[int, ServiceMachine] = {}


def machine_for(rules: int = RULES) -> ServiceMachine:
    """The shared machine of a version of the rules (built once); raises UnknownRulesError."""
    machine = _SHARED.get(rules)
    if machine is None:
        machine = _SHARED[rules] = ServiceMachine(rules)
    return machine


def _probe_trigger(s: ServiceState, p: Probe, rules: int) -> tuple[str | None, str]:
    state = s.state
    if state == "repairing":
        if not s.step_done:
            return None, ""  # the step is still running: this probe verifies nothing
        step = s.ladder[s.step_index]
        if p.ok:
            return "verified", f"repair step {step} fixed it"
        return "step_failed", f"still failing after {step}: {p.error or 'failed'}"
    if state not in COUNTING_STATES or holds_probe(s, p.ts):
        return None, ""
    if p.ok:
        if state == "healthy":
            return None, ""
        return "probe_ok", f"probe ok ({s.successes} in a row)"
    if p.ts < s.grace_until and not s.restart_pending:
        # The start grace: recorded, not counted. (A restart already decided, waiting for the
        # cooldown's end, is no count: it is not held back by a grace.)
        return None, ""
    if rules == 1:
        return "probe_failed", f"probe failed ({s.failures} in a row): {p.error or 'failed'}"
    # No count in the words: the transition's `failures` has it, and the words stay true while
    # the service stays degraded and the count goes on.
    return "probe_failed", f"probe failed: {p.error or 'failed'}"


def decide(
    state: ServiceState,
    fact: Event,
    policy: Policy,
    machine: ServiceMachine | None = None,
) -> list[Event]:
    """Apply `fact` to `state` and return the decisions it leads to (already applied too).

    The same state, fact, policy and rules (the machine's; by default the current ones) always
    give the same decisions. Facts that do not apply in the current state (a stale repair
    outcome, a probe held by an old-rules cooldown) change nothing but what `evolve` keeps.
    """
    machine = machine or machine_for(RULES)
    evolve(state, fact, policy)
    trigger: str | None = None
    reason = ""
    if isinstance(fact, Probe):
        trigger, reason = _probe_trigger(state, fact, machine.rules)
    elif isinstance(fact, RestartFinished):
        if state.state == "restarting":
            trigger = "restart_done" if fact.ok else "restart_failed"
            reason = "restarted" if fact.ok else f"restart failed: {fact.output[-200:]}"
    elif isinstance(fact, ProcessLost):
        trigger = "process_lost"
        reason = f"supervised process {fact.pid} is gone" + (
            f": {fact.detail}" if fact.detail else ""
        )
    elif (
        isinstance(fact, Admin)
        and fact.allowed
        and fact.action in ("pause", "resume", "reset", "repair_now")
    ):
        trigger = fact.action
        reason = f"admin {fact.action}" + (f" by {fact.who}" if fact.who else "")
    # A repair step's own outcome only marks it done (the verification probe that follows
    # decides); a started process only opens its start grace. Nothing to fire for either.
    if trigger is None:
        return []
    ctx = Context(state=state, fact=fact, policy=policy, rules=machine.rules, reason=reason)
    machine.fire(trigger, ctx)
    return ctx.out

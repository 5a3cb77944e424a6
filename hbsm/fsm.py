"""The service state machine (DESIGN §3): `decide` and `evolve`.

`evolve(state, event)` applies one recorded event to a ServiceState: plain field updates, no
`transitions`, fast enough to fold millions of events. `decide(state, fact, policy)` applies a
fact (probe, repair.finished, restart.finished, admin) and returns the decisions it leads to
(transition, repair.started, restart.started), each already applied to `state` with `evolve`.
The graph itself (which trigger leads where, under which guard) is one shared
`transitions.Machine`; every service's ServiceState is a model of it.

Both are pure: no I/O, no clock (time is the fact's `ts`), no globals but the immutable machine.
Replaying a log through `evolve` rebuilds exactly the state `decide` left behind, which is what
makes `hbsm replay --verify` and resuming after a crash possible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from transitions import EventData, Machine

from hbsm.events import (
    Admin,
    Event,
    Probe,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    Transition,
)
from hbsm.state import RESTART_STEP, STATES, Policy, ServiceState

__all__ = [
    "ADMIN_ACTIONS",
    "COUNTING_STATES",
    "DECISIONS",
    "FACTS",
    "ServiceMachine",
    "decide",
    "evolve",
    "evolve_probe",
]

# Events decide() consumes, and the ones it produces.
FACTS: Final = (Probe, RepairFinished, RestartFinished, Admin)
DECISIONS: Final = (Transition, RepairStarted, RestartStarted)
ADMIN_ACTIONS: Final = ("pause", "resume", "reset", "probe_now", "repair_now", "start", "stop")

# States a probe counts in (outside them a probe is a verification, or ignored).
COUNTING_STATES: Final = frozenset({"unknown", "healthy", "degraded", "cooldown"})
# States `resume` returns to; a pause in the middle of a repair resumes as unknown, since the
# interrupted side effect is not taken up again.
_RESUMABLE: Final = ("healthy", "degraded", "cooldown", "failed")

# transitions logs a warning per skipped convenience method when model_override=True: for
# thousands of models that is most of add_model's time, and it is expected here, not a problem.
logging.getLogger("transitions").setLevel(logging.ERROR)


# --- evolve: events -> state ------------------------------------------------------------------


def evolve_probe(s: ServiceState, e: Probe) -> None:
    """`evolve` for a probe.

    A passing probe of a healthy service changes nothing: failures are 0 while healthy and
    successes only count on the way back to healthy. That steady state is most of any log, so
    `Projection` checks for it inline and calls this only for the rest.
    """
    state = s.state
    if state == "healthy" and e.ok:
        return
    if state in COUNTING_STATES and (state != "cooldown" or e.ts >= s.cooldown_until):
        if e.ok:
            s.successes += 1
            s.failures = 0
        else:
            s.failures += 1
            s.successes = 0
            s.last_error = e.error


def _evolve_transition(s: ServiceState, e: Transition) -> None:
    dst = e.dst
    if s.state == "healthy" and dst != "healthy":
        s.stable_span = max(s.stable_span, e.ts - s.since)
    s.state = dst
    s.since = e.ts
    s.failures = e.failures
    s.successes = 0
    if dst != "repairing" and dst != "restarting":
        s.ladder = ()
        s.step_index = -1
        s.step_done = False
        # Fix (tests/fsm): a run left mid-step (pause, reset) abandons the step; its outcome no
        # longer matches and would never clear in_flight, which then pointed at a step that is
        # gone (state.ladder[state.step_index] on () when the runtime takes up interrupted work).
        if s.in_flight is not None and s.in_flight.startswith("repair:"):
            s.in_flight = None
    if dst == "cooldown" and e.until is not None:
        s.cooldown_until = e.until
    elif dst == "paused":
        s.paused_from = e.src
    elif dst == "unknown":
        s.paused_from = None
        s.last_error = None
        if e.trigger == "reset":
            # A human reset: the restart budget starts over. last_restart and cooldown_s stay,
            # so the cooldown between two restarts still holds across a reset.
            s.restarts = []
            s.backoff = 0
            s.stable_span = 0.0


def _evolve_repair_started(s: ServiceState, e: RepairStarted) -> None:
    s.run = e.run
    s.ladder = e.ladder
    s.step_index = e.index
    s.step_done = False
    s.in_flight = f"repair:{e.step}"


def _evolve_repair_finished(s: ServiceState, e: RepairFinished) -> None:
    if e.run != s.run or e.index != s.step_index:
        return  # the outcome of an earlier run, arriving late
    s.in_flight = None
    if s.state == "repairing":
        s.step_done = True
        if e.error_class is not None:
            s.last_error = e.error_class


def _evolve_restart_started(s: ServiceState, e: RestartStarted) -> None:
    s.restarts = list(e.recent)
    s.last_restart = e.ts
    s.backoff = e.backoff
    s.cooldown_s = e.cooldown_s
    s.stable_span = 0.0
    s.in_flight = "restart"


def _evolve_restart_finished(s: ServiceState, e: RestartFinished) -> None:
    if s.in_flight == "restart":
        s.in_flight = None


_EVOLVERS: Final[dict[type, Callable[[ServiceState, Any], None]]] = {
    Probe: evolve_probe,
    Transition: _evolve_transition,
    RepairStarted: _evolve_repair_started,
    RepairFinished: _evolve_repair_finished,
    RestartStarted: _evolve_restart_started,
    RestartFinished: _evolve_restart_finished,
}


def evolve(state: ServiceState, event: Event) -> None:
    """Apply one event of this service to its state. Events that change nothing are ignored."""
    evolver = _EVOLVERS.get(type(event))
    if evolver is not None:
        evolver(state, event)


# --- decide: the graph, its guards and its effects ---------------------------------------------


@dataclass(slots=True)
class _Context:
    """What one decide() call works with; passed to every guard and callback."""

    state: ServiceState
    fact: Event
    policy: Policy
    reason: str
    out: list[Event] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        evolve(self.state, event)
        self.out.append(event)

    @property
    def ladder(self) -> tuple[str, ...]:
        """The ladder the run goes on with: once `diagnose` has classified the failure, the
        rest of the run follows that class's ladder."""
        s = self.state
        if 0 <= s.step_index < len(s.ladder) and s.ladder[s.step_index] == "diagnose":
            chosen = self.policy.ladder_for(s.last_error)
            return s.ladder[: s.step_index + 1] + tuple(x for x in chosen if x != "diagnose")
        return s.ladder

    @property
    def next_step(self) -> str | None:
        ladder = self.ladder
        nxt = self.state.step_index + 1
        return ladder[nxt] if nxt < len(ladder) else None

    def restarts_in_window(self) -> list[float]:
        horizon = self.fact.ts - self.policy.restart_window
        return [t for t in self.state.restarts if t > horizon]


def _ctx(ev: EventData) -> _Context:
    ctx: _Context = ev.kwargs["ctx"]
    return ctx


# Guards.


def _retries_exhausted(ev: EventData) -> bool:
    c = _ctx(ev)
    return c.state.failures >= c.policy.max_retries


def _enough_successes(ev: EventData) -> bool:
    c = _ctx(ev)
    return c.state.successes >= c.policy.success_threshold


def _next_is_restart(ev: EventData) -> bool:
    return _ctx(ev).next_step == RESTART_STEP


def _ladder_exhausted(ev: EventData) -> bool:
    return _ctx(ev).next_step is None


def _within_budget(ev: EventData) -> bool:
    c = _ctx(ev)
    return len(c.restarts_in_window()) < c.policy.restart_budget


def _cooled_down(ev: EventData) -> bool:
    s = _ctx(ev).state
    return s.last_restart is None or _ctx(ev).fact.ts >= s.last_restart + s.cooldown_s


def _give_up_on_restart_failure(ev: EventData) -> bool:
    return _ctx(ev).policy.on_restart_failure == "failed"


def _was(prev: str) -> Callable[[EventData], bool]:
    def guard(ev: EventData) -> bool:
        return _ctx(ev).state.paused_from == prev

    guard.__name__ = f"was_{prev}"
    return guard


# Callbacks: each turns the step just taken into events.


def _record_transition(ev: EventData) -> None:
    """before_state_change: the transition is recorded first, then what it leads to."""
    assert ev.transition is not None  # always set for a transition's callbacks
    dst = ev.transition.dest
    if dst is None:  # an internal transition (the next repair step): no change of state
        return
    c = _ctx(ev)
    s = c.state
    until = None
    failures = s.failures
    if dst == "cooldown":
        if ev.event.name == "restart_done":
            until = c.fact.ts + s.cooldown_s
        elif ev.event.name == "resume":
            # Fix (tests/fsm): back from a pause, the cooldown keeps its deadline; recomputing
            # it from the restart's start shortened it by the restart's duration.
            until = s.cooldown_until
        else:  # too soon to restart again: wait out the last restart's cooldown
            until = (s.last_restart or c.fact.ts) + s.cooldown_s
        failures = 0
    elif dst in ("healthy", "unknown"):
        failures = 0
    elif dst == "degraded" and ev.event.name != "probe_failed":
        failures = 0  # repairs gave up or a restart failed: count afresh
    reason = c.reason
    if dst == "failed" and ev.event.name == "step_failed":
        # Giving up is the loudest decision the machine takes: say why in so many words.
        spent = len(c.restarts_in_window())
        reason = (
            f"restart budget spent: {spent} restart(s) in the last "
            f"{c.policy.restart_window:g} s (budget {c.policy.restart_budget}); "
            f"needs an operator's reset. {reason}"
        )
    c.emit(
        Transition(
            ts=c.fact.ts,
            service=s.name,
            src=ev.transition.source,
            dst=dst,
            trigger=ev.event.name,
            reason=reason,
            failures=failures,
            until=until,
        )
    )


def _start_repair_run(ev: EventData) -> None:
    c = _ctx(ev)
    s = c.state
    ladder = c.policy.ladder_for(s.last_error)
    c.emit(
        RepairStarted(
            ts=c.fact.ts, service=s.name, run=s.run + 1, step=ladder[0], index=0, ladder=ladder
        )
    )


def _start_next_step(ev: EventData) -> None:
    c = _ctx(ev)
    s = c.state
    ladder = c.ladder
    index = s.step_index + 1
    c.emit(
        RepairStarted(
            ts=c.fact.ts, service=s.name, run=s.run, step=ladder[index], index=index, ladder=ladder
        )
    )


def _request_restart(ev: EventData) -> None:
    c = _ctx(ev)
    s = c.state
    recent = [*c.restarts_in_window(), c.fact.ts]
    # Back off when this restart follows another without a stable period in between.
    stable = s.last_restart is None or s.stable_span >= c.policy.stable_period
    backoff = 0 if stable else s.backoff + 1
    c.emit(
        RestartStarted(
            ts=c.fact.ts,
            service=s.name,
            attempt=len(recent),
            backoff=backoff,
            cooldown_s=c.policy.cooldown_for(backoff),
            recent=recent,
        )
    )


_ANY_BUT_PAUSED = [s for s in STATES if s != "paused"]

# Order matters: for one trigger and source, transitions takes the first whose guards pass.
_TRANSITIONS: Final[list[dict[str, Any]]] = [
    # Probes outside a repair run.
    {"trigger": "probe_ok", "source": ["unknown", "degraded", "cooldown"], "dest": "healthy",
     "conditions": [_enough_successes]},
    {"trigger": "probe_failed", "source": ["unknown", "healthy", "degraded", "cooldown"],
     "dest": "repairing", "conditions": [_retries_exhausted], "after": [_start_repair_run]},
    {"trigger": "probe_failed", "source": ["unknown", "healthy", "cooldown"], "dest": "degraded"},
    # A repair step has finished: the verification probe decides what comes next.
    {"trigger": "verified", "source": "repairing", "dest": "healthy"},
    {"trigger": "step_failed", "source": "repairing", "dest": "restarting",
     "conditions": [_next_is_restart, _within_budget, _cooled_down],
     "after": [_request_restart]},
    {"trigger": "step_failed", "source": "repairing", "dest": "failed",
     "conditions": [_next_is_restart], "unless": [_within_budget]},
    {"trigger": "step_failed", "source": "repairing", "dest": "cooldown",
     "conditions": [_next_is_restart]},
    {"trigger": "step_failed", "source": "repairing", "dest": "degraded",
     "conditions": [_ladder_exhausted]},
    {"trigger": "step_failed", "source": "repairing", "dest": None, "after": [_start_next_step]},
    # The restart's outcome.
    {"trigger": "restart_done", "source": "restarting", "dest": "cooldown"},
    {"trigger": "restart_failed", "source": "restarting", "dest": "failed",
     "conditions": [_give_up_on_restart_failure]},
    {"trigger": "restart_failed", "source": "restarting", "dest": "degraded"},
    # Operators.
    {"trigger": "pause", "source": _ANY_BUT_PAUSED, "dest": "paused"},
    *[{"trigger": "resume", "source": "paused", "dest": prev, "conditions": [_was(prev)]}
      for prev in _RESUMABLE],
    {"trigger": "resume", "source": "paused", "dest": "unknown"},
    {"trigger": "reset", "source": "*", "dest": "unknown"},
    # Fix (tests/fsm): not from `failed`, which (DESIGN §3) only a human reset leaves.
    {"trigger": "repair_now", "source": ["unknown", "healthy", "degraded", "cooldown"],
     "dest": "repairing", "after": [_start_repair_run]},
]  # fmt: skip


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
    """The one shared `transitions.Machine`; every service's state is a model of it."""

    def __init__(self) -> None:
        self.machine = Machine(
            model=None,
            states=list(STATES),
            initial="unknown",
            transitions=_TRANSITIONS,
            auto_transitions=False,
            model_override=True,  # add no per-model methods: triggers are fired by name
            send_event=True,
            ignore_invalid_triggers=True,
            before_state_change=[_record_transition],
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

    def fire(self, trigger: str, ctx: _Context) -> bool:
        return bool(self._events[trigger].trigger(ctx.state, ctx=ctx))


_DEFAULT_MACHINE: ServiceMachine | None = None


def _default_machine() -> ServiceMachine:
    global _DEFAULT_MACHINE
    if _DEFAULT_MACHINE is None:
        _DEFAULT_MACHINE = ServiceMachine()
    return _DEFAULT_MACHINE


def _probe_trigger(s: ServiceState, p: Probe) -> tuple[str | None, str]:
    state = s.state
    if state == "repairing":
        if not s.step_done:
            return None, ""  # the step is still running: this probe verifies nothing
        step = s.ladder[s.step_index]
        if p.ok:
            return "verified", f"repair step {step} fixed it"
        return "step_failed", f"still failing after {step}: {p.error or 'failed'}"
    if state == "cooldown" and p.ts < s.cooldown_until:
        return None, ""
    if state not in COUNTING_STATES:
        return None, ""
    if p.ok:
        if state == "healthy":
            return None, ""
        return "probe_ok", f"probe ok ({s.successes} in a row)"
    return "probe_failed", f"probe failed ({s.failures} in a row): {p.error or 'failed'}"


def decide(
    state: ServiceState,
    fact: Event,
    policy: Policy,
    machine: ServiceMachine | None = None,
) -> list[Event]:
    """Apply `fact` to `state` and return the decisions it leads to (already applied too).

    The same state, fact and policy always give the same decisions. Facts that do not apply in
    the current state (a stale repair outcome, a probe during a cooldown) change nothing but
    the counters `evolve` keeps.
    """
    evolve(state, fact)
    trigger: str | None = None
    reason = ""
    if isinstance(fact, Probe):
        trigger, reason = _probe_trigger(state, fact)
    elif isinstance(fact, RepairFinished):
        # The step's own outcome only marks it done; the verification probe that follows
        # decides. Nothing to fire here.
        return []
    elif isinstance(fact, RestartFinished):
        if state.state == "restarting":
            trigger = "restart_done" if fact.ok else "restart_failed"
            reason = "restarted" if fact.ok else f"restart failed: {fact.output[-200:]}"
    elif (
        isinstance(fact, Admin)
        and fact.allowed
        and fact.action in ("pause", "resume", "reset", "repair_now")
    ):
        trigger = fact.action
        reason = f"admin {fact.action}" + (f" by {fact.who}" if fact.who else "")
    if trigger is None:
        return []
    ctx = _Context(state=state, fact=fact, policy=policy, reason=reason)
    (machine or _default_machine()).fire(trigger, ctx)
    return ctx.out

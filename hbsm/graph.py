"""The state machine's graph: its transitions, their guards, and the events each one leads to.

`table(rules)` is the transition list of a version of the rules (`hbsm.state.RULES`), handed to
`transitions.Machine` by `hbsm.fsm.ServiceMachine`. Guards and callbacks receive the `Context`
of the `decide` call that fired them; callbacks emit decisions through it. Pure, like decide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from transitions import EventData

from hbsm.events import Event, RepairStarted, RestartStarted, Transition
from hbsm.evolve import evolve
from hbsm.state import RESTART_STEP, STATES, Policy, ServiceState

__all__ = ["Context", "record_transition", "table"]

# States `resume` returns to; a pause in the middle of a repair resumes as unknown, since the
# interrupted side effect is not taken up again.
_RESUMABLE: Final = ("healthy", "degraded", "cooldown", "failed")


# --- what one decide() call works with ---------------------------------------------------------


@dataclass(slots=True)
class Context:
    """What one decide() call works with; passed to every guard and callback."""

    state: ServiceState
    fact: Event
    policy: Policy
    rules: int
    reason: str
    out: list[Event] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        evolve(self.state, event, self.policy)
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


def _ctx(ev: EventData) -> Context:
    ctx: Context = ev.kwargs["ctx"]
    return ctx


# --- guards -------------------------------------------------------------------------------------


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


def _held(c: Context) -> bool:
    """The run reaches its restart step while its last check found the configuration broken."""
    return c.rules >= 3 and c.next_step == RESTART_STEP and bool(c.state.config_broken)


def _restart_held(ev: EventData) -> bool:
    return _held(_ctx(ev))


def _within_budget(ev: EventData) -> bool:
    c = _ctx(ev)
    return len(c.restarts_in_window()) < c.policy.restart_budget


def _cooled_down(ev: EventData) -> bool:
    c = _ctx(ev)
    s = c.state
    return s.last_restart is None or c.fact.ts >= s.last_restart + s.cooldown_s


def _restart_pending(ev: EventData) -> bool:
    return _ctx(ev).state.restart_pending


def _repair_due(ev: EventData) -> bool:
    """The backoff after repair runs that did not fix it is over."""
    c = _ctx(ev)
    return c.fact.ts >= c.state.repair_after


def _repair_budget_spent(ev: EventData) -> bool:
    """The run ending now is the last the repair budget allows."""
    c = _ctx(ev)
    budget = c.policy.repair_budget
    return budget > 0 and c.state.failed_runs + 1 >= budget


def _give_up_on_restart_failure(ev: EventData) -> bool:
    return _ctx(ev).policy.on_restart_failure == "failed"


def _was(prev: str) -> Callable[[EventData], bool]:
    def guard(ev: EventData) -> bool:
        return _ctx(ev).state.paused_from == prev

    guard.__name__ = f"was_{prev}"
    return guard


# --- callbacks: each turns the step just taken into events ----------------------------------


def _cooldown_until(c: Context, trigger: str) -> float:
    """When a cooldown entered now by `trigger` ends."""
    s = c.state
    if trigger == "resume":
        # Fix (tests/fsm): back from a pause, the cooldown keeps its deadline; recomputing
        # it from the restart's start shortened it by the restart's duration.
        return s.cooldown_until
    if trigger == "restart_done" and c.rules == 1:
        return c.fact.ts + s.cooldown_s  # the first rules counted it from the restart's end
    # From the restart's decision: the very deadline `_cooled_down` checks.
    return (s.last_restart if s.last_restart is not None else c.fact.ts) + s.cooldown_s


def _giving_up(c: Context, trigger: str, reason: str) -> str:
    """Why the service is `failed`: the loudest decision the machine takes, in so many words."""
    if trigger == "step_failed" and (c.next_step is None or _held(c)):
        return (
            f"repair budget spent: {c.state.failed_runs + 1} repair run(s) in a row did not fix "
            f"it (budget {c.policy.repair_budget}); needs an operator's reset. {reason}"
        )
    spent = len(c.restarts_in_window())
    return (
        f"restart budget spent: {spent} restart(s) in the last "
        f"{c.policy.restart_window:g} s (budget {c.policy.restart_budget}); "
        f"needs an operator's reset. {reason}"
    )


def record_transition(ev: EventData) -> None:
    """before_state_change: the transition is recorded first, then what it leads to."""
    assert ev.transition is not None  # always set for a transition's callbacks
    dst = ev.transition.dest
    if dst is None:  # an internal transition (the next repair step): no change of state
        return
    c = _ctx(ev)
    s = c.state
    trigger = ev.event.name
    until = None
    failures = s.failures
    if dst == "cooldown":
        until = _cooldown_until(c, trigger)
        failures = 0
    elif dst in ("healthy", "unknown"):
        failures = 0
    elif dst == "degraded" and trigger != "probe_failed":
        failures = 0  # repairs gave up or a restart failed: count afresh
        if trigger == "step_failed" and c.rules >= 2:
            until = c.fact.ts + c.policy.repair_delay(s.failed_runs + 1)
    reason = c.reason
    if trigger == "step_failed" and _held(c):
        reason = (
            f"restart held: the configuration is broken ({s.config_broken}); a restart would "
            f"not load it: mend it, and the next repair run restarts. {reason}"
        )
    if dst == "failed" and trigger in ("step_failed", "probe_failed", "process_lost"):
        reason = _giving_up(c, trigger, reason)
    c.emit(
        Transition(
            ts=c.fact.ts,
            service=s.name,
            src=ev.transition.source,
            dst=dst,
            trigger=trigger,
            reason=reason,
            failures=failures,
            until=until,
            # Only a cooldown says whether it holds probes; elsewhere the default is left out.
            hold=c.rules == 1 or dst != "cooldown",
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


# --- the graph ------------------------------------------------------------------------------

_ANY_BUT_PAUSED = [s for s in STATES if s != "paused"]
# Where a failed probe counts, and where a lost process is restarted from.
_WATCHED = ["unknown", "healthy", "degraded", "cooldown"]


def _restart_rows(rules: int, trigger: str, source: Any, when: list[Any]) -> list[dict[str, Any]]:
    """A restart is due (`when`): restart if the budget and the cooldown allow it, give up if
    the budget is spent, else wait in cooldown for the deadline.

    The first rules gave up as soon as the budget was spent; the current ones wait for the
    cooldown first and judge the budget when the restart would happen: the window may have
    moved on by then (a service that came back and broke again inside its cooldown, which the
    first rules never let it be seen doing, reached its restart step early and gave up early).
    """
    restart = {
        "trigger": trigger,
        "source": source,
        "dest": "restarting",
        "conditions": [*when, _within_budget, _cooled_down],
        "after": [_request_restart],
    }
    wait = {"trigger": trigger, "source": source, "dest": "cooldown", "conditions": when}
    give_up = {"trigger": trigger, "source": source, "dest": "failed", "conditions": when}
    if rules == 1:
        return [restart, {**give_up, "unless": [_within_budget]}, wait]
    return [restart, {**wait, "unless": [_cooled_down]}, give_up]  # fmt: skip


def table(rules: int) -> list[dict[str, Any]]:
    """The transitions of a version of the rules. Order matters: for one trigger and source,
    transitions takes the first whose guards pass."""
    probe_failed: list[dict[str, Any]]
    if rules == 1:
        probe_failed = [
            {"trigger": "probe_failed", "source": _WATCHED, "dest": "repairing",
             "conditions": [_retries_exhausted], "after": [_start_repair_run]},
            {"trigger": "probe_failed", "source": ["unknown", "healthy", "cooldown"],
             "dest": "degraded"},
        ]  # fmt: skip
        exhausted: list[dict[str, Any]] = []
        lost: list[dict[str, Any]] = []
    else:
        probe_failed = [
            # A restart waiting for the end of the cooldown: it is over and it still fails.
            {"trigger": "probe_failed", "source": "cooldown", "dest": "restarting",
             "conditions": [_restart_pending, _cooled_down, _within_budget],
             "after": [_request_restart]},
            {"trigger": "probe_failed", "source": "cooldown", "dest": "failed",
             "conditions": [_restart_pending, _cooled_down]},
            {"trigger": "probe_failed", "source": "cooldown", "dest": None,
             "conditions": [_restart_pending]},
            # Counted as anywhere else: a cooldown after a restart holds nothing back.
            {"trigger": "probe_failed", "source": _WATCHED, "dest": "repairing",
             "conditions": [_retries_exhausted, _repair_due], "after": [_start_repair_run]},
            {"trigger": "probe_failed", "source": ["unknown", "healthy"], "dest": "degraded"},
        ]  # fmt: skip
        exhausted = [
            {"trigger": "step_failed", "source": "repairing", "dest": "failed",
             "conditions": [_ladder_exhausted, _repair_budget_spent]},
        ]  # fmt: skip
        lost = _restart_rows(rules, "process_lost", _WATCHED, [])
    held = [
        {"trigger": "step_failed", "source": "repairing", "dest": "failed",
         "conditions": [_restart_held, _repair_budget_spent]},
        {"trigger": "step_failed", "source": "repairing", "dest": "degraded",
         "conditions": [_restart_held]},
    ]  # fmt: skip
    return [
        # Probes outside a repair run.
        {"trigger": "probe_ok", "source": ["unknown", "degraded", "cooldown"], "dest": "healthy",
         "conditions": [_enough_successes]},
        *probe_failed,
        # A repair step has finished: the verification probe decides what comes next (or,
        # rules 4, the step's own outcome when it changed nothing and the failure stands).
        {"trigger": "verified", "source": "repairing", "dest": "healthy"},
        # A broken configuration: no restart, the run ends as one without a restart step does.
        *(held if rules >= 3 else []),
        *_restart_rows(rules, "step_failed", "repairing", [_next_is_restart]),
        *exhausted,
        {"trigger": "step_failed", "source": "repairing", "dest": "degraded",
         "conditions": [_ladder_exhausted]},
        {"trigger": "step_failed", "source": "repairing", "dest": None,
         "after": [_start_next_step]},
        # The restart's outcome.
        {"trigger": "restart_done", "source": "restarting", "dest": "cooldown"},
        {"trigger": "restart_failed", "source": "restarting", "dest": "failed",
         "conditions": [_give_up_on_restart_failure]},
        {"trigger": "restart_failed", "source": "restarting", "dest": "degraded"},
        # A supervised process found gone when hbsm starts: a start after a crash is a restart.
        *lost,
        # Operators.
        {"trigger": "pause", "source": _ANY_BUT_PAUSED, "dest": "paused"},
        *[{"trigger": "resume", "source": "paused", "dest": prev, "conditions": [_was(prev)]}
          for prev in _RESUMABLE],
        {"trigger": "resume", "source": "paused", "dest": "unknown"},
        {"trigger": "reset", "source": "*", "dest": "unknown"},
        # Fix (tests/fsm): not from `failed`, which only a human reset leaves.
        {"trigger": "repair_now", "source": _WATCHED, "dest": "repairing",
         "after": [_start_repair_run]},
    ]  # fmt: skip

"""The service state machine: `decide`.

`decide(state, fact, policy)` applies a fact (probe, repair.finished, restart.finished, admin,
process.started, process.lost, cert.seen) and returns the decisions it leads to (transition,
repair.started, restart.started, cert.expiring), each already applied to `state` with
`hbsm.evolve.evolve`.
The graph itself (which trigger leads where, under which guard) is one shared
`transitions.Machine` per version of the rules (`hbsm.state.RULES`); it holds no models: each
trigger is fired on the ServiceState it is given. `decided(state, fact, policy)` does the same
on a copy and leaves `state` alone, for a caller that keeps the new state only once the events
are recorded (the monitor: a log that refuses them leaves nothing to undo).

A log is re-decided by the rules it was written under, which its `monitor.started` events
record, so a change of the rules never breaks `hbsm replay --verify` of an older history.

Pure: no I/O, no clock (time is the fact's `ts`), no globals but the immutable machines.
Replaying a log through `evolve` rebuilds exactly the state `decide` left behind, which is what
makes `hbsm replay --verify` and resuming after a crash possible. docs/architecture.md draws
the graph.
"""

from __future__ import annotations

from typing import Final

import msgspec
from transitions import Machine

from hbsm.errors import HbsmError
from hbsm.events import (
    Admin,
    CertExpiring,
    CertSeen,
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
from hbsm.vocabulary import ADMIN_ACTIONS, STATE_ACTIONS

__all__ = [
    "ADMIN_ACTIONS",
    "COUNTING_STATES",
    "DECISIONS",
    "FACTS",
    "KNOWN_RULES",
    "ServiceMachine",
    "UnknownRulesError",
    "decide",
    "decided",
    "evolve",
    "evolve_probe",
    "machine_for",
]

# Events decide() consumes, and the ones it produces.
FACTS: Final = (
    Probe,
    RepairFinished,
    RestartFinished,
    Admin,
    ProcessStarted,
    ProcessLost,
    CertSeen,
)
DECISIONS: Final = (Transition, RepairStarted, RestartStarted, CertExpiring)
# Every version of the rules this hbsm can decide by (see hbsm.state.RULES).
KNOWN_RULES: Final = (1, 2, 3, 4, 5)
_DAY: Final = 86400.0


class UnknownRulesError(HbsmError, ValueError):
    """A log written under decision rules this hbsm does not know (a newer hbsm wrote it)."""


class ServiceMachine:
    """One shared `transitions.Machine` for a version of the rules. It holds no models: a
    trigger is fired on the ServiceState at hand (transitions reads and sets its `state`), so
    any number of services, and copies of them, share it without being registered."""

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
            model_override=True,  # no per-model methods: triggers are fired by name
            send_event=True,
            ignore_invalid_triggers=True,
            before_state_change=[record_transition],
        )
        self._events = self.machine.events

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


def _stands(s: ServiceState, e: RepairFinished) -> bool:
    """The outcome of the step in progress says it changed nothing and the failure stands."""
    return (
        not e.verify
        and not e.interrupted
        and s.state == "repairing"
        and s.step_done
        and (e.run, e.index) == (s.run, s.step_index)
    )


def _cert_warning(s: ServiceState, fact: Event, policy: Policy) -> CertExpiring | None:
    """The report that the service's certificate expires within `cert_warn_days`, on the first
    fact inside that window (its own cert.seen, or a probe), once per certificate. A report
    only: the failure class `cert` starts no repair and no restart."""
    not_after = s.cert_not_after
    if not_after is None or s.cert_warned or policy.cert_warn_days <= 0:
        return None
    left = (not_after - fact.ts) / _DAY
    if left > policy.cert_warn_days:
        return None
    return CertExpiring(
        ts=fact.ts,
        service=s.name,
        fingerprint=s.cert_fingerprint,
        not_after=not_after,
        days_left=round(left, 3),
        warn_days=policy.cert_warn_days,
    )


def decided(
    state: ServiceState,
    fact: Event,
    policy: Policy,
    machine: ServiceMachine | None = None,
) -> tuple[ServiceState, list[Event]]:
    """`decide` on a copy of `state`: (the state after the fact and its decisions, the
    decisions). `state` itself is left as it was."""
    # A shallow copy is enough: evolve and the graph replace the one list field (`restarts`),
    # never change it in place.
    after = msgspec.structs.replace(state)
    return after, decide(after, fact, policy, machine)


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
    reported: list[Event] = []
    if (
        machine.rules >= 5
        and state.cert_not_after is not None
        and isinstance(fact, Probe | CertSeen)
    ):
        warning = _cert_warning(state, fact, policy)
        if warning is not None:
            evolve(state, warning, policy)
            reported.append(warning)
    trigger: str | None = None
    reason = ""
    if isinstance(fact, Probe):
        trigger, reason = _probe_trigger(state, fact, machine.rules)
    elif isinstance(fact, RepairFinished):
        if machine.rules >= 4 and _stands(state, fact):
            trigger = "step_failed"
            reason = (
                f"still failing after {fact.step}: {state.last_error or 'failed'} "
                "(the step changed nothing: no probe to wait for)"
            )
    elif isinstance(fact, RestartFinished):
        if state.state == "restarting":
            trigger = "restart_done" if fact.ok else "restart_failed"
            reason = "restarted" if fact.ok else f"restart failed: {fact.output[-200:]}"
    elif isinstance(fact, ProcessLost):
        trigger = "process_lost"
        reason = f"supervised process {fact.pid} is gone" + (
            f": {fact.detail}" if fact.detail else ""
        )
    elif isinstance(fact, Admin) and fact.allowed and fact.action in STATE_ACTIONS:
        trigger = fact.action
        reason = f"admin {fact.action}" + (f" by {fact.who}" if fact.who else "")
    # Any other repair step's outcome only marks it done (the verification probe that follows
    # decides); a started process only opens its start grace. Nothing to fire for either.
    if trigger is None:
        return reported
    ctx = Context(state=state, fact=fact, policy=policy, rules=machine.rules, reason=reason)
    machine.fire(trigger, ctx)
    return reported + ctx.out if reported else ctx.out

"""`evolve`: apply one recorded event to a service's state. Events in, state out.

Plain field updates, no `transitions`, fast enough to fold millions of events: the projection
folds logs with it, and `hbsm.fsm.decide` applies its own decisions with it, so replaying a log
rebuilds exactly the state the live state machine left behind. Everything the state machine
needs later is derived here from the events themselves (a decision carries its deadlines), or
from the service's recorded policy (the start grace). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from hbsm.events import (
    CertExpiring,
    CertSeen,
    Event,
    Probe,
    ProcessStarted,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    Transition,
)
from hbsm.state import Policy, ServiceState
from hbsm.vocabulary import CHECK_CONFIG_STEP

__all__ = ["COUNTING_STATES", "evolve", "evolve_probe", "holds_probe"]

# States a probe counts in (outside them a probe is a verification, or ignored).
COUNTING_STATES: Final = frozenset({"unknown", "healthy", "degraded", "cooldown"})


def holds_probe(s: ServiceState, ts: float) -> bool:
    """Whether a probe at `ts` is held uncounted by a cooldown of the first rules."""
    return s.state == "cooldown" and s.cooldown_holds and ts < s.cooldown_until


def evolve_probe(s: ServiceState, e: Probe) -> None:
    """`evolve` for a probe.

    A passing probe of a healthy service changes nothing but a start grace: failures are 0 while
    healthy and successes only count on the way back to healthy. That steady state is most of
    any log, so `Projection` checks for it inline and calls this only for the rest.
    """
    state = s.state
    if state == "healthy" and e.ok:
        s.grace_until = 0.0  # it answers: the start is over
        return
    if state not in COUNTING_STATES or holds_probe(s, e.ts):
        return
    if e.ok:
        s.successes += 1
        s.failures = 0
        s.grace_until = 0.0  # it answers: the start is over
    elif e.ts >= s.grace_until:
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
    if dst == "cooldown":
        if e.until is not None:
            s.cooldown_until = e.until
        s.cooldown_holds = e.hold
        if e.trigger == "restart_done":
            s.restart_pending = False
        elif e.trigger != "resume":  # a restart step or a lost process, too soon to restart
            s.restart_pending = True
    elif dst != "paused":
        s.restart_pending = False
    if dst == "degraded" and e.trigger == "step_failed":
        # A repair run ended without fixing it: the next one backs off.
        s.failed_runs += 1
        s.repair_after = e.until or 0.0
    elif dst == "healthy" or e.trigger == "reset":
        s.failed_runs = 0
        s.repair_after = 0.0
    if dst == "paused":
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
    if e.index == 0:  # a new run: no check of the configuration yet
        s.config_broken = ""
    s.run = e.run
    s.ladder = e.ladder
    s.step_index = e.index
    s.step_done = False
    s.in_flight = f"repair:{e.step}"


def _evolve_repair_finished(s: ServiceState, e: RepairFinished) -> None:
    if e.run != s.run or e.index != s.step_index:
        return  # the outcome of an earlier run, arriving late
    # Only a repair step in flight is over: a restart reached from the run's last step keeps
    # that step's index, and an outcome naming it is no end of the restart (whose own outcome
    # opens the start grace).
    if s.in_flight is not None and s.in_flight.startswith("repair:"):
        s.in_flight = None
    if s.state == "repairing":
        s.step_done = True
        if e.error_class is not None:
            s.last_error = e.error_class
        if e.step == CHECK_CONFIG_STEP:
            broken = not e.ok and not e.interrupted
            s.config_broken = (e.output.splitlines() or ["broken"])[0] if broken else ""


def _evolve_restart_started(s: ServiceState, e: RestartStarted) -> None:
    s.restarts = list(e.recent)
    s.last_restart = e.ts
    s.backoff = e.backoff
    s.cooldown_s = e.cooldown_s
    s.stable_span = 0.0
    s.in_flight = "restart"


def _start_grace(s: ServiceState, ts: float, policy: Policy) -> None:
    s.grace_until = ts + policy.start_grace if policy.start_grace > 0 else 0.0


def _evolve_restart_finished(s: ServiceState, e: RestartFinished, policy: Policy) -> None:
    if s.in_flight == "restart":  # else the outcome of no restart of ours: it opens nothing
        s.in_flight = None
        if e.ok:
            _start_grace(s, e.ts, policy)


def _evolve_process_started(s: ServiceState, e: ProcessStarted, policy: Policy) -> None:
    if not e.adopted:  # an adopted process has been running all along
        _start_grace(s, e.ts, policy)


def _evolve_cert_seen(s: ServiceState, e: CertSeen) -> None:
    s.cert_not_after = e.not_after
    if e.fingerprint != s.cert_fingerprint:  # a new certificate: not reported yet
        s.cert_fingerprint = e.fingerprint
        s.cert_warned = False


def _evolve_cert_expiring(s: ServiceState, e: CertExpiring) -> None:
    if e.fingerprint == s.cert_fingerprint:
        s.cert_warned = True


_EVOLVERS: Final[dict[type, Callable[[ServiceState, Any], None]]] = {
    Probe: evolve_probe,
    Transition: _evolve_transition,
    RepairStarted: _evolve_repair_started,
    RepairFinished: _evolve_repair_finished,
    RestartStarted: _evolve_restart_started,
    CertSeen: _evolve_cert_seen,
    CertExpiring: _evolve_cert_expiring,
}
# The events whose effect depends on the service's policy.
_POLICY_EVOLVERS: Final[dict[type, Callable[[ServiceState, Any, Policy], None]]] = {
    RestartFinished: _evolve_restart_finished,
    ProcessStarted: _evolve_process_started,
}


def evolve(state: ServiceState, event: Event, policy: Policy) -> None:
    """Apply one event of this service, under its policy, to its state. Events that change
    nothing are ignored."""
    evolver = _EVOLVERS.get(type(event))
    if evolver is not None:
        evolver(state, event)
        return
    with_policy = _POLICY_EVOLVERS.get(type(event))
    if with_policy is not None:
        with_policy(state, event, policy)

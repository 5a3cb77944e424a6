"""`hbsm replay --verify`: re-decide every recorded fact and compare with what was recorded.

Each service starts from a fresh ServiceState and the Policy of its `service.registered` event
(the default Policy, with a warning, if the history has none), the latest one in force (a
reload registers a changed service again; a `service.removed` one starts afresh if it comes
back); a `snapshot` restores each
service's FSM state and policy from its views. Every fact (probe, repair.finished,
restart.finished, admin, process.started, process.lost) goes through `hbsm.fsm.decide` under
the rules the monitor that recorded it ran (its `monitor.started`, or the snapshot's monitor
view; the current rules for a history with neither), and the decisions it returns are
queued; every recorded decision (transition, repair.started, restart.started) must equal the
next queued one of its service in everything but `seq`. A fact arriving while decisions about
its service are still queued, or a recorded decision with none queued, is a divergence too.
(Queues are per service: where several nodes write one log, one service's fact and decisions
may have other services' events between them.) A probe decided by a quorum of vantage points
must hold the verdict of its votes, each the `probe.seen` fact it names (hbsm.cluster.quorum).
The first divergence ends the check.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

import msgspec

from hbsm._format import duration, tail
from hbsm.cluster.quorum import verdict, vote_window
from hbsm.events import (
    Admin,
    Event,
    MonitorStarted,
    OpaqueEvent,
    Probe,
    ProbeSeen,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    ServiceRegistered,
    ServiceRemoved,
    Snapshot,
    Transition,
    type_name,
)
from hbsm.fsm import DECISIONS, FACTS, ServiceMachine, UnknownRulesError, decide, machine_for
from hbsm.state import RULES, Policy, ServiceState

__all__ = ["Divergence", "Verifier", "VerifyResult", "recorded_machine", "short"]

DivergenceKind = Literal["differs", "missing", "unexpected", "unfinished", "votes"]


class Divergence(msgspec.Struct, kw_only=True):
    kind: DivergenceKind
    seq: int  # the diverging recorded event (for "unfinished": the last event of the history)
    ts: float
    service: str | None
    expected: str | None  # what decide() gives, in short
    recorded: str | None  # what the log holds, in short
    fields: list[str] = []  # for "differs": the fields that differ
    after_seq: int | None = None  # the fact the expected decisions answer
    message: str = ""  # one line: everything above, for an operator


class VerifyResult(msgspec.Struct, kw_only=True):
    ok: bool
    events: int
    facts: int  # re-decided
    decisions: int  # recorded decisions that matched
    services: list[str]
    default_policy: list[str]  # services verified with the default Policy (no registration)
    divergence: Divergence | None = None


def short(event: Event | OpaqueEvent) -> str:
    """An event in a few words, enough to tell two decisions apart at a glance."""
    if isinstance(event, Transition):
        return f"transition {event.src}->{event.dst} ({event.trigger})"
    if isinstance(event, RepairStarted):
        return f"repair.started run {event.run} step {event.index} {event.step}"
    if isinstance(event, RestartStarted):
        return (
            f"restart.started attempt {event.attempt} backoff {event.backoff} "
            f"cooldown {duration(event.cooldown_s)}"
        )
    if isinstance(event, Probe):
        return "probe ok" if event.ok else f"probe failed ({event.error or 'failed'})"
    if isinstance(event, RepairFinished):
        return f"repair.finished run {event.run} step {event.step} ok={event.ok}"
    if isinstance(event, RestartFinished):
        return f"restart.finished ok={event.ok}"
    if isinstance(event, Admin):
        return f"admin {event.action}" + ("" if event.allowed else " (denied)")
    return type_name(event)


# The fields `short` shows: a difference in them needs no further words.
_SHOWN: dict[type, frozenset[str]] = {
    Transition: frozenset({"src", "dst", "trigger"}),
    RepairStarted: frozenset({"run", "step", "index"}),
    RestartStarted: frozenset({"attempt", "backoff", "cooldown_s"}),
}


def recorded_machine(event: MonitorStarted | Snapshot) -> ServiceMachine:
    """The state machine of the rules a monitor.started (or a snapshot) says were in force;
    raises UnknownRulesError naming the event."""
    rules = event.rules if isinstance(event, MonitorStarted) else event.monitor.rules
    try:
        return machine_for(rules)
    except UnknownRulesError as exc:
        raise UnknownRulesError(f"seq {event.seq} ({type_name(event)}): {exc}") from None


def _differing(expected: Event, recorded: Event) -> list[str]:
    if type(expected) is not type(recorded):
        return ["type"]
    a = msgspec.structs.asdict(expected)
    b = msgspec.structs.asdict(recorded)
    return [k for k in a if k != "seq" and a[k] != b[k]]


def _show(value: Any) -> str:
    return tail(repr(value), 60)


class Verifier:
    """Feed it every event of the history in order; it stops at the first divergence."""

    def __init__(self, services: frozenset[str] = frozenset()) -> None:
        self.only = services
        self.states: dict[str, ServiceState] = {}
        self.policies: dict[str, Policy] = {}
        self.default_policy: list[str] = []
        self.events = 0
        self.facts = 0
        self.decisions = 0
        self.divergence: Divergence | None = None
        # The rules the facts are re-decided by; raises UnknownRulesError for a newer log's.
        self.machine: ServiceMachine = machine_for(RULES)
        # Per service: the decisions still due, and the fact they answer.
        self._queues: dict[str, deque[Event]] = {}
        self._after: dict[str, Event] = {}
        self._last: Event | OpaqueEvent | None = None
        # The vantage points' facts, by seq: what a quorum's votes name.
        self._seen: dict[int, ProbeSeen] = {}

    def _wanted(self, service: str | None) -> bool:
        return service is not None and (not self.only or service in self.only)

    def _state(self, name: str) -> ServiceState:
        state = self.states.get(name)
        if state is None:
            state = self.states[name] = ServiceState(name=name)
            if name not in self.policies:
                self.policies[name] = Policy()
                self.default_policy.append(name)
        return state

    def feed(self, event: Event | OpaqueEvent) -> Divergence | None:
        """Check one event; returns the divergence if this is the first one."""
        if self.divergence is not None:
            return self.divergence
        self.events += 1
        self._last = event
        if isinstance(event, DECISIONS):
            if self._wanted(event.service):
                self._check_decision(event)
        elif isinstance(event, FACTS):
            if self._wanted(event.service):
                self._decide(event)
        elif isinstance(event, ProbeSeen):
            self._seen[event.seq] = event
        elif isinstance(event, ServiceRegistered):
            self.policies[event.service] = event.policy
            if event.service in self.default_policy:
                self.default_policy.remove(event.service)
        elif isinstance(event, ServiceRemoved):
            # Out of the configuration: added again later, it starts afresh, as the monitor's.
            if event.service in self.states:
                self.states[event.service] = ServiceState(name=event.service)
        elif isinstance(event, MonitorStarted):
            self.machine = recorded_machine(event)
        elif isinstance(event, Snapshot):
            self.machine = recorded_machine(event)
            self._restore(event)
        return self.divergence

    def _decide(self, fact: Event) -> None:
        name: str = fact.service  # type: ignore[attr-defined]
        queue = self._queues.get(name)
        if queue:
            self._diverge(
                "missing", fact, expected=queue[0], recorded=None,
                why=f"the log has {short(fact)} where the decision was due",
            )  # fmt: skip
            return
        state = self._state(name)
        policy = self.policies[name]
        if isinstance(fact, Probe) and fact.votes:
            why = self._votes_problem(fact, policy)
            if why is not None:
                self._diverge("votes", fact, expected=None, recorded=fact, why=why)
                return
        decisions = decide(state, fact, policy, self.machine)
        self.facts += 1
        if decisions:
            self._queues.setdefault(name, deque()).extend(decisions)
            self._after[name] = fact

    def _votes_problem(self, probe: Probe, policy: Policy) -> str | None:
        """Why `probe`'s verdict does not follow from its votes (None: it does)."""
        window = vote_window(policy)
        for vote in probe.votes:
            if vote.node == probe.node:
                continue  # the owner's own result: this probe
            seen = self._seen.get(vote.seq)
            if seen is None or (seen.service, seen.node, seen.ok) != (
                probe.service,
                vote.node,
                vote.ok,
            ):
                return f"its vote of {vote.node} names seq {vote.seq}, which is not that fact"
            if not seen.ok and seen.ts < probe.ts - window:
                return f"its vote of {vote.node} (seq {vote.seq}) is older than the window"
        # The quorum applied: the policy's, or fewer with fewer nodes alive (never more).
        quorum = probe.quorum or policy.quorum
        if not 1 <= quorum <= policy.quorum:
            return f"it applied quorum {quorum}, beyond the policy's {policy.quorum}"
        if verdict(probe.votes, quorum) != probe.ok:
            return f"its votes give ok={not probe.ok} under quorum {quorum}"
        return None

    def _check_decision(self, recorded: Event) -> None:
        queue = self._queues.get(recorded.service)  # type: ignore[attr-defined]
        if not queue:
            self._diverge(
                "unexpected", recorded, expected=None, recorded=recorded,
                why="the FSM decided nothing here",
            )  # fmt: skip
            return
        expected = queue[0]
        fields = _differing(expected, recorded)
        if fields:
            visible = _SHOWN.get(type(expected), frozenset()) | {"type"}
            why = "; ".join(
                f"{f}: expected {_show(getattr(expected, f))}, "
                f"recorded {_show(getattr(recorded, f))}"
                for f in fields
                if f not in visible
            )
            self._diverge("differs", recorded, expected=expected, recorded=recorded,
                          why=why, fields=fields)  # fmt: skip
            return
        queue.popleft()
        self.decisions += 1

    def _restore(self, snap: Snapshot) -> None:
        pending = {name for name, queue in self._queues.items() if queue}
        for view in snap.services:
            name = view.name
            if not self._wanted(name):
                continue
            self.policies[name] = view.policy
            if name in self.default_policy:
                self.default_policy.remove(name)
            if name in pending:
                continue  # our state already holds the decisions still due
            self.states[name] = view.fsm.copy()

    def finish(self, *, torn: bool = False) -> Divergence | None:
        """The end of the history: decisions still due are a divergence, unless the log's last
        line was torn (a crash can cut a fact's decisions off with it)."""
        due = next((queue[0] for queue in self._queues.values() if queue), None)
        if self.divergence is None and due is not None and not torn and self._last is not None:
            self._diverge(
                "unfinished", self._last, expected=due, recorded=None,
                why="the history ends before it",
            )  # fmt: skip
        return self.divergence

    @property
    def pending(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def _diverge(
        self,
        kind: DivergenceKind,
        at: Event | OpaqueEvent,
        *,
        expected: Event | None,
        recorded: Event | None,
        why: str,
        fields: list[str] | None = None,
    ) -> None:
        service = getattr(recorded or expected or at, "service", None)
        fact = self._after.get(service) if service is not None else None
        after = fact.seq if fact is not None and expected is not None else None
        exp = short(expected) if expected is not None else None
        rec = short(recorded) if recorded is not None else None
        answer = f" (answering seq {after})" if after is not None else ""
        if kind == "differs":
            text = f"expected {exp}{answer}, recorded {rec}" + (f": {why}" if why else "")
        elif kind == "unexpected" or kind == "votes":
            text = f"recorded {rec}, but {why}"
        else:
            text = f"expected {exp}{answer}, but {why}"
        self.divergence = Divergence(
            kind=kind,
            seq=at.seq,
            ts=at.ts,
            service=service,
            expected=exp,
            recorded=rec,
            fields=fields or [],
            after_seq=after,
            message=text,
        )

    def result(self) -> VerifyResult:
        return VerifyResult(
            ok=self.divergence is None,
            events=self.events,
            facts=self.facts,
            decisions=self.decisions,
            services=sorted(self.states),
            default_policy=list(self.default_policy),
            divergence=self.divergence,
        )

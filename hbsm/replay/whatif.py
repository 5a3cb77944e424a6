"""`hbsm replay --set KEY=VALUE`: what the recorded history would have led to with other
thresholds.

The recorded *probe, admin and process facts* are re-decided through `hbsm.fsm.decide` on
fresh states with the changed policies (under the rules the history was recorded by, as
`--verify` does), while the runtime is simulated: every repair step the what-if starts
is followed at once by a synthetic repair.finished(ok=True) for that run and step, every
restart by a synthetic restart.finished(ok=True), and the next recorded probe verifies it. The
recorded repair and restart outcomes are dropped, since they answer the recorded decisions, not
these. It is an approximation: a repair or restart that did not happen cannot change the probes
that follow it, steps take no time, and `diagnose` classifies nothing (the ladder follows the
last probe's error class). It answers "how many repairs and restarts, how soon detected, with
these thresholds, for these same observations".

KEY is a Policy field (every service) or SERVICE.KEY (one service); VALUE is JSON when it
parses as JSON, else a string (a comma-separated string for a ladder).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from typing import Any, Final, NamedTuple

import msgspec

from hbsm.errors import HbsmError
from hbsm.events import (
    Admin,
    Event,
    MonitorStarted,
    OpaqueEvent,
    Probe,
    ProcessLost,
    ProcessStarted,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    ServiceRegistered,
    ServiceRemoved,
    Snapshot,
)
from hbsm.fsm import ServiceMachine, decide, machine_for
from hbsm.replay.incidents import IncidentTracker
from hbsm.replay.verify import recorded_machine
from hbsm.replay.window import Window
from hbsm.state import RULES, Policy, ServiceState

__all__ = [
    "APPROXIMATION",
    "POLICY_KEYS",
    "Override",
    "OverrideError",
    "Side",
    "WhatIf",
    "WhatIfReport",
    "WhatIfRow",
    "apply_overrides",
    "parse_override",
    "parse_overrides",
]

APPROXIMATION: Final = (
    "the recorded probe, admin and process facts re-decided with the changed thresholds; every "
    "repair step and restart the what-if starts is taken to finish at once and succeed "
    "(recorded outcomes are dropped), and the next recorded probe verifies it"
)

POLICY_KEYS: Final[tuple[str, ...]] = Policy.__struct_fields__


class OverrideError(HbsmError, ValueError):
    """A bad --set; str() is one line naming the --set and the key."""


class Override(NamedTuple):
    text: str  # as given: KEY=VALUE
    service: str | None  # None: every service
    key: str  # a Policy field
    value: Any


_TYPE_ERROR = re.compile(r"Expected `(?P<want>.+?)`, got `(?P<got>.+?)` - at `\$\.(?P<key>.+)`")


def _why(exc: msgspec.ValidationError) -> str:
    """msgspec's message, in the words the rest of hbsm uses ("key: why")."""
    text = str(exc)
    match = _TYPE_ERROR.fullmatch(text)
    if match:
        return f"{match['key']}: expected {match['want']}, got {match['got']}"
    return text


def _value(raw: str, key: str) -> Any:
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        value = raw
    if key == "ladder" and isinstance(value, str):
        value = [step.strip() for step in value.split(",") if step.strip()]
    return value


def _apply(policy: Policy, changes: Iterable[Override]) -> Policy:
    data = msgspec.structs.asdict(policy)
    for change in changes:
        data[change.key] = change.value
    return msgspec.convert(data, Policy)


def parse_override(text: str) -> Override:
    try:
        text.encode("utf-8")
    except UnicodeError:
        # Fix (tests/reliability): an argument that is not UTF-8 (`--set max_retries=$'\xff'`)
        # reached msgspec as lone surrogates and raised UnicodeEncodeError, a traceback.
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise OverrideError(f"--set {shown}: not UTF-8 text") from None
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise OverrideError(f"--set {text}: expected KEY=VALUE, e.g. max_retries=5")
    service: str | None = None
    field = key
    if key not in POLICY_KEYS and "." in key:
        service, _, field = key.rpartition(".")
    if field not in POLICY_KEYS or service == "":
        raise OverrideError(
            f"--set {text}: unknown key {key!r}; valid keys: {', '.join(POLICY_KEYS)} "
            "(or SERVICE.KEY for one service)"
        )
    return Override(text=text, service=service, key=field, value=_value(raw, field))


def parse_overrides(texts: Iterable[str]) -> list[Override]:
    """Parse and validate every --set against the default policy, in order; raises
    OverrideError naming the first bad one."""
    overrides = [parse_override(t) for t in texts]
    applied: list[Override] = []
    for o in sorted(overrides, key=lambda o: o.service is not None):  # every-service ones first
        try:
            _apply(Policy(), [*applied, o])
        except msgspec.ValidationError as exc:
            raise OverrideError(f"--set {o.text}: {_why(exc)}") from None
        if o.service is None:
            applied.append(o)
    return overrides


def apply_overrides(policy: Policy, service: str, overrides: Iterable[Override]) -> Policy:
    """`policy` with the overrides that concern `service`; raises OverrideError."""
    mine = [o for o in overrides if o.service is None] + [
        o for o in overrides if o.service == service
    ]
    if not mine:
        return policy
    try:
        return _apply(policy, mine)
    except msgspec.ValidationError:
        pass
    for n in range(1, len(mine) + 1):  # name the --set that breaks it
        try:
            _apply(policy, mine[:n])
        except msgspec.ValidationError as exc:
            bad = mine[n - 1]
            raise OverrideError(
                f"--set {bad.text}: for service {service!r} (recorded policy): {_why(exc)}"
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover


class Side(msgspec.Struct, kw_only=True):
    repairs: int  # repair runs started
    restarts: int
    failed: int  # services that ended failed
    mttd_s: float | None  # mean time to detect (first failure to repairing)
    incidents: int


class WhatIfRow(msgspec.Struct, kw_only=True):
    service: str  # "total" for the sum over services
    recorded: Side
    what_if: Side
    difference: Side  # what_if - recorded (mttd_s None unless both have one)


class WhatIfReport(msgspec.Struct, kw_only=True):
    changes: list[str]
    approximation: str
    events: int
    facts: int  # probe, admin and process facts re-decided
    default_policy: list[str]  # services with no registration: default Policy + changes
    services: list[WhatIfRow]
    total: WhatIfRow


def _difference(a: Side, b: Side) -> Side:
    return Side(
        repairs=b.repairs - a.repairs,
        restarts=b.restarts - a.restarts,
        failed=b.failed - a.failed,
        mttd_s=b.mttd_s - a.mttd_s if a.mttd_s is not None and b.mttd_s is not None else None,
        incidents=b.incidents - a.incidents,
    )


def _sides(tracker: IncidentTracker, names: list[str]) -> dict[str, Side]:
    incidents = tracker.incidents()
    return {
        t.service: Side(
            repairs=t.repairs,
            restarts=t.restarts,
            failed=int(t.state == "failed"),
            mttd_s=t.mttd_s,
            incidents=t.incidents,
        )
        for t in tracker.tallies(names, incidents)
    }


def _total(tracker: IncidentTracker, sides: Iterable[Side]) -> Side:
    items = list(sides)
    detects = [i.detect_s for i in tracker.incidents() if i.detect_s is not None]
    return Side(
        repairs=sum(s.repairs for s in items),
        restarts=sum(s.restarts for s in items),
        failed=sum(s.failed for s in items),
        mttd_s=sum(detects) / len(detects) if detects else None,
        incidents=sum(s.incidents for s in items),
    )


class WhatIf:
    """Feed it every event of the history in order; then ask for `report()`."""

    def __init__(self, overrides: list[Override], window: Window | None = None) -> None:
        self.overrides = overrides
        self.window = window or Window()
        self.recorded = IncidentTracker(self.window)
        self.simulated = IncidentTracker(self.window)
        self.states: dict[str, ServiceState] = {}
        self.policies: dict[str, Policy] = {}  # with the overrides applied
        self.default_policy: list[str] = []
        self.events = 0
        self.facts = 0
        self.last_ts: float | None = None
        self.machine: ServiceMachine = machine_for(RULES)  # the recorded rules, as verify's

    def _policy(self, name: str, recorded: Policy) -> None:
        self.policies[name] = apply_overrides(recorded, name, self.overrides)

    def _state(self, name: str) -> ServiceState:
        state = self.states.get(name)
        if state is None:
            state = self.states[name] = ServiceState(name=name)
            self.simulated.states.setdefault(name, "unknown")
            if name not in self.policies:
                self._policy(name, Policy())
                self.default_policy.append(name)
        return state

    def feed(self, event: Event | OpaqueEvent) -> None:
        self.events += 1
        self.last_ts = event.ts
        if type(event) is Probe:  # most of any history: the cheapest test first
            if self.window.wants(event.service):
                self._simulate(event)
            return
        self.recorded.feed(event)
        if isinstance(event, Admin | ProcessStarted | ProcessLost):
            if event.service is not None and self.window.wants(event.service):
                self._simulate(event)
        elif isinstance(event, MonitorStarted):
            self.machine = recorded_machine(event)
        elif isinstance(event, ServiceRemoved):
            if event.service in self.states:  # added again later, it starts afresh
                self.states[event.service] = ServiceState(name=event.service)
        elif isinstance(event, ServiceRegistered):
            name = event.service
            self._policy(name, event.policy)
            if name in self.default_policy:
                self.default_policy.remove(name)
        elif isinstance(event, Snapshot):
            self.machine = recorded_machine(event)
            for view in event.services:
                name = view.name
                if name in self.states:
                    continue  # the what-if has its own state by now
                self._policy(name, view.policy)
                fsm = view.fsm
                self.states[name] = fsm.copy()
                self.simulated.seed(name, fsm.state, fsm.since, event.seq)

    def _simulate(self, fact: Probe | Admin | ProcessStarted | ProcessLost) -> None:
        name: str = fact.service  # type: ignore[assignment]
        state = self._state(name)
        policy = self.policies[name]
        machine = self.machine
        self.facts += 1
        due = deque(decide(state, fact, policy, machine))
        while due:
            decision = due.popleft()
            self.simulated.feed(decision)
            if type(decision) is RepairStarted:
                done = RepairFinished(
                    ts=decision.ts, service=name, run=decision.run, step=decision.step,
                    index=decision.index, ok=True, output="(what-if)",
                )  # fmt: skip
                due.extend(decide(state, done, policy, machine))
            elif type(decision) is RestartStarted:
                restarted = RestartFinished(ts=decision.ts, service=name, ok=True)
                due.extend(decide(state, restarted, policy, machine))

    @property
    def services(self) -> list[str]:
        return sorted(set(self.recorded.states) | set(self.states))

    def report(self) -> WhatIfReport:
        self.recorded.last_ts = self.simulated.last_ts = self.last_ts
        names = [n for n in self.services if self.window.wants(n)]
        before = _sides(self.recorded, names)
        after = _sides(self.simulated, names)
        rows = [
            WhatIfRow(
                service=n, recorded=before[n], what_if=after[n],
                difference=_difference(before[n], after[n]),
            )
            for n in names
        ]  # fmt: skip
        rec_total = _total(self.recorded, before.values())
        sim_total = _total(self.simulated, after.values())
        return WhatIfReport(
            changes=[o.text for o in self.overrides],
            approximation=APPROXIMATION,
            events=self.events,
            facts=self.facts,
            default_policy=list(self.default_policy),
            services=rows,
            total=WhatIfRow(
                service="total", recorded=rec_total, what_if=sim_total,
                difference=_difference(rec_total, sim_total),
            ),
        )  # fmt: skip

"""Hypothesis: random fact streams for one service, every step checked against the reference.

A stream mixes probes (single or in bursts, passing or failing with random error classes),
repair outcomes (for the step in flight, or stale), restart outcomes (usually for the restart in
flight, sometimes out of the blue), process starts and losses, admin actions (allowed or not,
short pauses included) and time gaps from none to days, under a random valid Policy and either
version of the rules (the first rules' policies have no start grace: it did not exist). Like
the runtime, the driver usually (not always) answers a repair.started with that step's
repair.finished, and a restart.started with a restart.finished. `model.Checker` predicts each
step and checks every invariant; see its docstring.

`HBSM_FSM_EXAMPLES=2000 pytest tests/fsm` for a longer search (default: a run of a few seconds).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

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
    ServiceRegistered,
    Transition,
)
from hbsm.fsm import ADMIN_ACTIONS, KNOWN_RULES, decide, machine_for
from hbsm.projection import Projection
from hbsm.state import ERROR_CLASSES, RESTART_STEP, Policy, ServiceState

from .driver import SERVICE, START, snapshot
from .model import Checker

SETTINGS = settings(
    max_examples=int(os.environ.get("HBSM_FSM_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

STEPS = ("diagnose", "check_config", "http", "command", "signal")
ERRORS = st.sampled_from(ERROR_CLASSES)
# What a failed probe reports: a class, or (an older probe kind) none.
PROBE_ERRORS = ERRORS | st.none()
# Seconds between facts, from none to days: mostly short, so that cooldowns and restart windows
# are often still running when the next fact comes, sometimes long enough that they all expire.
GAPS = st.one_of(
    st.integers(0, 60),
    st.integers(0, 600),
    st.integers(0, 7_200),
    st.integers(0, 3 * 86_400),
).map(float)
# How long a repair step or a restart takes: mostly seconds, sometimes minutes.
DURATIONS = st.one_of(st.integers(0, 10), st.integers(0, 600)).map(float)
# What the next action is, weighted by repetition.
KINDS = (
    "probe", "burst", "burst", "burst", "repair", "restart", "admin", "admin", "blip", "process",
)  # fmt: skip
# Every admin action, resume more often so that pauses end (pause/resume/reset come first).
ADMIN_MIX = ("resume", "pause", "resume", "reset", *ADMIN_ACTIONS)


@st.composite
def ladders(draw: st.DrawFn) -> tuple[str, ...]:
    steps = draw(st.lists(st.sampled_from(STEPS), min_size=1, max_size=4))
    if draw(st.integers(0, 3)):  # most ladders end in a restart
        steps.append(RESTART_STEP)
    return tuple(steps)


@st.composite
def policies(draw: st.DrawFn, rules: int = 2) -> Policy:
    cooldown = draw(st.integers(0, 900))
    backoff = draw(st.integers(0, 600))
    return Policy(
        check_interval=float(draw(st.integers(1, 120))),
        max_retries=draw(st.integers(1, 4)),
        success_threshold=draw(st.integers(1, 3)),
        restart_cooldown=float(cooldown),
        cooldown_max=float(cooldown + draw(st.sampled_from([0, 60, 600, 3_000, 20_000]))),
        stable_period=float(draw(st.integers(0, 3_600))),
        restart_budget=draw(st.integers(0, 4)),
        restart_window=float(draw(st.integers(1, 2 * 86_400))),
        ladder=draw(ladders()),
        ladders=draw(st.dictionaries(ERRORS, ladders(), max_size=3)),
        on_restart_failure=draw(st.sampled_from(["failed", "degraded"])),
        start_grace=float(draw(st.integers(0, 120))) if rules >= 2 else 0.0,
        repair_backoff=float(backoff),
        repair_backoff_max=float(backoff + draw(st.sampled_from([0, 60, 3_000]))),
        repair_budget=draw(st.integers(0, 4)),
    )


class Runtime:
    """Feeds one service the way the monitor would, drawing every choice from hypothesis."""

    def __init__(
        self,
        policy: Policy,
        data: st.DataObject,
        *,
        rules: int,
        kinds: tuple[str, ...] = KINDS,
        most_ok: int = 10,
    ) -> None:
        self.policy = policy
        self.machine = machine_for(rules)
        self.draw = data.draw
        self.kinds = kinds
        self.state = ServiceState(name=SERVICE)
        self.checker = Checker(policy, rules=rules)
        self.now = START
        self.ok_per_10 = self.draw(st.integers(0, most_ok), label="passing probes per 10")

    def usually(self, label: str) -> bool:
        return self.draw(st.integers(0, 9), label=label) < 8

    def at(self, gap: float) -> float:
        self.now += gap
        return self.now

    def run(self, fact: Event) -> None:
        """Feed a fact, then the outcomes of the side effects it started (usually)."""
        pending = [fact]
        while pending:
            fact = pending.pop(0)
            decisions = decide(self.state, fact, self.policy, self.machine)
            self.checker.observe(fact, decisions, self.state)
            for d in decisions:
                if isinstance(d, RepairStarted) and self.usually("repair.finished follows"):
                    pending.append(self.repair_finished(d.run, d.index, d.step))
                if isinstance(d, RestartStarted) and self.usually("restart.finished follows"):
                    pending.append(self.restart_finished())

    def probe(self, gap: float, ok: bool, error: str | None) -> Probe:
        return Probe(
            ts=self.at(gap), service=SERVICE, ok=ok, error=None if ok else error, latency_ms=1.0
        )

    def repair_finished(self, run: int, index: int, step: str) -> RepairFinished:
        return RepairFinished(
            ts=self.at(self.draw(DURATIONS)),
            service=SERVICE,
            run=run,
            step=step,
            index=index,
            ok=self.draw(st.booleans(), label="step ok"),
            error_class=self.draw(st.none() | ERRORS, label="diagnosed"),
            # False: the step changed nothing and the failure stands (no verification probe).
            verify=self.draw(st.booleans(), label="verify"),
        )

    def restart_finished(self) -> RestartFinished:
        ok = self.draw(st.integers(0, 3), label="restart ok") > 0
        return RestartFinished(
            ts=self.at(self.draw(DURATIONS)), service=SERVICE, ok=ok, output="" if ok else "exit 1"
        )

    def step(self) -> None:
        kind = self.draw(st.sampled_from(self.kinds))
        if kind == "probe":
            ok = self.draw(st.integers(0, 9), label="probe") < self.ok_per_10
            self.run(self.probe(self.draw(GAPS), ok, self.draw(PROBE_ERRORS)))
        elif kind == "burst":  # an outage or a recovery, probed at the check interval
            ok = self.draw(st.integers(0, 9), label="burst") < self.ok_per_10
            error = self.draw(PROBE_ERRORS)
            for _ in range(self.draw(st.integers(2, 12), label="burst length")):
                self.run(self.probe(self.policy.check_interval, ok, error))
        elif kind == "repair":  # an outcome out of step with the FSM: current, stale or made up
            s, pick = self.state, self.draw(st.integers(0, 9))
            which = self.draw(st.sampled_from(["current", "earlier run", "earlier step", "any"]))
            run, index = s.run, s.step_index
            if which == "earlier run":
                run -= 1 + pick % 3
            elif which == "earlier step":
                index -= 1 + pick % 3
            elif which == "any":
                run, index = pick % (s.run + 2), pick % 5 - 1
            self.at(self.draw(GAPS))
            self.run(self.repair_finished(run, index, self.draw(st.sampled_from(STEPS))))
        elif kind == "restart":
            self.at(self.draw(GAPS))
            self.run(self.restart_finished())
        elif kind == "process":  # hbsm (re)started: a process started, adopted, or lost
            gap, pick = self.draw(GAPS), self.draw(st.integers(0, 2), label="process")
            if pick == 2:
                self.run(ProcessLost(ts=self.at(gap), service=SERVICE, pid=7))
            else:
                self.run(ProcessStarted(ts=self.at(gap), service=SERVICE, pid=7, adopted=pick == 1))
        elif kind == "blip":  # a short maintenance: pause, then resume
            for action in ("pause", "resume"):
                self.run(Admin(ts=self.at(self.draw(GAPS)), service=SERVICE, action=action))
        else:
            action = self.draw(st.sampled_from(ADMIN_MIX))
            allowed = self.draw(st.integers(0, 3), label="allowed") > 0
            self.run(
                Admin(ts=self.at(self.draw(GAPS)), service=SERVICE, action=action, allowed=allowed)
            )


def note_coverage(log: list[Event]) -> None:
    """What the stream reached (`pytest --hypothesis-show-statistics` shows the mix)."""
    for e in log:
        if isinstance(e, Transition):
            event(f"transition {e.src} -> {e.dst}")
        elif isinstance(e, RestartStarted) and e.backoff:
            event("a restart backed off")


@pytest.mark.parametrize("rules", KNOWN_RULES)
@SETTINGS
@given(data=st.data())
def test_random_fact_streams_keep_every_invariant(rules: int, data: st.DataObject) -> None:
    policy = data.draw(policies(rules), label="policy")
    runtime = Runtime(policy, data, rules=rules)
    for _ in range(data.draw(st.integers(1, 40), label="actions")):
        runtime.step()
    runtime.checker.finish()
    note_coverage(runtime.checker.log)
    # The projection folds the same log, with its own inlined probe path, to the same state.
    projection = Projection()
    projection.apply(ServiceRegistered(ts=START, service=SERVICE, policy=policy))
    projection.apply_all(runtime.checker.log)
    if SERVICE in projection.services:
        assert snapshot(projection.services[SERVICE].fsm) == snapshot(runtime.state)


# A service that hardly ever answers: runs reach their restart step as fast as the guards allow,
# restarts fail as often as not, and the cooldown, budget and backoff guards do the work.
STUBBORN = ("burst", "burst", "burst", "probe", "restart", "blip", "process")


@pytest.mark.parametrize("rules", KNOWN_RULES)
@SETTINGS
@given(data=st.data())
def test_a_service_that_keeps_failing_keeps_every_invariant(
    rules: int, data: st.DataObject
) -> None:
    policy = data.draw(policies(rules), label="policy")
    runtime = Runtime(policy, data, rules=rules, kinds=STUBBORN, most_ok=2)
    for _ in range(data.draw(st.integers(1, 40), label="actions")):
        runtime.step()
    runtime.checker.finish()
    note_coverage(runtime.checker.log)

"""Fault: a service flapping at every probe for an hour (simulated time).

The real state machine (`hbsm.fsm.decide` on a shared `ServiceMachine`) and the real notice
planner (`hbsm.notify.NoticePlanner`) are driven the way the runtime drives them: scheduled
probes every `check_interval` (skipped while a repair step or a restart owns the service), each
repair step answered by its outcome and then a verification probe, each restart by its outcome.
The clock is simulated, so an hour of probes takes a fraction of a second.

What must hold, read against the config's own values: restarts within the budget in every
window, never closer than the cooldown, the cooldown doubling (up to its cap) between restarts
without a stable period, `failed` once the budget is spent, and notices once per incident and
within the rate limit, each suppressed one accounted for.
"""

from __future__ import annotations

import functools
import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import pytest

from hbsm.config import BUILTIN_STEPS, Config
from hbsm.config.validate import Blame, validate
from hbsm.events import (
    Event,
    Probe,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    Transition,
)
from hbsm.fsm import ServiceMachine, decide
from hbsm.notify import Notice, NoticePlanner
from hbsm.state import Policy, ServiceState

T0 = 1_700_000_000.0
HOUR = 3600.0
SERVICE = "api"
# How long each side effect takes, in simulated seconds (all well inside one check interval).
STEP_SECONDS = {"diagnose": 0.5, "check_config": 0.3, "command": 1.0}
RESTART_SECONDS = 2.0
PROBE_SECONDS = 0.05
# Scheduled probes are skipped while an effect owns the service (as in the runtime).
EFFECT_STATES = frozenset({"repairing", "restarting", "paused"})

FAIL, OK = False, True


def one_service_config(**settings: Any) -> Config:
    """A config as `hbsm run` would load it (same validation), with one service."""
    service = {
        "name": SERVICE,
        "url": "http://127.0.0.1:9/health",
        "restart": {"kind": "command", "argv": ["systemctl", "restart", SERVICE]},
        "steps": {"command": {"argv": ["./repair.sh"]}},
    }
    config = msgspec.convert({"services": [service], **settings}, Config)
    validate(config, Blame(None, {}), BUILTIN_STEPS)
    return config


class FlappingRun:
    """One service whose target answers `pattern[slot]` in each check-interval slot, run
    through the real FSM and notice planner for `duration` simulated seconds."""

    def __init__(self, config: Config, pattern: Sequence[bool]) -> None:
        self.config = config
        self.policy: Policy = config.policy_for(config.services[0])
        self.pattern = tuple(pattern)
        self.state = ServiceState(name=SERVICE)
        self.machine = ServiceMachine()
        notify = config.notify
        self.planner = NoticePlanner(on=notify.on, rate_per_hour=notify.rate_per_hour)
        # The same events planned without a rate limit: what would have gone out.
        self.unlimited = NoticePlanner(on=notify.on, rate_per_hour=0)
        self.log: list[Event] = []
        self.notices: list[Notice] = []
        self.wanted: list[Notice] = []
        self._seq = itertools.count(1)
        self._order = itertools.count()
        self._queue: list[tuple[float, int, Callable[[float], None]]] = []

    # --- the target ---------------------------------------------------------------------------

    def target_ok(self, ts: float) -> bool:
        slot = int((ts - T0) / self.policy.check_interval + 1e-9)
        return self.pattern[slot % len(self.pattern)]

    # --- the runtime's part -------------------------------------------------------------------

    def run(self, duration: float = HOUR) -> FlappingRun:
        interval = self.policy.check_interval
        for k in range(1, int(duration / interval) + 1):
            self._at(T0 + k * interval, self._scheduled_probe)
        while self._queue:
            ts, _, action = heapq.heappop(self._queue)
            action(ts)
        return self

    def record(self, fact: Event) -> list[Event]:
        decisions = decide(self.state, fact, self.policy, self.machine)
        stamped = [msgspec.structs.replace(e, seq=next(self._seq)) for e in (fact, *decisions)]
        self.log += stamped
        self.notices += self.planner.plan(stamped)
        self.wanted += self.unlimited.plan(stamped)
        for event in decisions:
            if isinstance(event, RepairStarted):
                done = event.ts + STEP_SECONDS[event.step]
                self._at(done, functools.partial(self._step_finished, started=event))
            elif isinstance(event, RestartStarted):
                self._at(event.ts + RESTART_SECONDS, self._restart_finished)
        return stamped

    def _at(self, ts: float, action: Callable[[float], None]) -> None:
        heapq.heappush(self._queue, (ts, next(self._order), action))

    def _probe(self, ts: float) -> None:
        ok = self.target_ok(ts)
        self.record(
            Probe(ts=ts, service=SERVICE, ok=ok, status=200 if ok else 500, error=_error(ok))
        )

    def _scheduled_probe(self, ts: float) -> None:
        if self.state.state not in EFFECT_STATES:
            self._probe(ts)

    def _step_finished(self, ts: float, *, started: RepairStarted) -> None:
        # diagnose succeeds (it classifies the failure); no other step fixes a flapping target.
        ok = started.step == "diagnose"
        self.record(
            RepairFinished(
                ts=ts,
                service=SERVICE,
                run=started.run,
                step=started.step,
                index=started.index,
                ok=ok,
                error_class="http_5xx" if ok else None,
                output="" if ok else "exit 1",
            )
        )
        s = self.state
        if s.state == "repairing" and s.step_done and s.run == started.run:
            self._probe(ts + PROBE_SECONDS)  # the verification probe

    def _restart_finished(self, ts: float) -> None:
        self.record(RestartFinished(ts=ts, service=SERVICE, ok=True, output="restarted"))

    # --- the log, read back -------------------------------------------------------------------

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.log if isinstance(e, kind)]


def _error(ok: bool) -> str | None:
    return None if ok else "http_5xx"


# --- what must hold whatever the scenario ------------------------------------------------------


def healthy_spells(log: Sequence[Event], end: float) -> list[tuple[float, float]]:
    """(entered, left) of every stretch the service spent healthy."""
    moves = [e for e in log if isinstance(e, Transition)]
    leaving = [m.ts for m in moves[1:]] + [end]
    return [(m.ts, left) for m, left in zip(moves, leaving, strict=True) if m.dst == "healthy"]


def assert_restarts_within_the_policy(run: FlappingRun) -> None:
    p = run.policy
    restarts: list[RestartStarted] = run.of(RestartStarted)
    # Never more than the budget in any window (the FSM's guard: inside ts - window, exclusive).
    for r in restarts:
        inside = [x for x in restarts if r.ts - p.restart_window < x.ts <= r.ts]
        assert len(inside) <= p.restart_budget, (r.ts - T0, [x.ts - T0 for x in inside])
    if restarts:
        assert (restarts[0].backoff, restarts[0].cooldown_s) == (0, p.restart_cooldown)
    spells = healthy_spells(run.log, end=T0 + 2 * HOUR)
    for a, b in itertools.pairwise(restarts):
        # Never closer than the cooldown the earlier restart set.
        assert b.ts - a.ts >= a.cooldown_s, (a.ts - T0, b.ts - T0, a.cooldown_s)
        stable = any(
            a.ts <= entered and min(left, b.ts) - entered >= p.stable_period
            for entered, left in spells
        )
        if stable:
            assert (b.backoff, b.cooldown_s) == (0, p.restart_cooldown)
        else:
            assert b.backoff == a.backoff + 1
            assert b.cooldown_s == min(a.cooldown_s * 2, p.cooldown_max)
    assert all(r.cooldown_s <= p.cooldown_max for r in restarts)


def assert_gave_up_only_on_a_spent_budget(run: FlappingRun) -> None:
    p = run.policy
    restarts = run.of(RestartStarted)
    gave_up = [t for t in run.of(Transition) if t.dst == "failed"]
    if not gave_up:
        return
    (failed,) = gave_up  # only a human reset leaves `failed`
    assert failed.trigger == "step_failed" and "restart budget spent" in failed.reason
    inside = [r for r in restarts if failed.ts - p.restart_window < r.ts]
    assert len(inside) == p.restart_budget
    assert all(r.ts < failed.ts for r in restarts), "a restart after giving up"
    assert failed is run.of(Transition)[-1], "failed is left only by a human reset"


def key(n: Notice) -> tuple[str, str, float]:
    return (n.kind, n.incident, n.ts)


def assert_notices_deduped_and_rate_limited(run: FlappingRun) -> None:
    rate = run.config.notify.rate_per_hour
    sent, wanted = run.notices, run.wanted
    # One per incident for everything but restarts; one per restart decision.
    per_incident = Counter((n.incident, n.kind) for n in wanted if n.kind != "restart")
    assert all(count == 1 for count in per_incident.values()), per_incident
    assert sum(n.kind == "restart" for n in wanted) == len(run.of(RestartStarted))
    assert all(n.kind in run.config.notify.on for n in wanted)
    # At most `rate` in any rolling hour (the planner's own window: (ts - 1 h, ts]), but for
    # `failed` (once per incident), which says a human is needed and is never held back.
    for n in sent:
        if n.kind != "failed":
            assert sum(n.ts - HOUR < m.ts <= n.ts for m in sent) <= rate
    # What went out is what was wanted, less the suppressed; each sent notice reports the
    # number suppressed since the one before it, and nothing is suppressed below the rate.
    wanted_keys = [key(n) for n in wanted]
    sent_keys = {key(n) for n in sent}
    assert [k for k in wanted_keys if k in sent_keys] == [key(n) for n in sent]
    missed = 0
    for n in wanted:
        if key(n) in sent_keys:
            out = next(m for m in sent if key(m) == key(n))
            assert out.details.get("suppressed", 0) == missed, (out.message, missed)
            missed = 0
        else:
            missed += 1
    if len(wanted) <= rate:
        assert len(sent) == len(wanted)


def assert_invariants(run: FlappingRun) -> None:
    assert_restarts_within_the_policy(run)
    assert_gave_up_only_on_a_spent_budget(run)
    assert_notices_deduped_and_rate_limited(run)


# --- the scenarios -----------------------------------------------------------------------------


def test_flapping_under_the_retry_threshold_is_a_string_of_silent_blips() -> None:
    """Fail, ok, fail, ok... with max_retries 2: never two failures in a row, so no repair, no
    restart and no notice in an hour, just healthy <-> degraded at every probe."""
    config = one_service_config(check_interval=10.0, max_retries=2)
    run = FlappingRun(config, [FAIL, OK]).run()
    probes = run.of(Probe)
    assert len(probes) == HOUR / config.check_interval
    assert not run.of(RepairStarted) and not run.of(RestartStarted)
    assert run.notices == [] and run.wanted == []
    moves = [(t.src, t.dst) for t in run.of(Transition)]
    assert moves[0][0] == "unknown"  # the first probe
    assert set(moves[1:]) == {("healthy", "degraded"), ("degraded", "healthy")}
    assert sum(not p.ok for p in probes) == sum(dst == "degraded" for _, dst in moves)
    assert_invariants(run)


def test_flapping_past_the_retry_threshold_spends_the_restart_budget_then_fails() -> None:
    """Fail, ok, ... with max_retries 1: every failure starts a repair whose verification probe
    (in the same failing slot) fails, so the ladder climbs to its restart; the restarts back off
    and, the budget spent within its window, the service is `failed`, loudly, and stays so."""
    config = one_service_config(
        check_interval=10.0,
        max_retries=1,
        restart_cooldown=60.0,
        cooldown_max=600.0,
        restart_budget=3,
        restart_window=HOUR,
        ladder=["diagnose", "command", "restart"],
        notify={"rate_per_hour": 20},
    )
    run = FlappingRun(config, [FAIL, OK]).run()
    restarts = run.of(RestartStarted)
    assert len(restarts) == config.restart_budget
    assert [r.cooldown_s for r in restarts] == [60.0, 120.0, 240.0]
    assert run.state.state == "failed"
    assert_invariants(run)
    failed = [n for n in run.notices if n.kind == "failed"]
    assert len(failed) == 1 and "restart budget spent" in failed[0].message
    assert failed[0].ts == max(n.ts for n in run.notices), "nothing notified after giving up"


def test_flapping_paced_by_the_backoff_keeps_within_budget_and_the_rate_limit() -> None:
    """Fail, fail, ok, ... with a restart window short enough that the backed-off cooldown
    keeps the restarts under the budget: the service restarts all hour, the cooldown doubling
    up to its cap, and the notices (about three per incident) hit the rate limit. A restart
    step reached inside the cooldown waits for it; the budget is judged when the restart would
    happen, so the service is never `failed` for a restart it was not going to take."""
    config = one_service_config(
        check_interval=10.0,
        max_retries=2,
        restart_cooldown=120.0,
        cooldown_max=480.0,
        stable_period=600.0,
        restart_budget=3,
        restart_window=600.0,
        ladder=["diagnose", "command", "restart"],
        notify={"rate_per_hour": 8},
    )
    run = FlappingRun(config, [FAIL, FAIL, OK]).run()
    restarts = run.of(RestartStarted)
    # More restarts in the hour than the budget: the sliding window is what bounds them.
    assert len(restarts) > config.restart_budget
    cooldowns = [r.cooldown_s for r in restarts]
    assert cooldowns[:3] == [120.0, 240.0, 480.0]
    assert set(cooldowns[3:]) == {config.cooldown_max}
    assert run.state.state != "failed"
    assert_invariants(run)
    assert len(run.wanted) > config.notify.rate_per_hour  # the limit was put to the test
    assert len(run.notices) == config.notify.rate_per_hour
    # Seen recovering between its failures, inside a cooldown too: every failure streak is an
    # incident of its own, and most wait out the cooldown's restart and recover without it.
    incidents = {n.incident for n in run.wanted}
    streaks = [t for t in run.of(Transition) if (t.src, t.dst) == ("healthy", "degraded")]
    # (The last streak may be cut off by the end of the hour before it goes past degraded.)
    assert len(streaks) - 1 <= len(incidents) <= len(streaks)
    assert len(incidents) > 10 * len(restarts)


@pytest.mark.parametrize("rate", [1, 3, 20])
def test_giving_up_is_notified_whatever_the_rate_limit(rate: int) -> None:
    """The notice that a service is `failed` (it needs a human) goes out even when the rate
    limit has silenced the restarts before it, and tells how many notices were suppressed."""
    config = one_service_config(
        check_interval=10.0,
        max_retries=1,
        restart_cooldown=30.0,
        cooldown_max=60.0,
        restart_budget=4,
        restart_window=HOUR,
        ladder=["diagnose", "command", "restart"],
        notify={"rate_per_hour": rate},
    )
    run = FlappingRun(config, [FAIL, OK]).run()
    assert run.state.state == "failed"
    assert_invariants(run)
    (failed,) = [n for n in run.notices if n.kind == "failed"]
    others = [n for n in run.notices if n.kind != "failed"]
    assert len(others) == min(rate, len(run.wanted) - 1)
    assert failed.details.get("suppressed", 0) == len(run.wanted) - len(run.notices)

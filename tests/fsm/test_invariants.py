"""The state machine's invariants (docs/architecture.md), one scripted history each; the
properties test them at random."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from hbsm.events import Probe, ServiceRegistered, Transition, decode_lines, encode_lines
from hbsm.fsm import decide
from hbsm.state import Policy, ServiceState

from .driver import SERVICE, Driver, replay, snapshot

# --- 1. two restarts are never closer than restart_cooldown -------------------------------------


def test_1_restarts_are_never_closer_than_the_cooldown_even_when_they_fail():
    # A failed restart leaves the service degraded at once: the ladder comes back to its restart
    # step long before the cooldown is over, again and again.
    d = Driver(
        restart_cooldown=600,
        cooldown_max=600,
        on_restart_failure="degraded",
        check_interval=10,
        restart_budget=1_000,
        restart_window=86_400,
    )
    d.stay_broken(400, restart_ok=False)
    times = [r.ts for r in d.restarts]
    assert len(times) >= 5
    assert all(b - a >= 600 for a, b in pairwise(times))
    waited = [t for t in d.transitions if (t.src, t.dst) == ("repairing", "cooldown")]
    assert len(waited) >= 4  # the ladder did reach its restart step too soon, and waited


def test_1_backed_off_restarts_keep_their_longer_spacing():
    d = Driver(
        restart_cooldown=60,
        cooldown_max=10_000,
        on_restart_failure="degraded",
        check_interval=10,
        restart_budget=1_000,
        restart_window=86_400,
    )
    d.stay_broken(300, restart_ok=False)
    assert len(d.restarts) >= 4
    for before, after in pairwise(d.restarts):
        assert after.ts - before.ts >= before.cooldown_s >= 60


def test_1_a_reset_does_not_shorten_the_time_between_restarts():
    d = Driver(restart_cooldown=600, check_interval=10)
    d.restart_cycle()
    first = d.restarts[-1]
    d.admin("reset")
    d.to_repairing()
    d.climb_to_restart()
    assert d.restarts == [first]
    assert d.current == "cooldown"
    assert d.state.cooldown_until == first.ts + 600


# --- 2. a repair starts only after max_retries consecutive failed probes ------------------------


def repair_starts(d: Driver) -> list[Transition]:
    return [t for t in d.transitions if t.dst == "repairing"]


def test_2_a_passing_probe_breaks_the_run_of_failures():
    d = Driver(max_retries=4)
    for _ in range(5):
        d.fails(3)
        d.ok()
    assert repair_starts(d) == []
    d.fails(3)
    assert d.current == "degraded"
    d.fail()
    (start,) = repair_starts(d)
    assert (start.trigger, start.failures) == ("probe_failed", 4)
    probes = [f for f in d.facts if isinstance(f, Probe)]
    assert [p.ok for p in probes[-5:]] == [True, False, False, False, False]


def test_2_a_passing_probe_breaks_the_run_even_while_still_degraded():
    d = Driver(max_retries=3, success_threshold=2)
    d.fails(2)
    d.ok()  # not healthy yet, but the failures are no longer consecutive
    d.fails(2)
    assert (d.current, repair_starts(d)) == ("degraded", [])
    d.fail()
    assert len(repair_starts(d)) == 1


def test_2_under_the_first_rules_probes_inside_a_cooldown_do_not_count():
    d = Driver(max_retries=3, restart_cooldown=300, check_interval=30, rules=1)
    d.restart_cycle()
    d.fails(9)  # inside the cooldown
    d.past_cooldown()
    d.fails(2)
    assert len(repair_starts(d)) == 1  # only the run that led to the restart
    d.fail()
    assert len(repair_starts(d)) == 2


def test_2_probes_inside_a_cooldown_count_and_start_a_repair_at_max_retries():
    d = Driver(max_retries=3, restart_cooldown=300, check_interval=30)
    d.restart_cycle()
    restarted = d.now
    d.fails(2)
    assert (d.current, len(repair_starts(d))) == ("cooldown", 1)
    d.fail()
    assert len(repair_starts(d)) == 2  # the third failure in a row, well inside the cooldown
    start = repair_starts(d)[-1]
    assert (start.src, start.failures) == ("cooldown", 3)
    assert start.ts < restarted + 300


def test_2_probes_while_paused_do_not_count():
    d = Driver(max_retries=3)
    d.to_healthy()
    d.admin("pause")
    d.fails(10)
    d.admin("resume")
    d.fails(2)
    assert (d.current, repair_starts(d)) == ("degraded", [])
    d.fail()
    assert len(repair_starts(d)) == 1


def test_2_only_an_admin_repair_now_starts_a_repair_without_failures():
    d = Driver(max_retries=3)
    d.to_healthy()
    d.admin("repair_now")
    (start,) = repair_starts(d)
    assert (start.src, start.trigger) == ("healthy", "repair_now")


# --- 3. at most restart_budget restarts in restart_window; past that, failed --------------------


def test_3_past_the_restart_budget_the_service_is_failed_and_stays_failed():
    d = Driver(restart_budget=2, restart_window=3_600, restart_cooldown=60, cooldown_max=60)
    d.stay_broken(200)
    assert d.current == "failed"
    assert len(d.restarts) == 2
    last = d.transitions[-1]
    assert (last.src, last.dst, last.trigger) == ("repairing", "failed", "step_failed")
    assert last.reason
    assert last.ts - d.restarts[0].ts < 3_600
    # Nothing but a human gets it out: not probes, stray outcomes or time.
    assert d.fails(10) == [] and d.ok() == []
    assert d.finish_restart() == [] and d.finish_step() == []
    d.wait(86_400)
    assert d.fails(5) == [] and d.admin("repair_now") == []
    assert d.current == "failed"


def test_3_the_budget_counts_only_the_restarts_inside_the_sliding_window():
    d = Driver(
        restart_budget=2,
        restart_window=1_000,
        restart_cooldown=100,
        cooldown_max=100,
        stable_period=100_000,
        check_interval=10,
    )
    for _ in range(6):
        d.restart_cycle()
        d.past_cooldown()
        d.ok()
        d.wait(550)
    assert d.current == "healthy"
    times = [r.ts for r in d.restarts]
    assert len(times) == 6
    assert all(sum(1 for u in times if t - 1_000 < u <= t) <= 2 for t in times)
    assert max(r.attempt for r in d.restarts) == 2


def test_3_a_human_reset_starts_the_budget_over():
    d = Driver(restart_budget=1, restart_window=86_400, restart_cooldown=60, cooldown_max=60)
    d.stay_broken(100)
    assert (d.current, len(d.restarts)) == ("failed", 1)
    d.admin("reset")
    d.stay_broken(100)
    assert (d.current, len(d.restarts)) == ("failed", 2)
    assert d.restarts[-1].recent == [d.restarts[-1].ts]


# --- 4. backoff, its reset by a stable period, counters reset by a successful repair -------------


def backoff_driver(**policy: Any) -> Driver:
    fields: dict[str, Any] = {
        "restart_cooldown": 100,
        "cooldown_max": 500,
        "stable_period": 600,
        "restart_budget": 1_000,
        "restart_window": 1,
        "check_interval": 10,
    }
    return Driver(Policy(**{**fields, **policy}))


def test_4_consecutive_restarts_double_the_cooldown_up_to_its_cap():
    d = backoff_driver()
    d.stay_broken(200)
    restarts = d.restarts[:6]
    assert [r.backoff for r in restarts] == [0, 1, 2, 3, 4, 5]
    assert [r.cooldown_s for r in restarts] == [100, 200, 400, 500, 500, 500]
    done = [t for t in d.transitions if t.trigger == "restart_done"]
    for t, r in zip(done, d.restarts, strict=False):
        assert t.until - r.ts == r.cooldown_s  # from the restart's decision


def healthy_for(d: Driver, seconds: float) -> None:
    """Out of the cooldown, healthy, and still healthy `seconds` later (the next probe fails)."""
    d.past_cooldown()
    d.ok()
    assert d.current == "healthy"
    d.wait(seconds - d.policy.check_interval)


def test_4_a_stable_healthy_period_resets_the_backoff():
    d = backoff_driver(cooldown_max=10_000)
    d.restart_cycle()
    d.past_cooldown()
    d.restart_cycle()
    healthy_for(d, 500)  # not stable yet
    d.restart_cycle()
    assert [r.backoff for r in d.restarts] == [0, 1, 2]
    healthy_for(d, 600)
    d.restart_cycle()
    assert (d.restarts[-1].backoff, d.restarts[-1].cooldown_s) == (0, 100)


def test_4_short_healthy_spells_do_not_add_up_to_a_stable_period():
    d = backoff_driver()
    d.restart_cycle()
    healthy_for(d, 400)
    d.fail()
    d.ok()
    d.wait(400)
    d.restart_cycle()
    assert [r.backoff for r in d.restarts] == [0, 1]


def test_4_failure_counters_reset_after_a_successful_repair():
    d = Driver(max_retries=3)
    d.to_repairing()
    d.fail_step()
    d.finish_step(ok=True)
    d.ok()
    assert d.current == "healthy"
    s = d.state
    assert (s.failures, s.successes, s.ladder, s.step_index) == (0, 0, (), -1)
    d.fails(2)
    assert d.current == "degraded"  # not straight back into the repair it just left
    d.fail()
    assert d.current == "repairing"
    assert (d.repairs[-1].run, d.repairs[-1].index) == (2, 0)  # a new run, from the first step


def test_4_failure_counters_reset_after_a_restart_that_worked():
    d = Driver(max_retries=3, restart_cooldown=60)
    d.restart_cycle()
    d.past_cooldown()
    d.ok()
    assert (d.current, d.state.failures) == ("healthy", 0)
    d.fails(2)
    assert d.current == "degraded"


# --- 5. a replay of the log reproduces the state and the decisions exactly ----------------------

LADDERS = {"dns": ("diagnose", "http", "restart"), "tls": ("diagnose", "command", "restart")}


def history() -> Driver:
    """A service that goes through most of the graph, stale outcomes and refusals included."""
    d = Driver(
        ladders=LADDERS,
        success_threshold=2,
        restart_budget=2,
        restart_window=7_200,
        restart_cooldown=120,
        cooldown_max=1_000,
        on_restart_failure="degraded",
        check_interval=15,
    )
    d.ok()
    d.ok()
    d.to_repairing("dns")
    d.finish_step(run=0, index=0)  # stale
    d.fail_step(error_class="tls")
    d.finish_step(ok=True)
    d.ok()  # verified: healthy
    d.stay_broken(40, restart_ok=False)  # restarts, waits, then the budget: failed
    d.admin("repair_now")
    d.admin("pause")
    d.fails(3)
    d.admin("resume")
    d.admin("reset", allowed=False)
    d.admin("reset")
    d.wait(600)  # past the last restart's cooldown, which a reset keeps
    d.restart_cycle()
    d.fails(2)
    d.admin("pause")
    d.wait(3_600)
    d.admin("resume")
    d.admin("probe_now")
    d.stay_broken(30)
    return d


def test_5_the_history_goes_through_most_of_the_graph():
    d = history()
    reached = {(t.src, t.dst) for t in d.transitions}
    assert len(reached) >= 14
    assert {("repairing", "failed"), ("repairing", "cooldown"), ("paused", "cooldown")} <= reached


def test_5_evolve_alone_rebuilds_the_state_after_every_fact():
    d = history()
    for fact, end, state in zip(d.facts, d.ends, d.states, strict=True):
        assert snapshot(replay(d.log[:end])) == state, fact


def test_5_the_written_log_replays_to_the_same_state():
    d = history()
    written = decode_lines(encode_lines(d.log))
    assert written == d.log
    assert snapshot(replay(written)) == snapshot(d.state)


def test_5_redeciding_the_recorded_facts_with_the_recorded_policy_gives_the_same_decisions():
    d = history()
    registered = ServiceRegistered(ts=0.0, service=SERVICE, policy=d.policy)
    (recorded,) = decode_lines(encode_lines([registered]))
    policy = recorded.policy
    assert policy == d.policy
    fresh = ServiceState(name=SERVICE)
    redecided = []
    for fact in d.facts:
        redecided += decide(fresh, fact, policy)
    assert redecided == d.decisions
    assert snapshot(fresh) == snapshot(d.state)


def test_5_the_comparison_notices_a_lost_decision():
    d = history()
    lost = max(i for i, e in enumerate(d.log) if isinstance(e, Transition))
    assert snapshot(replay(d.log[:lost] + d.log[lost + 1 :])) != snapshot(d.state)


def test_5_a_different_policy_gives_different_decisions():
    d = history()
    fresh = ServiceState(name=SERVICE)
    other = Policy(**{**_fields(d.policy), "max_retries": d.policy.max_retries + 1})
    redecided = []
    for fact in d.facts:
        redecided += decide(fresh, fact, other)
    assert redecided != d.decisions


def _fields(policy: Policy) -> dict[str, Any]:
    return {f: getattr(policy, f) for f in policy.__struct_fields__}

"""Every row of the transition table (docs/architecture.md), as examples (one service, scripted
facts). The cooldown's rows are in test_cooldown.py, the repair backoff's in
test_repair_backoff.py, the start grace and lost processes in test_start_grace.py."""

from __future__ import annotations

import pytest

from hbsm.events import RepairStarted, RestartStarted

from .driver import Driver, only_transition, snapshot, transitions

# --- probes outside a repair run ---------------------------------------------------------------


def test_unknown_to_healthy_on_a_passing_probe():
    d = Driver()
    t = only_transition(d.ok())
    assert (t.src, t.dst, t.trigger, t.failures) == ("unknown", "healthy", "probe_ok", 0)
    assert d.current == "healthy"


def test_unknown_to_degraded_on_a_failing_probe():
    d = Driver()
    t = only_transition(d.fail("refused"))
    assert (t.src, t.dst, t.trigger, t.failures) == ("unknown", "degraded", "probe_failed", 1)
    assert "refused" in t.reason


def test_healthy_to_degraded_with_one_failure():
    d = Driver()
    d.to_healthy()
    t = only_transition(d.fail())
    assert (t.src, t.dst, t.failures) == ("healthy", "degraded", 1)
    assert d.state.failures == 1


def test_a_passing_probe_keeps_a_healthy_service_healthy_without_a_transition():
    d = Driver()
    d.to_healthy()
    assert d.ok() == []
    assert d.current == "healthy"


@pytest.mark.parametrize("max_retries", [2, 3, 5])
def test_degraded_stays_degraded_below_max_retries(max_retries):
    d = Driver(max_retries=max_retries)
    d.to_healthy()
    d.fail()
    for failures in range(2, max_retries):
        assert d.fail() == []  # a self-loop: counted, no transition
        assert (d.current, d.state.failures) == ("degraded", failures)


@pytest.mark.parametrize("max_retries", [2, 3, 5])
def test_degraded_to_repairing_at_max_retries(max_retries):
    d = Driver(max_retries=max_retries)
    d.to_healthy()
    d.fails(max_retries - 1)
    out = d.fail("timeout")
    t, started = out
    assert (t.src, t.dst, t.trigger, t.failures) == (
        "degraded",
        "repairing",
        "probe_failed",
        max_retries,
    )
    assert isinstance(started, RepairStarted)
    assert (started.run, started.index, started.step) == (1, 0, "diagnose")
    assert started.ladder == d.policy.ladder


def test_degraded_to_healthy_after_success_threshold_successes():
    d = Driver(success_threshold=3)
    d.fail()
    assert d.ok() == [] and d.ok() == []
    assert d.current == "degraded"
    t = only_transition(d.ok())
    assert (t.src, t.dst, t.failures) == ("degraded", "healthy", 0)
    assert d.state.failures == 0


def test_a_failure_between_successes_restarts_the_success_count():
    d = Driver(success_threshold=2, max_retries=5)
    d.fail()
    d.ok()
    d.fail()
    assert d.ok() == []
    assert d.current == "degraded"
    assert transitions(d.ok())[0].dst == "healthy"


# --- the repair run ----------------------------------------------------------------------------


def test_repairing_to_healthy_when_the_verification_probe_after_a_finished_step_passes():
    d = Driver()
    d.to_repairing()
    assert d.finish_step(ok=True) == []  # the step's own word is not enough: a probe verifies
    assert d.current == "repairing"
    t = only_transition(d.ok())
    assert (t.src, t.dst, t.trigger) == ("repairing", "healthy", "verified")
    assert "diagnose" in t.reason


def test_probes_before_the_step_has_finished_verify_nothing():
    d = Driver()
    d.to_repairing()
    assert d.ok() == [] and d.fail() == []
    assert d.current == "repairing" and d.state.step_index == 0


def test_the_ladder_advances_one_step_per_failed_verification():
    ladder = ("diagnose", "check_config", "http", "command", "restart")
    d = Driver(ladder=ladder)
    first = d.to_repairing()[-1]
    assert (first.run, first.index, first.step) == (1, 0, "diagnose")
    for index, step in enumerate(ladder[1:-1], start=1):
        (nxt,) = d.fail_step()
        assert isinstance(nxt, RepairStarted)
        assert (nxt.run, nxt.index, nxt.step, nxt.ladder) == (1, index, step, ladder)
        assert d.current == "repairing"
    assert d.restarts == []


def test_a_ladder_without_restart_ends_in_degraded_counting_afresh():
    d = Driver(ladder=("diagnose", "check_config"))
    d.to_repairing()
    d.fail_step()
    t = only_transition(d.fail_step())
    assert (t.src, t.dst, t.trigger, t.failures) == ("repairing", "degraded", "step_failed", 0)
    assert d.restarts == []
    # Counting afresh: a new run needs max_retries new failures.
    d.fails(d.policy.max_retries - 1)
    assert d.current == "degraded"
    d.fail()
    assert d.current == "repairing" and d.repairs[-1].run == 2


def test_repairing_to_restarting_at_the_restart_step():
    d = Driver(restart_cooldown=120)
    d.to_repairing()
    d.fail_step()
    out = d.fail_step()
    t, restart = out
    assert (t.src, t.dst, t.trigger) == ("repairing", "restarting", "step_failed")
    assert isinstance(restart, RestartStarted)
    assert restart.ts == d.now
    assert (restart.attempt, restart.backoff, restart.cooldown_s) == (1, 0, 120)
    assert restart.recent == [d.now]


def test_repairing_to_failed_when_the_restart_budget_is_spent():
    d = Driver(restart_budget=1, restart_cooldown=60, restart_window=86_400)
    d.restart_cycle()
    d.past_cooldown()
    d.to_repairing()
    d.fail_step()
    t = only_transition(d.fail_step())
    assert (t.src, t.dst, t.trigger) == ("repairing", "failed", "step_failed")
    assert t.reason
    assert len(d.restarts) == 1


def test_a_zero_budget_fails_at_the_first_restart_step():
    d = Driver(restart_budget=0)
    d.to_repairing()
    d.fail_step()
    assert only_transition(d.fail_step()).dst == "failed"
    assert d.restarts == []


def test_repairing_to_cooldown_when_the_restart_step_comes_too_soon_after_the_last_restart():
    d = Driver(
        restart_cooldown=600, cooldown_max=600, on_restart_failure="degraded", check_interval=10
    )
    d.restart_cycle(ok=False)  # a failed restart: degraded at once, counting afresh
    assert d.current == "degraded"
    last = d.restarts[-1]
    d.to_repairing()
    d.fail_step()
    t = only_transition(d.fail_step())
    assert d.now < last.ts + 600
    assert (t.src, t.dst, t.trigger) == ("repairing", "cooldown", "step_failed")
    assert t.until == last.ts + 600  # waits out the last restart's cooldown
    assert len(d.restarts) == 1


@pytest.mark.parametrize(("on_failure", "dst"), [("failed", "failed"), ("degraded", "degraded")])
def test_a_failed_restart_goes_where_on_restart_failure_says(on_failure, dst):
    d = Driver(on_restart_failure=on_failure)
    d.to_repairing()
    d.climb_to_restart()
    t = only_transition(d.finish_restart(ok=False))
    assert (t.src, t.dst, t.trigger) == ("restarting", dst, "restart_failed")
    assert "exit 1" in t.reason
    if dst == "degraded":
        assert t.failures == 0


def test_probes_while_restarting_are_ignored():
    d = Driver()
    d.to_repairing()
    d.climb_to_restart()
    assert d.ok() == [] and d.fail() == []
    assert d.current == "restarting"


# --- operators ---------------------------------------------------------------------------------


def driver_in(state: str, **policy) -> Driver:
    """A driver whose service is in `state`, reached through facts only."""
    d = Driver(**policy)
    if state == "unknown":
        pass
    elif state == "healthy":
        d.to_healthy()
    elif state == "degraded":
        d.fail()
    elif state == "repairing":
        d.to_repairing()
    elif state == "restarting":
        d.to_repairing()
        d.climb_to_restart()
    elif state == "cooldown":
        d.restart_cycle()
    elif state == "failed":
        d.restart_cycle(ok=False)
    elif state == "paused":
        d.admin("pause")
    assert d.current == state
    return d


@pytest.mark.parametrize(
    "state", ["unknown", "healthy", "degraded", "repairing", "restarting", "cooldown", "failed"]
)
def test_pause_from_any_state(state):
    d = driver_in(state)
    t = only_transition(d.admin("pause"))
    assert (t.src, t.dst, t.trigger) == (state, "paused", "pause")
    assert "ops" in t.reason


def test_probes_while_paused_are_ignored():
    d = driver_in("degraded")
    d.admin("pause")
    before = snapshot(d.state)
    assert d.fails(5) == [] and d.ok() == []
    assert snapshot(d.state) == before


@pytest.mark.parametrize("state", ["healthy", "degraded", "cooldown", "failed"])
def test_resume_returns_to_the_state_before_the_pause(state):
    d = driver_in(state)
    d.admin("pause")
    t = only_transition(d.admin("resume"))
    assert (t.src, t.dst, t.trigger) == ("paused", state, "resume")


@pytest.mark.parametrize("state", ["unknown", "repairing", "restarting"])
def test_resume_after_a_pause_mid_repair_is_unknown(state):
    d = driver_in(state)
    d.admin("pause")
    t = only_transition(d.admin("resume"))
    assert (t.src, t.dst) == ("paused", "unknown")
    assert (d.state.ladder, d.state.step_index, d.state.failures) == ((), -1, 0)


def test_resume_to_cooldown_keeps_the_cooldown_deadline():
    d = driver_in("cooldown")
    until = d.state.cooldown_until
    d.admin("pause")
    t = only_transition(d.admin("resume"))
    assert t.dst == "cooldown"
    assert t.until == until
    assert d.state.cooldown_until == until


def test_pause_and_resume_only_apply_where_they_mean_something():
    d = driver_in("healthy")
    assert d.admin("resume") == []
    d.admin("pause")
    assert d.admin("pause") == []
    assert d.current == "paused"


@pytest.mark.parametrize(
    "state",
    ["unknown", "healthy", "degraded", "repairing", "restarting", "cooldown", "failed", "paused"],
)
def test_reset_from_any_state_is_unknown_with_fresh_counters(state):
    d = driver_in(state)
    t = only_transition(d.admin("reset"))
    assert (t.src, t.dst, t.trigger, t.failures) == (state, "unknown", "reset", 0)
    s = d.state
    assert (s.failures, s.successes, s.restarts, s.backoff, s.last_error) == (0, 0, [], 0, None)


@pytest.mark.parametrize("state", ["unknown", "healthy", "degraded", "cooldown"])
def test_repair_now_starts_a_run_at_once(state):
    d = driver_in(state)
    runs = d.state.run
    t, started = d.admin("repair_now")
    assert (t.src, t.dst, t.trigger) == (state, "repairing", "repair_now")
    assert isinstance(started, RepairStarted)
    assert (started.run, started.index) == (runs + 1, 0)


@pytest.mark.parametrize("state", ["repairing", "restarting", "paused", "failed"])
def test_repair_now_is_ignored_where_a_run_cannot_start(state):
    d = driver_in(state)
    before = snapshot(d.state)
    assert d.admin("repair_now") == []
    assert snapshot(d.state) == before


@pytest.mark.parametrize("action", ["pause", "resume", "reset", "repair_now", "probe_now"])
@pytest.mark.parametrize("state", ["healthy", "degraded", "cooldown", "paused", "failed"])
def test_admin_actions_that_are_not_allowed_change_nothing(action, state):
    d = driver_in(state)
    before = snapshot(d.state)
    assert d.admin(action, allowed=False) == []
    assert snapshot(d.state) == before


@pytest.mark.parametrize("action", ["probe_now", "start", "stop"])
def test_admin_actions_without_a_transition_change_nothing(action):
    d = driver_in("degraded")
    before = snapshot(d.state)
    assert d.admin(action) == []
    assert snapshot(d.state) == before


# --- the ladder by failure class ---------------------------------------------------------------

LADDERS = {
    "dns": ("diagnose", "http", "restart"),
    "tls": ("diagnose", "command", "signal", "restart"),
}


def test_the_run_starts_on_the_ladder_of_the_last_probes_error_class():
    d = Driver(ladders=LADDERS)
    started = d.to_repairing("tls")[-1]
    assert started.ladder == LADDERS["tls"]


def test_diagnose_reclassifying_the_failure_switches_the_rest_of_the_ladder():
    d = Driver(ladders=LADDERS)
    d.to_repairing("timeout")  # no ladder for timeout: the default one
    assert d.state.ladder == d.policy.ladder
    (nxt,) = d.fail_step(error_class="dns")
    assert (nxt.index, nxt.step, nxt.ladder) == (1, "http", LADDERS["dns"])
    out = d.fail_step()
    assert only_transition(out).dst == "restarting"


def test_diagnose_without_a_class_keeps_the_ladder():
    d = Driver(ladders=LADDERS)
    d.to_repairing("timeout")
    (nxt,) = d.fail_step()
    assert (nxt.step, nxt.ladder) == ("check_config", d.policy.ladder)


def test_only_diagnose_switches_the_ladder():
    d = Driver(ladder=("diagnose", "check_config", "http", "restart"), ladders=LADDERS)
    d.to_repairing("timeout")
    d.fail_step()
    (nxt,) = d.fail_step(error_class="dns")  # check_config's class is no diagnosis
    assert (nxt.step, nxt.ladder) == ("http", d.policy.ladder)


# --- stale outcomes ----------------------------------------------------------------------------


def test_a_repair_outcome_of_an_earlier_run_is_ignored():
    d = Driver(ladder=("diagnose", "check_config"))
    d.to_repairing()
    d.fail_step()
    d.fail_step()  # ladder exhausted: degraded
    d.to_repairing()
    assert d.state.run == 2
    before = snapshot(d.state)
    assert d.finish_step(run=1, index=0) == []
    assert snapshot(d.state) == before
    assert d.fail() == []  # the current step has not finished: nothing to verify
    assert d.current == "repairing" and d.state.step_index == 0


def test_a_repair_outcome_of_an_earlier_step_is_ignored():
    d = Driver(ladder=("diagnose", "check_config", "http", "restart"))
    d.to_repairing()
    d.fail_step()
    assert d.state.step_index == 1
    assert d.finish_step(index=0) == []
    assert d.ok() == []  # not verified: check_config is still running
    assert d.current == "repairing"


def test_a_repair_outcome_arriving_after_a_pause_mid_repair_is_ignored():
    d = Driver()
    d.to_repairing()
    run = d.state.run
    d.admin("pause")
    d.admin("resume")
    before = snapshot(d.state)
    assert d.finish_step(run=run, index=0) == []
    assert snapshot(d.state) == before
    assert d.current == "unknown"


def test_a_restart_outcome_outside_restarting_is_ignored():
    d = driver_in("degraded")
    before = snapshot(d.state)
    assert d.finish_restart(ok=True) == []
    assert d.finish_restart(ok=False) == []
    assert snapshot(d.state) == before


@pytest.mark.parametrize("action", ["pause", "reset"])
def test_a_run_left_mid_step_leaves_no_step_in_flight(action):
    # The runtime takes up a step in flight after a crash by `ladder[step_index]`: a step left
    # behind by a pause or reset must not stay "in flight" once the run is gone.
    d = Driver()
    d.to_repairing()
    assert d.state.in_flight == "repair:diagnose"
    d.admin(action)
    d.finish_step(run=d.state.run, index=0)  # the abandoned step's outcome, ignored
    assert (d.state.in_flight, d.state.ladder, d.state.step_index) == (None, (), -1)

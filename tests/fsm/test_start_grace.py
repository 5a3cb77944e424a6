"""The start grace after hbsm (re)started a process, and a supervised process found gone.

Failed probes within `start_grace` seconds of a process hbsm started (a first start, or a
restart that finished) are recorded but do not count; a passing probe ends the grace early. A
process found gone when hbsm starts (`process.lost`) is restarted under the cooldown and the
restart budget: a start after a crash is a restart.
"""

from __future__ import annotations

import pytest

from .driver import Driver, only_transition, replay

GRACE = 20.0


def test_failures_inside_the_grace_of_a_first_start_do_not_count():
    d = Driver(start_grace=GRACE, check_interval=5, max_retries=1)
    d.process_started()
    started = d.now
    for _ in range(3):  # at +5, +10, +15
        assert d.fail("refused") == []
    assert (d.current, d.state.failures) == ("unknown", 0)
    d.now = started + GRACE - d.policy.check_interval  # the next probe is at the grace's end
    assert only_transition(d.fail("refused")).dst == "repairing"  # it counts


def test_a_passing_probe_ends_the_grace():
    d = Driver(start_grace=GRACE, check_interval=1, max_retries=1)
    d.process_started()
    assert only_transition(d.ok()).dst == "healthy"
    assert d.state.grace_until == 0.0
    assert only_transition(d.fail()).dst == "repairing"  # 2 s after the start: it counts


def test_a_passing_probe_ends_the_grace_of_a_service_already_healthy():
    # A process started afresh while the service is healthy (hbsm started again after a stop
    # on purpose): its first good probe ends the grace as it would anywhere else, so a failure
    # after it counts. The healthy fast path of evolve once skipped this.
    d = Driver(start_grace=GRACE, check_interval=1, max_retries=1)
    assert only_transition(d.ok()).dst == "healthy"
    d.process_started()
    assert d.ok() == [] and d.state.grace_until == 0.0
    assert only_transition(d.fail()).dst == "repairing"
    assert replay(d.log, policy=d.policy).grace_until == d.state.grace_until


def test_the_late_outcome_of_an_abandoned_restart_opens_no_grace():
    # Found by the properties: paused mid-restart, resumed, a new repair run started; the old
    # restart's outcome then arrives. It answers nothing in flight: no grace.
    d = Driver(start_grace=GRACE, max_retries=1, ladder=("diagnose", "restart"))
    d.to_repairing()
    d.climb_to_restart()
    d.admin("pause")
    d.admin("resume")
    d.fail()  # a new run
    d.admin("pause")
    d.admin("resume")
    assert (d.current, d.state.in_flight) == ("unknown", None)
    assert d.finish_restart(ok=True) == []
    assert d.state.grace_until == 0.0
    assert only_transition(d.fail()).dst == "repairing"


def test_an_adopted_process_has_no_grace():
    d = Driver(start_grace=GRACE, max_retries=1)
    d.process_started(adopted=True)
    assert only_transition(d.fail()).dst == "repairing"


def test_a_restart_opens_the_grace():
    d = Driver(start_grace=GRACE, check_interval=5, max_retries=1, restart_cooldown=0)
    d.restart_cycle()
    assert d.current == "cooldown"
    assert d.fail() == [] and d.fail() == []
    assert d.state.failures == 0
    d.ok()
    assert d.current == "healthy"


def test_no_grace_when_none_is_set():
    d = Driver(max_retries=1)
    d.process_started()
    assert only_transition(d.fail()).dst == "repairing"


# --- a supervised process found gone at start-up -------------------------------------------------


@pytest.mark.parametrize("state", ["unknown", "healthy", "degraded"])
def test_a_lost_process_is_restarted_when_the_cooldown_allows(state):
    d = Driver(max_retries=5)
    if state == "healthy":
        d.to_healthy()
    elif state == "degraded":
        d.fail()
    moved, restart = d.process_lost()
    assert (moved.src, moved.dst, moved.trigger) == (state, "restarting", "process_lost")
    assert "4242" in moved.reason
    assert restart.attempt == 1
    assert only_transition(d.finish_restart()).dst == "cooldown"


def test_a_lost_process_waits_for_the_cooldown_of_the_last_restart():
    # The monitor crashed repeatedly: each start found the process gone. Restarts stay a
    # cooldown apart however often that happens.
    d = Driver(restart_cooldown=600, check_interval=10, restart_budget=10)
    d.process_lost()
    d.finish_restart()
    first = d.restarts[-1]
    t = only_transition(d.process_lost(after=3.3))
    assert (t.dst, t.until) == ("cooldown", first.ts + 600)
    assert d.state.restart_pending
    assert len(d.restarts) == 1
    d.past_cooldown()
    moved, restart = d.fail("refused")  # nothing listens: restarted at the deadline
    assert moved.dst == "restarting" and restart.ts - first.ts >= 600


def test_a_lost_process_past_the_restart_budget_is_failed():
    d = Driver(restart_cooldown=1, restart_budget=1, restart_window=86_400)
    d.process_lost()
    d.finish_restart()
    d.wait(10)
    t = only_transition(d.process_lost())
    assert (t.dst, t.trigger) == ("failed", "process_lost")
    assert t.reason.startswith("restart budget spent")


@pytest.mark.parametrize("state", ["paused", "failed"])
def test_a_lost_process_of_a_paused_or_failed_service_is_left_alone(state):
    d = Driver(restart_budget=0)
    if state == "paused":
        d.admin("pause")
    else:
        d.process_lost()
    assert d.current == state
    assert d.process_lost() == []


def test_the_first_rules_know_no_lost_process():
    d = Driver(rules=1)
    assert d.process_lost() == []


def test_a_grace_shorter_than_a_second_is_a_grace_too():
    d = Driver(start_grace=0.5, max_retries=1)
    d.process_started()
    assert d.fail(after=0.25) == []  # inside the half second: not counted
    assert only_transition(d.fail(after=0.25)).dst == "repairing"  # at its end: counted


def test_a_repair_outcome_naming_the_restart_step_leaves_the_restart_in_flight():
    # The run's restart step keeps its index while the restart runs; an outcome that names it
    # (a late or made-up one) is no restart's end: the restart's own outcome opens the grace.
    d = Driver(start_grace=GRACE, check_interval=1, max_retries=1, ladder=("diagnose", "restart"))
    d.to_repairing()
    d.climb_to_restart()
    assert d.current == "restarting" and d.state.in_flight == "restart"
    d.finish_step(index=d.state.step_index)  # run and index of the restart step
    assert d.state.in_flight == "restart"
    d.finish_restart(ok=True)
    assert d.state.grace_until == d.now + GRACE
    assert d.fail() == []  # inside the grace

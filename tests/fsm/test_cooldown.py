"""The cooldown after a restart: it gates the next restart, never the service's health.

Under the current rules probes count from the first one after a restart: `success_threshold`
good ones make the service healthy, failures lead to a repair run as anywhere else, and only a
restart step reached before the deadline waits (in `cooldown`) for it, then restarts if the
service still fails. Under the first rules (logs written before the change) the cooldown held
every probe until its deadline; those rows stay, since such logs must still verify.
"""

from __future__ import annotations

import msgspec
import pytest

from hbsm.state import RULES

from .driver import Driver, only_transition, snapshot

COOLDOWN = 300.0


def restarted(rules: int = RULES, **policy) -> Driver:
    """A service just restarted (restart.finished recorded): in cooldown."""
    d = Driver(restart_cooldown=COOLDOWN, check_interval=30, rules=rules, **policy)
    d.restart_cycle()
    assert d.current == "cooldown"
    return d


# --- the current rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [1, 2, 3])
def test_good_probes_after_a_restart_make_it_healthy_at_once(threshold):
    d = restarted(success_threshold=threshold)
    deadline = d.restarts[-1].ts + COOLDOWN
    for _ in range(threshold - 1):
        assert d.ok() == []
        assert d.current == "cooldown"
    t = only_transition(d.ok())
    assert (t.src, t.dst, t.trigger) == ("cooldown", "healthy", "probe_ok")
    assert d.now < deadline  # long before the cooldown's end
    assert d.state.cooldown_until == deadline  # the deadline stays recorded


def test_the_cooldown_runs_from_the_restart_decision():
    d = Driver(restart_cooldown=90)
    d.to_repairing()
    d.climb_to_restart()
    decided = d.restarts[-1].ts
    t = only_transition(d.finish_restart(ok=True))
    assert (t.src, t.dst, t.trigger, t.failures) == ("restarting", "cooldown", "restart_done", 0)
    assert t.until == decided + 90 == d.state.cooldown_until
    assert t.hold is False and d.state.cooldown_holds is False


def test_failures_after_a_restart_count_and_start_a_repair_run():
    d = restarted(max_retries=3)
    assert d.fail() == [] and d.fail() == []
    assert (d.current, d.state.failures) == ("cooldown", 2)
    t, started = d.fail()
    assert (t.src, t.dst, t.failures) == ("cooldown", "repairing", 3)
    assert started.run == d.state.run and started.index == 0


def test_a_restart_step_reached_before_the_deadline_waits_for_it_then_restarts():
    d = restarted(max_retries=1, ladder=("diagnose", "restart"))
    first = d.restarts[-1]
    d.fail()
    assert d.current == "repairing"
    t = only_transition(d.fail_step())
    assert (t.src, t.dst, t.trigger) == ("repairing", "cooldown", "step_failed")
    assert t.until == first.ts + COOLDOWN and d.state.restart_pending
    # Failing probes before the deadline: counted, nothing started.
    while d.now + d.policy.check_interval < t.until:
        assert d.fail() == []
        assert d.current == "cooldown"
    # The first failing probe from the deadline on restarts it, at once.
    d.now = t.until - d.policy.check_interval
    moved, restart = d.fail()
    assert (moved.src, moved.dst, moved.trigger) == ("cooldown", "restarting", "probe_failed")
    assert restart.ts == t.until  # exactly at the deadline: allowed
    assert restart.ts - first.ts == COOLDOWN


def test_a_waiting_restart_is_not_taken_a_moment_before_the_deadline():
    d = restarted(max_retries=1, ladder=("diagnose", "restart"))
    d.fail()
    t = only_transition(d.fail_step())
    d.now = t.until - d.policy.check_interval - 0.001
    assert d.fail() == []
    assert d.current == "cooldown" and d.restarts[-1].ts < t.until


def test_a_waiting_restart_is_called_off_when_the_service_answers():
    d = restarted(max_retries=1, ladder=("diagnose", "restart"))
    d.fail()
    d.fail_step()
    assert d.state.restart_pending
    t = only_transition(d.ok())
    assert (t.dst, t.trigger) == ("healthy", "probe_ok")
    assert not d.state.restart_pending
    d.past_cooldown()
    t = only_transition(d.fail())  # a new incident: its own repair run, not the old restart
    assert (t.src, t.dst) == ("healthy", "repairing")
    assert len(d.restarts) == 1


def test_a_waiting_restart_past_the_budget_gives_up():
    d = restarted(max_retries=1, ladder=("diagnose", "restart"))
    d.fail()
    d.fail_step()
    assert d.state.restart_pending
    # The next start of hbsm brings a config with no restart left in the budget.
    d.policy = msgspec.structs.replace(d.policy, restart_budget=1, restart_window=86_400)
    d.past_cooldown()
    t = only_transition(d.fail())
    assert (t.src, t.dst, t.trigger) == ("cooldown", "failed", "probe_failed")
    assert t.reason.startswith("restart budget spent: 1 restart(s)")
    assert len(d.restarts) == 1


def test_a_resumed_cooldown_keeps_its_pending_restart():
    d = restarted(max_retries=1, ladder=("diagnose", "restart"))
    d.fail()
    d.fail_step()
    deadline = d.state.cooldown_until
    d.admin("pause")
    d.admin("resume")
    assert (d.current, d.state.restart_pending, d.state.cooldown_until) == (
        "cooldown", True, deadline,
    )  # fmt: skip


# --- the first rules -----------------------------------------------------------------------------


def test_first_rules_cooldown_ignores_probes_before_cooldown_until():
    d = restarted(rules=1)
    before = snapshot(d.state)
    for _ in range(5):  # more than max_retries: none of them counts
        assert d.fail() == []
    assert d.now < d.state.cooldown_until
    assert d.ok() == []
    assert snapshot(d.state) == before


def test_first_rules_cooldown_runs_from_the_end_of_the_restart():
    d = Driver(restart_cooldown=90, rules=1)
    d.to_repairing()
    d.climb_to_restart()
    t = only_transition(d.finish_restart(ok=True))
    assert t.until == d.now + 90 and t.hold is True


@pytest.mark.parametrize(("ok", "dst", "failures"), [(True, "healthy", 0), (False, "degraded", 1)])
def test_first_rules_cooldown_ends_with_the_first_probe_after_it(ok, dst, failures):
    d = restarted(rules=1)
    d.fails(3)  # ignored: inside the cooldown
    d.past_cooldown()
    t = only_transition(d.probe(ok))
    assert (t.src, t.dst, t.failures) == ("cooldown", dst, failures)


def test_first_rules_after_cooldown_failures_count_afresh():
    d = restarted(rules=1)
    d.past_cooldown()
    d.fail()
    d.fails(d.policy.max_retries - 2)
    assert d.current == "degraded"
    d.fail()
    assert d.current == "repairing"


def test_first_rules_wording_counts_the_failures():
    d = Driver(rules=1)
    d.to_healthy()
    assert "(1 in a row)" in only_transition(d.fail("refused")).reason


def test_current_wording_has_no_count_that_goes_stale():
    d = Driver(max_retries=5)
    d.to_healthy()
    t = only_transition(d.fail("refused"))
    d.fails(2, "refused")
    assert (t.reason, t.failures, d.state.failures) == ("probe failed: refused", 1, 3)


@pytest.mark.parametrize(("rules", "dst"), [(1, "failed"), (2, "cooldown")])
def test_a_restart_step_before_the_deadline_with_the_budget_spent(rules, dst):
    # The first rules gave up at once; the current ones wait for the deadline and judge the
    # budget then (the window may have moved on by then).
    d = restarted(rules=rules, ladder=("diagnose", "restart"), restart_budget=1)
    d.admin("repair_now")  # an operator, inside the cooldown
    t = only_transition(d.fail_step())
    assert (t.src, t.dst, t.trigger) == ("repairing", dst, "step_failed")
    assert d.now < d.restarts[-1].ts + COOLDOWN and len(d.restarts) == 1


@pytest.mark.parametrize("rules", [1, 2])
def test_a_pause_inside_the_cooldown_keeps_its_deadline(rules):
    # Under the first rules the deadline ran from the restart's end: recomputing it from the
    # decision on resume would shorten it by the restart's duration.
    d = restarted(rules=rules)
    until = d.state.cooldown_until
    d.admin("pause")
    t = only_transition(d.admin("resume"))
    assert (t.dst, t.until, d.state.cooldown_until) == ("cooldown", until, until)

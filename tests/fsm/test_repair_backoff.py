"""Repair runs that cannot restart still give up: they back off and count against a budget.

A run that ends without fixing the service and without reaching a restart (a ladder with no
restart step) leaves it `degraded`; the next run waits `repair_backoff`, doubling with each
such run in a row up to `repair_backoff_max`; the `repair_budget`-th such run in a row makes it
`failed`. A healthy service, or an operator's reset, starts the count over. The first rules had
none of this (their logs still verify).
"""

from __future__ import annotations

import pytest

from .driver import MAX_STEPS, Driver, only_transition

INTERVAL = 10.0


def stubborn(**policy) -> Driver:
    fields = {
        "ladder": ("diagnose", "check_config"),
        "max_retries": 2,
        "check_interval": INTERVAL,
        "repair_backoff": 60.0,
        "repair_backoff_max": 200.0,
        "repair_budget": 4,
    }
    return Driver(**{**fields, **policy})


def run_to_exhaustion(d: Driver):
    """From the start of a run: fail every step; returns the run's last transition."""
    assert d.current == "repairing"
    for _ in range(MAX_STEPS):  # bounded: a run that never ends is a failure, not a hang
        out = d.fail_step()
        if d.current != "repairing":
            return only_transition(out)
    raise AssertionError(f"still repairing after {MAX_STEPS} failed steps")


def next_run(d: Driver) -> float:
    """Fail probes until a run starts; returns when it started."""
    for _ in range(1_000):
        d.fail()
        if d.current == "repairing":
            return d.now
    raise AssertionError("no run started")


def test_a_failed_run_backs_off_the_next_one():
    d = stubborn()
    d.to_repairing()
    t = run_to_exhaustion(d)
    assert (t.src, t.dst, t.trigger, t.failures) == ("repairing", "degraded", "step_failed", 0)
    assert t.until == t.ts + 60
    assert (d.state.failed_runs, d.state.repair_after) == (1, t.until)
    started = next_run(d)
    assert started >= t.until
    assert started < t.until + INTERVAL  # the first failing probe from the deadline on


def test_the_backoff_doubles_up_to_its_cap():
    d = stubborn(repair_budget=0)  # never give up: only the backoff
    d.to_repairing()
    delays = []
    for _ in range(5):
        t = run_to_exhaustion(d)
        delays.append(t.until - t.ts)
        next_run(d)
    assert delays == [60, 120, 200, 200, 200]


def test_the_budget_spent_the_service_is_failed_with_the_reason_said():
    d = stubborn(repair_budget=3)
    d.to_repairing()
    for _ in range(2):
        assert run_to_exhaustion(d).dst == "degraded"
        next_run(d)
    t = run_to_exhaustion(d)
    assert (t.src, t.dst, t.trigger) == ("repairing", "failed", "step_failed")
    assert t.reason.startswith("repair budget spent: 3 repair run(s) in a row")
    assert "needs an operator's reset" in t.reason
    assert d.fails(10) == []  # failed is left only by a human
    d.admin("reset")
    assert (d.state.failed_runs, d.state.repair_after) == (0, 0.0)
    d.to_repairing()  # at once: no backoff left over


def test_a_healthy_spell_starts_the_count_over():
    d = stubborn(repair_budget=2)
    d.to_repairing()
    run_to_exhaustion(d)
    assert d.state.failed_runs == 1
    d.past_repair_backoff()
    d.ok()
    assert (d.current, d.state.failed_runs, d.state.repair_after) == ("healthy", 0, 0.0)
    d.to_repairing()  # no backoff
    assert run_to_exhaustion(d).dst == "degraded"  # the first failed run of a new count


def test_a_run_that_fixes_it_starts_the_count_over():
    d = stubborn()
    d.to_repairing()
    run_to_exhaustion(d)
    next_run(d)
    d.finish_step(ok=True)
    assert only_transition(d.ok()).dst == "healthy"
    assert d.state.failed_runs == 0


def test_repair_now_does_not_wait_for_the_backoff():
    d = stubborn()
    d.to_repairing()
    run_to_exhaustion(d)
    assert only_transition(d.admin("repair_now")).dst == "repairing"


def test_a_ladder_that_reaches_its_restart_is_not_backed_off():
    d = Driver(ladder=("diagnose", "restart"), max_retries=1, restart_cooldown=0)
    d.restart_cycle()
    assert d.state.failed_runs == 0


def test_the_first_rules_retry_without_end():
    d = stubborn(rules=1, repair_budget=1)
    for _ in range(6):
        d.to_repairing()
        t = run_to_exhaustion(d)
        assert (t.dst, t.until) == ("degraded", None)


@pytest.mark.parametrize(("budget", "runs"), [(1, 1), (2, 2)])
def test_the_budgets_last_run_is_the_one_that_gives_up(budget, runs):
    # A budget of one: the first run that does not fix it is the last.
    d = stubborn(repair_budget=budget)
    d.to_repairing()
    for _ in range(runs - 1):
        assert run_to_exhaustion(d).dst == "degraded"
        next_run(d)
    assert run_to_exhaustion(d).dst == "failed"

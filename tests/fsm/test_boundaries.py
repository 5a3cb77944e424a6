"""Every time guard of the state machine at its exact edge: at the deadline the wait is over, a
moment before it is not. One pair of tests per guard and per way into it, so that `>` for `>=`
(or `<=` for `<`) in any of them fails a test (`just mutate` plants such faults).

The guards: the cooldown before the next restart (reached by a failing probe in `cooldown`, by
a repair run's restart step, by a process lost), the restart window of the budget, the repair
backoff, the start grace, the stable period that resets the restart backoff, and, under the
first rules, the cooldown that held every probe.
"""

from __future__ import annotations

import pytest

from .driver import Driver, only_transition, restarts

COOLDOWN = 300.0
MOMENT = 0.001  # far below any interval here, far above a float's rounding at these epochs
WINDOW = 1_000.0
EDGES = [(0.0, True), (-MOMENT, False)]  # (offset from the deadline, over?)
IDS = ["at-the-deadline", "a-moment-before"]


def restarted(**policy: object) -> Driver:
    """A service just restarted (restart.finished recorded): in cooldown until the restart's
    decision + COOLDOWN."""
    d = Driver(restart_cooldown=COOLDOWN, check_interval=30, **policy)  # type: ignore[arg-type]
    d.restart_cycle()
    assert d.current == "cooldown"
    return d


def deadline(d: Driver) -> float:
    return d.restarts[-1].ts + COOLDOWN


# --- the cooldown: three ways to reach a restart --------------------------------------------------


@pytest.mark.parametrize(("offset", "over"), EDGES, ids=IDS)
def test_a_repair_runs_restart_step_reached_at_the_cooldowns_end_restarts(offset, over):
    d = restarted(max_retries=1, ladder=("diagnose", "restart"))
    d.fail()
    assert d.current == "repairing"
    d.finish_step()
    end = deadline(d)
    d.now = end + offset - d.policy.check_interval
    out = d.fail()  # the verification probe: still failing, the next step is the restart
    t = only_transition(out)
    assert (t.src, t.trigger) == ("repairing", "step_failed")
    if over:
        assert t.dst == "restarting" and restarts(out)[0].ts == end
    else:
        assert t.dst == "cooldown" and restarts(out) == [] and d.state.restart_pending


@pytest.mark.parametrize(("offset", "over"), EDGES, ids=IDS)
def test_a_waiting_restart_is_taken_by_the_first_failing_probe_from_the_cooldowns_end(offset, over):
    d = restarted(max_retries=1, ladder=("diagnose", "restart"))
    d.fail()
    d.fail_step()  # the restart step, long before the deadline: it waits
    assert d.current == "cooldown" and d.state.restart_pending
    end = deadline(d)
    d.now = end + offset - d.policy.check_interval
    out = d.fail()
    if over:
        assert only_transition(out).dst == "restarting" and restarts(out)[0].ts == end
    else:
        assert out == [] and d.current == "cooldown"


@pytest.mark.parametrize(("offset", "over"), EDGES, ids=IDS)
def test_a_process_lost_at_the_cooldowns_end_is_restarted(offset, over):
    d = restarted()
    end = deadline(d)
    d.now = end + offset - 1.0
    t = only_transition(d.process_lost(after=1.0))
    assert t.trigger == "process_lost"
    assert t.dst == ("restarting" if over else "cooldown")
    assert d.state.restart_pending is not over


# --- the restart budget's window ------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "over"), EDGES, ids=IDS)
def test_a_restart_leaves_the_budgets_window_exactly_restart_window_after_it(offset, over):
    # Budget 1: the next restart is allowed only once the first is out of the window.
    d = Driver(restart_budget=1, restart_window=WINDOW, restart_cooldown=10, cooldown_max=10)
    d.restart_cycle()
    first = d.restarts[-1].ts
    d.ok()
    assert d.current == "healthy"
    d.now = first + WINDOW + offset - 1.0
    t = only_transition(d.process_lost(after=1.0))
    assert t.dst == ("restarting" if over else "failed")
    if over:
        assert d.restarts[-1].recent == [d.now]  # the first is no longer counted


# --- the repair backoff ---------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "over"), EDGES, ids=IDS)
def test_the_next_repair_run_starts_at_the_backoffs_end(offset, over):
    d = Driver(max_retries=1, ladder=("diagnose",), repair_backoff=60, check_interval=5)
    d.fail()
    t = only_transition(d.fail_step())  # the ladder is exhausted: degraded, backing off
    assert (t.dst, t.until) == ("degraded", d.now + 60) and d.state.repair_after == t.until
    d.now = t.until + offset - d.policy.check_interval
    out = d.fail()
    if over:
        assert only_transition(out).dst == "repairing" and d.state.run == 2
    else:
        assert out == [] and d.current == "degraded" and d.state.failures >= 1


# --- the start grace ------------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "over"), EDGES, ids=IDS)
def test_a_failed_probe_counts_from_the_start_graces_end(offset, over):
    d = Driver(start_grace=20.0, check_interval=5, max_retries=1)
    d.process_started()
    end = d.now + 20.0
    assert d.state.grace_until == end
    d.now = end + offset - d.policy.check_interval
    out = d.fail()
    if over:
        assert only_transition(out).dst == "repairing"
    else:
        assert out == [] and d.state.failures == 0


# --- the stable period ----------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "over"), EDGES, ids=IDS)
def test_healthy_for_exactly_the_stable_period_resets_the_restart_backoff(offset, over):
    d = Driver(restart_cooldown=10, cooldown_max=1_000, stable_period=600, restart_budget=10)
    d.restart_cycle()
    assert d.restarts[-1].backoff == 0
    d.ok()
    assert d.current == "healthy"
    healthy_since = d.state.since
    d.now = healthy_since + 600 + offset - 1.0
    d.process_lost(after=1.0)  # it leaves healthy now, for a restart
    restart = d.restarts[-1]
    assert restart.backoff == (0 if over else 1)
    assert restart.cooldown_s == (10 if over else 20)


# --- the first rules: the cooldown held every probe until its end ---------------------------------


@pytest.mark.parametrize(("offset", "over"), EDGES, ids=IDS)
def test_first_rules_a_probe_counts_from_the_cooldowns_end(offset, over):
    d = Driver(restart_cooldown=COOLDOWN, check_interval=30, rules=1, max_retries=1)
    d.restart_cycle()
    assert d.current == "cooldown" and d.state.cooldown_holds
    end = d.state.cooldown_until
    d.now = end + offset - d.policy.check_interval
    out = d.ok()
    if over:
        assert only_transition(out).dst == "healthy"
    else:
        assert out == [] and d.current == "cooldown"


def test_a_restart_starts_the_stable_period_over_from_nothing():
    # Two restarts with no healthy spell between them: the second backs off, however short
    # the stable period (the span since the first restart starts at zero, not at a second).
    d = Driver(restart_cooldown=10, cooldown_max=1_000, stable_period=0.5, restart_budget=10)
    d.restart_cycle()
    d.now = d.restarts[-1].ts + 10
    d.process_lost(after=1.0)  # still in cooldown after the first, never healthy
    assert (d.restarts[-1].backoff, d.restarts[-1].cooldown_s) == (1, 20)

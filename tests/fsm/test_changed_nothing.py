"""A repair step that changed nothing and saw the failure still there (`diagnose` that found a
failure, `check_config`) is its own verification from rules 4 on: the run goes on at the step's
outcome, where the rules before waited for a verification probe (on a hung service, one more
probe timeout per such step before the restart). Logs written under rules 3 still verify so."""

from __future__ import annotations

import pytest

from hbsm.events import RepairStarted, RestartStarted

from .driver import Driver, only_transition, repairs, restarts

LADDER = ("diagnose", "check_config", "restart")


def hung(rules: int = 4) -> Driver:
    d = Driver(rules=rules, ladder=LADDER, max_retries=3, restart_cooldown=0.0)
    d.to_healthy()
    d.to_repairing("timeout")
    return d


def test_diagnose_and_check_config_lead_to_the_restart_without_a_probe_between():
    d = hung()
    out = d.finish_step(error_class="timeout", verify=False)  # diagnose
    (started,) = repairs(out)
    assert (started.step, started.index, started.ts) == ("check_config", 1, out[0].ts)
    out = d.finish_step(verify=False)  # check_config: the files load
    t = only_transition(out)
    assert (t.src, t.dst, t.trigger) == ("repairing", "restarting", "step_failed")
    assert t.reason == (
        "still failing after check_config: timeout (the step changed nothing: no probe to wait for)"
    )
    assert len(restarts(out)) == 1 and restarts(out)[0].ts == t.ts


def test_under_rules_3_the_same_outcomes_wait_for_the_verification_probe():
    d = hung(rules=3)
    assert d.finish_step(error_class="timeout", verify=False) == []
    (started,) = repairs(d.fail("timeout"))
    assert started.step == "check_config"


def test_a_step_that_may_have_changed_something_still_waits_for_its_probe():
    d = hung()
    assert d.finish_step(error_class="timeout") == []  # verify: true
    assert d.current == "repairing" and d.state.step_done


def test_an_outcome_not_of_the_step_in_progress_decides_nothing():
    d = hung()
    assert d.finish_step(error_class="timeout", run=d.state.run - 1, verify=False) == []
    assert d.finish_step(error_class="timeout", interrupted=True, verify=False) == []
    assert d.current == "repairing" and d.state.ladder[d.state.step_index] == "diagnose"


def test_a_broken_configuration_still_holds_the_restart():
    d = hung()
    d.finish_step(error_class="timeout", verify=False)
    out = d.finish_step(ok=False, verify=False)  # check_config found a file broken
    t = only_transition(out)
    assert (t.dst, t.trigger) == ("degraded", "step_failed")
    assert t.reason.startswith("restart held")
    assert not any(isinstance(e, RestartStarted) for e in d.log)


@pytest.mark.parametrize("cls", ["http_5xx", "slow"])
def test_what_diagnose_found_chooses_the_rest_of_the_run(cls: str):
    ladders = {"slow": ("diagnose",), "http_5xx": ("diagnose", "restart")}
    d = Driver(ladder=LADDER, ladders=ladders, max_retries=2, restart_cooldown=0.0)
    d.to_healthy()
    d.to_repairing("timeout")
    out = d.finish_step(error_class=cls, verify=False)
    if cls == "slow":  # its ladder is spent: the run ends, backing off
        assert (only_transition(out).dst, d.current) == ("degraded", "degraded")
    else:
        assert d.current == "restarting" and not any(isinstance(e, RepairStarted) for e in out)

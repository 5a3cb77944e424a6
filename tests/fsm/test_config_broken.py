"""No restart into a broken configuration: a repair run whose last `check_config` found a file
broken ends before its restart step, as a run without a restart step does (degraded, backing
off, counted against the repair budget), saying which file. The first two versions of the
rules restarted all the same; their logs still verify so."""

from __future__ import annotations

from hbsm.events import RepairFinished, RestartStarted

from .driver import Driver, only_transition

BROKEN = "1 of 1 files broken: app/config.json: invalid JSON at line 1, column 2: Expecting value"


def embedded(**policy) -> Driver:
    """The embedded monitor's ladder: diagnose, check the configuration, restart."""
    fields = {
        "ladder": ("diagnose", "check_config", "restart"),
        "max_retries": 2,
        "repair_backoff": 60.0,
        "repair_budget": 3,
    }
    return Driver(**{**fields, **policy})


def check_config(d: Driver, *, ok: bool) -> list:
    """Past diagnose, the check_config step finishes (`ok`: the files load) and the
    verification probe still fails."""
    d.to_repairing("http_5xx")
    d.fail_step("http_5xx", error_class="http_5xx")  # diagnose
    assert d.state.ladder[d.state.step_index] == "check_config"
    s = d.state
    fact = RepairFinished(
        ts=d._tick(1.0), service=s.name, run=s.run, step="check_config", index=s.step_index,
        ok=ok, output=BROKEN if not ok else "app/config.json: ok (JSON)",
    )  # fmt: skip
    return d.feed(fact) + d.fail("http_5xx")


def test_a_broken_configuration_holds_the_restart_and_says_which_file():
    d = embedded()
    out = check_config(d, ok=False)
    t = only_transition(out)
    assert (t.src, t.dst, t.trigger) == ("repairing", "degraded", "step_failed")
    assert t.reason.startswith(f"restart held: the configuration is broken ({BROKEN})")
    assert t.until == t.ts + 60.0  # backs off as a run without a restart does
    assert not any(isinstance(e, RestartStarted) for e in d.log)


def test_a_configuration_that_loads_lets_the_restart_go_ahead():
    d = embedded()
    check_config(d, ok=True)
    assert d.current == "restarting"


def test_once_mended_the_next_run_restarts():
    d = embedded()
    check_config(d, ok=False)
    d.past_repair_backoff()
    check_config(d, ok=True)  # the next run, the file mended
    assert d.current == "restarting"
    assert d.state.failed_runs == 1 and d.state.config_broken == ""


def test_held_run_after_run_spends_the_repair_budget():
    d = embedded()
    for _ in range(2):
        check_config(d, ok=False)
        d.past_repair_backoff()
    t = only_transition(check_config(d, ok=False))
    assert t.dst == "failed"
    assert t.reason.startswith("repair budget spent: 3 repair run(s) in a row")
    assert "restart held: the configuration is broken" in t.reason


def test_the_earlier_rules_restarted_all_the_same():
    for rules in (1, 2):
        d = Driver(rules=rules, ladder=("diagnose", "check_config", "restart"), max_retries=2)
        check_config(d, ok=False)
        assert d.current == "restarting", rules

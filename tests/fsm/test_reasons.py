"""A transition's reason, as the API (`last_reason`), the dashboard and `hbsm replay` show it:
what happened, in so many words, naming what failed (the error class, the step, the restart's
last output, the lost process, the operator)."""

from __future__ import annotations

import pytest

from hbsm.events import Admin, Probe, ProcessLost, RestartFinished

from .driver import SERVICE, Driver, only_transition


@pytest.mark.parametrize(("error", "named"), [("refused", "refused"), (None, "failed")])
def test_a_failed_probe_names_its_error_class_or_says_failed(error, named):
    d = Driver(max_retries=1)
    t = only_transition(d.feed(Probe(ts=d._tick(None), service=SERVICE, ok=False, error=error)))
    assert t.reason == f"probe failed: {named}"


@pytest.mark.parametrize(("error", "named"), [("http_5xx", "http_5xx"), (None, "failed")])
def test_the_first_rules_also_counted_in_the_words(error, named):
    d = Driver(max_retries=3, rules=1)
    t = only_transition(d.feed(Probe(ts=d._tick(None), service=SERVICE, ok=False, error=error)))
    assert t.reason == f"probe failed (1 in a row): {named}"


@pytest.mark.parametrize(("error", "named"), [("timeout", "timeout"), (None, "failed")])
def test_a_step_that_did_not_fix_it_is_named_with_what_still_fails(error, named):
    d = Driver(max_retries=1, ladder=("diagnose",))  # exhausted: degraded, saying why
    d.fail()
    d.finish_step()
    t = only_transition(d.feed(Probe(ts=d._tick(None), service=SERVICE, ok=False, error=error)))
    assert t.reason == f"still failing after diagnose: {named}"


def test_a_restart_says_restarted_or_the_end_of_what_it_printed():
    d = Driver(max_retries=1, ladder=("diagnose", "restart"), on_restart_failure="degraded")
    d.to_repairing()
    d.climb_to_restart()
    assert only_transition(d.finish_restart(ok=True)).reason == "restarted"
    d = Driver(max_retries=1, ladder=("diagnose", "restart"), on_restart_failure="degraded")
    d.to_repairing()
    d.climb_to_restart()
    output = "x" * 300 + "permission denied"
    t = only_transition(
        d.feed(RestartFinished(ts=d._tick(5.0), service=SERVICE, ok=False, output=output))
    )
    assert t.reason == "restart failed: " + output[-200:]


@pytest.mark.parametrize(
    ("detail", "said"),
    [
        ("exit status 137", "supervised process 7 is gone: exit status 137"),
        ("", "supervised process 7 is gone"),
    ],
)
def test_a_lost_process_is_named_with_what_is_known_of_its_end(detail, said):
    d = Driver()
    t = only_transition(d.feed(ProcessLost(ts=d._tick(1.0), service=SERVICE, pid=7, detail=detail)))
    assert t.reason == said


def test_an_operators_action_names_the_operator_when_known():
    d = Driver()
    assert only_transition(d.admin("pause")).reason == "admin pause by ops"
    d.admin("resume")
    t = only_transition(d.feed(Admin(ts=d._tick(1.0), service=SERVICE, action="pause")))
    assert t.reason == "admin pause"

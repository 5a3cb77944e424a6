"""Planning: which events call for a notice, once per incident, within the rate limit."""

from __future__ import annotations

import msgspec
import pytest

from hbsm.config.model import NotifyConfig
from hbsm.events import Admin, Notification, RepairFinished, ServiceView, Snapshot
from hbsm.notify import Notifier
from hbsm.notify.notice import iso_utc
from hbsm.state import ServiceState

from .history import T0, FsmRun, Log

HOUR = 3600.0


def notifier(**config: object) -> Notifier:
    return Notifier(NotifyConfig(**config))  # type: ignore[arg-type]


def kinds(notices: list) -> list[str]:
    return [n.kind for n in notices]


def test_a_real_fsm_incident_notifies_repair_failure_restart_and_recovery():
    run = FsmRun(max_retries=2, ladder=("diagnose", "restart"), restart_cooldown=60.0)
    n = notifier()
    out = n.plan(run.probe(True))  # unknown -> healthy: the first probe, not a recovery
    assert out == []
    went_bad = run.probe(False)  # healthy -> degraded opens the incident
    incident = f"api@{iso_utc(went_bad[-1].ts)}"
    out += n.plan(went_bad)
    out += n.plan(run.probe(False))  # -> repairing
    out += n.plan(run.step_done(ok=False))  # diagnose itself failed
    out += n.plan(run.probe(False))  # still failing: the ladder reaches its restart
    assert run.state.state == "restarting"
    out += n.plan(run.restart_done(ok=True))  # -> cooldown
    out += n.plan(run.probe(True, after=61.0))  # -> healthy
    assert run.state.state == "healthy"

    assert kinds(out) == ["repair_failed", "restart", "recovered"]
    assert {x.incident for x in out} == {incident}
    assert [x.level for x in out] == ["warning", "warning", "info"]
    recovered = out[-1]
    assert recovered.details["src"] == "cooldown"
    assert recovered.details["duration_s"] == pytest.approx(recovered.ts - went_bad[-1].ts)
    assert "api recovered after" in recovered.message
    assert out[1].details["attempt"] == 1
    assert n.open_incident("api") is None


def test_a_real_fsm_gives_up_notifies_failed_and_a_reset_starts_afresh():
    run = FsmRun(max_retries=1, ladder=("diagnose", "restart"), restart_cooldown=10.0)
    n = notifier()
    out = n.plan(run.probe(True))
    out += n.plan(run.probe(False))  # straight to repairing (max_retries 1)
    out += n.plan(run.step_done(ok=True) + run.probe(False))  # -> restarting
    out += n.plan(run.restart_done(ok=False))  # -> failed
    assert run.state.state == "failed"
    assert kinds(out) == ["restart", "failed"]
    assert len({x.incident for x in out}) == 1
    assert "FAILED" in out[1].message and out[1].level == "critical"

    # A human reset closes the incident; the first probe after it is no recovery.
    run.now += 10
    after_reset = n.plan(run.feed(Admin(ts=run.now, service="api", action="reset")))
    after_reset += n.plan(run.probe(True))
    assert run.state.state == "healthy"
    assert after_reset == []
    assert n.open_incident("api") is None
    # The next failure is a new incident: its "failed" is news again.
    run.now += 1000
    again = n.plan(run.probe(False))
    again += n.plan(run.step_done(ok=True) + run.probe(False))
    again += n.plan(run.restart_done(ok=False))
    assert kinds(again) == ["restart", "failed"]
    assert again[0].incident != out[0].incident


def test_repairs_that_cannot_restart_give_up_loudly_once_their_budget_is_spent():
    run = FsmRun(max_retries=1, ladder=("diagnose",), repair_backoff=10.0, repair_budget=2)
    n = notifier()
    out = n.plan(run.probe(True))
    out += n.plan(run.probe(False))  # -> repairing, run 1
    out += n.plan(run.step_done(ok=False) + run.probe(False))  # -> degraded, backed off 10 s
    assert run.state.state == "degraded"
    out += n.plan(run.probe(False, after=11.0))  # the backoff is over: run 2
    out += n.plan(run.step_done(ok=False) + run.probe(False))  # the budget is spent
    assert run.state.state == "failed"
    assert kinds(out) == ["repair_failed", "failed"]
    failed = out[-1]
    assert failed.level == "critical" and "FAILED and needs a human reset" in failed.message
    assert "repair budget spent: 2 repair run(s) in a row did not fix it" in failed.message


def test_each_incident_gets_its_own_failed_and_recovered():
    log = Log()
    n = notifier()
    out = []
    for start in (T0, T0 + 1000):
        out += n.plan(log.move("db", "healthy", "degraded", start))
        out += n.plan(log.move("db", "degraded", "repairing", start + 10))
        out += n.plan(log.move("db", "repairing", "failed", start + 20, trigger="step_failed"))
        # However the service gets there, a second "failed" in one incident is no news.
        out += n.plan(log.move("db", "failed", "repairing", start + 30, trigger="repair_now"))
        out += n.plan(log.move("db", "repairing", "failed", start + 35, trigger="step_failed"))
        out += n.plan(log.move("db", "failed", "repairing", start + 38, trigger="repair_now"))
        out += n.plan(log.move("db", "repairing", "healthy", start + 40, trigger="verified"))
        # A second recovery of the same incident (a replayed copy) is no news either.
        out += n.plan(log.move("db", "repairing", "healthy", start + 40, trigger="verified"))
    assert kinds(out) == ["failed", "recovered", "failed", "recovered"]
    assert [x.incident for x in out] == [f"db@{iso_utc(T0)}"] * 2 + [f"db@{iso_utc(T0 + 1000)}"] * 2


def test_the_same_events_planned_again_notify_nothing():
    log = Log()
    n = notifier()
    events = [
        *log.move("db", "healthy", "degraded", T0),
        *log.move("db", "degraded", "repairing", T0 + 10),
        *log.restart("db", T0 + 20),
        *log.move("db", "restarting", "failed", T0 + 30, trigger="restart_failed"),
    ]
    assert kinds(n.plan(events)) == ["restart", "failed"]
    assert n.plan(events) == []  # same seq: seen already
    # Unstamped copies (seq 0) are caught by the incident's dedupe keys instead.
    unstamped = [msgspec.structs.replace(e, seq=0) for e in events]
    assert n.plan(unstamped) == []


def test_one_restart_notice_per_restart_even_when_attempt_repeats():
    log = Log()
    n = notifier()
    n.plan(log.move("web", "healthy", "degraded", T0))
    # `attempt` counts restarts inside the window: a long incident can see attempt 1 twice.
    first = n.plan(log.restart("web", T0 + 100, attempt=1))
    second = n.plan(log.restart("web", T0 + 100 + 2 * HOUR, attempt=1))
    assert kinds(first + second) == ["restart", "restart"]
    assert [x.details["restart"] for x in first + second] == [1, 2]
    assert first[0].message != second[0].message


def test_repair_failed_once_per_incident_and_not_when_interrupted_or_late():
    log = Log()
    n = notifier()
    n.plan(log.move("web", "healthy", "degraded", T0))
    out = n.plan(log.repair_failed("web", T0 + 10, step="check_config"))
    out += n.plan(log.repair_failed("web", T0 + 20, step="http"))
    assert kinds(out) == ["repair_failed"]
    assert out[0].details["step"] == "check_config"
    assert "config.toml: missing" in out[0].message
    n.plan(log.move("web", "degraded", "healthy", T0 + 30, trigger="probe_ok"))
    # After the recovery: a late outcome of the old run is no news.
    assert n.plan(log.repair_failed("web", T0 + 40)) == []
    # A step cut short by the monitor's own shutdown is not a repair failure.
    n.plan(log.move("web", "healthy", "degraded", T0 + 50))
    cut = RepairFinished(
        ts=T0 + 60, service="web", run=2, step="http", index=0, ok=False, interrupted=True
    )
    assert n.plan(log.add(cut)) == []


def test_only_the_configured_kinds_are_planned():
    log = Log()
    n = notifier(on=["failed"])
    events = [
        *log.move("db", "healthy", "degraded", T0),
        *log.repair_failed("db", T0 + 5),
        *log.restart("db", T0 + 10),
        *log.move("db", "restarting", "failed", T0 + 20, trigger="restart_failed"),
        *log.move("db", "failed", "repairing", T0 + 30, trigger="repair_now"),
        *log.move("db", "repairing", "healthy", T0 + 40, trigger="verified"),
    ]
    assert kinds(n.plan(events)) == ["failed"]


def test_a_blip_from_unknown_is_no_recovery_but_paused_keeps_the_incident():
    log = Log()
    n = notifier()
    assert n.plan(log.move("db", "unknown", "healthy", T0, trigger="probe_ok")) == []
    n.plan(log.move("db", "healthy", "degraded", T0 + 10))
    n.plan(log.move("db", "degraded", "paused", T0 + 20, trigger="pause"))
    n.plan(log.move("db", "paused", "repairing", T0 + 30, trigger="resume"))
    out = n.plan(log.move("db", "repairing", "healthy", T0 + 40, trigger="verified"))
    assert kinds(out) == ["recovered"]
    assert out[0].incident == f"db@{iso_utc(T0 + 10)}"


def test_a_blip_that_never_went_past_degraded_recovers_silently():
    log = Log()
    n = notifier()
    n.plan(log.move("db", "healthy", "degraded", T0))
    assert n.plan(log.move("db", "degraded", "healthy", T0 + 10, trigger="probe_ok")) == []
    # The next incident that does escalate still gets its recovery.
    n.plan(log.move("db", "healthy", "degraded", T0 + 20))
    n.plan(log.move("db", "degraded", "repairing", T0 + 30))
    out = n.plan(log.move("db", "repairing", "healthy", T0 + 40, trigger="verified"))
    assert kinds(out) == ["recovered"]


def test_rate_limit_suppresses_and_the_next_notice_counts_them():
    log = Log()
    n = notifier(rate_per_hour=2)
    n.plan(log.move("web", "healthy", "degraded", T0))
    out = []
    for i in range(5):
        out += n.plan(log.restart("web", T0 + 60 * (i + 1), attempt=i + 1))
    assert [x.details["restart"] for x in out] == [1, 2]
    assert all("suppressed" not in x.details for x in out)
    # Another service has its own budget.
    n.plan(log.move("db", "healthy", "degraded", T0 + 100))
    assert kinds(n.plan(log.restart("db", T0 + 110))) == ["restart"]
    # An hour after the first two, the next notice goes out and tells of the three it missed.
    later = n.plan(log.move("web", "restarting", "failed", T0 + 120 + HOUR, trigger="x"))
    assert kinds(later) == ["failed"]
    assert later[0].details["suppressed"] == 3
    assert later[0].details["suppressed_kinds"] == {"restart": 3}
    assert "3 earlier notices were suppressed" in later[0].message
    # The count is reported once.
    again = n.plan(log.move("web", "failed", "healthy", T0 + 130 + HOUR, trigger="verified"))
    assert kinds(again) == []  # failed -> healthy is not in the recovery list
    n.plan(log.move("web", "healthy", "degraded", T0 + 140 + HOUR))
    fine = n.plan(log.restart("web", T0 + 150 + HOUR))
    assert kinds(fine) == ["restart"] and "suppressed" not in fine[0].details


def test_rate_limit_never_holds_back_failed_but_counts_it():
    # Found by tests/reliability/test_flapping.py: the restarts of a flapping service spent the
    # rate, and the notice that it gave up (a human is needed) was suppressed with nothing after
    # it to tell.
    log = Log()
    n = notifier(rate_per_hour=2)
    n.plan(log.move("web", "healthy", "degraded", T0))
    out = []
    for i in range(3):
        out += n.plan(log.restart("web", T0 + 60 * (i + 1), attempt=i + 1))
    assert kinds(out) == ["restart", "restart"]
    gave_up = n.plan(log.move("web", "repairing", "failed", T0 + 300, trigger="step_failed"))
    assert kinds(gave_up) == ["failed"]
    assert gave_up[0].details["suppressed_kinds"] == {"restart": 1}
    # It counted: after a reset, the next incident's notices wait for the hour to roll.
    n.plan(log.move("web", "failed", "unknown", T0 + 400, trigger="reset"))
    n.plan(log.move("web", "unknown", "degraded", T0 + 410))
    assert n.plan(log.restart("web", T0 + 420)) == []
    assert n.plan(log.restart("web", T0 + 61 + HOUR)) == []  # 2 in the last hour, failed too
    assert kinds(n.plan(log.restart("web", T0 + 121 + HOUR))) == ["restart"]


def test_rate_limit_window_rolls():
    log = Log()
    n = notifier(rate_per_hour=2)
    n.plan(log.move("web", "healthy", "degraded", T0))
    assert len(n.plan(log.restart("web", T0 + 0))) == 1
    assert len(n.plan(log.restart("web", T0 + 1800))) == 1
    assert n.plan(log.restart("web", T0 + 3000)) == []  # 2 in the last hour already
    # At T0 + 3601 the first has left the window: one slot is free again.
    out = n.plan(log.restart("web", T0 + 3601))
    assert len(out) == 1 and out[0].details["suppressed"] == 1
    assert n.plan(log.restart("web", T0 + 3700)) == []


def _history(log: Log) -> list:
    """A monitor's log up to its restart: api is in an incident, a repair step failed and a
    restart was notified (on two channels), the service is cooling down."""
    return [
        *log.move("api", "unknown", "healthy", T0, trigger="probe_ok"),
        *log.move("api", "healthy", "degraded", T0 + 10),
        *log.move("api", "degraded", "repairing", T0 + 20),
        *log.repair_failed("api", T0 + 25),
        *log.add(Notification(ts=T0 + 26, service="api", channel="webhook:x", message="rf")),
        *log.move("api", "repairing", "restarting", T0 + 30, trigger="step_failed"),
        *log.restart("api", T0 + 30),
        *log.add(
            Notification(ts=T0 + 31, service="api", channel="webhook:x", message="r1"),
            Notification(ts=T0 + 31, service="api", channel="smtp:x", message="r1"),
        ),
        *log.move("api", "restarting", "cooldown", T0 + 40, trigger="restart_done"),
    ]


def _after_restart(log: Log) -> list:
    """What the restarted monitor then decides: still failing after the cooldown, another
    failed repair step, a second restart, and at last a recovery."""
    return [
        *log.move("api", "cooldown", "degraded", T0 + 400),
        *log.move("api", "degraded", "repairing", T0 + 460),
        *log.repair_failed("api", T0 + 465),
        *log.move("api", "repairing", "restarting", T0 + 470, trigger="step_failed"),
        *log.restart("api", T0 + 470, attempt=2),
        *log.move("api", "restarting", "cooldown", T0 + 480, trigger="restart_done"),
        *log.move("api", "cooldown", "healthy", T0 + 610, trigger="probe_ok"),
    ]


def test_remember_keeps_a_restarted_monitor_from_notifying_twice():
    log = Log()
    history = _history(log)
    later = _after_restart(log)

    n = notifier()
    for event in history:
        n.remember(event)
    assert n.open_incident("api") == f"api@{iso_utc(T0 + 10)}"
    assert n.plan(history) == []  # the tail fed again by mistake: nothing
    out = n.plan(later)
    assert kinds(out) == ["restart", "recovered"]  # no second "repair_failed"
    assert {x.incident for x in out} == {f"api@{iso_utc(T0 + 10)}"}
    assert out[0].details["restart"] == 2
    assert out[1].details["duration_s"] == 600

    # Without the history the same events notify the repair failure again, under an
    # incident of their own.
    forgetful = notifier()
    again = forgetful.plan(later)
    assert kinds(again) == ["repair_failed", "restart", "recovered"]
    assert again[0].incident == f"api@{iso_utc(T0 + 400)}"


def test_remembered_notifications_count_toward_the_rate_limit_once_per_notice():
    log = Log()
    history = _history(log)  # 2 notices (3 Notification events) at T0 + 26 and T0 + 31
    n = notifier(rate_per_hour=3)
    for event in history:
        n.remember(event)
    out = n.plan(_after_restart(log))
    assert kinds(out) == ["restart"]  # the third notice of the hour; the recovery is one too many
    # An hour after the remembered ones, the next notice reports the suppressed recovery.
    n.plan(log.move("api", "healthy", "degraded", T0 + 31 + HOUR))
    final = n.plan(log.move("api", "degraded", "failed", T0 + 42 + HOUR, trigger="x"))
    assert kinds(final) == ["failed"]
    assert final[0].details["suppressed_kinds"] == {"recovered": 1}


def test_remember_a_snapshot_restores_incidents_begun_in_an_earlier_segment():
    log = Log()
    snap = Snapshot(
        seq=100,
        ts=T0 + 1000,
        services=[
            ServiceView(name="api", fsm=ServiceState(name="api", state="failed", since=T0 + 40)),
            ServiceView(name="db", fsm=ServiceState(name="db", state="healthy", since=T0)),
        ],
    )
    n = notifier()
    n.remember(snap)
    assert n.open_incident("db") is None
    for _ in range(100):
        log.add(Notification(ts=0.0, service="x"))  # move seq past the snapshot's
    out = n.plan(log.move("api", "failed", "repairing", T0 + 1100, trigger="repair_now"))
    out += n.plan(log.move("api", "repairing", "failed", T0 + 1110, trigger="step_failed"))
    out += n.plan(log.move("api", "failed", "repairing", T0 + 1200, trigger="repair_now"))
    out += n.plan(log.move("api", "repairing", "healthy", T0 + 1210, trigger="verified"))
    assert kinds(out) == ["recovered"]
    assert out[0].incident == f"api@{iso_utc(T0 + 40)}"


def test_a_reset_ends_the_incident_even_if_the_service_never_got_well():
    log = Log()
    n = notifier()
    first = n.plan(log.move("db", "healthy", "degraded", T0))
    first += n.plan(log.move("db", "degraded", "failed", T0 + 10, trigger="step_failed"))
    first += n.plan(log.move("db", "failed", "unknown", T0 + 20, trigger="reset"))
    assert n.open_incident("db") is None
    second = n.plan(log.move("db", "unknown", "degraded", T0 + 30))
    second += n.plan(log.move("db", "degraded", "failed", T0 + 40, trigger="step_failed"))
    assert kinds(first) == kinds(second) == ["failed"]
    assert second[0].incident == f"db@{iso_utc(T0 + 30)}" != first[0].incident

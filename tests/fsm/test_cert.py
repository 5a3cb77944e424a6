"""The certificate watch in the state machine: `cert.expiring` decided once per certificate, on
the first fact inside `cert_warn_days`, never a repair or a restart; replayed alike."""

from __future__ import annotations

import msgspec

from hbsm.events import CertExpiring, CertSeen, Event, Probe, RepairStarted, RestartStarted
from hbsm.fsm import decide, machine_for
from hbsm.notify.policy import NoticePlanner
from hbsm.projection import Projection
from hbsm.replay.verify import Verifier
from hbsm.state import Policy, ServiceState
from hbsm.vocabulary import ERROR_CLASSES, FAILURE_CLASSES, REPORTED_CLASSES

DAY = 86400.0
T0 = 1_800_000_000.0


def seen(ts: float, days: float, fingerprint: str = "aa") -> CertSeen:
    return CertSeen(ts=ts, service="web", not_after=T0 + days * DAY, fingerprint=fingerprint)


def probe(ts: float, ok: bool = True) -> Probe:
    return Probe(ts=ts, service="web", ok=ok, error=None if ok else "refused")


def run(facts: list[Event], policy: Policy | None = None, rules: int = 5) -> list[Event]:
    """Every fact and its decisions, in log order."""
    state = ServiceState(name="web")
    log: list[Event] = []
    for fact in facts:
        log += [fact, *decide(state, fact, policy or Policy(), machine_for(rules))]
    return log


def reports(log: list[Event]) -> list[CertExpiring]:
    return [e for e in log if isinstance(e, CertExpiring)]


def test_cert_is_a_failure_class_that_is_reported_never_repaired() -> None:
    assert "cert" in FAILURE_CLASSES and "cert" in REPORTED_CLASSES
    assert "cert" not in ERROR_CLASSES  # no ladder can be set for it


def test_a_certificate_inside_the_window_is_reported_on_its_own_fact_once() -> None:
    facts: list[Event] = [probe(T0), seen(T0, days=3), *(probe(T0 + i) for i in range(1, 20))]
    log = run(facts)
    [report] = reports(log)
    assert report.ts == T0 and log[log.index(report) - 1] == facts[1]  # right after cert.seen
    assert (report.fingerprint, report.days_left, report.warn_days, report.error) == (
        "aa", 3.0, 14.0, "cert",
    )  # fmt: skip
    assert not [e for e in log if isinstance(e, RepairStarted | RestartStarted)]


def test_time_brings_a_known_certificate_into_the_window_at_a_probe() -> None:
    log = run([seen(T0, days=20), probe(T0 + 5 * DAY), probe(T0 + 6.5 * DAY), probe(T0 + 7 * DAY)])
    [report] = reports(log)
    assert report.ts == T0 + 6.5 * DAY and report.days_left == 13.5


def test_a_renewed_certificate_is_reported_afresh_only_inside_the_window() -> None:
    log = run([seen(T0, 3, "aa"), seen(T0 + 1, 90, "bb"), probe(T0 + 2), seen(T0 + 3, 5, "cc")])
    assert [r.fingerprint for r in reports(log)] == ["aa", "cc"]


def test_cert_warn_days_0_never_reports_and_older_rules_never_do() -> None:
    facts: list[Event] = [seen(T0, days=3), probe(T0 + 1)]
    assert reports(run(facts, Policy(cert_warn_days=0))) == []
    assert reports(run(facts, rules=4)) == []


def test_a_failing_service_is_reported_all_the_same_and_repaired_as_before() -> None:
    policy = Policy(max_retries=1)
    log = run([seen(T0, 3), probe(T0 + 1, ok=False)], policy)
    assert len(reports(log)) == 1
    assert [type(e).__name__ for e in log][-2:] == ["Transition", "RepairStarted"]


def test_replay_folds_the_same_state_and_verify_agrees() -> None:
    facts: list[Event] = [seen(T0, 20), probe(T0 + 7 * DAY), seen(T0 + 8 * DAY, 90, "bb")]
    log = [msgspec.structs.replace(e, seq=i) for i, e in enumerate(run(facts), 1)]
    projection = Projection()
    projection.apply_all(log)
    view = projection.services["web"]
    assert view.cert is not None and view.cert.fingerprint == "bb"
    assert view.cert_expiring is None  # cleared by the renewal
    assert view.fsm.cert_fingerprint == "bb" and not view.fsm.cert_warned
    verifier = Verifier()
    for event in log:
        assert verifier.feed(event) is None
    assert len(reports(log)) == 1
    assert verifier.decisions == 2  # the report, and the first probe's transition to healthy


def test_the_notice_goes_out_once_per_certificate() -> None:
    planner = NoticePlanner(rate_per_hour=0)
    first = CertExpiring(seq=2, ts=T0, service="web", fingerprint="aa" * 32, not_after=T0 + DAY,
                         days_left=1.0, warn_days=14.0)  # fmt: skip
    [notice] = planner.plan([first])
    assert notice.kind == "cert_expiring" and notice.level == "warning"
    assert notice.incident == "web@cert:" + "aa" * 8
    assert "expires in 1.0 days" in notice.message
    again = CertExpiring(seq=9, ts=T0 + 5, service="web", fingerprint="aa" * 32,
                         not_after=T0 + DAY, days_left=1.0, warn_days=14.0)  # fmt: skip
    assert planner.plan([again]) == []
    # A monitor that learnt it from the log's history does not notify it again.
    restarted = NoticePlanner()
    restarted.remember(first)
    assert restarted.plan([again]) == []
    # Not asked for: not sent.
    assert NoticePlanner(on=["failed"]).plan([first]) == []

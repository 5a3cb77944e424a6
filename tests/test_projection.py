"""Projections: the views folded from events match what the live state machine decided."""

import msgspec

from hbsm import events as ev
from hbsm.fsm import decide
from hbsm.projection import Projection, next_action
from hbsm.state import Policy, ServiceState

POLICY = Policy(check_interval=5, max_retries=2, restart_cooldown=60, cooldown_max=600)


def _run(facts_by_ts, policy=POLICY, service="web"):
    """Feed facts through decide like the monitor does: fact, then its decisions."""
    state = ServiceState(name=service)
    log = [ev.ServiceRegistered(ts=0.0, service=service, policy=policy, critical=True)]
    for fact in facts_by_ts:
        log.append(fact)
        log.extend(decide(state, fact, policy))
    return state, [msgspec.structs.replace(e, seq=i) for i, e in enumerate(log, start=1)]


def _probe(ts, ok, service="web", latency=12.0, error="refused"):
    return ev.Probe(
        ts=ts, service=service, ok=ok, latency_ms=latency if ok else None,
        status=200 if ok else None, error=None if ok else error,
    )  # fmt: skip


def test_projection_state_equals_the_deciding_state():
    facts = [_probe(1, True), _probe(6, False), _probe(11, False)]
    state, log = _run(facts)
    projection = Projection()
    projection.apply_all(log)
    view = projection.services["web"]
    assert view.fsm.state == "repairing" == state.state
    assert msgspec.structs.asdict(view.fsm) == msgspec.structs.asdict(state)


def test_view_holds_last_probe_last_failure_and_counts():
    facts = [_probe(1, True, latency=10.0), _probe(6, False), _probe(11, True, latency=30.0)]
    _, log = _run(facts)
    projection = Projection()
    projection.apply_all(log)
    view = projection.services["web"]
    assert view.last_probe is not None and view.last_probe.ts == 11
    assert view.last_failure is not None and view.last_failure.error == "refused"
    assert view.probes_failed == 1
    assert view.latency_ms == [10.0, None, 30.0]
    assert view.critical is True and view.policy == POLICY
    assert projection.monitor.counts["probe"] == 3
    assert projection.monitor.last_seq == log[-1].seq
    assert projection.monitor.events_total == len(log)


def test_latency_history_stays_bounded():
    projection = Projection(history=10)
    projection.apply_all(
        msgspec.structs.replace(_probe(float(i), True, latency=float(i)), seq=i + 1)
        for i in range(1000)
    )
    view = projection.services["web"]
    assert 10 <= len(view.latency_ms) <= 12
    assert view.latency_ms[-1] == 999.0
    assert view.latency_ts == sorted(view.latency_ts)


def test_snapshot_restores_the_same_views():
    facts = [_probe(1, True), _probe(6, False), _probe(11, False), _probe(16, False)]
    _, log = _run(facts)
    original = Projection()
    original.apply_all(log)
    snap = msgspec.structs.replace(original.snapshot(segment=3, ts=20.0), seq=len(log) + 1)
    restored = Projection()
    restored.apply(ev.decode(ev.encode(snap)))
    assert msgspec.to_builtins(restored.services) == msgspec.to_builtins(original.services)
    assert restored.monitor.segment == 3
    # The snapshot line itself is one more event seen.
    assert restored.monitor.counts == {**original.monitor.counts, "snapshot": 1}
    assert restored.monitor.events_total == original.monitor.events_total + 1


def test_opaque_events_are_counted_not_dropped():
    projection = Projection()
    projection.apply_all([ev.decode(b'{"type":"future.kind","seq":1,"ts":1}')])
    assert projection.monitor.counts == {"future.kind": 1}
    assert projection.monitor.events_total == 1


def test_monitor_view_follows_start_stop_and_admin():
    projection = Projection()
    projection.apply_all(
        [
            ev.MonitorStarted(seq=1, ts=10.0, pid=42, version="0.1.0", config={"port": 5000}),
            ev.Admin(seq=2, ts=11.0, action="stop", who="ops"),
        ]
    )
    assert projection.monitor.running is False
    assert projection.monitor.pid == 42 and projection.monitor.config == {"port": 5000}
    projection.apply(ev.Admin(seq=3, ts=12.0, action="start", allowed=False))
    assert projection.monitor.running is False  # a refused admin action changes nothing
    projection.apply(ev.MonitorStopped(seq=4, ts=13.0))
    assert projection.monitor.stopped_at == 13.0


def test_next_action_says_what_comes_and_when():
    facts = [_probe(1, True)]
    _, log = _run(facts)
    projection = Projection()
    projection.apply_all(log)
    assert next_action(projection.services["web"]) == ("probe", 1 + POLICY.check_interval)
    facts = [_probe(1, False), _probe(6, False)]
    _, log = _run(facts)
    projection = Projection()
    projection.apply_all(log)
    assert next_action(projection.services["web"]) == ("repair step diagnose", None)


def test_next_action_of_a_service_backing_off_is_its_next_repair_run():
    policy = Policy(check_interval=5, max_retries=1, ladder=("diagnose",), repair_backoff=60)
    done = ev.RepairFinished(ts=2, service="web", run=1, step="diagnose", index=0, ok=False)
    state, log = _run([_probe(1, False), done, _probe(3, False)], policy)
    assert state.state == "degraded"
    projection = Projection()
    projection.apply_all(log)
    view = projection.services["web"]
    assert next_action(view) == ("next repair run", 63.0)
    # Probed past the backoff's end: the next probe is what comes (it may start run 2).
    projection.apply(msgspec.structs.replace(_probe(64, False), seq=len(log) + 1))
    assert next_action(projection.services["web"]) == ("probe", 64 + 5)

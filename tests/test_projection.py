"""Projections: the views folded from events match what the live state machine decided."""

import msgspec
import pytest

from hbsm import events as ev
from hbsm.fsm import decide, machine_for
from hbsm.projection import Projection, next_action
from hbsm.state import RULES, Policy, ServiceState

POLICY = Policy(check_interval=5, max_retries=2, restart_cooldown=60, cooldown_max=600)


def _run(facts_by_ts, policy=POLICY, service="web", rules=RULES):
    """Feed facts through decide like the monitor does: fact, then its decisions."""
    state = ServiceState(name=service)
    log = [ev.ServiceRegistered(ts=0.0, service=service, policy=policy, critical=True)]
    for fact in facts_by_ts:
        log.append(fact)
        log.extend(decide(state, fact, policy, machine_for(rules)))
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
    assert view.latency_ms == sorted(view.latency_ms)  # oldest first


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


def _view(**state: object) -> ev.ServiceView:
    return ev.ServiceView(name="web", fsm=ServiceState(name="web", **state), policy=POLICY)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"state": "paused"}, ("paused", None)),
        ({"state": "failed"}, ("awaiting reset", None)),
        ({"state": "restarting", "in_flight": "restart"}, ("restart in progress", None)),
        (
            {"state": "repairing", "in_flight": "repair:check_config"},
            ("repair step check_config", None),
        ),
        # A step's name is taken whole, whatever it holds.
        (
            {"state": "repairing", "in_flight": "repair:vendor:flush"},
            ("repair step vendor:flush", None),
        ),
        ({"state": "repairing", "in_flight": None}, ("verify repair", None)),
        (
            {
                "state": "cooldown",
                "cooldown_holds": False,
                "restart_pending": True,
                "cooldown_until": 90.0,
            },
            ("restart if still failing", 90.0),
        ),
        (
            {
                "state": "cooldown",
                "cooldown_holds": True,
                "restart_pending": False,
                "cooldown_until": 90.0,
            },
            ("cooldown ends", 90.0),
        ),
        # A cooldown of the current rules with no restart waiting holds nothing: probes go on.
        ({"state": "cooldown", "cooldown_holds": False, "restart_pending": False}, ("probe", None)),
        ({"state": "unknown"}, ("probe", None)),  # never probed: no time for the next one yet
    ],
)
def test_next_action_in_every_state(state: dict[str, object], expected: tuple[str, object]) -> None:
    assert next_action(_view(**state)) == expected


def _story() -> list[ev.Event]:
    """A monitor's whole history of one service: started, a process, a repair run climbing to a
    restart, the restart, healthy again, operators, the process lost, the monitor stopped."""
    facts: list[ev.Event] = [
        ev.ProcessStarted(ts=0.5, service="web", pid=100),
        _probe(1, False),
        _probe(6, False),  # max_retries: a repair run (diagnose)
        ev.RepairFinished(ts=7, service="web", run=1, step="diagnose", index=0, ok=False,
                          output="o" * 300),
        _probe(8, False),  # still failing: the next step (check_config)
        ev.RepairFinished(ts=9, service="web", run=1, step="check_config", index=1, ok=False,
                          output="bad config"),
        _probe(10, False),  # still failing: the restart
        ev.RestartFinished(ts=15, service="web", ok=True, pid=101),
        _probe(20, True),  # healthy
    ]  # fmt: skip
    # Decided by the rules its monitor.started records (the current ones would not restart
    # after a failed check_config).
    _, log = _run(facts, rules=2)
    tail = [
        ev.Admin(ts=30, action="stop", who="ops"),
        ev.Admin(ts=31, action="start", who="ops"),
        ev.Admin(ts=32, action="stop", service="api", who="ops"),  # a supervised process
        ev.ProcessLost(ts=33, service="web", pid=101),
        ev.MonitorStopped(ts=40, reason="test over"),
    ]
    head = [ev.MonitorStarted(ts=0.1, pid=42, version="0.1.0", config={"port": 5000}, rules=2)]
    return [msgspec.structs.replace(e, seq=i) for i, e in enumerate(head + log + tail, start=1)]


def test_a_whole_history_folds_into_every_field_of_the_views():
    story = _story()
    projection = Projection()
    for i, event in enumerate(story):
        if i == len(story) - 1:  # the last one through apply(), the rest in one batch
            assert projection.apply_all(story[:i]) == i
            assert projection.version == i
            projection.apply(event)
    view = projection.services["web"]
    assert (view.repairs_total, view.restarts_total, view.probes_failed) == (1, 1, 4)
    assert view.last_problem == "check_config failed: bad config" and view.last_problem_ts == 9
    assert view.pid is None  # 100, then 101 after the restart, then lost
    assert view.fsm.state == "healthy" and view.last_reason == "probe ok (1 in a row)"
    assert "api" in projection.services  # an admin action names a service: it gets a view
    m = projection.monitor
    assert (m.pid, m.version, m.started_at, m.rules, m.config) == (
        42,
        "0.1.0",
        0.1,
        2,
        {"port": 5000},
    )
    assert (m.running, m.stopped_at) == (False, 40)
    assert (m.events_total, m.last_seq, m.last_ts) == (len(story), len(story), 40)
    assert projection.version == len(story)
    assert m.counts == {
        "monitor.started": 1, "service.registered": 1, "process.started": 1, "probe": 5,
        "transition": 5, "repair.started": 2, "repair.finished": 2, "restart.started": 1,
        "restart.finished": 1, "admin": 3, "process.lost": 1, "monitor.stopped": 1,
    }  # fmt: skip


def test_a_restart_reports_its_new_pid_and_an_admin_stop_and_start_the_monitors_state():
    story = _story()
    restart = next(i for i, e in enumerate(story) if isinstance(e, ev.RestartFinished))
    stop = next(i for i, e in enumerate(story) if isinstance(e, ev.Admin) and e.action == "stop")
    projection = Projection()
    projection.apply_all(story[:restart])
    assert projection.services["web"].pid == 100
    projection.apply(story[restart])
    assert projection.services["web"].pid == 101
    projection.apply_all(story[restart + 1 : stop + 1])
    assert projection.monitor.running is False
    projection.apply(story[stop + 1])  # the monitor's start
    assert projection.monitor.running is True
    projection.apply(story[stop + 2])  # one service's process stopped: the monitor runs on
    assert projection.monitor.running is True and "api" in projection.services
    # A restart that reports no pid (a restart command's) leaves the pid as it was.
    projection.apply(ev.RestartFinished(seq=99, ts=50, service="web", ok=True))
    assert projection.services["web"].pid == 101
    projection.apply(ev.MonitorStopped(seq=100, ts=55))
    projection.apply(ev.MonitorStarted(seq=101, ts=60, pid=43))
    assert projection.monitor.running is True and projection.monitor.stopped_at is None


def test_the_last_problem_keeps_the_end_of_a_long_output():
    view = _fold(_story()).services["web"]
    assert view.last_problem == "check_config failed: bad config"
    folded = _fold(_story()[:9])  # up to the diagnose step's outcome
    assert folded.services["web"].last_problem == "diagnose failed: " + "o" * 200


def _fold(events):
    projection = Projection()
    projection.apply_all(events)
    return projection


@pytest.mark.parametrize("history", [4, 8, 10])
def test_latency_history_is_trimmed_when_a_quarter_more_has_piled_up(history: int) -> None:
    trim_at = history + max(1, history // 4)
    projection = Projection(history=history)
    probes = [
        msgspec.structs.replace(_probe(float(i), True, latency=float(i)), seq=i + 1)
        for i in range(trim_at)
    ]
    projection.apply_all(probes[:-1])
    assert len(projection.services["web"].latency_ms) == trim_at - 1  # not yet
    projection.apply(probes[-1])
    view = projection.services["web"]
    assert view.latency_ms == [float(i) for i in range(trim_at - history, trim_at)]


def test_a_snapshot_of_an_older_log_with_latency_times_still_reads() -> None:
    """Snapshots once carried each service's latency times too (`latency_ts`): ignored now."""
    line = (
        b'{"type":"snapshot","seq":3,"ts":10.0,"segment":1,"monitor":{},"services":[{"name":"web",'
        b'"fsm":{"name":"web"},"latency_ts":[1.0,2.0],"latency_ms":[3.5,null]}]}'
    )
    snapshot = ev.decode(line)
    projection = Projection()
    projection.apply(snapshot)
    assert projection.services["web"].latency_ms == [3.5, None]


def test_a_snapshot_is_a_copy_later_events_do_not_change():
    story = _story()
    projection = _fold(story[:9])
    snap = projection.snapshot(segment=2, ts=99.0)
    before = msgspec.to_builtins(snap)
    projection.apply_all(story[9:])
    assert msgspec.to_builtins(snap) == before
    assert snap.ts == 99.0 and snap.segment == 2
    assert snap.monitor.counts == {"monitor.started": 1, "service.registered": 1,
                                   "process.started": 1, "probe": 2, "transition": 2,
                                   "repair.started": 1, "repair.finished": 1}  # fmt: skip
    restored = Projection()
    restored.apply(msgspec.structs.replace(snap, seq=9))
    # ... and so is what a restored projection made of it.
    restored.apply_all(story[9:])
    assert msgspec.to_builtins(snap) == before


GRACEFUL = Policy(check_interval=5, max_retries=2, restart_cooldown=60, cooldown_max=600,
                  start_grace=30, success_threshold=2)  # fmt: skip


def test_the_fold_equals_the_deciding_state_after_every_event():
    # Not only at the end: a failing probe of a healthy service, probes inside a start grace and
    # the good one that ends it each leave the same state in the projection as in decide.
    facts = [
        _probe(1, True),
        _probe(6, False, error="timeout"),  # healthy -> degraded: its error class is kept
        _probe(11, True),  # one good probe of the two it needs
        _probe(12, True),
        ev.ProcessStarted(ts=13, service="web", pid=7),  # a start grace, while healthy
        _probe(16, False),  # inside it: not counted
        _probe(21, True),  # ends it
        _probe(26, False, error="http_5xx"),
    ]
    state = ServiceState(name="web")
    log: list[ev.Event] = [ev.ServiceRegistered(ts=0.0, service="web", policy=GRACEFUL)]
    projection = Projection()
    projection.apply_all(log)
    for fact in facts:
        events = [fact, *decide(state, fact, GRACEFUL)]
        projection.apply_all(events)
        assert msgspec.structs.asdict(projection.services["web"].fsm) == msgspec.structs.asdict(
            state
        ), fact


def test_every_run_and_every_restart_is_counted():
    d = [
        _probe(1, False), _probe(6, False),  # run 1
        ev.RepairFinished(ts=7, service="web", run=1, step="diagnose", index=0, ok=False),
        _probe(8, False),
        ev.RepairFinished(ts=9, service="web", run=1, step="check_config", index=1, ok=True),
        _probe(10, False),  # restart 1
        ev.RestartFinished(ts=12, service="web", ok=False, output="exit 1"),  # failed: failed
    ]  # fmt: skip
    policy = Policy(check_interval=5, max_retries=2, on_restart_failure="degraded")
    _, log = _run(d, policy=policy)
    view = _fold(log).services["web"]
    assert (view.repairs_total, view.restarts_total) == (1, 1)
    assert view.last_problem == "restart failed: exit 1"
    more = [
        _probe(20, False), _probe(25, False),  # degraded again: run 2
        ev.RepairFinished(ts=26, service="web", run=2, step="diagnose", index=0, ok=False),
        _probe(27, False),
        ev.RepairFinished(ts=28, service="web", run=2, step="check_config", index=1, ok=True),
        _probe(29, False),  # restart 2 (no cooldown here)
    ]  # fmt: skip
    _, log = _run(d + more, policy=Policy(check_interval=5, max_retries=2, restart_cooldown=0,
                                          on_restart_failure="degraded"))  # fmt: skip
    view = _fold(log).services["web"]
    assert (view.repairs_total, view.restarts_total) == (2, 2)


def test_counts_add_up_across_batches_and_unknown_kinds_alike():
    projection = Projection()
    opaque = b'{"type":"future.kind","seq":%d,"ts":1}'
    projection.apply_all([ev.decode(opaque % 1), ev.decode(opaque % 2)])
    projection.apply_all([msgspec.structs.replace(_probe(2, True), seq=3)])
    projection.apply_all([msgspec.structs.replace(_probe(3, True), seq=4)])
    projection.apply(ev.decode(opaque % 5))
    assert projection.monitor.counts == {"future.kind": 3, "probe": 2}


def test_probes_after_a_snapshot_in_the_same_batch_go_to_its_views():
    _, log = _run([_probe(1, True), _probe(6, False)])
    first = _fold(log)
    snap = msgspec.structs.replace(first.snapshot(segment=1, ts=7.0), seq=len(log) + 1)
    after = [msgspec.structs.replace(_probe(11, False), seq=len(log) + 2)]
    projection = Projection()
    projection.apply_all([*log, snap, *after])  # one batch, the snapshot in its middle
    view = projection.services["web"]
    assert view.last_probe == after[0] and view.probes_failed == 2
    assert projection.monitor.counts["probe"] == 3  # counted once: the snapshot's, then one


def test_services_are_counted_by_state():
    projection = _fold(_story()[:9])  # web repairing
    projection.apply_all(
        [
            ev.ServiceRegistered(seq=50, ts=50, service="api"),
            ev.ServiceRegistered(seq=51, ts=50, service="db"),
            ev.ServiceRegistered(seq=52, ts=50, service="cache"),
            ev.Transition(
                seq=53, ts=51, service="db", src="unknown", dst="healthy", trigger="probe_ok"
            ),
        ]
    )
    assert projection.by_state() == {"repairing": 1, "unknown": 2, "healthy": 1}
    assert Projection().by_state() == {}


def test_a_run_is_counted_once_however_many_steps_it_has():
    one_step = Policy(check_interval=5, max_retries=1, ladder=("diagnose",), repair_backoff=0)
    three_steps = Policy(
        check_interval=5, max_retries=1, ladder=("diagnose", "http", "command"), repair_backoff=0
    )
    for policy, steps in [(one_step, 1), (three_steps, 3)]:
        state = ServiceState(name="web")
        log: list[ev.Event] = [ev.ServiceRegistered(ts=0.0, service="web", policy=policy)]
        ts = 0.0
        for _run in range(2):
            for index in range(steps):
                ts += 1
                probe = _probe(ts, False)
                log += [probe, *decide(state, probe, policy)]
                step = state.ladder[index]
                done = ev.RepairFinished(ts=ts + 0.5, service="web", run=state.run, step=step,
                                         index=index, ok=False)  # fmt: skip
                log += [done, *decide(state, done, policy)]
            ts += 1
            probe = _probe(ts, False)  # the last step's verification: the run is over
            log += [probe, *decide(state, probe, policy)]
        view = _fold([msgspec.structs.replace(e, seq=i) for i, e in enumerate(log, 1)])
        assert view.services["web"].repairs_total == 2, policy.ladder


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


def test_the_backoff_ends_exactly_at_the_next_runs_time():
    # A good probe (one of the two needed) at exactly the end of the backoff: from then on the
    # next failing probe may start run 2, so what comes next is a probe, not a wait.
    policy = Policy(check_interval=5, max_retries=1, ladder=("diagnose",), repair_backoff=60,
                    success_threshold=2)  # fmt: skip
    done = ev.RepairFinished(ts=2, service="web", run=1, step="diagnose", index=0, ok=False)
    _, log = _run([_probe(1, False), done, _probe(3, False), _probe(63, True)], policy)
    view = _fold(log).services["web"]
    assert (view.fsm.state, view.fsm.repair_after) == ("degraded", 63.0)
    assert next_action(view) == ("probe", 63 + 5)


def test_the_monitor_view_shows_an_overload_while_it_lasts():
    from hbsm.api import bodies

    p = Projection()
    p.apply_all([
        ev.MonitorStarted(seq=1, ts=10.0, pid=1),
        ev.MonitorOverloaded(seq=2, ts=20.0, stretch=4.5, asked=10000.0, done=2600.0, late=0.5),
    ])  # fmt: skip
    assert (p.monitor.overloaded_since, p.monitor.stretch) == (20.0, 4.5)
    status = bodies.heartbeat_status(p, now=30.0, log_path="x", config={})
    assert status.stretch == 4.5 and status.overloaded_since == bodies.iso(20.0)
    detailed, _ = bodies.detailed_health(p, now=30.0, show_targets=False)
    assert detailed.monitoring.stretch == 4.5
    p.apply(ev.MonitorCaughtUp(seq=3, ts=80.0, since=20.0, stretch_max=5.0))
    assert (p.monitor.overloaded_since, p.monitor.stretch) == (None, 1.0)
    # A snapshot carries it; a new start (or a stop) begins unloaded.
    p.apply(ev.MonitorOverloaded(seq=4, ts=90.0, stretch=2.0))
    q = Projection()
    q.apply(p.snapshot(segment=1, ts=95.0))
    assert (q.monitor.overloaded_since, q.monitor.stretch) == (90.0, 2.0)
    q.apply(ev.MonitorStopped(seq=5, ts=99.0))
    assert (q.monitor.overloaded_since, q.monitor.stretch) == (None, 1.0)

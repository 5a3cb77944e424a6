"""The plain replay's analysis, called directly: timeline, incidents, MTTR, filters, memory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator, Sequence

import msgspec
import pytest
from replay_scenarios import INTERVAL, T0, Recorder, outage, stamp

from hbsm._format import duration, iso
from hbsm.events import (
    LATENCY_HISTORY,
    Event,
    LogRecovered,
    MonitorStopped,
    Notification,
    OpaqueEvent,
    Probe,
    ProcessLost,
)
from hbsm.projection import Projection
from hbsm.replay import Analysis, Window, parse_time
from hbsm.replay.analysis import ReplayReport
from hbsm.state import Policy


def replay(
    events: Sequence[Event | OpaqueEvent], window: Window | None = None, batch: int = 1000
) -> ReplayReport:
    analysis = Analysis(window)
    for i in range(0, len(events), batch):
        analysis.feed(list(events[i : i + batch]))
    return analysis.report(["test"])


def two_services() -> tuple[Recorder, dict[str, float]]:
    """api: one outage repaired by a restart (2m 30s). web: a 30 s blip, then a 60 s one, both
    over before api recovers."""
    rec = Recorder()
    rec.start()
    rec.register("api")
    rec.register("web")
    times = outage(rec)
    rec.probes("web", ".x.xx.", T0 + 5)
    return rec, times


def test_timeline_has_every_kind_of_entry_in_utc_and_no_probes() -> None:
    rec, times = two_services()
    after = times["next"]
    rec.add(
        Notification(
            ts=after, service="api", channel="webhook", level="warning",
            message="api restarted", delivered=False, error="HTTP 502",
        )
    )  # fmt: skip
    rec.admin("api", "pause", ts=after + 1)
    rec.add(LogRecovered(ts=after + 2, path="events/heartbeat.jsonl", offset=1234, cut_bytes=17))
    rec.add(MonitorStopped(ts=after + 3, pid=4242, reason="SIGTERM"))
    report = replay(stamp(rec.events))
    kinds = [e.type for e in report.timeline]
    assert "probe" not in kinds and "service.registered" not in kinds
    seqs = [e.seq for e in report.timeline]
    assert seqs == sorted(seqs)

    first = report.timeline[0]
    assert (first.type, first.time) == ("monitor.started", "2026-11-01T03:00:00.000Z")
    assert "pid 4242" in first.text

    def text(kind: str, service: str | None = "api", contains: str = "") -> str:
        found = [
            e
            for e in report.timeline
            if e.type == kind and e.service == service and contains in e.text
        ]
        assert found, (kind, contains, [e.text for e in report.timeline])
        return found[0].text

    degraded = next(
        e for e in report.timeline if "healthy -> degraded" in e.text and e.service == "api"
    )
    assert degraded.time == iso(times["first_failure"]) == "2026-11-01T03:01:00.000Z"
    assert "probe failed: refused" in degraded.text
    assert text("repair.started", contains="diagnose") == "repair run 1: step 1/3 diagnose started"
    assert text("repair.finished", contains="diagnose") == (
        "repair run 1: step diagnose ok in 500 ms: diagnose done | all fine"
    )
    assert "attempt 1" in text("restart.started") and "cooldown 5m 00s" in text("restart.started")
    assert text("restart.finished") == "restart ok in 2.0 s, exit 0: restarted"
    cooldown = text("transition", contains="-> cooldown")
    assert "cooldown until 2026-11-01T03:08:00.000Z" in cooldown  # from the restart's decision
    assert text("admin") == "admin pause by alice from 127.0.0.1"
    assert text("notification") == (
        "notification [warning] via webhook: api restarted (NOT delivered: HTTP 502)"
    )
    assert "17 bytes at offset 1234" in text("log.recovered", service=None)
    assert text("monitor.stopped", service=None) == "monitor stopped (pid 4242): SIGTERM"
    # Every entry carries the recorded event for machines.
    assert all(e.event.seq == e.seq for e in report.timeline)


def test_incidents_durations_time_to_detect_and_mttr() -> None:
    rec, times = two_services()
    report = replay(stamp(rec.events))
    api = [i for i in report.incidents if i.service == "api"]
    web = [i for i in report.incidents if i.service == "web"]
    assert len(api) == 1 and len(web) == 2
    (inc,) = api
    assert inc.start == times["first_failure"] and inc.end == times["recovered"]
    assert inc.duration_s == 150.0 and duration(inc.duration_s) == "2m 30s"
    assert inc.detect_s == 2 * INTERVAL  # 3 failures, 30 s apart
    assert (inc.repairs, inc.restarts, inc.worst, inc.state) == (1, 1, "restarting", "healthy")
    assert not inc.ongoing and not inc.partial
    assert [i.duration_s for i in web] == [30.0, 60.0]
    assert all(i.detect_s is None and i.repairs == 0 for i in web)  # never reached repairing

    tallies = {t.service: t for t in report.services}
    assert tallies["api"].mttr_s == 150.0 and tallies["api"].mttd_s == 60.0
    assert tallies["web"].mttr_s == 45.0 and tallies["web"].mttd_s is None
    assert (tallies["api"].repairs, tallies["api"].restarts) == (1, 1)
    assert report.totals.mttr_s == pytest.approx((150 + 30 + 60) / 3)
    assert (report.totals.incidents, report.totals.closed, report.totals.ongoing) == (3, 3, 0)


def test_open_incident_is_ongoing_and_a_reset_then_recovery_closes_it() -> None:
    rec = Recorder(restart_ok=False)  # the restart fails: the service gives up, failed
    rec.register("db")
    t = rec.probes("db", "..", T0)
    first_failure = t
    t = rec.probes("db", "xxxxxxxx", t)
    assert rec.states["db"].state == "failed"
    report = replay(stamp(rec.events))
    (inc,) = report.incidents
    last_ts = rec.events[-1].ts
    assert inc.ongoing and inc.end is None and inc.state == "failed" and inc.worst == "failed"
    assert inc.duration_s == last_ts - first_failure
    (tally,) = report.services
    assert tally.state == "failed" and tally.closed == 0 and tally.mttr_s is None
    assert tally.incidents == 1 and report.totals.ongoing == 1

    # A human resets it; the next probe passes: the incident closes, human time included.
    rec.admin("db", "reset", ts=t + 600)
    rec.probes("db", ".", t + 630)
    report = replay(stamp(rec.events))
    (inc,) = report.incidents
    assert not inc.ongoing and inc.end == t + 630
    assert inc.duration_s == t + 630 - first_failure
    assert report.services[0].mttr_s == inc.duration_s


def test_a_process_found_gone_at_start_up_is_an_incident_until_healthy_again() -> None:
    rec = Recorder()
    rec.start()
    rec.register("api")
    t = rec.probes("api", "..", T0)
    rec.start(t + 599)  # hbsm restarted: its supervised process was gone meanwhile
    lost_at = t + 600
    rec.fact(ProcessLost(ts=lost_at, service="api", pid=4321))  # restarted at once
    back = rec.probes("api", "..", lost_at + 5)
    report = replay(stamp(rec.events))
    (inc,) = report.incidents
    assert (inc.start, inc.end) == (lost_at, lost_at + 5)
    assert (inc.restarts, inc.worst, inc.state, inc.partial) == (1, "restarting", "healthy", False)
    assert inc.reason.startswith("supervised process 4321 is gone")
    assert back > lost_at
    lost = [e.text for e in report.timeline if e.type == "process.lost"]
    assert lost == ["supervised process 4321 gone"]


def test_the_timeline_says_when_a_backed_off_repair_may_run_again() -> None:
    rec = Recorder(repair_ok=False)
    rec.start()
    rec.register("api", Policy(max_retries=1, ladder=("diagnose",), repair_backoff=90.0))
    rec.probes("api", ".xx", T0)
    report = replay(stamp(rec.events))
    (ended,) = [e.text for e in report.timeline if "repairing -> degraded" in e.text]
    assert ended.endswith("; next repair run not before 2026-11-01T03:02:30.000Z")
    assert "cooldown" not in ended


def test_since_until_and_service_filter_what_is_reported_not_the_states() -> None:
    rec, times = two_services()
    events = stamp(rec.events)
    since = times["recovered"] - 30  # inside the api incident, after both web blips
    report = replay(events, Window(since=since))
    assert all(e.ts >= since for e in report.timeline)
    assert [i.service for i in report.incidents] == ["api"]  # overlaps: reported whole
    assert report.incidents[0].start == times["first_failure"]
    assert {t.service: t.state for t in report.services} == {"api": "healthy", "web": "healthy"}
    assert report.since == iso(since)

    until = T0 + 30  # before either service first failed
    report = replay(events, Window(until=until))
    assert report.incidents == [] and all(e.ts <= until for e in report.timeline)

    report = replay(events, Window(services=frozenset({"web"})))
    assert {e.service for e in report.timeline} == {"web", None}  # monitor-wide events stay
    assert [i.service for i in report.incidents] == ["web", "web"]
    assert [t.service for t in report.services] == ["web"]
    assert report.totals.repairs == 0


def test_parse_time_takes_iso_8601_or_epoch_seconds() -> None:
    assert parse_time("2026-11-01T03:00:00Z") == T0
    assert parse_time("2026-11-01T03:00:00") == T0  # no offset: UTC
    assert parse_time("2026-11-01T04:00:00+01:00") == T0
    assert parse_time(str(T0)) == T0 and parse_time("1793502000") == T0
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time("yesterday")
    with pytest.raises(ValueError, match="later than"):
        Window(since=T0 + 1, until=T0)


def test_history_starting_at_a_snapshot_reports_a_partial_incident() -> None:
    """Older segments pruned: the history opens with a snapshot of a service mid-incident."""
    rec = Recorder()
    rec.register("api")
    t = rec.probes("api", "..xx", T0)
    before = stamp(rec.events)
    projection = Projection()
    projection.apply_all(before)
    snapshot = projection.snapshot(segment=1, ts=t)
    rec.events.clear()
    rec.probes("api", "x.", t)
    after = [msgspec.structs.replace(e, seq=e.seq + 1000) for e in stamp(rec.events)]
    report = replay([msgspec.structs.replace(snapshot, seq=1000), *after])
    (inc,) = report.incidents
    assert inc.partial and inc.start == T0 + 2 * INTERVAL  # degraded since then
    assert inc.detect_s is None  # the first failure is not in this history
    assert inc.end == t + INTERVAL and inc.state == "healthy"


def test_report_does_not_depend_on_batch_boundaries() -> None:
    rec, _ = two_services()
    events = stamp(rec.events)
    reports = [msgspec.json.encode(replay(events, batch=n)) for n in (1, 7, len(events))]
    assert reports[0] == reports[1] == reports[2]


def _probes(n: int, batch: int) -> Iterator[list[Event | OpaqueEvent]]:
    for start in range(0, n, batch):
        yield [
            Probe(seq=i + 1, ts=T0 + i, service=f"s{i % 10}", ok=True, latency_ms=1.0)
            for i in range(start, start + batch)
        ]


def test_memory_does_not_grow_with_probes() -> None:
    analysis = Analysis()
    tracemalloc.start()
    try:
        for batch in _probes(100_000, 1000):
            analysis.feed(batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 100k probes held anywhere would be well over 10 MB.
    assert peak < 5 * 2**20, peak
    assert analysis.events == 100_000 and analysis.timeline == []
    assert all(
        len(v.latency_ms) < 2 * LATENCY_HISTORY for v in analysis.projection.services.values()
    )
    stats = analysis.stats(["x"], 1.0)
    assert stats.counts == {"probe": 100_000}
    assert stats.states == {"unknown": 10}  # probes alone decide nothing

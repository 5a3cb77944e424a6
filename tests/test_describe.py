"""hbsm.describe: one wording of every kind of event, for the replay timeline and the dashboard."""

from __future__ import annotations

from pathlib import Path

import pytest

from hbsm import events as ev
from hbsm.describe import describe
from hbsm.log import read_history
from hbsm.replay.timeline import ENTRY_KINDS, entry

SAMPLES = Path(__file__).resolve().parents[1] / "events" / "samples"

# One event of every kind; a kind added to the union without one here fails the first test.
EXAMPLES: dict[str, ev.Event] = {
    "monitor.started": ev.MonitorStarted(seq=1, ts=10.0, pid=4242, version="0.1.0", host="box"),
    "monitor.stopped": ev.MonitorStopped(seq=2, ts=11.0, pid=4242, reason="SIGTERM"),
    "service.registered": ev.ServiceRegistered(
        seq=3, ts=12.0, service="web", target="http://127.0.0.1:8000/health"
    ),
    "probe": ev.Probe(
        seq=4, ts=13.0, service="web", ok=False, status=500, error="http_5xx", detail="boom"
    ),
    "transition": ev.Transition(
        seq=5,
        ts=14.0,
        service="web",
        src="healthy",
        dst="degraded",
        trigger="probe_failed",
        reason="probe failed: http_5xx",
    ),
    "repair.started": ev.RepairStarted(
        seq=6,
        ts=15.0,
        service="web",
        run=1,
        step="diagnose",
        index=0,
        ladder=("diagnose", "restart"),
    ),
    "repair.finished": ev.RepairFinished(
        seq=7,
        ts=16.0,
        service="web",
        run=1,
        step="diagnose",
        index=0,
        ok=False,
        duration_ms=120.0,
        error_class="http_5xx",
    ),
    "restart.started": ev.RestartStarted(seq=8, ts=17.0, service="web", attempt=1, cooldown_s=300),
    "restart.finished": ev.RestartFinished(
        seq=9, ts=18.0, service="web", ok=True, duration_ms=2000.0, exit_code=0
    ),
    "process.started": ev.ProcessStarted(seq=10, ts=19.0, service="web", pid=777),
    "process.lost": ev.ProcessLost(seq=11, ts=20.0, service="web", pid=776),
    "process.stopped": ev.ProcessStopped(seq=12, ts=21.0, service="web", pid=777, reason="exit"),
    "notification": ev.Notification(
        seq=13, ts=22.0, service="web", channel="webhook", level="warn", message="web is sick"
    ),
    "admin": ev.Admin(seq=14, ts=23.0, action="pause", service="web", who="alice"),
    "snapshot": ev.Snapshot(seq=15, ts=24.0, segment=2),
    "log.recovered": ev.LogRecovered(seq=16, ts=25.0, path="hbsm.jsonl", offset=1234, cut_bytes=17),
    "log.outage": ev.LogOutage(seq=17, ts=100.0, since=40.0, error="disk full", skipped=12),
    "probe.seen": ev.ProbeSeen(seq=18, ts=101.0, service="web", node="b", ok=False,
                               error="timeout"),
    "service.owned": ev.ServiceOwned(seq=19, ts=102.0, service="web", node="b", previous="a",
                                     reason="taken over from a"),
    "monitor.overloaded": ev.MonitorOverloaded(seq=20, ts=103.0, stretch=4.5, asked=10000.0,
                                               done=2600.0, late=0.5),
    "monitor.caught_up": ev.MonitorCaughtUp(seq=21, ts=163.0, since=103.0, stretch_max=5.0),
    "cert.seen": ev.CertSeen(seq=22, ts=200.0, service="web", not_after=86600.0,
                             fingerprint="ab" * 32, serial="1F", subject="CN=web.internal"),
    "cert.expiring": ev.CertExpiring(seq=23, ts=200.0, service="web", fingerprint="ab" * 32,
                                     not_after=86600.0, days_left=1.0, warn_days=14.0),
    "service.removed": ev.ServiceRemoved(seq=24, ts=164.0, service="old",
                                         reason="removed from the configuration"),
    "config.reloaded": ev.ConfigReloaded(seq=25, ts=165.0, version=2, hash="3f9a1c0b7d2e",
                                         added=["new"], removed=["old"],
                                         changed={"web": ["ladder", "max_retries"]},
                                         deferred=["web"], needs_restart=["port"]),
}  # fmt: skip


def test_every_kind_of_event_has_an_example():
    assert set(EXAMPLES) == set(ev.EVENT_TYPES)
    assert all(ev.type_name(e) == kind for kind, e in EXAMPLES.items())


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_every_kind_is_a_sentence_naming_its_service(kind):
    event = EXAMPLES[kind]
    text = describe(event)
    assert text.strip() and "\n" not in text
    service = getattr(event, "service", None)
    bare = describe(event, with_service=False)
    assert bare.strip()
    if service:
        assert text == f"{service}: {bare}"
    else:
        assert text == bare


def test_certificate_events_say_when_it_ends_and_that_nothing_restarts():
    assert describe(EXAMPLES["cert.seen"]) == (
        "web: certificate CN=web.internal valid until 1970-01-02T00:03:20.000Z "
        "(serial 1F, sha256 abababababababab…)"
    )
    assert describe(EXAMPLES["cert.expiring"]) == (
        "web: certificate expires in 1.0 days (1970-01-02T00:03:20.000Z; warned within 14 days; "
        "cert: reported, nothing restarted)"
    )


def test_log_events_say_what_happened_to_the_log():
    assert describe(EXAMPLES["log.recovered"]) == (
        "log recovered: cut a torn line of 17 bytes at offset 1234 of hbsm.jsonl"
    )
    assert describe(EXAMPLES["log.outage"]) == (
        "log unwritable for 60.0 s (disk full): 12 probes not run, no repair or restart started"
    )


def test_overloads_say_by_how_much_and_for_how_long():
    assert describe(EXAMPLES["monitor.overloaded"]) == (
        "monitor overloaded: 10000 probes/s asked, 2600/s done; every interval stretched 4.50x"
    )
    assert describe(EXAMPLES["monitor.caught_up"]) == (
        "monitor caught up after 60.0 s overloaded (intervals stretched up to 5.00x)"
    )


def test_probes_read_ok_slow_or_fail():
    ok = ev.Probe(service="web", ok=True, latency_ms=1.34)
    slow = ev.Probe(service="web", ok=True, latency_ms=950.0, error="slow", detail="over 800 ms")
    assert describe(ok) == "web: probe ok 1.3 ms"
    assert describe(slow) == "web: probe ok 950 ms, slow: over 800 ms"
    assert describe(EXAMPLES["probe"]) == "web: probe FAIL http_5xx 500: boom"
    refused = ev.Probe(service="web", ok=False, error="refused")
    assert describe(refused) == "web: probe FAIL refused"


def test_missing_optional_fields_leave_no_placeholder():
    assert describe(ev.MonitorStarted()) == "monitor started"
    assert describe(ev.ProcessLost(service="db")) == "db: supervised process gone"
    assert describe(ev.ServiceRegistered(service="db")) == "db: registered http"
    assert describe(ev.Admin(action="reset", allowed=False)) == "admin reset (DENIED)"


def test_an_event_of_an_unknown_kind_is_named_with_its_service():
    opaque = ev.OpaqueEvent(type="future.thing", seq=5, ts=1.0, body={"service": "web"})
    assert describe(opaque) == "web: future.thing (unknown to this version)"
    assert describe(opaque, with_service=False) == "future.thing (unknown to this version)"


def test_the_timeline_words_its_entries_with_describe():
    events = list(read_history(SAMPLES / "crash_restart_cooldown.jsonl"))
    entries = [(e, entry(e)) for e in events]
    shown = [(e, item) for e, item in entries if item is not None]
    assert {type(e) for e, _ in shown} <= ENTRY_KINDS
    assert any(isinstance(e, ev.Transition) for e, _ in shown)
    for event, item in shown:
        assert item.text == describe(event, with_service=False)
        assert item.service == getattr(event, "service", None)
    assert entry(EXAMPLES["log.outage"]) is not None  # the log's own events are entries too


def test_a_clusters_events_name_their_nodes():
    started = ev.MonitorStarted(seq=1, ts=1.0, pid=7, node="n2")
    stopped = ev.MonitorStopped(seq=2, ts=2.0, pid=7, node="n2", reason="SIGTERM")
    assert describe(started) == "monitor started (node n2, pid 7)"
    assert describe(stopped) == "monitor stopped (node n2, pid 7): SIGTERM"
    owned = describe(EXAMPLES["service.owned"])
    assert owned == "web: decided by node b from here (taken over from a)"
    assert describe(EXAMPLES["probe.seen"]) == "web: seen by b: probe FAIL timeout"


def test_a_reload_says_what_changed_or_why_the_file_was_refused():
    assert describe(EXAMPLES["config.reloaded"]) == (
        "config reloaded (version 2, 3f9a1c0b7d2e): added new; removed old; "
        "changed web (ladder, max_retries); web once their repair run ends; "
        "needs a restart: port"
    )
    refused = ev.ConfigReloaded(version=1, hash="abc", error="hbsm.toml: max_retries: must be >= 1")
    assert describe(refused) == (
        "config reload refused, the running configuration stays: "
        "hbsm.toml: max_retries: must be >= 1"
    )
    assert describe(EXAMPLES["service.removed"]) == "old: removed from the configuration"

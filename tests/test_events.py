"""Event encoding: the tagged union, forward compatibility, and errors that name the line."""

import msgspec
import pytest

from hbsm import events as ev
from hbsm.state import Policy


def test_every_kind_the_log_documents_is_in_the_union():
    wanted = {
        "monitor.started", "monitor.stopped", "service.registered", "probe", "transition",
        "repair.started", "repair.finished", "restart.started", "restart.finished",
        "process.started", "process.lost", "process.stopped", "notification", "admin",
        "snapshot", "log.recovered", "log.outage",
    }  # fmt: skip
    assert set(ev.EVENT_TYPES) == wanted


def test_round_trip_keeps_every_field_and_puts_type_seq_ts_first():
    event = ev.Transition(
        seq=7, ts=1.5, service="web", src="degraded", dst="repairing",
        trigger="probe_failed", reason="3 failures", failures=3,
    )  # fmt: skip
    line = ev.encode(event)
    assert line.startswith(b'{"type":"transition","seq":7,"ts":1.5,')
    assert ev.decode(line) == event


def test_unknown_fields_are_ignored_and_missing_new_fields_take_defaults():
    line = b'{"type":"probe","seq":1,"ts":2.0,"service":"a","ok":true,"colour":"red"}'
    event = ev.decode(line)
    assert event == ev.Probe(seq=1, ts=2.0, service="a", ok=True)
    assert event.latency_ms is None


def test_an_unknown_type_is_kept_as_an_opaque_event():
    line = b'{"type":"probe.v2","seq":3,"ts":4.5,"service":"a","x":[1,2]}'
    event = ev.decode(line)
    assert isinstance(event, ev.OpaqueEvent)
    assert (event.type, event.seq, event.ts, event.service) == ("probe.v2", 3, 4.5, "a")
    assert msgspec.json.decode(ev.encode(event)) == msgspec.json.decode(line)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"not json at all", "not JSON"),
        (b"[1, 2, 3]", "not an object"),
        (b'{"seq": 1, "ts": 1}', "'type'"),
        (b'{"type": "probe", "seq": 1, "ts": 1, "service": "a", "ok": "yes"}', "invalid 'probe'"),
        (b'{"type": "future", "ts": 1}', "'seq'"),
    ],
)
def test_a_bad_line_is_an_error_that_says_why(line, why):
    with pytest.raises(ev.EventDecodeError, match=why):
        ev.decode(line)


def test_decode_lines_names_the_bad_line_counting_from_the_first_line_given():
    good = ev.encode(ev.Probe(seq=1, ts=1.0, service="a", ok=True))
    block = b"\n".join([good, good, b"{garbage", good]) + b"\n"
    with pytest.raises(ev.EventDecodeError) as info:
        ev.decode_lines(block, first_line=10)
    assert info.value.line == 12


def test_decode_lines_keeps_opaque_events_in_order():
    block = (
        ev.encode(ev.Probe(seq=1, ts=1.0, service="a", ok=True))
        + b'\n{"type":"later.kind","seq":2,"ts":2.0}\n'
        + ev.encode(ev.Probe(seq=3, ts=3.0, service="a", ok=False, error="timeout"))
        + b"\n"
    )
    decoded = ev.decode_lines(block)
    assert [e.seq for e in decoded] == [1, 2, 3]
    assert isinstance(decoded[1], ev.OpaqueEvent)


def test_a_registered_policy_round_trips_and_bad_values_name_the_key():
    event = ev.ServiceRegistered(seq=1, ts=0.0, service="web", policy=Policy(max_retries=5))
    assert ev.decode(ev.encode(event)) == event
    bad = b'{"type":"service.registered","seq":1,"ts":0,"service":"w","policy":{"max_retries":0}}'
    with pytest.raises(ev.EventDecodeError, match="max_retries must be >= 1"):
        ev.decode(bad)


def test_the_schema_reference_shows_a_decodable_example_of_every_kind():
    from pathlib import Path

    readme = Path(__file__).parent.parent / "events" / "README.md"
    examples = [line for line in readme.read_text().splitlines() if line.startswith('{"type":')]
    decoded = [ev.decode(line) for line in examples]
    assert not [e for e in decoded if isinstance(e, ev.OpaqueEvent)]
    assert {ev.type_name(e) for e in decoded} == set(ev.EVENT_TYPES)

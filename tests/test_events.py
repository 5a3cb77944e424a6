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
        "snapshot", "log.recovered", "log.outage", "probe.seen", "service.owned",
        "monitor.overloaded", "monitor.caught_up", "cert.seen", "cert.expiring",
        "service.removed", "config.reloaded",
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


PROBE = ev.encode(ev.Probe(seq=1, ts=1.0, service="api", ok=True))
AT = PROBE.index(b'"service":"a') + len(b'"service":"a')  # the offset of the "p" in "api"


def spoiled(bad: bytes) -> bytes:
    """PROBE with `bad` in place of the "p" of its service name."""
    return PROBE[:AT] + bad + PROBE[AT + 1 :]


# hbsm's own words, whatever msgspec says (one version raised UnicodeDecodeError naming the byte,
# a later one a DecodeError "Invalid UTF-8 encoded string" that names nothing).
@pytest.mark.parametrize(
    ("line", "why"),
    [
        (
            spoiled(b"\xff\xfe"),
            f"not UTF-8: byte ff at offset {AT} of the line, in a JSON string (invalid start byte)",
        ),
        (
            spoiled(b"\xe2\x82"),
            f"not UTF-8: byte e2 at offset {AT} of the line, in a JSON string"
            " (invalid continuation byte)",
        ),
        (
            b'{"type":"probe","a\x80":1}',
            "not UTF-8: byte 80 at offset 18 of the line, in a JSON string (invalid start byte)",
        ),
    ],
    ids=["in a value", "a cut sequence", "in a key"],
)
def test_a_line_that_is_not_utf8_is_named_in_hbsms_words(line, why):
    with pytest.raises(ev.EventDecodeError) as info:
        ev.decode(line)
    assert info.value.message == why
    # The block reader's slow path says the same, naming the line.
    with pytest.raises(ev.EventDecodeError) as info:
        ev.decode_lines(PROBE + b"\n" + line + b"\n", first_line=7)
    assert (info.value.line, info.value.message) == (8, why)


@pytest.mark.parametrize(
    "line",
    [b"\xff" + PROBE, spoiled(b"\xff")[:-1], spoiled(b"\xff").replace(b'"ok"', b"ok")],
    ids=["a byte outside the JSON", "cut short", "a bare key"],
)
def test_a_line_that_is_not_json_whatever_its_encoding_is_not_json(line):
    with pytest.raises(ev.EventDecodeError) as info:
        ev.decode(line)
    # Why it is not JSON is msgspec's to say; that it is not UTF-8 is not the reason.
    assert info.value.message.startswith("not JSON: ") and "UTF" not in info.value.message


def test_a_str_line_with_a_lone_surrogate_is_named():
    with pytest.raises(ev.EventDecodeError) as info:
        ev.decode('{"type":"probe","service":"a\udcff"}')
    assert info.value.message == "not UTF-8: '\\udcff' at character 28 (surrogates not allowed)"


def test_every_byte_that_is_not_utf8_is_named_with_its_offset():
    for byte in range(0x80, 0x100):
        with pytest.raises(ev.EventDecodeError) as info:
            ev.decode(spoiled(bytes([byte])))
        named = f"not UTF-8: byte {byte:02x} at offset {AT} of the line, in a JSON string ("
        assert info.value.message.startswith(named), info.value.message


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

"""Events to JSON lines and back: one reused Encoder and Decoder and, for a line that is not an
event, an error that says why in hbsm's own words. The public face is `hbsm.events`."""

from __future__ import annotations

import codecs
import re
from typing import Final, cast

import msgspec

from hbsm._event_kinds import EVENT_TYPES, TS_END, AnyEvent, Event, OpaqueEvent
from hbsm.errors import HbsmError

__all__ = ["EventDecodeError", "decode", "decode_lines", "encode", "encode_lines"]


class EventDecodeError(HbsmError, ValueError):
    """A line that is not an event. `line` is 1-based within what was decoded."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)
_raw_decoder = msgspec.json.Decoder()


def encode(event: Event | OpaqueEvent) -> bytes:
    """One event as JSON, without the newline."""
    if isinstance(event, OpaqueEvent):
        return _encoder.encode(event.body)
    return _encoder.encode(event)


def encode_lines(events: list[Event]) -> bytes:
    """Events as JSONL (each line ends in a newline)."""
    return b"".join([encode(e) + b"\n" for e in events])


# Fix (tests/reliability): an editor may save a log with a UTF-8 byte order mark in front.
# The data is intact, so every reader (and the writer, which reads the last line) takes the
# line without it rather than call the file "not an hbsm event log".
_BOM = codecs.BOM_UTF8

# The names JSON gives its values, for "not an event: a JSON array" (not Python's "list").
_JSON_NAMES: Final = {
    type(None): "null", bool: "boolean", int: "number", float: "number", str: "string",
    list: "array",
}  # fmt: skip


def _opaque_or_error(line: bytes | str) -> OpaqueEvent:
    try:
        raw = _raw_decoder.decode(line)
    except (msgspec.DecodeError, UnicodeError) as exc:
        out_of_range = isinstance(exc, msgspec.DecodeError) and "out of range" in str(exc)
        bad_ts = _ts_out_of_range(line) if out_of_range else None
        raise EventDecodeError(bad_ts or _not_json(line, exc)) from None
    if not isinstance(raw, dict):
        name = _JSON_NAMES.get(type(raw), type(raw).__name__)
        raise EventDecodeError(f"not an event: a JSON {name}, not an object")
    kind, seq, ts = raw.get("type"), raw.get("seq"), raw.get("ts")
    if not isinstance(kind, str):
        raise EventDecodeError("not an event: no string field 'type'")
    if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(ts, int | float):
        raise EventDecodeError(f"event of type {kind!r} lacks a numeric 'seq' or 'ts'")
    if not 0.0 <= ts < TS_END:
        raise EventDecodeError(_ts_message(_ts_text(line, ts)))
    if kind in EVENT_TYPES:
        # A known type whose fields do not validate: corrupt, not forward-compatible.
        try:
            _decoder.decode(line)
        except msgspec.ValidationError as exc:
            raise EventDecodeError(f"invalid {kind!r} event: {exc}") from None
    return OpaqueEvent(type=kind, seq=seq, ts=float(ts), body=raw)


def _not_json(line: bytes | str, exc: msgspec.DecodeError | UnicodeError) -> str:
    """Why msgspec could not parse `line`, in hbsm's words where the encoding is at fault.

    msgspec words invalid UTF-8 differently from one version to the next (a UnicodeDecodeError
    naming the byte, then a DecodeError "Invalid UTF-8 encoded string" that does not), so the
    encoding is checked here, only once msgspec has failed: the fast path stays one msgspec call.
    """
    if isinstance(line, str):
        try:
            line.encode()
        except UnicodeEncodeError as bad:
            return f"not UTF-8: {bad.object[bad.start]!a} at character {bad.start} ({bad.reason})"
        return f"not JSON: {exc}"
    try:
        line.decode()
    except UnicodeDecodeError as bad:
        first = bad
    else:
        return f"not JSON: {exc}"
    # Each byte that is not UTF-8 becomes one "?" (offsets unchanged). If the line then parses,
    # every such byte was inside a JSON string; if not, it is not JSON whatever its encoding.
    try:
        _raw_decoder.decode(line.decode(errors="surrogateescape").encode(errors="replace"))
    except msgspec.DecodeError as other:
        return f"not JSON: {other}"
    where = f"at offset {first.start} of the line, in a JSON string"
    return f"not UTF-8: byte {line[first.start]:02x} {where} ({first.reason})"


# Fix (tests/reliability): a `ts` of 1e308 was read as a time; the dashboard died on it
# (OverflowError) and replay printed a 309-digit end time. Now the line is bad input, named.
def _ts_message(shown: str) -> str:
    return (
        f"ts {shown} is outside 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59Z "
        f"(0 .. {TS_END - 1:.0f} seconds since the epoch)"
    )


# The `ts` as the line spells it (1e308, not Python's 1e+308): what the operator will grep for.
_TS_FIELD = re.compile(rb'"ts"\s*:\s*(-?[0-9][0-9.eE+-]*)')


def _ts_text(line: bytes | str, ts: float) -> str:
    data = line.encode("utf-8", "replace") if isinstance(line, str) else line
    for found in _TS_FIELD.finditer(data):
        text = found.group(1).decode("ascii")
        try:
            if float(text) == ts:
                return text
        except ValueError:
            continue
    return repr(ts)


def _ts_out_of_range(line: bytes | str) -> str | None:
    """The message for a `ts` too big for a float (1e400: msgspec will not decode the line)."""
    data = line.encode("utf-8", "replace") if isinstance(line, str) else line
    for found in _TS_FIELD.finditer(data):
        text = found.group(1).decode("ascii")
        try:
            value = float(text)
        except ValueError:
            continue
        if not 0.0 <= value < TS_END:
            return _ts_message(text)
    return None


# msgspec has raised UnicodeDecodeError (not DecodeError) for invalid UTF-8 inside a JSON string;
# uncaught, it escaped every reader as a traceback.
_UNDECODABLE = (msgspec.ValidationError, msgspec.DecodeError, UnicodeError)


def decode(line: bytes | str) -> Event | OpaqueEvent:
    """One line (without or with its newline) to an event; raises EventDecodeError."""
    try:
        return _decoder.decode(line)
    except _UNDECODABLE:
        if isinstance(line, bytes) and line.startswith(_BOM):
            return decode(line[len(_BOM) :])
        if isinstance(line, str) and line.startswith("\ufeff"):
            return decode(line[1:])
        return _opaque_or_error(line)


def decode_lines(data: bytes | memoryview, *, first_line: int = 1) -> list[Event | OpaqueEvent]:
    """Decode a block of complete JSONL lines.

    Fast path: msgspec decodes the whole block at once. If any line fails, the block is decoded
    line by line to keep unknown types as OpaqueEvent and to name the first bad line
    (EventDecodeError.line, counted from `first_line`).
    """
    try:
        # A list of AnyEvent, which mypy will not take for a list of Event (lists are invariant).
        return cast(list[Event | OpaqueEvent], _decoder.decode_lines(data))
    except _UNDECODABLE:
        pass
    out: list[Event | OpaqueEvent] = []
    for number, line in enumerate(bytes(data).split(b"\n"), start=first_line):
        if not line.strip():
            continue
        try:
            out.append(decode(line))
        except EventDecodeError as exc:
            exc.line = number
            raise
    return out

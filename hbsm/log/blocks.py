"""Decoding a block of complete JSONL lines, checking that seq strictly increases.

The fast path hands the whole block to `hbsm.events.decode_lines` (one msgspec call) and checks
the seqs with C-level iteration; only a block that fails either way is decoded again line by line,
to skip bad lines or to name the first one.
"""

from __future__ import annotations

from itertools import islice
from operator import attrgetter, lt
from typing import NamedTuple

from hbsm.errors import HbsmError
from hbsm.events import Event, EventDecodeError, OpaqueEvent, decode, decode_lines

__all__ = ["BAD_KEPT", "NO_SEQ", "BadLine", "Decoded", "decode_block"]

# The seq before the first event of a log: stamped seqs start at 1, but a hand-made log with a
# seq of 0 is not corrupt for that alone.
NO_SEQ = -1

_seq_of = attrgetter("seq")


class Decoded(NamedTuple):
    events: list[Event | OpaqueEvent]
    last_seq: int  # the seq of the last good event, or the one passed in
    skipped: int
    # (index in the block, reason) of the first BAD_KEPT lines skipped: where, for a notice.
    bad: tuple[tuple[int, str], ...] = ()


# Skipped lines whose place is kept (per block; readers cap their own totals): a log of garbage
# must not cost memory for each line, and a notice names the first few anyway.
BAD_KEPT = 20


class BadLine(HbsmError):
    """The first bad line of a block (raised only without skip_bad). `index` is 0-based within
    the block, `start`/`end` its byte range (end past the newline); `events` the good ones before
    it, so a reader can deliver them before reporting the error."""

    def __init__(
        self,
        index: int,
        start: int,
        end: int,
        reason: str,
        events: list[Event | OpaqueEvent],
        last_seq: int,
    ) -> None:
        super().__init__(reason)
        self.index = index
        self.start = start
        self.end = end
        self.reason = reason
        self.events = events
        self.last_seq = last_seq


def decode_block(block: bytes | memoryview, last_seq: int, *, skip_bad: bool) -> Decoded:
    """Decode `block` (complete lines, each ending in a newline) after an event of `last_seq`.
    A memoryview is decoded in place; only a block that fails the fast path is copied."""
    try:
        events = decode_lines(block)
    except EventDecodeError:
        return _decode_each(bytes(block), last_seq, skip_bad)
    if not events:
        return Decoded(events, last_seq, 0)
    seqs = list(map(_seq_of, events))
    if seqs[0] > last_seq and all(map(lt, seqs, islice(seqs, 1, None))):
        return Decoded(events, seqs[-1], 0)
    return _decode_each(bytes(block), last_seq, skip_bad)


def _decode_each(block: bytes, last_seq: int, skip_bad: bool) -> Decoded:
    events: list[Event | OpaqueEvent] = []
    skipped = 0
    bad: list[tuple[int, str]] = []
    start = 0
    lines = block.split(b"\n")
    lines.pop()  # the empty string after the block's final newline
    for index, line in enumerate(lines):
        end = start + len(line) + 1
        if line.strip():
            try:
                event = decode(line)
            except EventDecodeError as exc:
                reason = exc.message
            else:
                if event.seq > last_seq:
                    events.append(event)
                    last_seq = event.seq
                    start = end
                    continue
                reason = f"seq {event.seq} does not increase (the event before has seq {last_seq})"
            if not skip_bad:
                raise BadLine(index, start, end, reason, events, last_seq)
            skipped += 1
            if len(bad) < BAD_KEPT:
                bad.append((index, reason))
        start = end
    return Decoded(events, last_seq, skipped, tuple(bad))

"""Finding lines in a log file without reading it all: backwards from the end (the writer's
last seq on open), the first line of a segment (its snapshot), a byte offset by seq (binary
search, for a follower starting near the end), and line numbers for error messages."""

from __future__ import annotations

import codecs
import gzip
import os
from pathlib import Path
from typing import BinaryIO

import msgspec

__all__ = [
    "Head",
    "complete_end",
    "count_lines_at",
    "decode_head",
    "first_line",
    "first_line_at",
    "last_newline_before",
    "line_at",
    "offset_after_seq",
    "open_segment",
]

_BACK_BLOCK = 64 * 2**10
_BACK_BLOCK_MAX = 8 * 2**20
_COUNT_BLOCK = 8 * 2**20
# Below this span the binary search stops and the follower's seq filter drops the rest.
_SEARCH_SPAN = 64 * 2**10


class Head(msgspec.Struct):
    """The few fields needed to place a line: decoding skips the rest (a snapshot may be MBs)."""

    type: str = ""
    seq: int = -1
    segment: int = 0


_head_decoder = msgspec.json.Decoder(Head)


def decode_head(line: bytes) -> Head | None:
    try:
        return _head_decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeError):
        if line.startswith(codecs.BOM_UTF8):  # an editor's, before the first line: as decode
            return decode_head(line[len(codecs.BOM_UTF8) :])
        return None  # msgspec reports bad UTF-8 in a string as UnicodeDecodeError


def open_segment(path: Path) -> BinaryIO:
    """A closed segment or an active file as a binary stream of its uncompressed text."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb", buffering=0)


def last_newline_before(fd: int, pos: int) -> int:
    """The offset of the last b"\\n" strictly before `pos`, or -1."""
    block = _BACK_BLOCK
    end = pos
    while end > 0:
        start = max(0, end - block)
        data = os.pread(fd, end - start, start)
        found = data.rfind(b"\n")
        if found >= 0:
            return start + found
        end = start
        block = min(block * 2, _BACK_BLOCK_MAX)  # long lines: grow rather than crawl
    return -1


def complete_end(fd: int, size: int) -> int:
    """The end of the last complete line (just past its newline): bytes beyond it are torn."""
    return last_newline_before(fd, size) + 1


def line_at(fd: int, start: int, end: int) -> bytes:
    """The line starting at `start` (a line start), without its newline; `end` bounds the read."""
    chunk = _BACK_BLOCK
    while True:
        data = os.pread(fd, min(chunk, end - start), start)
        found = data.find(b"\n")
        if found >= 0:
            return data[:found]
        if start + len(data) >= end:
            return data
        chunk *= 2


def first_line(stream: BinaryIO) -> bytes | None:
    """The first complete line of a stream (read from its current position), or None."""
    parts: list[bytes] = []
    while True:
        data = stream.read(_BACK_BLOCK)
        if not data:
            return None
        found = data.find(b"\n")
        if found >= 0:
            parts.append(data[:found])
            return b"".join(parts)
        parts.append(data)


def first_line_at(fd: int) -> bytes | None:
    """The first complete line of a file descriptor (pread: its offset is left alone)."""
    size = os.fstat(fd).st_size
    parts: list[bytes] = []
    pos = 0
    chunk = _BACK_BLOCK
    while pos < size:
        data = os.pread(fd, min(chunk, size - pos), pos)
        if not data:
            break
        found = data.find(b"\n")
        if found >= 0:
            parts.append(data[:found])
            return b"".join(parts)
        parts.append(data)
        pos += len(data)
        chunk = min(chunk * 2, _BACK_BLOCK_MAX)
    return None


def count_lines_at(fd: int, end: int) -> int:
    """Newlines in [0, end) of a file descriptor (pread: its offset is left alone)."""
    total = 0
    pos = 0
    while pos < end:
        data = os.pread(fd, min(_COUNT_BLOCK, end - pos), pos)
        if not data:
            break
        total += data.count(b"\n")
        pos += len(data)
    return total


def offset_after_seq(fd: int, end: int, after_seq: int) -> int:
    """A line start in [0, end) before which every line has seq <= after_seq. `end` must be a line
    end. Binary search on bytes; it stops at a span of ~64 KB (or at a line it cannot decode),
    so the caller must still drop events with seq <= after_seq."""
    lo, hi = 0, end
    while hi - lo > _SEARCH_SPAN:
        mid = (lo + hi) // 2
        start = _line_start_at_or_after(fd, mid, hi)
        if start >= hi:
            break
        head = decode_head(line_at(fd, start, hi))
        if head is None or head.seq < 0:
            break
        if head.seq <= after_seq:
            lo = start
        else:
            hi = start
    return lo


def _line_start_at_or_after(fd: int, pos: int, end: int) -> int:
    if pos <= 0:
        return 0
    chunk = _BACK_BLOCK
    at = pos - 1  # a line starts at pos if the byte before it is a newline
    while at < end:
        data = os.pread(fd, min(chunk, end - at), at)
        if not data:
            return end
        found = data.find(b"\n")
        if found >= 0:
            return at + found + 1
        at += len(data)
        chunk = min(chunk * 2, _BACK_BLOCK_MAX)
    return end

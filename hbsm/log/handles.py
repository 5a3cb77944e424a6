"""The two kinds of file a follower reads (hbsm.log.follower): the active file, read with pread
from the consumed offset, and a closed segment (gzip or plain), read sequentially as a stream,
with what damage in a .gz stops it.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import BinaryIO

from hbsm.log.errors import LogError
from hbsm.log.scan import count_lines_at

__all__ = ["ActiveFile", "ClosedSegmentFile"]

# What reading a damaged gzip file raises (as hbsm.log.reader): a truncated stream, corrupt
# deflate data, a bad header or checksum.
_DAMAGED = (EOFError, zlib.error, gzip.BadGzipFile)


def _damage(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        why = "it ends before its end-of-stream marker: truncated"
    else:
        why = " ".join(str(exc).split()) or type(exc).__name__
    return f"damaged compressed segment ({why}); the rest of it is skipped"


class ActiveFile:
    """The active file, read with pread from the consumed offset."""

    closed_segment = False

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.inode = os.fstat(fd).st_ino
        self.draining = False  # renamed away: no more writes will come, read it dry

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def read_lines(self, offset: int, budget: int) -> bytes:
        size = self.size()
        if size <= offset:
            return b""
        data = os.pread(self.fd, min(size - offset, budget), offset)
        cut = data.rfind(b"\n") + 1
        while cut == 0 and offset + len(data) < size:
            # A line longer than the budget (a big snapshot): read on to its end.
            more = os.pread(self.fd, min(size - offset - len(data), budget), offset + len(data))
            if not more:
                break
            data += more
            cut = data.rfind(b"\n") + 1
        return data[:cut]

    def replaced(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self.inode
        except FileNotFoundError:
            return True  # mid-rotation, or the log was removed: either way this file is done

    def tail_bytes(self, offset: int) -> int:
        return max(0, self.size() - offset)

    def unread(self, data: bytes) -> None:
        pass  # read again from the offset with pread

    def line_number_base(self, offset: int) -> int:
        return count_lines_at(self.fd, offset)

    def close(self) -> None:
        os.close(self.fd)


class ClosedSegmentFile:
    """A closed segment (gzip or plain), read sequentially from a stream."""

    closed_segment = True
    draining = True

    def __init__(self, path: Path, stream: BinaryIO, offset: int) -> None:
        self.path = path
        self.stream = stream
        self.carry = b""
        self.skipped_lines = 0
        self.damage: str | None = None  # why the rest of a damaged .gz could not be read
        # Compressed streams cannot seek by byte: decompress and drop up to the offset.
        remaining = offset
        while remaining > 0:
            try:
                data = stream.read(min(remaining, 8 * 2**20))
            except _DAMAGED as exc:
                self.damage = _damage(exc)  # before the offset: nothing more can be read
                break
            if not data:
                raise LogError(f"{path}: segment is shorter than the follower's offset {offset}")
            self.skipped_lines += data.count(b"\n")
            remaining -= len(data)

    def read_lines(self, offset: int, budget: int) -> bytes:
        if b"\n" in self.carry:
            return self._take_lines(self.carry)
        while self.damage is None:
            try:
                chunk = self.stream.read(budget)
            except _DAMAGED as exc:
                # Fix (tests/reliability): a truncated or corrupt .gz escaped as EOFError or
                # zlib.error, which killed the dashboard's reading thread. The segment ends
                # here (a line cut by the damage is lost with it); the follower says so.
                self.damage = _damage(exc)
                self.carry = b""
                return b""
            if not chunk:
                return b""
            data = self.carry + chunk if self.carry else chunk
            if b"\n" in chunk:
                return self._take_lines(data)
            self.carry = data
        return b""

    def _take_lines(self, data: bytes) -> bytes:
        cut = data.rfind(b"\n") + 1
        self.carry = data[cut:]
        return data[:cut]

    def unread(self, data: bytes) -> None:
        # A stream cannot be read again: lines after a bad one go back in front of the carry.
        self.carry = data + self.carry

    def tail_bytes(self, offset: int) -> int:
        return len(self.carry)

    def line_number_base(self, offset: int) -> int:
        return self.skipped_lines

    def close(self) -> None:
        self.stream.close()

"""Helpers for the tests that run `hbsm run` as an operator does and kill it: the log read back
line by line as the disk holds it.

The process itself is tests/monitor's `HbsmRun` (and `HbsmRuns`, every one a test started), its
config file `monitor.support.write_toml_config`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from hbsm.events import Event, OpaqueEvent, decode

__all__ = ["DiskLines", "disk_lines"]


# --- the log as the disk holds it --------------------------------------------------------------


class DiskLines(NamedTuple):
    """The active log file's bytes split into complete lines (by seq) and a torn tail."""

    lines: dict[int, bytes]
    events: list[Event | OpaqueEvent]
    tail: bytes  # after the last newline: a line the writer had not finished
    size: int


def disk_lines(path: Path) -> DiskLines:
    raw = path.read_bytes() if path.exists() else b""
    end = raw.rfind(b"\n") + 1
    lines: dict[int, bytes] = {}
    events: list[Event | OpaqueEvent] = []
    for line in _split(raw[:end]):
        event = decode(line)
        assert event.seq not in lines, f"seq {event.seq} twice in {path}"
        lines[event.seq] = line
        events.append(event)
    return DiskLines(lines, events, raw[end:], len(raw))


def _split(data: bytes) -> Iterator[bytes]:
    for line in data.split(b"\n"):
        if line.strip():
            yield line

"""The exception tree of the event log (a branch of hbsm.errors.HbsmError's).

    LogError                  anything the log cannot do; str() is one line naming the file
    ├── LogLockedError        another writer holds the log's lock
    └── CorruptLineError      a complete line that is not an event, or whose seq does not increase
        └── SeqHoleError      a segment begins past the seq after the previous one's last

Messages name the file as the caller spelled it, so an operator can copy it into a shell.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from hbsm.errors import HbsmError

__all__ = ["CorruptLineError", "LogError", "LogLockedError", "SeqHole", "SeqHoleError"]


def _one_line(text: str) -> str:
    # Decoder messages can quote the bad bytes; a log line or a CLI error must stay one line.
    return " ".join(text.split())


class LogError(HbsmError):
    """Base of every log error."""


class LogUnavailableError(LogError):
    """The log cannot take writes now, for a reason outside this process (its server does not
    answer, say); the same flush may succeed later. The monitor treats it as a full disk: an
    outage, retried."""


class LogLockedError(LogError):
    """A second writer tried to open a log; `pid` is the holder's (None if it could not be read)."""

    def __init__(self, path: str | os.PathLike[str], pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "another process (pid unknown)"
        super().__init__(
            f"{os.fspath(path)} is locked by {holder} (another hbsm writer); "
            "stop it or use another --log"
        )


class CorruptLineError(LogError):
    """`line` is 1-based within `path` (a segment's uncompressed text for a closed segment)."""

    def __init__(self, path: str | os.PathLike[str], line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = _one_line(reason)
        super().__init__(f"{os.fspath(path)}, line {line}: {self.reason}")


class SeqHole(NamedTuple):
    """Events missing from a history: seqs `first`..`last`, between the end of `after` and
    line `line` of `path` (the segment that begins past them)."""

    path: Path
    line: int
    first: int
    last: int
    after: Path

    def describe(self) -> str:
        if self.first == self.last:
            seqs = f"seq {self.first} is"
        else:
            seqs = f"seqs {self.first}..{self.last} are"
        return (
            f"a hole in the history: {seqs} missing ({self.after.name} ends at seq "
            f"{self.first - 1}, this segment begins at seq {self.last + 1}: a segment was "
            "deleted, or lost)"
        )


class SeqHoleError(CorruptLineError):
    """A segment of a rotated log begins past the seq that follows the previous one's last
    event: the writer numbers on across rotations, so events between them are missing."""

    def __init__(self, hole: SeqHole) -> None:
        self.hole = hole
        super().__init__(hole.path, hole.line, hole.describe())

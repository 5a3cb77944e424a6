"""The exception tree of the event log.

    LogError                  anything the log cannot do; str() is one line naming the file
    ├── LogLockedError        another writer holds the log's lock
    └── CorruptLineError      a complete line that is not an event, or whose seq does not increase

Messages name the file as the caller spelled it, so an operator can copy it into a shell.
"""

from __future__ import annotations

import os

__all__ = ["CorruptLineError", "LogError", "LogLockedError"]


def _one_line(text: str) -> str:
    # Decoder messages can quote the bad bytes; a log line or a CLI error must stay one line.
    return " ".join(text.split())


class LogError(Exception):
    """Base of every log error."""


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

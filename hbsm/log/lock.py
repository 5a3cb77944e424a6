"""The single-writer lock: flock on `<log>.lock`, with the holder's pid written inside.

flock (not fcntl/lockf) because its locks belong to the open file description: a second open in
the *same* process conflicts too, and the kernel drops the lock when the holder dies, so a crash
never leaves a stale lock behind. The lock file itself is never deleted: deleting it would let
two writers lock two different inodes of the same name.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from hbsm.log.errors import LogError, LogLockedError
from hbsm.log.segments import lock_path

__all__ = ["WriterLock"]

# The holder truncates then writes its pid: a contender can read the file in between. Retry
# briefly rather than report "pid unknown" for that instant.
_PID_READ_ATTEMPTS = 20
_PID_READ_PAUSE = 0.005


def _read_pid(fd: int) -> int | None:
    for _ in range(_PID_READ_ATTEMPTS):
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        time.sleep(_PID_READ_PAUSE)
    return None


class WriterLock:
    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.path = lock_path(log_path)
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LogError(f"{self.path}: cannot open the lock file: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise LogLockedError(self.log_path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            # Leave the pid in place: it names the last writer, which helps after a crash.
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

"""When the writer fsyncs. fsync per event caps appends near 7.5k/s on the reference disk
(docs/performance.md), so the default is group commit: one fsync per flush.

    batch     append buffers; flush writes and fsyncs (the default)
    always    every append is written and fsynced before it returns
    interval  flush writes; fsyncs when `interval` seconds have passed since the last fsync
    never     flush writes; the OS decides (a crash of the machine may lose recent events)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final, Literal, get_args

__all__ = ["FSYNC_POLICIES", "FsyncPolicy", "Syncer", "check_policy"]

FsyncPolicy = Literal["batch", "always", "interval", "never"]
FSYNC_POLICIES: Final[tuple[str, ...]] = get_args(FsyncPolicy)


def check_policy(policy: object, interval: object) -> FsyncPolicy:
    if policy not in FSYNC_POLICIES:
        raise ValueError(f"fsync policy must be one of {', '.join(FSYNC_POLICIES)}; got {policy!r}")
    if not isinstance(interval, int | float) or isinstance(interval, bool) or interval <= 0:
        raise ValueError(f"fsync_interval must be a positive number of seconds; got {interval!r}")
    return policy  # type: ignore[return-value]


class Syncer:
    """Decides and performs the fsyncs of one file; counts them (`fsyncs`) for tests and bench."""

    def __init__(self, policy: FsyncPolicy, interval: float, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.interval = interval
        self.fsyncs = 0
        self._clock = clock
        self._last = clock()
        self.dirty = False  # written since the last fsync

    def after_flush(self, fd: int) -> None:
        if not self.dirty or self.policy == "never":
            return
        if self.policy == "interval":
            now = self._clock()
            # A clock that went backwards must not postpone fsyncs forever.
            if self._last <= now < self._last + self.interval:
                return
        self.sync(fd)

    def sync(self, fd: int) -> None:
        os.fsync(fd)
        self.fsyncs += 1
        self.dirty = False
        self._last = self._clock()

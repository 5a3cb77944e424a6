"""Fold a whole recorded history into a Projection as fast as it goes.

The one place that reads a history for its state: `hbsm replay --stats`, the benchmark and the
monitor resuming after a restart all go through here, so they measure and use the same path.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hbsm.events import Event, OpaqueEvent
from hbsm.log import ReadStats, read_blocks
from hbsm.projection import Projection

__all__ = ["fold_history", "paused_gc"]


@contextmanager
def paused_gc() -> Iterator[None]:
    """Millions of short-lived events are freed by reference counting block after block; the
    cyclic collector would only rescan them (a fifth of a replay's time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def fold_history(
    path: str | os.PathLike[str],
    projection: Projection | None = None,
    *,
    skip_bad: bool = False,
    stats: ReadStats | None = None,
    each: Callable[[list[Event | OpaqueEvent]], None] | None = None,
) -> Projection:
    """Every event of the log at `path` (closed segments first) folded into `projection`.

    `each`, if given, also sees every block of events after it is folded.
    """
    projection = projection if projection is not None else Projection()
    apply_all = projection.apply_all
    with paused_gc():
        for block in read_blocks(path, skip_bad=skip_bad, stats=stats):
            apply_all(block)
            if each is not None:
                each(block)
    return projection

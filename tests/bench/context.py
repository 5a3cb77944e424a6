"""What every benchmark gets: the parameters of the run, the shared log, where to write."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.logfile import GeneratedLog, cached_log
from tests.bench.results import Results

__all__ = ["Context"]


@dataclass
class Context:
    events: int
    services: int
    workdir: Path  # scratch space, removed after the run
    results: Results
    repeat: int = 3
    # The clock of CPU-bound figures (decode, replay). Process CPU time by default: on a shared
    # machine the wall clock measures the neighbours too. I/O-bound figures use the wall clock.
    clock: Callable[[], float] = time.process_time
    clock_name: str = "CPU time"
    # Figures one benchmark measures and another compares against (e.g. the raw decode rate).
    shared: dict[str, Any] = field(default_factory=dict)
    _log: GeneratedLog | None = None

    @property
    def log(self) -> GeneratedLog:
        if self._log is None:
            self._log = cached_log(self.events, self.services)
        return self._log

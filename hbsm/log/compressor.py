"""Compressing closed segments and pruning old ones off the writer's thread: gzip of a 64 MB
segment takes a few hundred ms, which the monitor must not spend between a decision and its
side effect."""

from __future__ import annotations

import threading
from pathlib import Path

from hbsm.log.errors import LogError
from hbsm.log.segments import compress_segment, prune_segments

__all__ = ["Compressor"]


class Compressor:
    """One job at a time: a new job first waits for the previous one, so at most one segment is
    ever being compressed and pruning never races compression."""

    def __init__(self, log_path: Path, keep_segments: int, mode: int = 0o600) -> None:
        self.log_path = log_path
        self.keep_segments = keep_segments
        self.mode = mode
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, plains: list[Path]) -> None:
        # A failed job must not fail the append that rotated: its plain segment stays readable
        # and the next open compresses it again. The error is raised by close (join).
        self._wait()
        self._thread = threading.Thread(
            target=self._run, args=(plains,), name=f"hbsm-log-gzip:{self.log_path.name}"
        )
        self._thread.start()

    def join(self) -> None:
        """Wait for the running job; raise LogError if a job failed."""
        self._wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise LogError(f"{self.log_path}: compressing a closed segment failed: {error}")

    def _wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self, plains: list[Path]) -> None:
        try:
            for plain in plains:
                if plain.exists():
                    compress_segment(plain, self.mode)
            prune_segments(self.log_path, self.keep_segments)
        except BaseException as exc:
            self._error = exc

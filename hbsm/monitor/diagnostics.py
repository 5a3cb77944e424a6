"""The monitor's own diagnostics (stdlib logging) for `hbsm run`: stderr, and `[log] file`.
Under systemd, stderr is the journal's: each line then carries its priority, not its time.

A message that repeats is written `burst` times a window, then counted, and the count written
once: "... (and 4,312 more like it in the last 60 s)". Without that, a flood of one error buried
everything else: 1,100 slow connections against a process out of file descriptors made asyncio
log a traceback per failed accept(), about 113,000 in 4 s, which rotated 50 MB through the log
file and wiped the diagnostics from before the attack. Messages are alike when they come from
the same logger, at the same level, with the same format string (its first line): the
arguments (a client's address, a count) may differ.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from hbsm.config import LogConfig

__all__ = [
    "JournalFormatter",
    "RepeatGuard",
    "quiet_libraries",
    "setup_logging",
    "stderr_is_journal",
]


@dataclass(slots=True)
class _Window:
    start: float
    written: int = 0
    suppressed: int = 0
    last: logging.LogRecord | None = None


class RepeatGuard(logging.Handler):
    """Passes records to `handlers`, at most `burst` alike ones per `window` seconds; the rest
    are counted and the count written with the next alike record after the window, at the
    first record of any kind after the window ended, or by `flush()` (at shutdown)."""

    def __init__(
        self,
        handlers: list[logging.Handler],
        *,
        burst: int = 5,
        window: float = 60.0,
        max_keys: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.handlers = handlers
        self.burst = burst
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._windows: dict[tuple[str, int, str], _Window] = {}
        self._guard = threading.Lock()
        self._next_sweep = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        now = self._clock()
        key = (record.name, record.levelno, str(record.msg).split("\n", 1)[0][:200])
        due: list[_Window] = []
        with self._guard:
            if now >= self._next_sweep:  # windows that ended with something counted
                self._next_sweep = now + 1.0
                for k, ended in list(self._windows.items()):
                    if now - ended.start >= self.window:
                        del self._windows[k]
                        due.append(ended)
            window = self._windows.get(key)
            if window is not None and now - window.start >= self.window:
                due.append(self._windows.pop(key))
                window = None
            if window is None:
                if len(self._windows) >= self.max_keys:  # memory bounded whatever the variety
                    due += self._windows.values()
                    self._windows.clear()
                window = self._windows[key] = _Window(start=now)
            passes = window.written < self.burst
            if passes:
                window.written += 1
            else:
                window.suppressed += 1
                window.last = record
        for ended in due:
            if ended.suppressed:
                self._write_summary(ended)
        if passes:
            self._forward(record)

    def _write_summary(self, window: _Window) -> None:
        last = window.last
        if last is None:
            return
        first_line = last.getMessage().split("\n", 1)[0]
        summary = logging.LogRecord(
            last.name,
            last.levelno,
            last.pathname,
            last.lineno,
            "%s (and %d more like it in the last %g s, not written one by one)",
            (first_line, window.suppressed, self.window),
            None,
        )
        self._forward(summary)

    def _forward(self, record: logging.LogRecord) -> None:
        for handler in self.handlers:
            if record.levelno >= handler.level:
                handler.handle(record)

    def flush(self) -> None:
        """Write the counts still pending (at shutdown: nothing counted goes unsaid)."""
        with self._guard:
            pending = [w for w in self._windows.values() if w.suppressed]
            self._windows.clear()
        for window in pending:
            self._write_summary(window)
        for handler in self.handlers:
            handler.flush()

    def close(self) -> None:
        self.flush()
        for handler in self.handlers:
            handler.close()
        super().close()


def setup_logging(cfg: LogConfig) -> RepeatGuard:
    """stderr, and `cfg.file` (rotated at 10 MiB, 5 kept), behind one RepeatGuard."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if cfg.file:
        Path(cfg.file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(cfg.file, maxBytes=10 * 2**20, backupCount=5)
        )
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
    if stderr_is_journal(os.environ, sys.stderr):
        handlers[0].setFormatter(JournalFormatter())
    guard = RepeatGuard(handlers)
    logging.basicConfig(level=cfg.level.upper(), handlers=[guard], force=True)
    quiet_libraries()
    return guard


# Python's levels as syslog priorities, which journald reads from a "<N>" line prefix.
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6}


class JournalFormatter(logging.Formatter):
    """For stderr connected to systemd's journal: each line prefixed with its syslog priority
    ("<4>" a warning), so `journalctl -p warning` finds hbsm's warnings, and no time of its
    own (the journal stamps every line). Every line of a traceback carries the prefix too."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_PRIORITY.get(record.levelno, 7)}>"
        return prefix + super().format(record).replace("\n", "\n" + prefix)


def stderr_is_journal(environ: Mapping[str, str], stream: TextIO) -> bool:
    """Whether `stream` is the journal's: systemd names the stream it connected (device:inode)
    in $JOURNAL_STREAM; a stderr redirected elsewhere (`hbsm run 2>file` in a unit) is not."""
    expected = environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # no descriptor (a test's capture, say)
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def quiet_libraries() -> None:
    """Warnings and worse only from the libraries that narrate every step at INFO: an httpx
    line per probe request, three `transitions` lines per state change (its callbacks), two
    Apprise lines per notification. They would drown what matters, and every probe, transition
    and notification is in the event log already. urllib3 (under Apprise) logs each request's
    path at DEBUG: a chat webhook's path is its secret."""
    for name in ("httpx", "transitions", "apprise", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)

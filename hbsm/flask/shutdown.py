"""SIGTERM for an app with an embedded monitor: record the stop, then end as the app would.

A process manager stops a Flask app with SIGTERM, and Python's default for it ends the process
at once: no atexit hook runs, so the embedded monitor never recorded `monitor.stopped` and the
next start could not tell a stop from a crash. `stop_on_sigterm` puts a handler in front of the
one in place (werkzeug's default, gunicorn's worker handler, the app's own): it stops the
monitor (recording why), then hands the signal on to that handler, or, if there was none,
ends the process as the default would have.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["stop_on_sigterm"]

log = logging.getLogger("hbsm.flask")


def stop_on_sigterm(stop: Callable[[str], None]) -> Callable[[], None]:
    """Call `stop(reason)` on SIGTERM before the handler in place. Returns what puts that
    handler back (when ours is still the one in place). Off the main thread, where Python
    allows no signal handler, nothing is done."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        try:
            stop("SIGTERM")
        except Exception:  # the app ends all the same
            log.exception("hbsm: stopping the embedded monitor on SIGTERM")
        _hand_on(previous, signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        on_main = threading.current_thread() is threading.main_thread()
        if on_main and signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)

    return restore


def _hand_on(previous: Any, signum: int, frame: FrameType | None) -> None:
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # the default (or one set outside Python): end as it would have
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

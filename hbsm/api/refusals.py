"""Refused admin attempts: recorded, but never so many that a client can grow the log at will.

Every refused admin action is an `admin` event (allowed: false): operators want to see who tried
what, from where. Unlimited, a client hammering an admin route with a wrong token would add a
line to the event log per request for as long as it liked (a log-growth denial of service).

So, per client host, at most `burst` refusals are recorded in a window of `window` seconds; the
rest are counted. The count is recorded with the next refusal that is (`Admin.suppressed`: the
refused attempts from that host, before this one, not recorded one by one): the host's next
refusal after its window, or, if none comes, a summary of the window (its last attempt,
carrying the others) recorded at the first `due()` after the window ends, or by `drain()` when
the server stops. So the number of refused attempts stays known: the sum of 1 + `suppressed`
over the refused `admin` events. At most `max_hosts` hosts are tracked one by one (memory stays
bounded whatever the number of addresses a client uses); beyond that they share one budget.

Shared by the standalone app (`hbsm.api.app`) and the Flask blueprint (`hbsm.flask`).
Thread-safe: Flask serves requests on several threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Attempt", "RefusalLimiter"]

# One shared budget for the hosts beyond `max_hosts`.
_OVERFLOW = "*"


@dataclass(frozen=True, slots=True)
class Attempt:
    """A refused admin attempt, as its `admin` event would record it; `host` is the client's
    address, the key of its budget."""

    host: str
    action: str
    service: str | None
    who: str
    source: str


@dataclass(slots=True)
class _Window:
    start: float
    recorded: int = 0
    suppressed: int = 0  # counted, not recorded yet
    last: Attempt | None = None  # the last of those


class RefusalLimiter:
    """`admit(attempt)` says whether to record a refused attempt (and what count it
    carries) or only count it; `due()`/`drain()` give the summaries to record."""

    def __init__(
        self,
        *,
        burst: int = 10,
        window: float = 60.0,
        max_hosts: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or window <= 0 or max_hosts < 1:
            raise ValueError("burst and max_hosts must be >= 1 and window > 0")
        self.burst = burst
        self.window = window
        self.max_hosts = max_hosts
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def admit(self, attempt: Attempt) -> int | None:
        """None: only count `attempt`. Else record it, with this many `suppressed` before it."""
        with self._lock:
            now = self._clock()
            key = self._key(attempt.host, now)
            current = self._windows.get(key)
            if current is None or now - current.start >= self.window:
                carried = current.suppressed if current is not None else 0
                self._windows[key] = _Window(start=now, recorded=1)
                return carried
            if current.recorded < self.burst:
                current.recorded += 1
                return 0
            current.suppressed += 1
            current.last = attempt
            return None

    def unrecorded(self, attempt: Attempt, suppressed: int) -> None:
        """Recording `attempt` (admitted with `suppressed`) failed: count them all again."""
        with self._lock:
            now = self._clock()
            key = self._key(attempt.host, now)
            current = self._windows.setdefault(key, _Window(start=now, recorded=self.burst))
            current.suppressed += 1 + suppressed
            current.last = attempt

    def due(self) -> list[tuple[Attempt, int]]:
        """Summaries of windows that have ended with attempts only counted: (the last attempt,
        how many before it were not recorded). Cheap to call on every request: it looks at
        most once a second."""
        with self._lock:
            now = self._clock()
            if now < self._next_sweep:
                return []
            self._next_sweep = now + min(1.0, self.window)
            return self._take(lambda w: now - w.start >= self.window)

    def drain(self) -> list[tuple[Attempt, int]]:
        """Every summary still to record, ended or not (the server is stopping)."""
        with self._lock:
            return self._take(lambda w: True)

    @property
    def pending(self) -> int:
        """Refused attempts counted but not recorded yet."""
        with self._lock:
            return sum(w.suppressed for w in self._windows.values())

    def _take(self, ended: Callable[[_Window], bool]) -> list[tuple[Attempt, int]]:
        out: list[tuple[Attempt, int]] = []
        for key, window in list(self._windows.items()):
            if not ended(window):
                continue
            del self._windows[key]  # ended: the host starts a new window next time
            if window.suppressed and window.last is not None:
                out.append((window.last, window.suppressed - 1))
        return out

    def _key(self, host: str, now: float) -> str:
        if host in self._windows or len(self._windows) < self.max_hosts:
            return host
        # Full: forget the windows that have ended with nothing left to record first.
        for key, window in list(self._windows.items()):
            if now - window.start >= self.window and not window.suppressed:
                del self._windows[key]
        return host if len(self._windows) < self.max_hosts else _OVERFLOW

"""When the event log cannot be written (a full disk, say): the outage, and what is said of it.

While it lasts the monitor probes nothing and starts no repair or restart, since nothing it did
could be recorded (no record, no side effect); the API reads the outage to answer 503. This
module keeps the bookkeeping and the words: one error line when it begins, one
`log_unwritable` notice (at most one pair every OUTAGE_NOTICE_EVERY seconds: a disk at the edge
of full may refuse and take writes by turns), and, once writes work again, the `log.outage`
event, a warning and a `log_writable` notice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

from hbsm.events import LogOutage
from hbsm.log import LogError
from hbsm.notify import Notice
from hbsm.notify.notice import LEVELS, iso_utc
from hbsm.outage import Outage

__all__ = ["OUTAGE_NOTICE_EVERY", "LogUnwritableError", "Outage", "OutageWatch"]

log = logging.getLogger("hbsm.monitor")

OUTAGE_NOTICE_EVERY = 300.0


class LogUnwritableError(LogError):
    """An admin action asked for while the event log cannot be written: not carried out."""


class OutageWatch:
    """The current outage (None: the log takes writes), and the notices about outages.

    `notify` sends a notice (the monitor runs it in a task of its own); `notify_on` is the kinds
    the config wants notified; `retry_every` is how often the monitor tries writing again.
    """

    def __init__(
        self,
        *,
        path: str,
        clock: Callable[[], float],
        notify: Callable[[Notice], None],
        notify_on: Collection[str],
        retry_every: float,
    ) -> None:
        self.path = path
        self.clock = clock
        self.notify = notify
        self.notify_on = notify_on
        self.retry_every = retry_every
        self.current: Outage | None = None
        # Set while the monitor stops: the notifier is closing, so an outage is only said on
        # stderr (a notice task then would outlive the loop).
        self.quiet = False
        self._noticed_at: float | None = None

    def failed(self, exc: Exception) -> None:
        """A write failed: an outage begins, said once; during one, nothing more is said."""
        if self.current is not None:
            return  # said once, when it began; the flusher retries quietly
        self.current = outage = Outage(since=self.clock(), error=str(exc))
        log.error(
            "cannot write the event log %s (%s): no probe, repair or restart until it can; "
            "retrying every %.1f s",
            self.path,
            exc,
            self.retry_every,
        )
        last = self._noticed_at
        if self.quiet or not (last is None or outage.since - last >= OUTAGE_NOTICE_EVERY):
            return
        # The one side effect that does not wait for its record: it says that nothing can be
        # recorded. Its Notification events are written once the log takes writes.
        outage.noticed = True
        self._noticed_at = outage.since
        self._notice(
            "log_unwritable",
            outage,
            f"hbsm cannot write its event log {self.path} ({exc}): it probes nothing and starts "
            "no repair or restart until it can",
        )

    def ended(self) -> LogOutage:
        """Writes work again: the event that records the outage (the caller appends it)."""
        outage, self.current = self.current, None
        assert outage is not None
        now = self.clock()
        text = (
            f"the event log is writable again after {now - outage.since:.1f} s; "
            f"{outage.skipped} probes were not run meanwhile"
        )
        log.warning("%s", text)
        if outage.noticed and not self.quiet:
            self._notice("log_writable", outage, f"hbsm: {text}")
        return LogOutage(ts=now, since=outage.since, error=outage.error, skipped=outage.skipped)

    def _notice(self, kind: Any, outage: Outage, message: str) -> None:
        if kind not in self.notify_on:
            return
        self.notify(
            Notice(
                service="",
                kind=kind,
                incident=f"event-log@{iso_utc(outage.since)}",
                level=LEVELS[kind],
                message=message,
                ts=self.clock(),
                details={"error": outage.error, "probes_not_run": outage.skipped},
            )
        )

"""The notifier: plans notices from appended events, delivers them on every channel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from hbsm.config.model import NotifyConfig
from hbsm.events import Event, Notification, OpaqueEvent
from hbsm.notify.notice import Notice
from hbsm.notify.policy import NoticePlanner

if TYPE_CHECKING:
    import httpx

    from hbsm.notify.webhook import Sleep

__all__ = ["Notifier"]


class Notifier:
    """Notifications for one monitor.

    The monitor appends events, then calls `plan` with them in log order (pure and quick; an
    event whose `seq` is not above the last one planned for its service is taken as seen) and
    `send` for each notice, and appends the `Notification` events `send` returns. On start it
    feeds the log's history to `remember` first, so a restarted monitor does not notify twice
    for one incident.

    `client` is used as given and left open; without one the notifier makes its own and
    `aclose` closes it. `clock` stamps the returned Notification events; `sleep` waits out the
    backoff between webhook retries.
    """

    def __init__(
        self,
        config: NotifyConfig,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        self._planner = NoticePlanner(on=config.on, rate_per_hour=config.rate_per_hour)
        self._client = client
        self._own_client = client is None
        self._clock = clock
        self._sleep = sleep

    def plan(self, events: Sequence[Event | OpaqueEvent]) -> list[Notice]:
        """The notices these just-appended events call for (after dedupe and rate limit).
        No I/O and no clock; updates the dedupe and rate-limit state."""
        return self._planner.plan(events)

    def remember(self, event: Event | OpaqueEvent) -> None:
        """Feed one event of the log's history (on start, oldest first): incidents in progress,
        what was notified already, and recent notices for the rate limit. Nothing is sent."""
        self._planner.remember(event)

    def open_incident(self, service: str) -> str | None:
        """The incident of `service` in progress, if any."""
        return self._planner.open_incident(service)

    async def send(self, notice: Notice) -> list[Notification]:
        """Deliver `notice` on every channel at once; one Notification event per channel,
        all stamped with the time sending began. Never raises (but cancellation propagates)."""
        ts = self._clock()
        jobs: list[Awaitable[Notification]] = []
        # The channels' modules are imported by the first notice they deliver, not at start-up:
        # webhooks need httpx, mail smtplib and email, Apprise its ~100 plugins, which a
        # monitor that never notifies (or notifies one way) need not hold.
        if self.config.webhooks:
            from hbsm.notify.webhook import deliver_webhook, webhook_channel

            client = self._http()
            for hook in self.config.webhooks:
                jobs.append(
                    _guarded(
                        deliver_webhook(client, hook, notice, sleep=self._sleep, ts=ts),
                        notice,
                        webhook_channel(hook.url),
                        ts,
                    )
                )
        if self.config.smtp is not None:
            from hbsm.notify.smtp import deliver_mail, smtp_channel

            smtp = self.config.smtp
            jobs.append(_guarded(deliver_mail(smtp, notice, ts=ts), notice, smtp_channel(smtp), ts))
        if self.config.apprise:
            # Apprise itself is imported by the delivery's own thread, not here on the loop.
            from hbsm.notify.apprise_send import apprise_channel, deliver_apprise

            timeout = self.config.apprise_timeout
            for url in self.config.apprise:
                jobs.append(
                    _guarded(
                        deliver_apprise(url, notice, timeout=timeout, ts=ts),
                        notice,
                        apprise_channel(url),
                        ts,
                    )
                )
        return list(await asyncio.gather(*jobs))

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient()
        return self._client


async def _guarded(
    job: Awaitable[Notification], notice: Notice, channel: str, ts: float
) -> Notification:
    """The channels catch their own failures; this catches the ones nobody foresaw."""
    try:
        return await job
    except Exception as exc:
        return Notification(
            ts=ts,
            service=notice.service or None,  # "": the monitor's own notice
            channel=channel,
            level=notice.level,
            message=notice.message,
            delivered=False,
            error=f"{type(exc).__name__}: {exc}",
        )

"""Webhook delivery: POST the notice as JSON, retrying what is worth retrying.

Retried, with exponential backoff (0.5 s, 1 s, 2 s, ...): transport errors (refused, reset,
timeouts) and 5xx answers. Not retried: 4xx (the receiver rejects the body; asking again will
not change its mind), 3xx, and URLs httpx cannot use. Any outcome is a `Notification` event;
nothing is raised.

The channel name and error texts carry the webhook's origin only: the path of a webhook URL is
often its secret (Slack, Teams, Discord).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import httpx

from hbsm.config.model import WebhookConfig
from hbsm.events import Notification
from hbsm.notify.notice import Notice, webhook_body

__all__ = ["BACKOFF_BASE", "backoff", "deliver_webhook", "webhook_channel"]

BACKOFF_BASE: Final = 0.5
# How much of a refusing receiver's answer the error keeps.
_BODY_TAIL: Final = 200

Sleep = Callable[[float], Awaitable[object]]


def backoff(retry: int) -> float:
    """The pause before retry number `retry` (1-based): 0.5 s, 1 s, 2 s, ..."""
    return BACKOFF_BASE * 2 ** (retry - 1)


def webhook_channel(url: str) -> str:
    """`webhook:` and the URL's origin (scheme, host, port), never its path or query."""
    try:
        parsed = httpx.URL(url)
        port = f":{parsed.port}" if parsed.port else ""
        origin = f"{parsed.scheme}://{parsed.host}{port}" if parsed.host else "?"
    except Exception:
        origin = "?"
    return f"webhook:{origin}"


async def deliver_webhook(
    client: httpx.AsyncClient, hook: WebhookConfig, notice: Notice, *, sleep: Sleep, ts: float
) -> Notification:
    channel = webhook_channel(hook.url)
    body = webhook_body(notice)
    attempts = 1 + max(0, hook.retries)
    error = ""
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            await sleep(backoff(attempt - 1))
        try:
            response = await client.post(
                hook.url, json=body, headers=hook.headers, timeout=hook.timeout
            )
        except httpx.UnsupportedProtocol as exc:
            error = _redact(f"unusable URL: {exc}", hook.url)
            break
        except httpx.TimeoutException as exc:
            error = f"timeout after {hook.timeout:g} s ({type(exc).__name__})"
            continue
        except httpx.TransportError as exc:
            error = _redact(f"{type(exc).__name__}: {exc}", hook.url)
            continue
        except Exception as exc:  # an invalid URL or header, a bug: an event, never a crash
            error = _redact(f"{type(exc).__name__}: {exc}", hook.url)
            break
        if response.is_success:
            return _notification(notice, channel, ts, delivered=True, error="")
        error = f"HTTP {response.status_code}"
        text = response.text.strip()
        if text:
            error += f": {text[:_BODY_TAIL]}"
        if not response.is_server_error:
            break
    tries = f" (after {attempt} attempts)" if attempt > 1 else ""
    return _notification(notice, channel, ts, delivered=False, error=error + tries)


def _redact(text: str, url: str) -> str:
    return text.replace(url, webhook_channel(url).removeprefix("webhook:") + "/...")


def _notification(
    notice: Notice, channel: str, ts: float, *, delivered: bool, error: str
) -> Notification:
    return Notification(
        ts=ts,
        service=notice.service or None,  # "": the monitor's own notice
        channel=channel,
        level=notice.level,
        message=notice.message,
        delivered=delivered,
        error=error,
    )

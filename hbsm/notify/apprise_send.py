"""Delivery through Apprise URLs (the `apprise` extra): Telegram, Slack, ntfy, Pushover, plain
JSON or form POSTs and ~100 more, one channel per URL of `notify.apprise`.

Apprise is synchronous. Each delivery runs in a daemon thread of its own and is awaited for at
most `notify.apprise_timeout` (Apprise is given the same deadline, and stops most services by
it): a service that hangs never blocks the monitor's loop, holds no worker of the loop's
default executor (which `hbsm run` waits for on exit), and is reported as a failed
`Notification`. Apprise itself is imported in that thread, by the first notice it delivers.

Secrets: the channel name shows an Apprise URL masked (`apprise:tgram://***`,
`apprise:json://127.0.0.1:8080/***`, `hbsm.config.secrets`), and every part of a configured
URL that could be a token is cut from error texts and from what Apprise logs while hbsm uses
it (its debug lines name the URLs it posts to).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Final

from hbsm.config.secrets import apprise_url_shown
from hbsm.events import Notification
from hbsm.notify.apprise_redact import redact_url_secrets, watch_apprise_logs
from hbsm.notify.notice import Notice, notice_lines, notice_title

__all__ = ["apprise_channel", "deliver_apprise"]

# Apprise's notification types, by notice kind (recoveries read as good news) or level.
_TYPES: Final[dict[str, str]] = {"critical": "failure", "warning": "warning", "info": "info"}
_GOOD_NEWS: Final = frozenset({"recovered", "log_writable"})
# Deliveries still running past their deadline. Past this many, a new one is refused rather
# than starting yet another thread that would hang the same way.
_MAX_STUCK: Final = 8
# How much of Apprise's explanation an error keeps.
_REASON_CHARS: Final = 300

_stuck: set[threading.Thread] = set()
_stuck_lock = threading.Lock()


def apprise_channel(url: str) -> str:
    return f"apprise:{apprise_url_shown(url)}"


def _send(url: str, notice: Notice, timeout: float) -> tuple[bool, str]:
    """Blocking: one notice to one URL. (delivered, why not)."""
    watch_apprise_logs([url])
    import apprise

    sender = apprise.Apprise()
    if not sender.add(url):
        return False, "Apprise cannot use this URL (an unknown scheme or a malformed part)"
    kind = "success" if notice.kind in _GOOD_NEWS else _TYPES.get(notice.level, "info")
    with sender.notify(
        body="\n".join(notice_lines(notice)),
        title=notice_title(notice),
        notify_type=kind,
        body_format="text",
        timeout=timeout,
    ) as result:
        if result:
            return True, ""
        reasons = [
            entry.message.strip()
            for entry in result.logs()
            if entry.level in ("WARNING", "ERROR", "CRITICAL") and entry.message.strip()
        ]
        status = getattr(result.status, "name", str(result.status)).lower()
    reason = "; ".join(dict.fromkeys(reasons)) or f"Apprise reported {status}"
    if status == "timeout":
        reason = f"timeout after {timeout:g} s (notify.apprise_timeout): {reason}"
    return False, reason


def _stuck_now() -> int:
    with _stuck_lock:
        for thread in [t for t in _stuck if not t.is_alive()]:
            _stuck.discard(thread)
        return len(_stuck)


async def deliver_apprise(url: str, notice: Notice, *, timeout: float, ts: float) -> Notification:
    """Send `notice` to one Apprise URL; the outcome as a Notification event, never raised."""
    if (stuck := _stuck_now()) >= _MAX_STUCK:
        error = f"not tried: {stuck} earlier Apprise deliveries are still hanging"
        return _notification(notice, url, ts, delivered=False, error=error)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[bool, str]] = loop.create_future()

    def settle(outcome: tuple[bool, str]) -> None:
        if not done.done():
            done.set_result(outcome)

    def work() -> None:
        try:
            outcome = _send(url, notice, timeout)
        except Exception as exc:  # an Apprise plugin's bug: an event, never a crash
            outcome = (False, f"{type(exc).__name__}: {exc}")
        # RuntimeError: the loop is gone (the monitor stopped meanwhile); nobody is waiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, outcome)

    thread = threading.Thread(target=work, name="hbsm-apprise", daemon=True)
    thread.start()
    try:
        # A little past Apprise's own deadline: it reports a timeout better than we can.
        delivered, error = await asyncio.wait_for(asyncio.shield(done), timeout + 1.0)
    except TimeoutError:
        with _stuck_lock:
            _stuck.add(thread)
        delivered, error = False, f"timeout after {timeout:g} s (notify.apprise_timeout)"
    error = redact_url_secrets(error, [url])[:_REASON_CHARS]
    return _notification(notice, url, ts, delivered=delivered, error=error)


def _notification(
    notice: Notice, url: str, ts: float, *, delivered: bool, error: str
) -> Notification:
    return Notification(
        ts=ts,
        service=notice.service or None,  # "": the monitor's own notice
        channel=apprise_channel(url),
        level=notice.level,
        message=notice.message,
        delivered=delivered,
        error=error,
    )

"""Webhook delivery against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import time
from datetime import datetime

import httpx

from hbsm.config.model import NotifyConfig, WebhookConfig
from hbsm.notify import Notice, Notifier

from .history import T0
from .servers import closed_port

NOTICE = Notice(
    service="api",
    kind="failed",
    incident="api@2023-11-14T22:13:30.000Z",
    level="critical",
    message="api FAILED and needs a human reset: restart failed: exit 1",
    ts=T0 + 0.25,
    details={"src": "restarting", "dst": "failed", "failures": 3},
)


def make(*hooks: WebhookConfig, sleep=None, clock=lambda: T0 + 1, **kw) -> Notifier:
    extra = {"sleep": sleep} if sleep is not None else {}
    return Notifier(NotifyConfig(webhooks=list(hooks)), clock=clock, **extra, **kw)


async def test_posts_the_notice_as_json_with_the_configured_headers(receiver, sleeps):
    hook = WebhookConfig(url=receiver.url("/hooks/s3cr3t"), headers={"X-Token": "t0k"})
    notifier = make(hook, sleep=sleeps)
    try:
        result = await notifier.send(NOTICE)
    finally:
        await notifier.aclose()
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.path == "/hooks/s3cr3t"
    assert request.headers["x-token"] == "t0k"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body == {
        "service": "api",
        "kind": "failed",
        "incident": "api@2023-11-14T22:13:30.000Z",
        "level": "critical",
        "message": NOTICE.message,
        "ts": "2023-11-14T22:13:20.250Z",
        "details": {"src": "restarting", "dst": "failed", "failures": 3},
    }
    assert datetime.fromisoformat(body["ts"]).timestamp() == NOTICE.ts
    [event] = result
    assert event.delivered and event.error == ""
    assert event.service == "api" and event.level == "critical"
    assert event.message == NOTICE.message and event.ts == T0 + 1
    # The channel names the receiver's origin, never the URL's secret path.
    assert event.channel == f"webhook:http://127.0.0.1:{receiver.port}"
    assert sleeps.delays == []


async def test_retries_with_backoff_after_two_500s_then_delivers(receiver, sleeps):
    receiver.fail(2, status=500)
    notifier = make(WebhookConfig(url=receiver.url(), retries=3), sleep=sleeps)
    [event] = await notifier.send(NOTICE)
    await notifier.aclose()
    assert len(receiver.requests) == 3
    assert all(r.json() == receiver.requests[0].json() for r in receiver.requests)
    assert sleeps.delays == [0.5, 1.0]
    assert event.delivered and event.error == ""


async def test_gives_up_after_the_configured_retries(receiver, sleeps):
    receiver.status = 503
    notifier = make(WebhookConfig(url=receiver.url(), retries=3), sleep=sleeps)
    [event] = await notifier.send(NOTICE)
    await notifier.aclose()
    assert len(receiver.requests) == 4
    assert sleeps.delays == [0.5, 1.0, 2.0]
    assert not event.delivered
    assert event.error.startswith("HTTP 503") and "after 4 attempts" in event.error


async def test_a_4xx_is_not_retried(receiver, sleeps):
    receiver.status = 400
    notifier = make(WebhookConfig(url=receiver.url(), retries=3), sleep=sleeps)
    [event] = await notifier.send(NOTICE)
    await notifier.aclose()
    assert len(receiver.requests) == 1
    assert sleeps.delays == []
    assert not event.delivered
    assert event.error == "HTTP 400: refused with 400"


async def test_a_receiver_that_is_down_is_an_event_not_an_exception(sleeps):
    url = f"http://127.0.0.1:{closed_port()}/hooks/s3cr3t"
    notifier = make(WebhookConfig(url=url, retries=2), sleep=sleeps)
    [event] = await notifier.send(NOTICE)
    await notifier.aclose()
    assert not event.delivered
    assert "ConnectError" in event.error and "after 3 attempts" in event.error
    assert sleeps.delays == [0.5, 1.0]  # connection errors are retried
    assert "s3cr3t" not in event.channel + event.error


async def test_a_slow_receiver_times_out(receiver, sleeps):
    receiver.delay = 5.0
    notifier = make(WebhookConfig(url=receiver.url(), timeout=0.2, retries=0), sleep=sleeps)
    started = time.monotonic()
    [event] = await notifier.send(NOTICE)
    await notifier.aclose()
    # Gave up at its timeout rather than waiting for the answer (a wide margin: no speed test).
    assert time.monotonic() - started < 4.0
    assert not event.delivered and event.error.startswith("timeout after 0.2 s")
    assert len(receiver.requests) == 1


async def test_an_unusable_url_is_an_event_not_an_exception(sleeps):
    notifier = make(
        WebhookConfig(url="ftp://example.invalid/x"), WebhookConfig(url="not a url"), sleep=sleeps
    )
    events = await notifier.send(NOTICE)
    await notifier.aclose()
    assert [e.delivered for e in events] == [False, False]
    assert all(e.error for e in events)
    assert sleeps.delays == []  # nothing worth retrying


async def test_every_webhook_gets_the_notice_and_reports_on_its_own(receiver, sleeps):
    down = f"http://127.0.0.1:{closed_port()}/"
    notifier = make(
        WebhookConfig(url=receiver.url("/a"), retries=0),
        WebhookConfig(url=down, retries=0),
        WebhookConfig(url=receiver.url("/b"), retries=0),
        sleep=sleeps,
    )
    events = await notifier.send(NOTICE)
    await notifier.aclose()
    assert [e.delivered for e in events] == [True, False, True]
    assert sorted(r.path for r in receiver.requests) == ["/a", "/b"]


async def test_an_injected_client_is_used_and_left_open(receiver):
    async with httpx.AsyncClient(headers={"User-Agent": "mine"}) as client:
        notifier = make(WebhookConfig(url=receiver.url()), client=client)
        [event] = await notifier.send(NOTICE)
        await notifier.aclose()
        assert event.delivered
        assert receiver.requests[0].headers["user-agent"] == "mine"
        assert not client.is_closed


async def test_no_channels_means_no_events():
    notifier = Notifier(NotifyConfig())
    assert await notifier.send(NOTICE) == []
    await notifier.aclose()

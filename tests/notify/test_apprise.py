"""Apprise delivery against real HTTP receivers on 127.0.0.1: Apprise's own json:// and form://
services post to them, as its chat and push services post to theirs."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
from urllib.parse import parse_qs

import pytest

from hbsm.config.model import NotifyConfig, WebhookConfig
from hbsm.config.secrets import mask_secrets
from hbsm.notify import Notice, Notifier
from hbsm.notify.apprise_redact import redact_url_secrets

from .history import T0
from .servers import WebhookReceiver, closed_port

pytest.importorskip("apprise")  # the apprise extra (in dev): without it, these cannot run

NOTICE = Notice(
    service="api",
    kind="failed",
    incident="api@2023-11-14T22:13:30.000Z",
    level="critical",
    message="api FAILED and needs a human reset: restart failed: exit 1",
    ts=T0 + 0.25,
    details={"src": "restarting", "dst": "failed", "failures": 3},
)


async def send(*urls: str, timeout: float = 10.0, **kw) -> list:
    notifier = Notifier(
        NotifyConfig(apprise=list(urls), apprise_timeout=timeout, **kw), clock=lambda: T0 + 1
    )
    try:
        return await notifier.send(NOTICE)
    finally:
        await notifier.aclose()


def apprise_url(scheme: str, receiver: WebhookReceiver, path: str) -> str:
    return f"{scheme}://127.0.0.1:{receiver.port}{path}"


async def test_json_url_posts_the_notice_to_the_receiver(receiver):
    [event] = await send(apprise_url("json", receiver, "/hooks/s3cr3t-path"))
    [request] = receiver.requests
    assert request.path == "/hooks/s3cr3t-path"
    assert request.headers["content-type"].startswith("application/json")
    body = request.json()
    assert body["title"] == "[hbsm] api FAILED"
    assert body["type"] == "failure"  # level critical
    lines = body["message"].splitlines()
    assert lines[0] == NOTICE.message
    assert "incident: api@2023-11-14T22:13:30.000Z" in lines
    assert "time:     2023-11-14T22:13:20.250Z" in lines
    assert "  failures: 3" in lines
    assert event.delivered and event.error == ""
    assert event.service == "api" and event.level == "critical" and event.ts == T0 + 1
    # The channel names the receiver, never the URL's path (a chat service's token).
    assert event.channel == f"apprise:json://127.0.0.1:{receiver.port}/***"


async def test_form_url_posts_the_notice_as_form_fields(receiver):
    [event] = await send(apprise_url("form", receiver, "/form/s3cr3t-form"))
    [request] = receiver.requests
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    fields = {key: values[0] for key, values in parse_qs(request.body.decode()).items()}
    assert fields["title"] == "[hbsm] api FAILED"
    assert fields["type"] == "failure"
    assert fields["message"].splitlines()[0] == NOTICE.message
    assert event.delivered and event.channel == f"apprise:form://127.0.0.1:{receiver.port}/***"


async def test_a_receiver_answering_500_is_a_failed_notification_with_the_reason(receiver):
    receiver.status = 500
    [event] = await send(apprise_url("json", receiver, "/hooks/s3cr3t-path"))
    assert len(receiver.requests) == 1
    assert not event.delivered
    assert "500" in event.error
    assert "s3cr3t-path" not in event.error and "s3cr3t-path" not in event.channel


async def test_a_closed_port_is_a_failed_notification():
    [event] = await send(f"json://127.0.0.1:{closed_port()}/hook/s3cr3t-path")
    assert not event.delivered and event.error
    assert "s3cr3t-path" not in event.error


async def test_every_channel_gets_the_notice_and_one_failing_does_not_stop_the_others():
    good, bad = WebhookReceiver().start(), WebhookReceiver().start()
    bad.status = 500
    try:
        events = await send(
            apprise_url("json", good, "/a"),
            apprise_url("form", bad, "/b"),
            apprise_url("form", good, "/c"),
            webhooks=[WebhookConfig(url=good.url("/hook"), retries=0)],
        )
    finally:
        good.stop()
        bad.stop()
    # One event per channel: webhooks first, then the Apprise URLs in their order.
    assert [e.channel.split("://")[0] for e in events] == [
        "webhook:http",
        "apprise:json",
        "apprise:form",
        "apprise:form",
    ]
    assert [e.delivered for e in events] == [True, True, False, True]
    assert sorted(r.path for r in good.requests) == ["/a", "/c", "/hook"]
    assert len({e.ts for e in events}) == 1


async def test_a_hanging_receiver_times_out_and_the_loop_runs_meanwhile(receiver):
    receiver.delay = 2.0
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    running = asyncio.create_task(ticker())
    try:
        [event] = await send(apprise_url("json", receiver, "/slow"), timeout=0.3)
    finally:
        running.cancel()
    assert not event.delivered
    # Apprise's own deadline (the same), or ours just past it.
    assert event.error.startswith("timeout after 0.3 s (notify.apprise_timeout)"), event.error
    # The delivery blocked a thread, not the loop: the ticker kept going while it waited.
    assert ticks > 5
    # No delivery thread outlives the test (another test's fixture checks for hbsm- threads).
    for thread in threading.enumerate():
        if thread.name == "hbsm-apprise":
            thread.join(10)


async def test_apprise_logs_carry_no_piece_of_the_url(receiver, caplog):
    receiver.status = 500
    with caplog.at_level(logging.DEBUG, logger="apprise"):
        await send(apprise_url("json", receiver, "/hooks/s3cr3t-path?token=t0k3n-value"))
    assert caplog.records, "Apprise logged nothing: the check would prove nothing"
    assert any("JSON" in r.getMessage() for r in caplog.records)
    assert "s3cr3t-path" not in caplog.text and "t0k3n-value" not in caplog.text


def test_redaction_cuts_tokens_of_chat_urls():
    url = "tgram://123456789:AAbbCCddEEff/-100200300"
    text = "Failed to send Telegram 123456789:AAbbCCddEEff to -100200300 via " + url
    redacted = redact_url_secrets(text, [url])
    assert "AAbbCCddEEff" not in redacted and "100200300" not in redacted
    assert "tgram://***" in redacted
    mail = "mailto://ops:pw@mail.example.com"
    assert redact_url_secrets("login ops:pw refused", [mail]) == "login ops:*** refused"


def test_config_shows_apprise_urls_masked():
    shown = mask_secrets(
        {
            "notify": {
                "apprise": [
                    "tgram://123456789:AAbbCCddEEff/-100200300",
                    "json://127.0.0.1:8080/hooks/s3cr3t",
                    "jsons://user:pass-word@example.com/",
                    "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
                ]
            }
        }
    )
    assert shown["notify"]["apprise"] == [
        "tgram://***",
        "json://127.0.0.1:8080/***",
        "jsons://user:***@example.com",
        "slack://***",
    ]


def test_apprise_is_imported_by_the_first_notice_not_before():
    code = (
        "import sys\n"
        "from hbsm.config.model import NotifyConfig\n"
        "from hbsm.notify import Notifier\n"
        "Notifier(NotifyConfig(apprise=['json://127.0.0.1:9/x']))\n"
        "assert 'apprise' not in sys.modules, 'imported at start-up'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


async def test_deliveries_apprise_does_not_end_are_given_up_and_capped(receiver):
    """Our own deadline, for an Apprise that overruns its own: `timeout=0` gives Apprise none
    (its "no limit"), so only ours (1 s past it) ends the wait; the threads hang on. (Apprise
    runs services in a shared pool of a few workers: some of these wait there, unsent.)"""
    from hbsm.notify.apprise_send import _MAX_STUCK, deliver_apprise

    receiver.delay = 1.5  # past our 1 s
    url = apprise_url("json", receiver, "/slow")
    try:
        hung = await asyncio.gather(
            *(deliver_apprise(url, NOTICE, timeout=0.0, ts=T0) for _ in range(_MAX_STUCK))
        )
        assert all(not e.delivered and e.error.startswith("timeout after 0 s") for e in hung)
        # Past the cap, a delivery is refused at once: no thread more to hang.
        refused = await deliver_apprise(url, NOTICE, timeout=0.0, ts=T0)
        assert not refused.delivered
        assert (
            refused.error == f"not tried: {_MAX_STUCK} earlier Apprise deliveries are still hanging"
        )
    finally:
        for thread in threading.enumerate():
            if thread.name == "hbsm-apprise":
                thread.join(10)
    # Once they have ended, deliveries go out again.
    receiver.delay = 0.0
    again = await deliver_apprise(url, NOTICE, timeout=5.0, ts=T0)
    assert again.delivered

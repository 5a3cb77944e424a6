"""E-mail delivery against a minimal real SMTP server on 127.0.0.1."""

from __future__ import annotations

from hbsm.config.model import NotifyConfig, SmtpConfig, WebhookConfig
from hbsm.notify import Notice, Notifier

from .history import T0
from .servers import closed_port

NOTICE = Notice(
    service="billing",
    kind="restart",
    incident="billing@2023-11-14T22:13:30.000Z",
    level="warning",
    message="billing is being restarted (restart 1 of this incident, attempt 1)",
    ts=T0,
    details={"attempt": 1, "cooldown_s": 300.0},
)


def smtp(port: int, **kw: object) -> SmtpConfig:
    fields: dict = {"host": "127.0.0.1", "port": port, "to": ["ops@example.org"], "timeout": 5.0}
    return SmtpConfig(**{**fields, **kw})


async def test_sends_a_plain_text_mail_naming_the_service(smtp_server):
    config = smtp(smtp_server.port, sender="hbsm@example.org", to=["a@example.org", "b@x.org"])
    notifier = Notifier(NotifyConfig(smtp=config), clock=lambda: T0 + 2)
    [event] = await notifier.send(NOTICE)
    await notifier.aclose()
    assert event.delivered and event.error == ""
    assert event.channel == f"smtp:127.0.0.1:{smtp_server.port}"
    assert event.ts == T0 + 2 and event.service == "billing"
    [mail] = smtp_server.mails
    assert mail.sender == "hbsm@example.org"
    assert mail.recipients == ["a@example.org", "b@x.org"]
    assert mail.auth is None
    message = mail.message
    assert message["Subject"] == "[hbsm] billing restarting"
    assert message["To"] == "a@example.org, b@x.org"
    assert message.get_content_type() == "text/plain"
    body = message.get_content()
    assert body.startswith(NOTICE.message)
    assert "service:  billing" in body
    assert "incident: billing@2023-11-14T22:13:30.000Z" in body
    assert "attempt: 1" in body


async def test_logs_in_when_configured(smtp_server):
    config = smtp(smtp_server.port, username="hbsm", password="pw")
    notifier = Notifier(NotifyConfig(smtp=config))
    [event] = await notifier.send(NOTICE)
    assert event.delivered
    assert smtp_server.mails[0].auth == ("hbsm", "pw")


async def test_starttls_is_required_when_configured(smtp_server):
    # The test server offers no STARTTLS: the mail must not go out in clear text.
    notifier = Notifier(NotifyConfig(smtp=smtp(smtp_server.port, starttls=True)))
    [event] = await notifier.send(NOTICE)
    assert not event.delivered
    assert "STARTTLS" in event.error
    assert smtp_server.mails == []


async def test_a_mail_server_that_is_down_is_an_event_not_an_exception():
    notifier = Notifier(NotifyConfig(smtp=smtp(closed_port())))
    [event] = await notifier.send(NOTICE)
    assert not event.delivered
    assert "ConnectionRefusedError" in event.error


async def test_no_recipients_is_reported(smtp_server):
    notifier = Notifier(NotifyConfig(smtp=smtp(smtp_server.port, to=[])))
    [event] = await notifier.send(NOTICE)
    assert not event.delivered and "no recipients" in event.error
    assert smtp_server.mails == []


async def test_webhook_and_mail_each_report(receiver, smtp_server):
    config = NotifyConfig(webhooks=[WebhookConfig(url=receiver.url())], smtp=smtp(smtp_server.port))
    notifier = Notifier(config)
    events = await notifier.send(NOTICE)
    await notifier.aclose()
    assert [e.channel.split(":")[0] for e in events] == ["webhook", "smtp"]
    assert all(e.delivered for e in events)
    assert receiver.requests[0].json()["service"] == "billing"
    assert len(smtp_server.mails) == 1

"""E-mail delivery through stdlib smtplib, run in a worker thread (smtplib blocks).

One plain-text message per notice to every recipient of `SmtpConfig.to`; STARTTLS and login
when configured. Not retried: a mail server that refuses now is a problem for a human, and the
failed `Notification` event says so.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from hbsm.config.model import SmtpConfig
from hbsm.events import Notification
from hbsm.notify.notice import Notice, iso_utc

__all__ = ["build_message", "deliver_mail", "smtp_channel"]

_SUBJECTS = {
    "restart": "restarting",
    "failed": "FAILED",
    "recovered": "recovered",
    "repair_failed": "repair failed",
    "cert_expiring": "TLS certificate expires soon",
    "log_unwritable": "CANNOT WRITE ITS EVENT LOG",
    "log_writable": "event log writable again",
}


def smtp_channel(config: SmtpConfig) -> str:
    return f"smtp:{config.host}:{config.port}"


def build_message(notice: Notice, config: SmtpConfig) -> EmailMessage:
    msg = EmailMessage()
    subject = _SUBJECTS.get(notice.kind, notice.kind)
    # The monitor's own notices concern no service: "[hbsm] CANNOT WRITE ITS EVENT LOG".
    msg["Subject"] = " ".join(part for part in ("[hbsm]", notice.service, subject) if part)
    msg["From"] = config.sender
    msg["To"] = ", ".join(config.to)
    msg["Date"] = formatdate(notice.ts, usegmt=True)
    msg["Message-ID"] = make_msgid(domain="hbsm")
    lines = [
        notice.message,
        "",
        f"service:  {notice.service}",
        f"event:    {notice.kind}",
        f"level:    {notice.level}",
        f"incident: {notice.incident}",
        f"time:     {iso_utc(notice.ts)}",
    ]
    if notice.details:
        lines += ["", "details:"]
        lines += [f"  {key}: {value}" for key, value in notice.details.items()]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def _send(config: SmtpConfig, msg: EmailMessage) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP(config.host, config.port, timeout=config.timeout) as smtp:
        if config.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if config.username:
            smtp.login(config.username, config.password or "")
        return smtp.send_message(msg)


async def deliver_mail(config: SmtpConfig, notice: Notice, *, ts: float) -> Notification:
    delivered, error = False, ""
    if not config.to:
        error = "no recipients configured (notify.smtp.to)"
    else:
        try:
            refused = await asyncio.to_thread(_send, config, build_message(notice, config))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            delivered = True
            if refused:  # accepted for some recipients only
                error = "refused: " + ", ".join(sorted(refused))
    return Notification(
        ts=ts,
        service=notice.service or None,  # "": the monitor's own notice
        channel=smtp_channel(config),
        level=notice.level,
        message=notice.message,
        delivered=delivered,
        error=error,
    )

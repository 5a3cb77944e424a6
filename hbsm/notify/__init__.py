"""Notifications: webhooks, e-mail and Apprise URLs on restarts, failures, recoveries and failed
repairs.

`Notifier.plan` (pure) decides which notices appended events call for, once per incident and
within a rate limit (the rules: `hbsm.notify.policy`); `Notifier.send` delivers one to every
webhook (`hbsm.notify.webhook`), to SMTP (`hbsm.notify.smtp`) and to every Apprise URL
(`hbsm.notify.apprise_send`) and returns a `Notification` event per channel. A notification
that cannot be delivered is such an event, never an exception.
"""

from hbsm.notify.notice import KINDS, Notice, NoticeKind, webhook_body
from hbsm.notify.notifier import Notifier
from hbsm.notify.policy import NoticePlanner

__all__ = ["KINDS", "Notice", "NoticeKind", "NoticePlanner", "Notifier", "webhook_body"]

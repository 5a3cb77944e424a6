"""Notifications: webhooks and e-mail on restarts, failures, recoveries and failed repairs.

`Notifier.plan` (pure) decides which notices appended events call for, once per incident and
within a rate limit (the rules: `hbsm.notify.policy`); `Notifier.send` delivers one to every
webhook (`hbsm.notify.webhook`) and to SMTP (`hbsm.notify.smtp`) and returns a `Notification`
event per channel. A notification that cannot be delivered is such an event, never an exception.
"""

from hbsm.notify.notice import KINDS, Notice, NoticeKind, webhook_body
from hbsm.notify.notifier import Notifier
from hbsm.notify.policy import NoticePlanner

__all__ = ["KINDS", "Notice", "NoticeKind", "NoticePlanner", "Notifier", "webhook_body"]

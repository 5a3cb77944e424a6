"""A notice: one thing worth telling an operator about, its webhook body and its text (the
subject and body of a mail, the title and body of an Apprise notification)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from hbsm.vocabulary import NOTICE_KINDS, NoticeKindOn

__all__ = [
    "KINDS",
    "LEVELS",
    "Notice",
    "NoticeKind",
    "iso_utc",
    "notice_lines",
    "notice_title",
    "webhook_body",
]

# "test": `hbsm notify --test`, sent on demand and never planned (so not in KINDS, which is
# what `notify.on` may name).
NoticeKind = Literal[NoticeKindOn, "test"]
KINDS: Final[tuple[NoticeKind, ...]] = NOTICE_KINDS
LEVELS: Final[dict[str, str]] = {
    "restart": "warning",
    "failed": "critical",
    "recovered": "info",
    "repair_failed": "warning",
    # A report, not an incident: nothing is repaired or restarted for it.
    "cert_expiring": "warning",
    # The monitor's own: its event log cannot be written (it can repair nothing), or can again.
    "log_unwritable": "critical",
    "log_writable": "info",
    "test": "info",
}
# What a title says after "[hbsm] <service>".
_TITLES: Final[dict[str, str]] = {
    "restart": "restarting",
    "failed": "FAILED",
    "recovered": "recovered",
    "repair_failed": "repair failed",
    "cert_expiring": "TLS certificate expires soon",
    "log_unwritable": "CANNOT WRITE ITS EVENT LOG",
    "log_writable": "event log writable again",
    "test": "test notice",
}


@dataclass(frozen=True)
class Notice:
    """What `Notifier.plan` decided to tell, before any channel has been tried.

    `incident` names the incident ("<service>@<ISO time it began>"); `ts` is the time of the
    event that called for the notice (seconds since the epoch, UTC); `details` is plain JSON.
    The monitor's own notices (log_unwritable, log_writable) have `service` "" and an incident
    "event-log@<ISO time the outage began>"; a cert_expiring notice, which is no incident of
    the service, "<service>@cert:<the certificate's SHA-256, first 16 hex digits>".
    """

    service: str
    kind: NoticeKind
    incident: str
    level: str
    message: str
    ts: float
    details: dict[str, Any] = field(default_factory=dict)


def iso_utc(ts: float) -> str:
    """`ts` as ISO-8601 in UTC, to the millisecond: 2024-05-01T12:00:00.000Z."""
    text = datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def webhook_body(notice: Notice) -> dict[str, Any]:
    """The JSON body every webhook receives."""
    return {
        "service": notice.service,
        "kind": notice.kind,
        "incident": notice.incident,
        "level": notice.level,
        "message": notice.message,
        "ts": iso_utc(notice.ts),
        "details": notice.details,
    }


def notice_title(notice: Notice) -> str:
    """One line: "[hbsm] api FAILED"; the monitor's own notices concern no service:
    "[hbsm] CANNOT WRITE ITS EVENT LOG"."""
    subject = _TITLES.get(notice.kind, notice.kind)
    return " ".join(part for part in ("[hbsm]", notice.service, subject) if part)


def notice_lines(notice: Notice) -> list[str]:
    """The plain-text body: the message, then the notice's fields and details."""
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
    return lines

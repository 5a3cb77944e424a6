"""The service screen's certificate line: when the certificate ends, and whether it was
reported as expiring."""

from __future__ import annotations

from hbsm.events import CertExpiring, CertSeen, ServiceView
from hbsm.state import ServiceState
from tui.screens.service import _certificate

DAY = 86400.0
NOW = 1_800_000_000.0


def view(days: float, reported: bool) -> ServiceView:
    cert = CertSeen(service="api", not_after=NOW + days * DAY, fingerprint="ab" * 32)
    report = (
        CertExpiring(service="api", fingerprint="ab" * 32, not_after=cert.not_after,
                     days_left=days, warn_days=14.0)
        if reported else None
    )  # fmt: skip
    return ServiceView(name="api", fsm=ServiceState(name="api"), cert=cert, cert_expiring=report)


def test_a_reported_certificate_says_so_and_how_many_days_are_left() -> None:
    text = _certificate(view(3, reported=True), NOW).plain
    assert (
        text == "\n certificate until 2027-01-18 08:00:00Z  ·  3.0 days left (reported: renew it)"
    )


def test_a_certificate_far_from_its_end_shows_only_its_days() -> None:
    text = _certificate(view(90, reported=False), NOW).plain
    assert text.endswith("·  90 days left")

"""What one probe found, before it becomes a `Probe` event."""

from __future__ import annotations

from typing import NamedTuple

from ._tls import PeerCert

__all__ = ["Outcome"]


class Outcome(NamedTuple):
    ok: bool
    # The target's response time; None when it never answered (refused, timeout, ...).
    latency_ms: float | None = None
    status: int | None = None
    error: str | None = None
    detail: str = ""
    # https on the lean path: the certificate the target presented (it passed verification).
    cert: PeerCert | None = None

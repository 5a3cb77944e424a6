"""What every route answers, whatever framework serves it: `Answer` (status, headers, body).

The framework adapters (hbsm.api.app for ASGI, hbsm.flask.blueprint for Flask) write an
Answer out as it is: `headers()` is every header the answer carries, Content-Type included, so
the two cannot differ by a default of their own (Starlette adds `; charset=utf-8` to text types,
Flask to others).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, NamedTuple

from hbsm.api import bodies

__all__ = [
    "EVENT_STREAM",
    "HEALTH_JSON",
    "JSON",
    "MAX_BODY",
    "Answer",
    "error",
    "wants_health_json",
]

JSON = "application/json"
HEALTH_JSON = "application/health+json"
EVENT_STREAM = "text/event-stream; charset=utf-8"
# The largest request body any route reads: admin routes take none, or a JSON one they ignore.
MAX_BODY = 64 * 2**10
# On every answer: nothing here may be cached by a proxy, nor sniffed into another type.
_COMMON = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class Answer(NamedTuple):
    status: int
    body: bytes
    media_type: str = JSON
    extra: Mapping[str, str] | None = None  # Allow, WWW-Authenticate, ...
    stream: AsyncIterator[bytes] | None = None  # then `body` is empty: the stream is the body

    def headers(self) -> dict[str, str]:
        extra = self.extra or {}
        return {**_COMMON, "Content-Type": self.media_type, **extra}


def error(
    status: int,
    message: str,
    detail: dict[str, Any] | None = None,
    *,
    extra: Mapping[str, str] | None = None,
) -> Answer:
    body = bodies.ErrorBody(error=message, status=status, detail=detail)
    return Answer(status, bodies.encode(body), extra=extra)


def wants_health_json(accept: str | None) -> bool:
    """Whether an Accept header asks for application/health+json (with a q above 0)."""
    if not accept or "health+json" not in accept:
        return False
    for item in accept.split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        if kind.lower() != HEALTH_JSON:
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False

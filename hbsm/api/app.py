"""The standalone ASGI application: hbsm.api.handler adapted to ASGI, for uvicorn.

Every HTTP request goes to the `Handler` (which routes it by the table of hbsm.api.routes,
answers routing errors too, and never raises), and its `Answer` is written back as it is;
`BodyLimit` bounds request bodies before any of that. Plain ASGI, read straight from the scope:
a Starlette request and response cost more than everything else a cached `/health` needs (the
request's URL object alone), so only the event stream is sent with Starlette's
`StreamingResponse`, for its handling of a client that goes away; Starlette is imported by the
first event stream, not at start-up (it and anyio are a few MB). `app.state.hbsm` is the
handler: the server sets its `closing` on shutdown so that open event streams end, and records
the refused admin attempts only counted so far (hbsm.api.server).
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING

from hbsm.api.answer import MAX_BODY, Answer, error
from hbsm.api.body_limit import BodyLimit
from hbsm.api.handler import Handler, Request
from hbsm.api.refusals import RefusalLimiter
from hbsm.api.source import Source

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope, Send

__all__ = ["MAX_BODY", "ApiApp", "create_app"]

log = logging.getLogger("hbsm.api")

# Encoded response headers, by (media type, extra headers): a handful of combinations.
_HEADERS: dict[tuple[object, ...], list[tuple[bytes, bytes]]] = {}


class ApiApp:
    """The ASGI app for one handler (`create_app` makes it)."""

    def __init__(self, handler: Handler, *, max_body: int = MAX_BODY) -> None:
        self.state = SimpleNamespace(hbsm=handler)
        self.handler = handler
        self._app = BodyLimit(self._serve, max_bytes=max_body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._app(scope, receive, send)
        elif scope["type"] == "lifespan":  # nothing to start or stop: say so
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await _body(scope, receive)
            answer = await self.handler.handle(_request(scope, body))
        except Exception:  # the handler answers its own errors: this is a bug of ours
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            answer = error(500, "internal error; the server's log has the details")
        if answer.stream is not None:
            from starlette.responses import StreamingResponse  # the first stream loads it

            stream = StreamingResponse(answer.stream, answer.status, answer.headers())
            await stream(scope, receive, send)
            return
        headers = [*_encoded_headers(answer), (b"content-length", b"%d" % len(answer.body))]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})


def create_app(
    source: Source,
    *,
    sse_heartbeat: float = 15.0,
    sse_poll: float = 0.2,
    max_body: int = MAX_BODY,
    cache_max_age: float = 1.0,
    refusals: RefusalLimiter | None = None,
) -> ApiApp:
    """The app for one source. `refusals`: how refused admin attempts are rate-limited
    (default: 10 recorded a minute per client host)."""
    handler = Handler(
        source,
        sse_heartbeat=sse_heartbeat,
        sse_poll=sse_poll,
        cache_max_age=cache_max_age,
        refusals=refusals,
    )
    return ApiApp(handler, max_body=max_body)


def _request(scope: Scope, body: bytes) -> Request:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:  # names come in lower case
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    client = scope.get("client")
    return Request(
        method=scope["method"],
        path=scope["path"],
        headers=headers,
        query=scope.get("query_string", b"").decode("latin-1"),
        body=body,
        client=(client[0], client[1]) if client else None,
    )


async def _body(scope: Scope, receive: Receive) -> bytes:
    """The request's body (BodyLimit has bounded it), or nothing without asking for it when
    the head says there is none."""
    declared = any(
        name in (b"content-length", b"transfer-encoding") for name, _ in scope["headers"]
    )
    if not declared:
        return b""
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            break  # the client went away
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _encoded_headers(answer: Answer) -> list[tuple[bytes, bytes]]:
    key = (answer.media_type, *(answer.extra or {}).items())
    encoded = _HEADERS.get(key)
    if encoded is None:
        if len(_HEADERS) > 64:  # extras that vary (they do not, today): stay bounded
            _HEADERS.clear()
        encoded = [(k.lower().encode(), v.encode("latin-1")) for k, v in answer.headers().items()]
        _HEADERS[key] = encoded
    return encoded

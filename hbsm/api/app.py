"""The standalone ASGI application: Starlette, adapting hbsm.api.handler to ASGI.

One catch-all route hands every request to the `Handler` (which routes it by the table of
hbsm.api.routes, answers routing errors too, and never raises), and writes its `Answer` back;
`BodyLimit` bounds request bodies before any of that. `app.state.hbsm` is the handler: the
server sets its `closing` on shutdown so that open event streams end, and records the refused
admin attempts only counted so far (hbsm.api.server).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from hbsm.api.answer import MAX_BODY
from hbsm.api.body_limit import BodyLimit
from hbsm.api.handler import Handler, Request
from hbsm.api.refusals import RefusalLimiter
from hbsm.api.source import Source

__all__ = ["MAX_BODY", "create_app"]


def _request(request: StarletteRequest, body: bytes) -> Request:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():  # names come in lower case
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    client = request.client
    return Request(
        method=request.method,
        path=request.url.path,
        headers=headers,
        query=request.url.query,
        body=body,
        client=(client.host, client.port) if client is not None else None,
    )


class _Endpoint:
    """An ASGI app, so that Starlette's route takes every method: the handler answers a wrong
    one (405, with Allow) from the route table, as it does for Flask."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = StarletteRequest(scope, receive)
        answer = await self.handler.handle(_request(request, await request.body()))
        headers = answer.headers()
        response: Response
        if answer.stream is not None:
            response = StreamingResponse(answer.stream, answer.status, headers)
        else:
            response = Response(answer.body, answer.status, headers)
        await response(scope, receive, send)


def create_app(
    source: Source,
    *,
    sse_heartbeat: float = 15.0,
    sse_poll: float = 0.2,
    max_body: int = MAX_BODY,
    cache_max_age: float = 1.0,
    refusals: RefusalLimiter | None = None,
) -> Starlette:
    """The app for one source. `refusals`: how refused admin attempts are rate-limited
    (default: 10 recorded a minute per client host)."""
    handler = Handler(
        source,
        sse_heartbeat=sse_heartbeat,
        sse_poll=sse_poll,
        cache_max_age=cache_max_age,
        refusals=refusals,
    )

    app = Starlette(routes=[Route("/{path:path}", _Endpoint(handler))])
    app.add_middleware(BodyLimit, max_bytes=max_body)
    app.state.hbsm = handler
    return app

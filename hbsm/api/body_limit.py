"""`BodyLimit`: the standalone app's bound on request bodies, ahead of every route."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hbsm.api.answer import error

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit"]


class BodyLimit:
    """Request bodies over `max_bytes` get 413 (JSON) before the app sees them; a bad
    Content-Length gets 400. No route reads a body: this bounds what a client can make the
    server buffer, whatever the route.

    Before answering 413 the rest of the body is read and dropped, up to `drain` bytes, so the
    client (still sending) gets to read the answer; past that the connection is closed."""

    def __init__(self, app: ASGIApp, max_bytes: int, drain: int = 2**20) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain = max(drain, max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: str | None = None
        chunked = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                length = value.decode("latin-1").strip()
            elif name == b"transfer-encoding":
                chunked = True
        if length is not None and not length.isdigit():
            await self._reject(scope, receive, send, 400, "bad Content-Length header", True)
            return
        if not chunked and (length is None or length == "0"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        total = 0
        over = length is not None and int(length) > self.max_bytes
        more = True
        while more:
            if over and (total > self.drain or int(length or 0) > self.drain):
                break  # not worth reading: answer and close
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            part = message.get("body", b"")
            total += len(part)
            more = message.get("more_body", False)
            if total > self.max_bytes:
                over = True
            elif not over:
                chunks.append(part)
        if over:
            why = f"request body larger than {self.max_bytes} bytes"
            await self._reject(scope, receive, send, 413, why, more)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _reject(
        scope: Scope, receive: Receive, send: Send, status: int, why: str, close: bool
    ) -> None:
        answer = error(status, why, extra={"Connection": "close"} if close else None)
        # Plain ASGI, as hbsm.api.app writes every answer: no Starlette at start-up.
        headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in answer.headers().items()]
        headers.append((b"content-length", b"%d" % len(answer.body)))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

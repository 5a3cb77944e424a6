"""Small real targets on 127.0.0.1 for the probe tests and the probe benchmark. No hbsm imports.

`HttpTarget` is a raw asyncio HTTP/1.1 server (a Protocol, so it is cheap per request and can
misbehave on purpose). Behaviour is chosen by the request path, so one server serves every case:

    /ok                   200 "ok"
    /status/<code>        that status
    /slow/<ms>            200 after <ms> milliseconds
    /breaks/<t>/<ms>      as /slow/<ms> for a request that arrives before the wall clock reads
                          <t> (milliseconds since the epoch), a 500 after <ms> from then on:
                          a service that breaks at a known time
    /hang                 accepts, reads the request, never answers
    /close                closes without answering
    /close-mid            headers promising 1000 bytes, 10 bytes, then closes
    /invalid              a line that is not HTTP, then closes
    /huge/<bytes>         200 with a body of <bytes>, written with flow control; (<bytes>, bytes
                          the kernel accepted before the client went away) land in `huge_sent`
    /body?text=..&type=.. 200 with that body (URL-encoded) and content type
    /redirect             302 to /ok
    /until-close          200 with neither a length nor chunks: the body ends with the connection
    /chunked              200 with a chunked body "all systems go"
    /interim              100 Continue, then 200 "ok"
    /stale                200 "ok", kept alive; the next request on that connection is met by
                          closing it unanswered (a server whose keep-alive ran out as it came)

A HEAD is answered as its GET without the body.

`start()`/`stop()` run it on its own event loop in a thread (usable from sync or async tests).
Given an `ssl.SSLContext` (`HttpTarget(tls=...)`) it serves https, with that context's
certificate; `use_cert` swaps the certificate for connections made from then on (a renewal).
Run as a script it serves in the foreground, prints its port, and exits when stdin closes:

    python tests/probes/servers.py [--port N] [--tls-cert PEM --tls-key PEM]

`GarbageTarget` answers every connection with bytes that are not TLS (a `tls` failure for an
https:// probe); `closed_port()` is a port that refuses connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

__all__ = ["GarbageTarget", "HttpTarget", "SwitchableTarget", "closed_port"]


def _reason(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


def _response(code: int, body: bytes, content_type: str = "text/plain", extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {code} {_reason(code)}\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: {content_type}\r\n{extra}\r\n"
    )
    return head.encode() + body


_OK = _response(200, b"ok\n")
_BROKEN = _response(500, b"broken\n")


class _Connection(asyncio.Protocol):
    def __init__(self, target: HttpTarget) -> None:
        self.target = target
        self.buffer = b""
        self.busy = False  # answering a request; later ones wait (no pipelining)
        self.head = False  # answering a HEAD: headers only
        self.stale = False  # /stale answered: close at the next request
        self.transport: asyncio.Transport | None = None
        self.can_write: asyncio.Event = asyncio.Event()
        self.can_write.set()
        self.writer: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.target.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.can_write.set()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._next()

    def _next(self) -> None:
        while not self.busy and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            self.target.requests += 1
            if self.stale:
                self._close()
                return
            self.head = parts[0] == "HEAD"
            self._answer(parts[1] if len(parts) > 1 else "/")

    def _done(self) -> None:
        self.busy = False
        self._next()

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            if self.head and b"\r\n\r\n" in data:
                data = data[: data.index(b"\r\n\r\n") + 4]
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _answer(self, target: str) -> None:
        url = urlsplit(target)
        path = url.path.strip("/").split("/")
        route, arg = path[0], (path[1] if len(path) > 1 else "")
        loop = asyncio.get_running_loop()
        if route in ("", "ok"):
            self._write(_OK)
        elif route == "status":
            self._write(_response(int(arg), f"status {arg}\n".encode()))
        elif route == "slow":
            self.busy = True
            loop.call_later(int(arg) / 1000, self._slow_done)
        elif route == "breaks":
            at, delay = arg, path[2] if len(path) > 2 else "0"
            broken = time.time() * 1000 >= int(at)
            self.busy = True
            loop.call_later(int(delay) / 1000, self._broken_done if broken else self._slow_done)
        elif route == "hang":
            self.busy = True
        elif route == "close":
            self._close()
        elif route == "close-mid":
            self._write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            self._close()
        elif route == "invalid":
            self._write(b"THIS IS NOT HTTP\r\n\r\n")
            self._close()
        elif route == "huge":
            self.busy = True
            self.writer = loop.create_task(self._huge(int(arg)))
        elif route == "body":
            # Latin-1 maps each percent-decoded byte to one character and back: the body is
            # exactly the bytes asked for, invalid UTF-8 included.
            query = parse_qs(url.query, encoding="latin-1")
            body = query.get("text", [""])[0].encode("latin-1")
            content_type = query.get("type", ["text/plain"])[0]
            self._write(_response(int(query.get("status", ["200"])[0]), body, content_type))
        elif route == "redirect":
            self._write(_response(302, b"", extra="Location: /ok\r\n"))
        elif route == "until-close":
            self._write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall systems go")
            self._close()
        elif route == "chunked":
            chunks = b"4\r\nall \r\na\r\nsystems go\r\n0\r\n\r\n"
            self._write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
        elif route == "interim":
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n" + _OK)
        elif route == "stale":
            self._write(_OK)
            self.stale = True
        else:
            self._write(_response(404, b"no such route\n"))

    def _broken_done(self) -> None:
        self._write(_BROKEN)
        self._done()

    def _slow_done(self) -> None:
        self._write(_OK)
        self._done()

    async def _huge(self, size: int) -> None:
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is not None:
            # A small send buffer: what the kernel holds for the client stays far below `size`.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        self._write(
            f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        chunk = b"x" * 65536
        sent = 0
        while sent < size and self.transport is not None:
            await self.can_write.wait()
            if self.transport is None or self.transport.is_closing():
                break
            piece = chunk[: size - sent]
            self.transport.write(piece)
            sent += len(piece)
        # Bytes handed to the transport: at most one write buffer (64 KiB) more than what the
        # kernel accepted for the client.
        self.target.huge_sent.append((size, sent))
        self._done()


class HttpTarget:
    # The protocol serving each connection: subclasses answer differently.
    connection: type[_Connection] = _Connection

    def __init__(self, port: int = 0, *, tls: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.tls = tls
        self.requests = 0
        self.connections = 0
        # (size asked for, bytes handed to the kernel) per /huge request, in order of completion.
        self.huge_sent: list[tuple[int, int]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def use_cert(self, cert: str, key: str) -> None:
        """Serve this certificate to connections made from now on (a renewed certificate).
        Loaded on the server's own loop, between two handshakes, never during one."""
        assert self.tls is not None
        tls = self.tls
        if self._loop is None:
            tls.load_cert_chain(cert, key)
            return
        done = threading.Event()

        def load() -> None:
            try:
                tls.load_cert_chain(cert, key)
            finally:
                done.set()

        self._loop.call_soon_threadsafe(load)
        assert done.wait(5), "the server's loop did not load the certificate"

    def url(self, path: str) -> str:
        return self.base + path

    async def serve(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: self.connection(self), "127.0.0.1", self.port, backlog=1024, ssl=self.tls
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self._server

    def start(self) -> HttpTarget:
        ready = threading.Event()

        def main() -> None:
            loop = self._loop = asyncio.new_event_loop()
            loop.run_until_complete(self.serve())
            ready.set()
            loop.run_forever()
            assert self._server is not None
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=main, name="http-target", daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            if self._server is not None:
                self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


class _SwitchingConnection(_Connection):
    """`/svc/<name>` answers as the route `target.modes[name]` says (default `/ok`)."""

    def _answer(self, target: str) -> None:
        parts = target.split("?")[0].strip("/").split("/")
        if len(parts) == 2 and parts[0] == "svc":
            target = self.target.modes.get(parts[1], "/ok")
        super()._answer(target)


class SwitchableTarget(HttpTarget):
    """A target whose answer per service can be switched at run time:
    `modes["web"] = "/status/500"` (or "/hang", "/slow/600", "/ok", ...) changes `/svc/web`."""

    connection = _SwitchingConnection

    def __init__(self) -> None:
        super().__init__()
        self.modes: dict[str, str] = {}

    def svc_url(self, name: str) -> str:
        return self.url(f"/svc/{name}")


class GarbageTarget:
    """Writes a line that is not TLS to every connection, then closes it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    def start(self) -> GarbageTarget:
        self._thread.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(5)


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nobody else takes it) but not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert", help="serve https with this certificate (PEM)")
    parser.add_argument("--tls-key", help="and this key (PEM)")
    args = parser.parse_args()
    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)

    async def serve() -> None:
        target = HttpTarget(args.port, tls=tls)
        await target.serve()
        print(target.port, flush=True)
        # Until stdin closes: the parent going away ends us too.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()

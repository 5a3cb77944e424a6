"""Hostile HTTP targets on 127.0.0.1 that tests/probes/servers.py does not have. No hbsm imports.

`HostileTarget` is a raw asyncio server on its own thread; the request path chooses the misdeed:

    /trickle/<ms>      a valid 200 answer (headers and a 4 KiB body) written one byte every <ms>
                       milliseconds: no single read waits long, the whole answer takes minutes
    /endless-header    a status line, then one header line that never ends (1 KiB a write)
    /many-headers      a status line, then header lines forever, each short and complete
    /bomb/<enc>/<mb>   200 with "Content-Encoding: <enc>" (gzip, deflate, or raw-deflate sent
                       as deflate) although the client asked for identity: "status: up" and
                       <mb> MiB of zeros, compressed to about a thousandth of that
    /encoded/<enc>     200 "status: up" labelled "Content-Encoding: <enc>" (not really encoded)

Each connection serves one answer and closes (saying so: "Connection: close"). Every answer
records in `sent[path]` how many bytes were written before the client went away
(or the answer ended), so a test can see that the client stopped reading.
"""

from __future__ import annotations

import asyncio
import threading
import zlib
from urllib.parse import unquote, urlsplit

__all__ = ["BOMB_TEXT", "HostileTarget"]

_TRICKLE_BODY = b"y" * 4096
_TRICKLE_ANSWER = (
    f"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {len(_TRICKLE_BODY)}\r\n"
    "Content-Type: text/plain\r\n\r\n".encode()
    + _TRICKLE_BODY
)


BOMB_TEXT = b"status: up\n"
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "raw-deflate": -zlib.MAX_WBITS}


def _bomb(encoding: str, mib: int) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, _WBITS[encoding])
    zeros = bytes(2**20)
    parts = [deflate.compress(BOMB_TEXT), *(deflate.compress(zeros) for _ in range(mib))]
    parts.append(deflate.flush())
    return b"".join(parts)


class HostileTarget:
    def __init__(self) -> None:
        self.port = 0
        # path -> bytes written for that answer before it ended or the client went away
        self.sent: dict[str, int] = {}
        self.finished: set[str] = set()  # paths whose answer is over (client gone or all sent)
        # Connections open now, by the path asked for ("": its request not read yet).
        self.open: dict[int, str] = {}
        self._bombs: dict[tuple[str, int], bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> HostileTarget:
        ready = threading.Event()

        def main() -> None:
            loop = self._loop = asyncio.new_event_loop()
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shut())
            loop.close()

        self._thread = threading.Thread(target=main, name="hostile-target", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("hostile target did not start")
        return self

    async def _shut(self) -> None:
        assert self._server is not None
        self._server.close()
        pending = asyncio.all_tasks() - {asyncio.current_task()}
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = "/"
        self.open[id(writer)] = ""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
            self.open[id(writer)] = path
            self.sent[path] = 0
            await self._answer(path, writer)
        except (ConnectionError, asyncio.IncompleteReadError, IndexError):
            pass  # the client went away: what was sent is recorded
        finally:
            self.finished.add(path)
            self.open.pop(id(writer), None)
            writer.close()

    async def _write(self, path: str, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()
        self.sent[path] += len(data)

    async def _answer(self, path: str, writer: asyncio.StreamWriter) -> None:
        parts = unquote(urlsplit(path).path).strip("/").split("/")
        route, arg = parts[0], (parts[1] if len(parts) > 1 else "")
        if route == "trickle":
            for i in range(len(_TRICKLE_ANSWER)):
                await self._write(path, writer, _TRICKLE_ANSWER[i : i + 1])
                await asyncio.sleep(int(arg) / 1000)
        elif route == "endless-header":
            await self._write(path, writer, b"HTTP/1.1 200 OK\r\nX-Endless: ")
            while True:
                await self._write(path, writer, b"a" * 1024)
                await asyncio.sleep(0)
        elif route == "many-headers":
            await self._write(path, writer, b"HTTP/1.1 200 OK\r\n")
            n = 0
            while True:
                lines = b"".join(b"X-H%d: v\r\n" % (n + i) for i in range(64))
                n += 64
                await self._write(path, writer, lines)
                await asyncio.sleep(0)
        elif route == "bomb":
            encoding, mib = arg, int(parts[2])
            bomb = self._bombs.get((encoding, mib))
            if bomb is None:
                bomb = self._bombs[encoding, mib] = _bomb(encoding, mib)
            head = (
                f"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {len(bomb)}\r\n"
                f"Content-Encoding: {encoding.removeprefix('raw-')}\r\n"
                "Content-Type: text/plain\r\n\r\n"
            ).encode()
            await self._write(path, writer, head + bomb)
        elif route == "encoded":
            head = (
                f"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {len(BOMB_TEXT)}\r\n"
                f"Content-Encoding: {arg}\r\nContent-Type: text/plain\r\n\r\n"
            ).encode()
            await self._write(path, writer, head + BOMB_TEXT)
        else:
            await self._write(
                path,
                writer,
                b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            )

"""A raw HTTP/1.1 client over a socket: sends exactly the bytes given (no path normalization,
no header checks, a body declared longer than what is sent), for the bad-request tests."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

__all__ = ["RawAnswer", "raw_request", "read_all"]


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes
    seconds: float
    sent: int  # body bytes sent before the answer came (or the server closed)


def raw_request(
    port: int,
    method: str,
    target: str | bytes,
    *,
    headers: dict[str, str | bytes] | None = None,
    body: bytes = b"",
    declared: int | None = None,
    chunked_total: int | None = None,
    timeout: float = 30.0,
) -> RawAnswer:
    """Send one request to 127.0.0.1:`port` and read its answer (the connection is closed).

    `declared`: a Content-Length to announce instead of len(body) (only `body` is sent).
    `chunked_total`: send that many bytes as chunks (1 MiB each) instead, without a length,
    stopping as soon as the server answers or closes."""
    started = time.monotonic()
    raw_target = target if isinstance(target, bytes) else target.encode("latin-1")
    lines = [method.encode("latin-1") + b" " + raw_target + b" HTTP/1.1",
             f"Host: 127.0.0.1:{port}".encode(), b"Connection: close"]  # fmt: skip
    for name, value in (headers or {}).items():
        raw = value if isinstance(value, bytes) else value.encode("latin-1")
        lines.append(name.encode("latin-1") + b": " + raw)
    if chunked_total is not None:
        lines.append(b"Transfer-Encoding: chunked")
    elif body or declared is not None:
        lines.append(f"Content-Length: {declared if declared is not None else len(body)}".encode())
    sent = [0]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        try:
            if chunked_total is not None:
                _send_chunks(sock, chunked_total, sent)
            elif body:
                sock.sendall(body)
                sent[0] = len(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed: read what it said
        data = read_all(sock)
    return _parse(data, time.monotonic() - started, sent[0])


def _send_chunks(sock: socket.socket, total: int, sent: list[int]) -> None:
    piece = b"x" * 2**20
    while sent[0] < total:
        if _answered(sock):
            return
        sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        sent[0] += len(piece)
    sock.sendall(b"0\r\n\r\n")


def _answered(sock: socket.socket) -> bool:
    """Whether the server has answered (or closed) already; waits a moment for it."""
    timeout = sock.gettimeout()
    sock.settimeout(0.05)
    try:
        sock.recv(1, socket.MSG_PEEK)
        return True
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True  # reset: it is not listening any more
    finally:
        sock.settimeout(timeout)


def read_all(sock: socket.socket) -> bytes:
    """The answer: up to the end of its body when it says where that is (a server may keep
    the connection open meanwhile, draining what the client still sends), else to EOF."""
    data = b""
    while not _complete(data):
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            return len(body) >= int(value.strip())
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return body.endswith(b"0\r\n\r\n")
    return False


def _parse(data: bytes, seconds: float, sent: int) -> RawAnswer:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines or not lines[0].startswith(b"HTTP/"):
        raise AssertionError(f"not an HTTP answer: {data[:200]!r}")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(body)
    return RawAnswer(status, headers, body, seconds, sent)


def _unchunk(data: bytes) -> bytes:
    out: list[bytes] = []
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(rest[:size])
        data = rest[size + 2 :]
    return b"".join(out)
